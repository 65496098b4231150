"""HTTP test fixtures: one local HTTP/1.1 server on 127.0.0.1 per session.

It serves an in-memory dict ``path (with query) -> Resource`` and supports what the HTTP
backend relies on: HEAD, GET, ``Range: bytes=a-b`` (206 + ``Content-Range``, 416 when
unsatisfiable), ``If-Match`` (412), strong ETags by default (the quoted MD5 of the content),
weak or missing ETags, ``Last-Modified`` and redirects. Switches make it misbehave: refuse
HEAD (405, or another status) everywhere or for some paths, ignore ``Range`` or
``If-Match``, deny everything (403), fail the next N requests (500, or another status,
optionally with ``Retry-After``), answer slowly, cut bodies short.
Every request is logged (method, path with query, the interesting headers, status, body
bytes written, whether the body was written completely) so tests count requests at the
server.

``http_server`` (function scope) resets all of that and hands out an :class:`HTTPServer`;
``https_server`` does the same over TLS with a self-signed certificate (``.ca_file``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

DEFAULT_LAST_MODIFIED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
LOGGED_HEADERS = ("range", "if-match", "authorization", "accept-encoding", "user-agent")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 64 * 1024
_DEFAULT: Any = object()


@dataclass
class Resource:
    data: bytes
    etag: str | None  # the header value as sent: '"abc"', 'W/"abc"', or None for no ETag
    last_modified: datetime | None
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers


@dataclass
class Request:
    method: str
    path: str  # with its query string, as received
    headers: dict[str, str]  # lower-case names, LOGGED_HEADERS only
    status: int = 0
    body_bytes: int = 0  # body bytes written to the socket
    complete: bool = True  # False when the client hung up before the body was written


@dataclass
class ServerState:
    files: dict[str, Resource] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    refuse_head: bool | set[str] = False
    head_refusal: int = 405
    ignore_range: bool = False
    ignore_if_match: bool = False
    delay: float = 0.0
    deny: bool = False
    fail_count: int = 0
    fail_status: int = 500
    retry_after: str | None = None
    truncate: bool = False
    log: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.files.clear()
            self.redirects.clear()
            self.refuse_head = False
            self.head_refusal = 405
            self.ignore_range = False
            self.ignore_if_match = False
            self.delay = 0.0
            self.deny = False
            self.fail_count = 0
            self.fail_status = 500
            self.retry_after = None
            self.truncate = False
            self.log.clear()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog (5) drops concurrent connects: 1 s stalls
    state: ServerState


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client's pool reuses connections
    timeout = 10  # idle keep-alive connections are dropped after this
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stalls
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, *, head: bool) -> None:
        state = self.server.state
        entry = Request(
            self.command,
            self.path,
            {k: v for k in LOGGED_HEADERS if (v := self.headers.get(k)) is not None},
        )
        with state.lock:
            state.log.append(entry)
            failing = state.fail_count > 0
            if failing:
                state.fail_count -= 1
            refuse = state.refuse_head
            resource = state.files.get(self.path)
            target = state.redirects.get(self.path)
            deny, ignore_range, truncate = state.deny, state.ignore_range, state.truncate
            fail_status, retry_after = state.fail_status, state.retry_after
            head_refusal, ignore_if_match = state.head_refusal, state.ignore_if_match
            delay = state.delay
        if delay:
            time.sleep(delay)
        path_only = self.path.split("?", 1)[0]
        if deny:
            return self._small(entry, 403, b"AccessDenied", head)
        if failing:
            extra = {"Retry-After": retry_after} if retry_after is not None else {}
            return self._small(entry, fail_status, b"try again", head, extra)
        if target is not None:
            return self._small(entry, 302, b"", head, {"Location": target})
        if head and (refuse is True or (isinstance(refuse, set) and path_only in refuse)):
            return self._small(entry, head_refusal, b"HEAD not allowed", head, {"Allow": "GET"})
        if resource is None:
            return self._small(entry, 404, b"NoSuchKey", head)
        if_match = self.headers.get("If-Match")
        if if_match is not None and not ignore_if_match and not _matches(if_match, resource.etag):
            return self._small(entry, 412, b"PreconditionFailed", head)
        data = resource.data
        status, body = 200, data
        headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        headers.update(resource.headers)
        if resource.etag is not None:
            headers["ETag"] = resource.etag
        if resource.last_modified is not None:
            headers["Last-Modified"] = format_datetime(resource.last_modified, usegmt=True)
        wanted = self.headers.get("Range")
        if wanted is not None and not head and not ignore_range:
            span = _span(wanted, len(data))
            if span is None:
                headers["Content-Range"] = f"bytes */{len(data)}"
                return self._small(entry, 416, b"", head, headers)
            first, last = span
            status, body = 206, data[first : last + 1]
            headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
        self._answer(entry, status, body, head, headers, truncate=truncate and not head)

    def _small(
        self,
        entry: Request,
        status: int,
        body: bytes,
        head: bool,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._answer(entry, status, body, head, headers or {})

    def _answer(
        self,
        entry: Request,
        status: int,
        body: bytes,
        head: bool,
        headers: dict[str, str],
        *,
        truncate: bool = False,
    ) -> None:
        entry.status = status
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        if head:
            return
        if truncate:
            body = body[: len(body) // 2]
            self.close_connection = True
        # Counted *before* each write: a client may have read the bytes and moved on before
        # this thread runs again, and a test reading the log then must already see them.
        try:
            for start in range(0, len(body), _CHUNK):
                chunk = body[start : start + _CHUNK]
                entry.body_bytes += len(chunk)
                self.wfile.write(chunk)
            self.wfile.flush()
        except OSError:  # the client hung up (as it should when it wants no body)
            entry.complete = False
            self.close_connection = True


def _matches(if_match: str, etag: str | None) -> bool:
    """RFC 9110 If-Match: strong comparison against each listed tag, or ``*``."""
    if etag is None:
        return False
    tags = [t.strip() for t in if_match.split(",")]
    if "*" in tags:
        return True
    return not etag.startswith("W/") and etag in tags


def _span(header: str, length: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` -> inclusive (first, last), or None when
    unsatisfiable."""
    match = _RANGE.match(header.strip())
    if match is None or (not match.group(1) and not match.group(2)):
        return None
    if not match.group(1):  # suffix: the last n bytes
        n = int(match.group(2))
        if n == 0 or length == 0:
            return None
        return max(0, length - n), length - 1
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) else length - 1
    if first >= length or last < first:
        return None
    return first, min(last, length - 1)


