"""Plain HTTP(S) resources through urllib3.

An ``https://host/path?query`` reference names one resource; the URL is sent verbatim.
HTTP has no versions and no listing, so this backend declares ``keeps_versions = False``
and ``can_scan = False`` and refuses those calls with a :class:`~reftrack.errors.UsageError`.
Content identity is the optional ``ETag``; reftrack therefore hashes the bytes itself
(``hashes_content = True``).

Requests, as counted by :attr:`HTTPBackend.requests` (every request sent, retries and
redirect hops included):

* ``stat``: one ``HEAD``. When the server refuses HEAD (405, 501, or 403 as S3/GCS
  presigned URLs signed for GET do), one ``GET`` with ``Range: bytes=0-0`` instead; once
  that fallback worked for a host, later stats of that host send the ranged GET directly.
* ``open``: one streaming ``GET`` (with ``If-Match`` when an ETag is given).
* ``check_bucket``: one ``HEAD /``. ``versioning`` and ``scan``: none.

One ``PoolManager`` (a connection pool per host, ``maxsize`` = concurrency) serves every
thread. Connection errors and 429/500/502/503/504 answers are retried a bounded number of
times with exponential backoff (``Retry-After`` respected, capped); redirects are followed
(urllib3 drops ``Authorization`` when a redirect leaves the host).

``storage_options`` (``Settings.storage_options["https"]``, or ``["http"]``):

``headers``
    extra request headers, e.g. ``{"Authorization": "Bearer ..."}``; never shown in errors.
``timeout``
    seconds, one number (connect and read) or ``{"connect": 5, "read": 60}``.
``retries``
    how many times a failed request is retried (default 4, so at most 5 attempts).
``backoff``
    the first retry's delay in seconds, doubled per retry (default 0.5; capped at 30 s).
``ca_certs``
    a CA bundle file for servers with a private certificate authority.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import urllib3
from urllib3.exceptions import (
    HTTPError,
    LocationValueError,
    MaxRetryError,
    ResponseError,
    SSLError,
)
from urllib3.exceptions import TimeoutError as TimedOut
from urllib3.util import Retry, Timeout

from ..checksums import b64_to_hex
from ..errors import (
    BackendError,
    BucketAccessDenied,
    IntegrityError,
    ObjectNotFound,
    ReftrackError,
    UsageError,
)
from ..uri import RefURI
from .base import ObjectStat, ReaderBase, Versioning

__all__ = ["HTTPBackend", "HTTPReader", "HTTPStatusError"]

DEFAULT_RETRIES = 4
DEFAULT_BACKOFF = 0.5
BACKOFF_MAX = 30.0
"""No single wait between two attempts is longer, whatever ``Retry-After`` asks."""
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
MAX_REDIRECTS = 10
DRAIN_LIMIT = 64 * 1024
"""Unwanted bodies up to this size are read so the connection can be reused; larger ones
close the connection instead."""

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_HEAD_REFUSED = frozenset({403, 405, 501})
_OPTIONS = ("headers", "timeout", "retries", "backoff", "ca_certs")
_SECRET_QUERY = re.compile(
    r"signature|x-amz-|x-goog-|sig=|token|key=|auth|credential|secret|password",
    re.IGNORECASE,
)
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:\d+-\d+|\*)/(\d+|\*)\s*$", re.IGNORECASE)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class HTTPStatusError(Exception):
    """An HTTP answer reftrack treats as a failure: the ``__cause__`` of the reftrack error.

    Its text holds the status and the URL as shown in errors (signed queries hidden)."""

    def __init__(self, status: int, reason: str, url: str, attempts: int = 1) -> None:
        super().__init__(f"HTTP {status}{' ' + reason if reason else ''} for {url}")
        self.status = status
        self.reason = reason
        self.attempts = attempts


def _shown(uri: RefURI) -> str:
    """The URL for messages: verbatim, unless its query looks like a signature or token."""
    base = uri.base
    path, sep, query = base.partition("?")
    if sep and _SECRET_QUERY.search(query):
        return f"{path}?<signed query hidden>"
    return base


def _cause(exc: BaseException) -> BaseException:
    """The error behind urllib3's retry wrapper (whose text would repeat the URL)."""
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        return exc.reason
    return exc


