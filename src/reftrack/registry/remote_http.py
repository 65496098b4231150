"""The HTTP side of the registry client (:class:`~reftrack.registry.remote.RemoteRegistry`):
the server URL's checks, one pooled ``httpx`` client, retries, and the server's errors turned
back into the :mod:`reftrack.errors` classes the local registry raises.

- **URLs.** ``https://host[:port][/prefix]`` (a trailing ``/api/v1`` is accepted). Plain
  ``http://`` only to a loopback address (``127.0.0.0/8``, ``::1``, ``localhost``) unless
  ``REFTRACK_ALLOW_INSECURE_HTTP=1``: the token would travel in clear. Credentials in the URL
  are refused (the token goes in ``REFTRACK_TOKEN``); messages show the URL without them.
- **Retries.** A request that never reached the server (connection refused, connect
  timeout) is retried, whatever it is. One that may have reached it (a dropped connection,
  a read timeout, 502/503/504 from a proxy or a server that lost its database) is retried
  only when repeating it is harmless (reads, and writes that set a value); a log, a new run,
  a delete or a restore are not repeated. ``ATTEMPTS`` attempts, exponential backoff with
  jitter.
- **TLS.** The server's certificate is verified against ``REFTRACK_CA_BUNDLE`` (a PEM file
  of CA certificates: a private CA's), else ``SSL_CERT_FILE``, else httpx's default
  (``SSL_CERT_DIR``, then certifi's bundle). A bundle that cannot be loaded is a
  :class:`~reftrack.errors.UsageError` naming the variable and the path; a certificate that
  does not verify is a :class:`~reftrack.errors.BackendError` saying so and what to set,
  never retried.
- **Errors.** ``{"error": {"type", "status", "message"}}`` becomes the class ``type`` names
  (``NotFound``, ``UsageError``, ...), so the CLI's exit codes are those of a local registry;
  403 is :class:`~reftrack.errors.Forbidden`; 401 names ``REFTRACK_TOKEN``; a server that
  cannot be reached is a :class:`~reftrack.errors.BackendError` naming the URL. The token is
  never put in a message, a log line or a ``repr``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import time
import urllib.parse
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from ..errors import (
    AccessDenied,
    BackendError,
    BlobsBeingCollected,
    Forbidden,
    ManifestError,
    MissingBackend,
    NotFound,
    ProjectExists,
    ReftrackError,
    UsageError,
)

if TYPE_CHECKING:
    import ssl

    import httpx

__all__ = ["API_PREFIX", "ATTEMPTS", "CA_BUNDLE_ENV", "Transport", "check_server_url",
           "is_server_url", "redact_server_url", "tls_trust"]

API_PREFIX = "/api/v1"
ATTEMPTS = 4
"""Attempts per request (the first and three retries) when retrying is allowed."""
BACKOFF = 0.25
"""Seconds before the first retry; doubled for each next one, with jitter."""
TIMEOUT = 60.0
CONNECT_TIMEOUT = 10.0
KEEPALIVE_SECONDS = 2.0
"""Idle pooled connections are dropped sooner than the server (uvicorn: 5 s) drops them,
so that a request is not sent on a connection the server is closing."""
INSECURE_ENV = "REFTRACK_ALLOW_INSECURE_HTTP"
CA_BUNDLE_ENV = "REFTRACK_CA_BUNDLE"
"""A PEM file of the CA certificates to trust for the server (a private CA's)."""
RETRY_STATUSES = frozenset({502, 503, 504})
CHUNK_BYTES = 1024 * 1024
_ERROR_TYPES: dict[str, type[ReftrackError]] = {
    "UsageError": UsageError,
    "ProjectExists": ProjectExists,
    "NotFound": NotFound,
    "AccessDenied": AccessDenied,
    "ManifestError": ManifestError,
    "BackendError": BackendError,
    "ReftrackError": ReftrackError,
}


def is_server_url(location: str) -> bool:
    """Is this registry location a registry server (``http://``, ``https://``)?"""
    return location.strip().lower().startswith(("http://", "https://"))


def redact_server_url(location: str) -> str:
    """``scheme://host[:port]/path``: never credentials, a query or a fragment."""
    try:
        parts = urllib.parse.urlsplit(location.strip())
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return location.strip().partition("://")[0] + "://(invalid URL)"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme.lower()}://{host}{port}{parts.path.rstrip('/')}"