class HTTPServer:
    """What tests use: the base URL, the content, the switches and the request log."""

    def __init__(self, url: str, state: ServerState) -> None:
        self.url = url
        self.host = url.split("://", 1)[1]
        self.ca_file: str | None = None  # the CA bundle of a TLS server
        self._state = state

    # -- content --------------------------------------------------------------------------

    def put(
        self,
        path: str,
        data: bytes,
        *,
        etag: str | None = _DEFAULT,
        last_modified: datetime | None = DEFAULT_LAST_MODIFIED,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Serve ``data`` at ``path`` (query string allowed); return the full URL.

        ``etag``: the header value (default: the quoted MD5 of ``data``), ``None`` for none.
        ``headers``: extra response headers for this resource (e.g. ``x-goog-hash``).
        """
        path = "/" + path.lstrip("/")
        if etag is _DEFAULT:
            etag = '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'
        with self._state.lock:
            self._state.files[path] = Resource(data, etag, last_modified, dict(headers or {}))
        return self.url + path

    def delete(self, path: str) -> None:
        with self._state.lock:
            self._state.files.pop("/" + path.lstrip("/"), None)

    def redirect(self, path: str, to: str) -> str:
        """``path`` answers 302 to ``to`` (a path on this server or a full URL)."""
        path = "/" + path.lstrip("/")
        with self._state.lock:
            self._state.redirects[path] = to
        return self.url + path

    # -- switches -------------------------------------------------------------------------

    @property
    def refuse_head(self) -> bool | set[str]:
        return self._state.refuse_head

    @refuse_head.setter
    def refuse_head(self, value: bool | set[str]) -> None:
        """True: 405 for every HEAD; a set of paths (no query): 405 for those only."""
        with self._state.lock:
            self._state.refuse_head = (
                value if isinstance(value, bool) else {"/" + p.lstrip("/") for p in value}
            )

    @property
    def head_refusal(self) -> int:
        return self._state.head_refusal

    @head_refusal.setter
    def head_refusal(self, status: int) -> None:
        """The status a refused HEAD gets (405 by default; 403 as presigned URLs do)."""
        with self._state.lock:
            self._state.head_refusal = status

    @property
    def ignore_if_match(self) -> bool:
        return self._state.ignore_if_match

    @ignore_if_match.setter
    def ignore_if_match(self, value: bool) -> None:
        with self._state.lock:
            self._state.ignore_if_match = value

    @property
    def delay(self) -> float:
        return self._state.delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        """Wait this long before answering each request."""
        with self._state.lock:
            self._state.delay = seconds

    @property
    def ignore_range(self) -> bool:
        return self._state.ignore_range

    @ignore_range.setter
    def ignore_range(self, value: bool) -> None:
        with self._state.lock:
            self._state.ignore_range = value

    @property
    def deny(self) -> bool:
        return self._state.deny

    @deny.setter
    def deny(self, value: bool) -> None:
        with self._state.lock:
            self._state.deny = value

    @property
    def truncate(self) -> bool:
        return self._state.truncate

    @truncate.setter
    def truncate(self, value: bool) -> None:
        """Send full Content-Length but only half of each GET body, then hang up."""
        with self._state.lock:
            self._state.truncate = value

    def fail(self, times: int, status: int = 500, *, retry_after: str | None = None) -> None:
        """Answer the next ``times`` requests with ``status`` (then serve normally)."""
        with self._state.lock:
            self._state.fail_count = times
            self._state.fail_status = status
            self._state.retry_after = retry_after

    # -- the request log ------------------------------------------------------------------

    @property
    def log(self) -> list[Request]:
        with self._state.lock:
            return list(self._state.log)

    def clear_log(self) -> None:
        with self._state.lock:
            self._state.log.clear()

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """Requests received, optionally of one method and/or one path (with query)."""
        if path is not None:
            path = "/" + path.lstrip("/")
        return sum(
            1
            for r in self.log
            if (method is None or r.method == method) and (path is None or r.path == path)
        )


@contextmanager
def _serving(tls: ssl.SSLContext | None = None) -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = ServerState()
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="http-fixture",
        daemon=True,
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def http_server_session() -> Iterator[HTTPServer]:
    with _serving() as server:
        yield HTTPServer(f"http://127.0.0.1:{server.server_port}", server.state)


@pytest.fixture
def http_server(http_server_session: HTTPServer) -> HTTPServer:
    """The session's server with no content, all switches off and an empty log."""
    http_server_session._state.reset()
    return http_server_session


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA: (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "reftrack test server")])
    now = datetime.now(UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture(scope="session")
def https_server_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HTTPServer]:
    pytest.importorskip("cryptography")
    cert_file, key_file = _self_signed(tmp_path_factory.mktemp("tls"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    with _serving(context) as server:
        handle = HTTPServer(f"https://127.0.0.1:{server.server_port}", server.state)
        handle.ca_file = str(cert_file)
        yield handle


@pytest.fixture
def https_server(https_server_session: HTTPServer) -> HTTPServer:
    """Like ``http_server`` over TLS, with a private CA: ``.ca_file`` is its bundle."""
    https_server_session._state.reset()
    return https_server_session