def _translate(exc: BaseException, uri: RefURI, operation: str) -> ReftrackError:
    """The one place HTTP failures become reftrack errors: by status code or error type."""
    if isinstance(exc, ReftrackError):
        return exc
    where = _shown(uri)
    host = uri.bucket_uri
    if isinstance(exc, HTTPStatusError):
        status = exc.status
        if status in (404, 410):
            gone = " (410 Gone: removed for good)" if status == 410 else ""
            return ObjectNotFound(f"{where}: no such object{gone}", where)
        if status in (401, 403):
            return BucketAccessDenied(
                f"access denied to {where} (HTTP {status}); {host} needs credentials it "
                f"accepts: pass them as headers in storage_options={{'{uri.scheme}': "
                "{'headers': {'Authorization': ...}}}, or, for a presigned URL, check it "
                "has not expired and is signed for GET",
                host,
            )
        if status == 412:
            return IntegrityError(
                f"{where}: the resource changed since it was recorded (the server refused "
                "If-Match: its ETag differs)",
                uri=where,
            )
        if status in _RETRY_STATUSES or status >= 500:
            tries = f" after {exc.attempts} attempts" if exc.attempts > 1 else ""
            return BackendError(
                f"{where}: {host} is unavailable (HTTP {status}){tries}; retry later "
                "(or raise storage_options retries)",
                host,
                code=str(status),
            )
        return BackendError(
            f"{where}: HTTP {operation} failed with {status} {exc.reason}".rstrip(),
            host,
            code=str(status),
        )
    reason = _cause(exc)
    name = type(reason).__name__
    if isinstance(reason, LocationValueError):
        return UsageError(f"{where} is not a usable URL ({name})")
    if isinstance(reason, ResponseError):  # too many redirects
        return BackendError(f"{where}: more than {MAX_REDIRECTS} redirects; check the URL", host)
    if isinstance(reason, SSLError):
        return BackendError(
            f"cannot reach {host} securely ({name}); check the server's certificate, or "
            f"give a CA bundle as storage_options={{'{uri.scheme}': {{'ca_certs': ...}}}}",
            host,
        )
    if operation == "read":
        return BackendError(f"{where}: the transfer from {host} broke off ({name}); retry", host)
    if isinstance(reason, HTTPError | OSError | TimeoutError):
        slow = ", or raise storage_options timeout" if isinstance(reason, TimedOut) else ""
        return BackendError(
            f"cannot reach {host} for {where} ({name}); check the network and the URL"
            f"{slow}, then retry",
            host,
        )
    return BackendError(f"{where}: HTTP {operation} failed ({name})", host)


def _etag(value: str | None) -> str | None:
    """``"abc"`` -> ``abc``; ``W/"abc"`` -> ``W/abc``; missing or empty -> None."""
    if not value or not value.strip():
        return None
    text = value.strip()
    weak = text[:2].upper() == "W/"
    tag = (text[2:] if weak else text).strip().strip('"')
    if not tag:
        return None
    return f"W/{tag}" if weak else tag


def _opaque(etag: str) -> str:
    """The tag without its weakness marker (weak comparison, RFC 9110 8.8.3.2)."""
    return etag[2:] if etag[:2].upper() == "W/" else etag