def _loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_server_url(location: str, *, allow_insecure: bool | None = None) -> str:
    """The server's base URL (no trailing ``/``, no ``/api/v1``), or a :class:`UsageError`
    saying what is wrong with ``location``."""
    shown = redact_server_url(location)
    try:
        parts = urllib.parse.urlsplit(location.strip())
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"invalid registry server URL {shown} ({exc}); give "
                         "https://host[:port] (REFTRACK_REGISTRY, --registry)") from None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in ("http", "https") or not host:
        raise UsageError(f"invalid registry server URL {shown}: give https://host[:port] "
                         "(REFTRACK_REGISTRY, --registry)")
    if parts.username is not None or parts.password is not None:
        raise UsageError(f"the registry server URL {shown} must not hold credentials: give "
                         "the token in REFTRACK_TOKEN")
    if parts.query or parts.fragment:
        raise UsageError(f"the registry server URL {shown} must not have a query or fragment: "
                         "give https://host[:port] (REFTRACK_REGISTRY, --registry)")
    if allow_insecure is None:
        allow_insecure = os.environ.get(INSECURE_ENV, "").strip().lower() in ("1", "true",
                                                                              "yes")
    if scheme == "http" and not _loopback(host) and not allow_insecure:
        raise UsageError(
            f"refusing plain http:// to {shown}: the token would travel in clear; use "
            f"https://, or set {INSECURE_ENV}=1 if the network between you and the server is "
            "trusted")
    path = parts.path.rstrip("/")
    if path.endswith(API_PREFIX):
        path = path[: -len(API_PREFIX)]
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return f"{scheme}://{netloc}{path}"


def check_token(token: str | None) -> str | None:
    """The token, stripped; a :class:`UsageError` (never showing it) when it cannot be a
    token."""
    if token is None:
        return None
    token = token.strip()
    if not token:
        return None
    if any(c.isspace() or not c.isprintable() or not c.isascii() for c in token) \
            or len(token) > 4096:
        raise UsageError("REFTRACK_TOKEN is malformed (it must be one printable ASCII word, "
                         "as `reftrack admin token create USER` prints it)")
    return token


def tls_trust(environ: Mapping[str, str] | None = None) -> tuple[ssl.SSLContext | bool, str]:
    """What the client verifies the server's certificate with (``verify=`` for httpx) and
    a description for messages: the PEM bundle ``REFTRACK_CA_BUNDLE`` names, else the one
    ``SSL_CERT_FILE`` names, else httpx's default (``SSL_CERT_DIR``, then certifi's). A named
    bundle that cannot be loaded is a :class:`UsageError` naming the variable and the path."""
    import ssl

    env = os.environ if environ is None else environ
    for name in (CA_BUNDLE_ENV, "SSL_CERT_FILE"):
        path = env.get(name, "").strip()
        if not path:
            continue
        try:
            return ssl.create_default_context(cafile=path), f"{name}={path}"
        except OSError as exc:  # missing, unreadable, a directory, no PEM certificate
            raise UsageError(
                f"{name}={path}: cannot load CA certificates from it ({exc.strerror or exc}); "
                "give the path of a PEM file holding the certificate of the authority that "
                "signed the registry server's certificate") from None
    return True, "the default CA certificates"


def _certificate_problem(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind ``exc`` (httpx keeps it as a cause)."""
    import ssl

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class Transport:
    """One pooled HTTP client to the server's ``/api/v1`` (thread-safe), with retries."""

    def __init__(self, base_url: str, token: str | None, *, location: str,
                 timeout: float = TIMEOUT, attempts: int = ATTEMPTS) -> None:
        try:
            import httpx
        except ImportError as exc:  # pragma: no cover - httpx comes with [server]
            raise MissingBackend("a registry server needs httpx: pip install "
                                 "'reftrack[server]'") from exc
        from .. import __version__

        self._httpx = httpx
        self.location = location
        self.has_token = token is not None
        self.attempts = max(1, attempts)
        verify, self.trust = tls_trust()
        headers = {"User-Agent": f"reftrack/{__version__}", "Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self.client = httpx.Client(
            base_url=base_url + API_PREFIX,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout)),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32,
                                keepalive_expiry=KEEPALIVE_SECONDS),
            follow_redirects=False,
            verify=verify,
        )

    def close(self) -> None:
        self.client.close()

    # -- requests ---------------------------------------------------------------------------

    def call(self, method: str, path: str, *, json: Any = None,
             params: Mapping[str, Any] | None = None, idempotent: bool) -> Any:
        """The JSON answer of one request (None for 204); errors raised as reftrack's."""
        response = self._send(method, path, json=json, params=params, idempotent=idempotent)
        if response.status_code == 204:
            return None
        try:
            return response.json()
        except ValueError:
            raise BackendError(f"the registry server {self.location} answered {method} "
                               f"{path} with something that is not JSON "
                               f"({response.headers.get('content-type', 'no type')}); check "
                               "that REFTRACK_REGISTRY points at a reftrack server",
                               self.location) from None

    def download(self, path: str, sink: IO[bytes]) -> Mapping[str, str]:
        """GET ``path`` into ``sink`` (from its start; a retry starts it again) and return
        the answer's headers; retried like a read."""
        last: Exception | None = None
        for attempt in range(self.attempts):
            final = attempt == self.attempts - 1
            sink.seek(0)
            sink.truncate()
            try:
                with self.client.stream("GET", path) as response:
                    if response.status_code in RETRY_STATUSES and not final:
                        self._pause(attempt)
                        continue
                    if response.status_code >= 300:
                        response.read()
                        self._raise(response, "GET", path)
                    for block in response.iter_bytes(CHUNK_BYTES):
                        sink.write(block)
                    return response.headers
            except self._httpx.TransportError as exc:
                if (problem := _certificate_problem(exc)) is not None:
                    raise self._untrusted(problem) from exc
                last = exc
            if final:
                break
            self._pause(attempt)
        raise self._unreachable(last)

    def _send(self, method: str, path: str, *, json: Any, params: Mapping[str, Any] | None,
              idempotent: bool) -> httpx.Response:
        httpx = self._httpx
        last: Exception | None = None
        for attempt in range(self.attempts):
            final = attempt == self.attempts - 1
            try:
                response = self.client.request(method, path, json=json, params=params)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if (problem := _certificate_problem(exc)) is not None:
                    raise self._untrusted(problem) from exc  # repeating cannot help
                last = exc  # never reached the server: safe to repeat
            except httpx.TransportError as exc:
                if not idempotent:
                    raise self._interrupted(method, path, exc) from exc
                last = exc
            else:
                if response.status_code in RETRY_STATUSES and idempotent and not final:
                    self._pause(attempt)
                    continue
                if response.status_code >= 300:
                    self._raise(response, method, path)
                return response
            if final:
                break
            self._pause(attempt)
        raise self._unreachable(last)

    @staticmethod
    def _pause(attempt: int) -> None:
        delay = BACKOFF * (2 ** attempt)
        time.sleep(delay / 2 + random.uniform(0, delay / 2))

    # -- errors -----------------------------------------------------------------------------

    def _unreachable(self, exc: Exception | None) -> BackendError:
        what = type(exc).__name__ if exc is not None else "it kept answering 502/503/504"
        detail = f": {exc}" if exc is not None and str(exc) else ""
        error = BackendError(
            f"cannot reach the registry server {self.location} ({what}{detail}) after "
            f"{self.attempts} attempt(s); is it running, and is REFTRACK_REGISTRY right?",
            self.location)
        return error

    def _untrusted(self, exc: ssl.SSLCertVerificationError) -> BackendError:
        reason = exc.verify_message or exc.reason or str(exc)
        return BackendError(
            f"the registry server {self.location} presented a TLS certificate that could not "
            f"be verified ({reason}; trusting {self.trust}); nothing was sent. If a private "
            f"certificate authority signed it, set {CA_BUNDLE_ENV} to the path of that "
            "authority's certificate (PEM); otherwise check REFTRACK_REGISTRY and the "
            "server's certificate (its names must include the URL's host)", self.location)

    def _interrupted(self, method: str, path: str, exc: Exception) -> BackendError:
        return BackendError(
            f"the connection to the registry server {self.location} failed during {method} "
            f"{path} ({type(exc).__name__}); the change may or may not have been made, so it "
            "was not repeated: check, then retry", self.location)

    def _raise(self, response: httpx.Response, method: str, path: str) -> None:
        status = response.status_code
        body: Any = None
        with contextlib.suppress(ValueError):
            body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message = error["message"]
            cls = _ERROR_TYPES.get(str(error.get("type")))
        else:
            message = f"{method} {path} answered HTTP {status}"
            cls = None
        if 300 <= status < 400:
            raise UsageError(f"the registry server {self.location} redirects ({status}) "
                             f"{method} {path}; point REFTRACK_REGISTRY at the server's own "
                             "URL (https://...)")
        if status == 401:
            if self.has_token:
                raise AccessDenied(f"the registry server {self.location} refused the token "
                                   f"(REFTRACK_TOKEN): {message}")
            raise AccessDenied(f"{message} (registry server {self.location}); set "
                               "REFTRACK_TOKEN to a token from `reftrack admin token create "
                               "USER`")
        if status == 403:
            raise Forbidden(message)
        if status == 409 and isinstance(error, dict) and error.get("type") == "BlobsBeingCollected":
            retry_after = error.get("retry_after")
            raise BlobsBeingCollected(message, retry_after=float(retry_after)
                                      if isinstance(retry_after, int | float) else 1.0)
        if status == 404 and not self.has_token and "no access to it" in message:
            raise NotFound(f"{message} (no REFTRACK_TOKEN is set: you are anonymous)")
        if cls is None or cls is ReftrackError:
            cls = (NotFound if status == 404 else UsageError if 400 <= status < 500
                   else BackendError)
        if cls is BackendError or (status >= 500 and cls is not ManifestError):
            raise BackendError(f"the registry server {self.location} failed: {message}",
                               self.location)
        raise cls(message)