def _last_modified(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _int(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def _range_total(value: str | None) -> int | None:
    """The complete length from ``Content-Range: bytes 0-0/N`` (or ``bytes */N``)."""
    match = _CONTENT_RANGE.match(value or "")
    if match is None or match.group(1) == "*":
        return None
    return int(match.group(1))


def _checksums(headers: Mapping[str, str]) -> dict[str, str]:
    """Content checksums the server reports for the whole resource, as lowercase hex."""
    found: dict[str, str] = {}
    for part in (headers.get("x-goog-hash") or "").split(","):
        name, _, value = part.strip().partition("=")
        algorithm = {"md5": "md5", "crc32c": "crc32c"}.get(name.strip().lower())
        digest = b64_to_hex(value.strip())
        if algorithm and digest:
            found[algorithm] = digest
    md5 = b64_to_hex((headers.get("content-md5") or "").strip())
    if md5 and len(md5) == 32:
        found.setdefault("md5", md5)
    return found


def _stat_from(uri: RefURI, response: urllib3.BaseHTTPResponse) -> ObjectStat:
    """Normalise one HEAD or GET answer (the only place that reads response headers)."""
    headers = response.headers
    full = response.status not in (206, 416)
    if response.status == 206:
        size = _range_total(headers.get("content-range"))
    elif response.status == 416:  # bytes=0-0 is unsatisfiable: the resource is empty
        total = _range_total(headers.get("content-range"))
        size = 0 if total is None else total
    else:
        size = _int(headers.get("content-length"))
    return ObjectStat(
        uri=uri,
        size=size,
        etag=_etag(headers.get("etag")),
        last_modified=_last_modified(headers.get("last-modified")),
        checksums=_checksums(headers) if full else {},
    )


def _discard(response: urllib3.BaseHTTPResponse) -> None:
    """Give the connection back without reading a large unwanted body."""
    length = _int(response.headers.get("content-length"))
    if response.status == 416 or (length is not None and length <= DRAIN_LIMIT):
        response.drain_conn()
        response.release_conn()
        return
    response.close()  # drops the connection; the pool opens a new one when needed
    response.release_conn()


def _if_match(etag: str) -> str | None:
    """The ``If-Match`` header for a recorded ETag; None for a weak one (If-Match compares
    strongly, so a weak tag never matches and the answer is checked by weak comparison)."""
    if etag[:2].upper() == "W/":
        return None
    return '"' + etag.strip('"') + '"'


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    when = _last_modified(text)
    if when is None:
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _options(options: Mapping[str, Any], scheme: str) -> dict[str, Any]:
    """Validate ``storage_options``; secrets (header values) never appear in messages."""
    where = f"storage_options[{scheme!r}]"
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise UsageError(
            f"{where}: unknown option(s) {', '.join(map(repr, unknown))}; the HTTP backend "
            f"takes {', '.join(_OPTIONS)}"
        )
    headers = options.get("headers") or {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise UsageError(f"{where}['headers'] must map header names to string values")
    for name, value in headers.items():
        if not _HEADER_NAME.match(name) or "\r" in value or "\n" in value:
            raise UsageError(
                f"{where}['headers']: header {name[:40]!r} has an invalid name or a line "
                "break in its value"
            )
    timeout = options.get("timeout")
    connect, read = DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT
    if isinstance(timeout, Mapping):
        extra = set(timeout) - {"connect", "read"}
        if extra:
            raise UsageError(f"{where}['timeout'] takes 'connect' and 'read' seconds only")
        connect = _positive(timeout.get("connect", connect), f"{where}['timeout']['connect']")
        read = _positive(timeout.get("read", read), f"{where}['timeout']['read']")
    elif timeout is not None:
        connect = read = _positive(timeout, f"{where}['timeout']")
    retries = options.get("retries", DEFAULT_RETRIES)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise UsageError(f"{where}['retries'] must be a whole number >= 0, got {retries!r}")
    backoff = options.get("backoff", DEFAULT_BACKOFF)
    if isinstance(backoff, bool) or not isinstance(backoff, int | float) or backoff < 0:
        raise UsageError(f"{where}['backoff'] must be seconds >= 0, got {backoff!r}")
    ca_certs = options.get("ca_certs")
    if ca_certs is not None and not isinstance(ca_certs, str):
        raise UsageError(f"{where}['ca_certs'] must be the path of a CA bundle file")
    return {
        "headers": dict(headers),
        "timeout": Timeout(connect=connect, read=read),
        "retries": retries,
        "backoff": float(backoff),
        "ca_certs": ca_certs,
    }


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise UsageError(f"{what} must be a number of seconds > 0, got {value!r}")
    return float(value)


def _user_agent() -> str:
    try:
        from importlib.metadata import version

        return f"reftrack/{version('reftrack')}"
    except Exception:  # pragma: no cover - not installed as a distribution
        return "reftrack"


class HTTPBackend:
    """The ``http://`` and ``https://`` backend (one instance per scheme)."""

    keeps_versions = False
    can_scan = False
    hashes_content = True

    def __init__(
        self,
        storage_options: dict[str, Any] | None = None,
        *,
        scheme: str = "https",
        concurrency: int = 32,
    ) -> None:
        if scheme not in ("http", "https"):
            raise UsageError(f"the HTTP backend serves http and https, not {scheme!r}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise UsageError(f"concurrency must be at least 1, got {concurrency!r}")
        options = _options(storage_options or {}, scheme)
        self.scheme = scheme
        self._headers: dict[str, str] = {
            "User-Agent": _user_agent(),
            "Accept-Encoding": "identity",  # the stored bytes, never a re-encoding
            **options["headers"],
        }
        self._timeout: Timeout = options["timeout"]
        self._retries: int = options["retries"]
        self._backoff: float = options["backoff"]
        pool_kwargs: dict[str, Any] = {}
        if options["ca_certs"]:
            pool_kwargs["ca_certs"] = options["ca_certs"]
        self._pool = urllib3.PoolManager(
            num_pools=max(10, concurrency),
            maxsize=max(1, concurrency),
            block=False,
            timeout=self._timeout,
            **pool_kwargs,
        )
        self._sleep: Callable[[float], None] = time.sleep
        self._lock = threading.Lock()
        self._requests = 0
        self._get_for_stat: set[str] = set()  # hosts whose HEAD is refused but GET works

    @property
    def requests(self) -> int:
        """HTTP requests sent so far, each retry and redirect hop included."""
        with self._lock:
            return self._requests

    # -- plumbing -------------------------------------------------------------------------

    def _count(self, n: int) -> None:
        with self._lock:
            self._requests += n

    def _delay(self, attempt: int, response: urllib3.BaseHTTPResponse | None) -> float:
        if response is not None:
            asked = _retry_after(response.headers.get("retry-after"))
            if asked is not None:
                return min(asked, BACKOFF_MAX)
        delay = min(BACKOFF_MAX, self._backoff * 2.0**attempt)
        return delay * random.uniform(0.5, 1.0)  # jitter: concurrent retries spread out

    def _send(
        self,
        method: str,
        uri: RefURI,
        headers: Mapping[str, str] | None = None,
        *,
        stream: bool = False,
    ) -> tuple[urllib3.BaseHTTPResponse, int]:
        """One request with bounded retries: the final answer, whatever its status, and how
        many attempts it took. Transport failures are raised as reftrack errors."""
        if uri.scheme not in ("http", "https"):
            raise UsageError(f"{_shown(uri)} is not an http(s):// URL")
        url = uri.base
        sent = urllib3.HTTPHeaderDict(self._headers)  # case-insensitive: ours replace theirs
        for name, value in (headers or {}).items():
            sent[name] = value
        attempt = 0
        while True:
            self._count(1)
            try:
                response = self._pool.request(
                    method,
                    url,
                    headers=sent,
                    preload_content=not stream,
                    decode_content=False,
                    redirect=True,
                    retries=Retry(
                        total=None, connect=0, read=0, status=0, other=0,
                        redirect=MAX_REDIRECTS, raise_on_redirect=True,
                        respect_retry_after_header=False,
                    ),
                    timeout=self._timeout,
                )
            except HTTPError as exc:
                reason = _cause(exc)
                permanent = isinstance(reason, SSLError | ResponseError | LocationValueError)
                if attempt < self._retries and not permanent:
                    self._sleep(self._delay(attempt, None))
                    attempt += 1
                    continue
                raise _translate(exc, uri, method) from reason
            if response.retries is not None and response.retries.history:
                self._count(len(response.retries.history))  # redirect hops
            if response.status in _RETRY_STATUSES and attempt < self._retries:
                delay = self._delay(attempt, response)
                _discard(response)
                self._sleep(delay)
                attempt += 1
                continue
            return response, attempt + 1

    @staticmethod
    def _failure(
        response: urllib3.BaseHTTPResponse, uri: RefURI, attempts: int
    ) -> HTTPStatusError:
        """The failed answer as an exception (to translate), its connection freed."""
        _discard(response)
        return HTTPStatusError(response.status, response.reason or "", _shown(uri), attempts)

    @staticmethod
    def _refuse_versions(uri: RefURI) -> None:
        if uri.version_id is not None:
            raise UsageError(
                f"{_shown(uri)}: http(s):// references have no versions; reference the URL "
                f"itself (without version {uri.version_id!r})"
            )

    # -- the protocol ---------------------------------------------------------------------

    def stat(self, uri: RefURI) -> ObjectStat:
        self._refuse_versions(uri)
        with self._lock:
            head_first = uri.bucket not in self._get_for_stat
        if head_first:
            response, attempts = self._send("HEAD", uri)
            if 200 <= response.status < 300:
                return _stat_from(uri, response)
            if response.status not in _HEAD_REFUSED:
                error = self._failure(response, uri, attempts)
                raise _translate(error, uri, "HEAD") from error
            _discard(response)
        return self._stat_by_get(uri)

    def _stat_by_get(self, uri: RefURI) -> ObjectStat:
        """HEAD refused: one GET of the first byte (size from ``Content-Range``)."""
        response, attempts = self._send("GET", uri, {"Range": "bytes=0-0"}, stream=True)
        if not (200 <= response.status < 300 or response.status == 416):
            error = self._failure(response, uri, attempts)
            raise _translate(error, uri, "GET") from error
        stat = _stat_from(uri, response)
        if response.status == 206 or response.status == 416:
            _discard(response)
        else:  # the server ignored Range: never download the body to learn its size
            response.close()
            response.release_conn()
        with self._lock:
            self._get_for_stat.add(uri.bucket)
        return stat

    def scan(
        self,
        prefix: RefURI,
        *,
        all_versions: bool = False,
        recursive: bool = True,
        page_limit: int | None = None,
        start_after: str | None = None,
    ) -> Iterator[ObjectStat]:
        raise UsageError(
            f"{_shown(prefix)}: HTTP has no listing, so a prefix cannot be listed or "
            "scanned; reference each file by its own URL"
        )

    def open(self, uri: RefURI, *, if_match: str | None = None) -> HTTPReader:
        self._refuse_versions(uri)
        headers: dict[str, str] = {}
        condition = _if_match(if_match) if if_match else None
        if condition:
            headers["If-Match"] = condition
        response, attempts = self._send("GET", uri, headers, stream=True)
        if not 200 <= response.status < 300 or response.status == 206:
            error = self._failure(response, uri, attempts)
            raise _translate(error, uri, "GET") from error
        stat = _stat_from(uri, response)
        if if_match and stat.etag is not None and _opaque(stat.etag) != _opaque(if_match):
            response.close()
            response.release_conn()
            raise IntegrityError(
                f"{_shown(uri)}: the resource changed since it was recorded (ETag "
                f"{stat.etag!r}, recorded {if_match!r})",
                expected=if_match,
                actual=stat.etag,
                uri=_shown(uri),
            )
        return HTTPReader(uri, response, stat)

    def versioning(self, bucket: str) -> Versioning:
        return "disabled"

    def check_bucket(self, bucket: str) -> None:
        """Raise :class:`BackendError` unless ``bucket`` (``host[:port]``) answers at all."""
        response, _ = self._send("HEAD", RefURI(self.scheme, bucket, ""))
        _discard(response)


class HTTPReader(ReaderBase):
    """The body of one streaming GET, read in chunks; ``close`` frees the connection."""

    def __init__(
        self, uri: RefURI, response: urllib3.BaseHTTPResponse, stat: ObjectStat
    ) -> None:
        self._uri = uri
        self._response = response
        self._done = False
        self._closed = False
        self.stat = stat

    def read(self, size: int) -> bytes:
        if self._done or self._closed or size <= 0:
            return b""
        try:
            data = self._response.read(size, decode_content=False)
        except (HTTPError, OSError) as exc:
            self.close()
            raise _translate(exc, self._uri, "read") from _cause(exc)
        if not data:
            self._done = True
            self._response.release_conn()
        return data

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._done:  # unread bytes left: drop the connection rather than drain it
            self._response.close()
        self._response.release_conn()
