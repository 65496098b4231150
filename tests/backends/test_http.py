"""The HTTP(S) backend against a local HTTP/1.1 server (tests/http_fixtures.py), bound to the
contract suite, plus what only HTTP has: HEAD refusals, Range quirks, weak/missing ETags,
query strings, retries, secrets kept out of errors. Requests are counted at the server."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from http_fixtures import DEFAULT_LAST_MODIFIED, HTTPServer

from reftrack.backends import Backend, Backends, ObjectReader
from reftrack.backends.http import BACKOFF_MAX, HTTPBackend
from reftrack.errors import (
    BackendError,
    BucketAccessDenied,
    IntegrityError,
    ObjectNotFound,
    ReftrackError,
    UsageError,
)
from reftrack.settings import Settings
from reftrack.uri import RefURI, parse_uri

from .contract import (
    ErrorContract,
    ReadContract,
    ScanContract,
    StatContract,
    read_all,
)

CLOSED = "127.0.0.1:9"  # nothing listens there: connection refused at once


def make(**options: Any) -> HTTPBackend:
    """A backend for the test server: retries without waiting unless told otherwise."""
    options.setdefault("backoff", 0)
    return HTTPBackend(options, scheme="http")


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class HTTPStore:
    versioned = False
    missing_bucket_error = BackendError

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.bucket = server.host
        self.backend: Backend = make(retries=2)

    def uri(self, key: str, version: str | None = None) -> RefURI:
        return RefURI("http", self.bucket, key, version)

    def write(self, key: str, data: bytes) -> str | None:
        self.server.put(key, data)
        return None

    def delete(self, key: str) -> None:
        self.server.delete(key)

    def purge_version(self, key: str, version: str) -> None:
        raise NotImplementedError("HTTP resources have no versions to purge")

    def missing_bucket_uri(self, key: str) -> RefURI:
        return RefURI("http", CLOSED, key)

    @contextmanager
    def deny_access(self) -> Iterator[None]:
        self.server.deny = True
        try:
            yield
        finally:
            self.server.deny = False


class TestHTTP(StatContract, ScanContract, ReadContract, ErrorContract):
    @pytest.fixture
    def store(self, http_server: HTTPServer) -> HTTPStore:
        return HTTPStore(http_server)


@pytest.fixture
def server(http_server: HTTPServer) -> HTTPServer:
    return http_server


def ref(url: str) -> RefURI:
    return parse_uri(url)


# -- the protocol's shape -----------------------------------------------------------------


def test_capabilities_and_protocol() -> None:
    backend = HTTPBackend()
    assert backend.scheme == "https"
    assert HTTPBackend(scheme="http").scheme == "http"
    assert (backend.keeps_versions, backend.can_scan, backend.hashes_content) == (
        False, False, True)
    assert backend.requests == 0
    assert backend.versioning("example.org") == "disabled"
    assert backend.requests == 0
    typed: Backend = backend  # mypy checks the protocol; this documents it
    assert typed is backend


def test_factory_builds_one_backend_per_scheme_with_its_options(server: HTTPServer) -> None:
    url = server.put("f", b"abc")
    backends = Backends(Settings(storage_options={"http": {"retries": 0,
                                                           "headers": {"X-Test": "1"}}}))
    backend = backends.for_scheme("http")
    assert isinstance(backend, HTTPBackend) and backend.scheme == "http"
    assert backends.for_uri(ref(url)) is backend
    assert backend.stat(ref(url)).size == 3
    assert backends.for_scheme("https").scheme == "https"


# -- stat ---------------------------------------------------------------------------------


def test_stat_is_one_head(server: HTTPServer) -> None:
    url = server.put("d/a.bin", b"hello world")
    backend = make()
    stat = backend.stat(ref(url))
    assert stat.size == 11
    assert stat.etag == md5(b"hello world")
    assert stat.last_modified == DEFAULT_LAST_MODIFIED
    assert stat.last_modified is not None and stat.last_modified.tzinfo is not None
    assert stat.uri == ref(url) and stat.version_id is None and stat.is_latest
    assert [(r.method, r.path) for r in server.log] == [("HEAD", "/d/a.bin")]
    assert server.log[0].headers["accept-encoding"] == "identity"
    assert backend.requests == 1


@pytest.mark.parametrize("refusal", [405, 501, 403])
def test_head_refused_falls_back_to_one_ranged_get(server: HTTPServer, refusal: int) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB: must not be downloaded to learn the size
    url = server.put("big.bin", data)
    server.refuse_head = True
    server.head_refusal = refusal
    backend = make()
    stat = backend.stat(ref(url))
    assert (stat.size, stat.etag, stat.last_modified) == (
        len(data), md5(data), DEFAULT_LAST_MODIFIED)
    assert stat.checksums == {}  # nothing taken from a partial answer
    head, get = server.log
    assert (head.method, head.status) == ("HEAD", refusal)
    assert (get.method, get.headers.get("range"), get.status) == ("GET", "bytes=0-0", 206)
    assert get.body_bytes == 1
    assert backend.requests == 2


def test_after_a_fallback_the_host_is_stat_by_get_directly(server: HTTPServer) -> None:
    urls = [server.put(f"k{i}", b"x" * i) for i in range(1, 4)]
    server.refuse_head = True
    backend = make()
    assert [backend.stat(ref(u)).size for u in urls] == [1, 2, 3]
    assert [r.method for r in server.log] == ["HEAD", "GET", "GET", "GET"]
    assert backend.requests == 4
    # Another backend (another process) starts with HEAD again.
    server.clear_log()
    make().stat(ref(urls[0]))
    assert [r.method for r in server.log] == ["HEAD", "GET"]


def test_head_refused_for_some_paths_only(server: HTTPServer) -> None:
    ok = server.put("plain", b"12")
    odd = server.put("odd", b"123")
    server.refuse_head = {"odd"}
    backend = make()
    assert backend.stat(ref(ok)).size == 2
    assert backend.stat(ref(odd)).size == 3
    assert [(r.method, r.path) for r in server.log] == [
        ("HEAD", "/plain"), ("HEAD", "/odd"), ("GET", "/odd")]


def test_head_refused_and_range_ignored(server: HTTPServer) -> None:
    data = b"\x00" * (32 * 1024 * 1024)  # more than loopback socket buffers hold
    url = server.put("huge.bin", data, etag='"v1"')
    server.refuse_head = True
    server.ignore_range = True
    backend = make()
    stat = backend.stat(ref(url))
    assert (stat.size, stat.etag) == (len(data), "v1")
    get = server.log[-1]
    assert (get.method, get.status, get.headers.get("range")) == ("GET", 200, "bytes=0-0")
    # The connection was dropped instead of reading 32 MiB.
    for _ in range(100):
        if not server.log[-1].complete:
            break
        threading.Event().wait(0.01)
    assert not server.log[-1].complete and server.log[-1].body_bytes < len(data)
    assert backend.requests == 2
    # The pool still works afterwards.
    server.ignore_range = False
    assert backend.stat(ref(url)).size == len(data)


def test_head_refused_on_an_empty_resource(server: HTTPServer) -> None:
    url = server.put("empty", b"")
    server.refuse_head = True
    stat = make().stat(ref(url))
    assert stat.size == 0
    assert server.log[-1].status == 416


def test_weak_etag_keeps_its_marker(server: HTTPServer) -> None:
    url = server.put("w", b"weak", etag='W/"abc-1"')
    backend = make()
    assert backend.stat(ref(url)).etag == "W/abc-1"
    with backend.open(ref(url), if_match="W/abc-1") as reader:
        assert read_all(reader) == b"weak" and reader.stat.etag == "W/abc-1"
    # If-Match compares strongly, so a weak tag is never sent: the answer is checked instead.
    assert "if-match" not in server.log[-1].headers
    server.put("w", b"WEAK", etag='W/"abc-2"')
    with pytest.raises(IntegrityError, match="changed") as info:
        backend.open(ref(url), if_match="W/abc-1")
    assert (info.value.expected, info.value.actual) == ("W/abc-1", "W/abc-2")


def test_no_etag_still_records_size_and_last_modified(server: HTTPServer) -> None:
    url = server.put("plain.txt", b"12345", etag=None)
    stat = make().stat(ref(url))
    assert (stat.etag, stat.size, stat.last_modified) == (None, 5, DEFAULT_LAST_MODIFIED)
    url = server.put("bare.txt", b"123", etag=None, last_modified=None)
    stat = make().stat(ref(url))
    assert (stat.etag, stat.size, stat.last_modified) == (None, 3, None)


def test_query_strings_are_kept_verbatim(server: HTTPServer) -> None:
    url = server.put("q/file.bin?a=1&b=two&c=%2F", b"query")
    uri = ref(url)
    assert uri.key == "q/file.bin?a=1&b=two&c=%2F"
    backend = make()
    stat = backend.stat(uri)
    assert stat.size == 5 and stat.uri == uri and str(stat.uri) == url
    with backend.open(uri) as reader:
        assert read_all(reader) == b"query" and reader.stat.uri == uri
    assert [r.path for r in server.log] == ["/q/file.bin?a=1&b=two&c=%2F"] * 2
    with pytest.raises(ObjectNotFound):  # another query is another resource
        backend.stat(ref(url.replace("two", "three")))


def test_store_checksums_from_full_answers(server: HTTPServer) -> None:
    data = b"checksummed"
    b64 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
    crc = base64.b64encode(bytes.fromhex("0a0b0c0d")).decode()
    url = server.put("c", data, headers={"x-goog-hash": f"crc32c={crc}, md5={b64}"})
    stat = make().stat(ref(url))
    assert stat.checksums == {"md5": md5(data), "crc32c": "0a0b0c0d"}
    url = server.put("m", data, headers={"Content-MD5": b64})
    assert make().stat(ref(url)).checksums == {"md5": md5(data)}
    server.refuse_head = True  # a 206's Content-MD5 would describe one byte: ignored
    assert make().stat(ref(url)).checksums == {}


def test_redirects_are_followed_and_counted(server: HTTPServer) -> None:
    server.put("new/place", b"moved here")
    url = server.redirect("old/place", "/new/place")
    backend = make()
    stat = backend.stat(ref(url))
    assert stat.size == 10 and stat.uri == ref(url)
    with backend.open(ref(url)) as reader:
        assert read_all(reader) == b"moved here"
    assert [(r.method, r.status) for r in server.log] == [
        ("HEAD", 302), ("HEAD", 200), ("GET", 302), ("GET", 200)]
    assert backend.requests == 4


def test_pinned_versions_and_scans_are_refused_without_a_request(server: HTTPServer) -> None:
    url = server.put("v", b"x")
    backend = make()
    pinned = ref(url).with_version("7")
    with pytest.raises(UsageError, match=r"http\(s\):// references have no versions"):
        backend.stat(pinned)
    with pytest.raises(UsageError, match="no versions"):
        backend.open(pinned)
    with pytest.raises(UsageError, match="list") as info:
        backend.scan(ref(server.url + "/dir/"))
    assert server.url + "/dir/" in str(info.value)
    assert server.log == [] and backend.requests == 0


# -- open ---------------------------------------------------------------------------------


def test_open_streams_in_chunks(server: HTTPServer) -> None:
    data = bytes(range(256)) * 1000
    url = server.put("s", data)
    backend = make()
    reader = backend.open(ref(url))
    assert isinstance(reader, ObjectReader)
    assert (reader.stat.size, reader.stat.etag) == (len(data), md5(data))
    parts = []
    while chunk := reader.read(4096):
        assert len(chunk) <= 4096
        parts.append(chunk)
    assert b"".join(parts) == data and reader.read(10) == b""
    reader.close()
    reader.close()
    assert backend.requests == 1 and server.count("GET") == 1


def test_closing_early_drops_the_connection_and_the_pool_recovers(server: HTTPServer) -> None:
    data = b"y" * (32 * 1024 * 1024)
    url = server.put("large", data)
    small = server.put("small", b"ok")
    backend = make()
    with backend.open(ref(url)) as reader:
        assert reader.read(10) == b"y" * 10
    assert reader.read(10) == b""  # closed
    with backend.open(ref(small)) as reader:
        assert read_all(reader) == b"ok"
    assert backend.stat(ref(small)).size == 2


def test_if_match_is_sent_and_honoured(server: HTTPServer) -> None:
    url = server.put("im", b"first")
    backend = make()
    etag = backend.stat(ref(url)).etag
    assert etag is not None
    with backend.open(ref(url), if_match=etag) as reader:
        assert read_all(reader) == b"first"
    assert server.log[-1].headers["if-match"] == f'"{etag}"'
    server.put("im", b"second")
    with pytest.raises(IntegrityError, match="changed") as info:
        backend.open(ref(url), if_match=etag)
    assert server.log[-1].status == 412
    assert info.value.__cause__ is not None


def test_if_match_ignored_by_the_server_is_checked_by_the_client(server: HTTPServer) -> None:
    url = server.put("im", b"first" * 100_000)
    backend = make()
    etag = backend.stat(ref(url)).etag
    server.put("im", b"second" * 100_000)
    server.ignore_if_match = True
    with pytest.raises(IntegrityError, match="changed") as info:
        backend.open(ref(url), if_match=etag)
    assert info.value.expected == etag and info.value.actual == md5(b"second" * 100_000)
    assert server.log[-1].status == 200
    assert backend.stat(ref(url)).size == 600_000  # the dropped connection did no harm


def test_a_truncated_body_is_an_error(server: HTTPServer) -> None:
    url = server.put("t", b"z" * 100_000)
    server.truncate = True
    with make().open(ref(url)) as reader, pytest.raises(BackendError, match="broke off"):
        read_all(reader, 8192)


# -- errors and retries -------------------------------------------------------------------


def test_forbidden_is_bucket_access_denied(server: HTTPServer) -> None:
    url = server.put("private/x", b"x")
    server.deny = True
    backend = make()
    with pytest.raises(BucketAccessDenied) as info:
        backend.stat(ref(url))
    message = str(info.value)
    assert isinstance(info.value, PermissionError)
    assert server.url in message and "headers" in message and "presigned" in message
    assert info.value.uri == server.url
    assert [r.method for r in server.log] == ["HEAD", "GET"]  # HEAD 403 may be GET-only
    with pytest.raises(BucketAccessDenied):
        backend.open(ref(url))


def test_transient_server_errors_are_retried(server: HTTPServer) -> None:
    url = server.put("flaky", b"data")
    server.fail(2)
    backend = make(retries=3)
    assert backend.stat(ref(url)).size == 4
    assert [r.status for r in server.log] == [500, 500, 200]
    assert backend.requests == 3
    server.clear_log()
    server.fail(1, 503)
    with backend.open(ref(url)) as reader:
        assert read_all(reader) == b"data"
    assert [r.status for r in server.log] == [503, 200]


def test_persistent_server_errors_give_up_after_bounded_attempts(server: HTTPServer) -> None:
    url = server.put("down", b"data")
    server.fail(1000)
    backend = make(retries=2)
    with pytest.raises(BackendError, match="unavailable") as info:
        backend.stat(ref(url))
    assert not isinstance(info.value, ObjectNotFound)
    assert info.value.code == "500" and "3 attempts" in str(info.value)
    assert server.count() == 3 == backend.requests
    server.clear_log()
    with pytest.raises(BackendError, match="unavailable"):
        backend.open(ref(url))
    assert server.count("GET") == 3


def test_retry_after_is_respected_and_capped(server: HTTPServer,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    url = server.put("busy", b"x")
    backend = make(retries=3, backoff=0.25)
    sleeps: list[float] = []
    monkeypatch.setattr(backend, "_sleep", sleeps.append)
    server.fail(1, 429, retry_after="2")
    assert backend.stat(ref(url)).size == 1
    server.fail(1, 503, retry_after="86400")
    assert backend.stat(ref(url)).size == 1
    server.fail(2, 502)  # no Retry-After: exponential backoff with jitter
    assert backend.stat(ref(url)).size == 1
    assert sleeps[:2] == [2.0, BACKOFF_MAX]
    assert 0.125 <= sleeps[2] <= 0.25 and 0.25 <= sleeps[3] <= 0.5
    assert len(sleeps) == 4


def test_client_errors_are_not_retried(server: HTTPServer) -> None:
    url = server.put("x", b"x")
    server.fail(5, 400)
    with pytest.raises(BackendError) as info:
        make(retries=3).stat(ref(url))
    assert info.value.code == "400" and server.count() == 1
    server.fail(0)
    server.delete("x")
    with pytest.raises(ObjectNotFound, match="no such object"):
        make(retries=3).stat(ref(url))
    assert server.count() == 2  # a 404 is an answer, not a failure to retry


def test_unreachable_host_is_retried_a_bounded_number_of_times(
        monkeypatch: pytest.MonkeyPatch) -> None:
    backend = make(retries=2, backoff=0.5)
    sleeps: list[float] = []
    monkeypatch.setattr(backend, "_sleep", sleeps.append)
    with pytest.raises(BackendError, match=rf"cannot reach http://{CLOSED}.*network") as info:
        backend.stat(RefURI("http", CLOSED, "k"))
    assert not isinstance(info.value, ObjectNotFound)
    assert isinstance(info.value.__cause__, Exception)
    assert len(sleeps) == 2 and backend.requests == 3


def test_read_timeout(server: HTTPServer) -> None:
    url = server.put("slow", b"x")
    server.delay = 1.0
    backend = make(retries=0, timeout={"connect": 1, "read": 0.2})
    with pytest.raises(BackendError, match=r"cannot reach.*timeout"):
        backend.stat(ref(url))


def test_check_bucket(server: HTTPServer) -> None:
    backend = make(retries=0)
    backend.check_bucket(server.host)  # "/" is a 404 here: still an answer
    assert [(r.method, r.path, r.status) for r in server.log] == [("HEAD", "/", 404)]
    server.deny = True
    backend.check_bucket(server.host)  # reachable; access is judged per URL
    with pytest.raises(BackendError, match=CLOSED):
        backend.check_bucket(CLOSED)


# -- secrets stay out of errors -----------------------------------------------------------


def test_authorization_header_is_sent_but_never_shown(server: HTTPServer) -> None:
    secret = "Bearer s3cr3t-t0ken"
    url = server.put("auth", b"x")
    backend = make(retries=1, headers={"Authorization": secret})
    assert backend.stat(ref(url)).size == 1
    assert server.log[-1].headers["authorization"] == secret
    errors: list[ReftrackError] = []
    server.deny = True
    with pytest.raises(BucketAccessDenied) as denied:
        backend.stat(ref(url))
    errors.append(denied.value)
    server.deny = False
    server.fail(100)
    with pytest.raises(BackendError) as down:
        backend.open(ref(url))
    errors.append(down.value)
    server.fail(0)
    with pytest.raises(ObjectNotFound) as missing:
        backend.stat(ref(url + "-missing"))
    errors.append(missing.value)
    with pytest.raises(BackendError) as unreachable:
        backend.stat(RefURI("http", CLOSED, "auth"))
    errors.append(unreachable.value)
    for error in errors:
        for text in (str(error), repr(error), str(error.__cause__), repr(error.__cause__)):
            assert "s3cr3t" not in text


def test_signed_query_strings_are_not_echoed(server: HTTPServer) -> None:
    query = "X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIAXYZ&X-Amz-Signature=deadbeef01"
    url = server.put(f"signed/obj?{query}", b"x")
    backend = make(retries=0)
    assert backend.stat(ref(url)).size == 1  # the request itself carries the query
    assert server.log[-1].path.endswith(query)
    errors: list[BaseException] = []
    for path, switch in ((f"signed/gone?{query}", None), (f"signed/obj?{query}", "deny")):
        server.deny = switch == "deny"
        with pytest.raises(BackendError) as info:
            backend.stat(ref(server.url + "/" + path))
        errors.append(info.value)
    server.deny = False
    with pytest.raises(BackendError) as info:
        backend.stat(ref(f"http://{CLOSED}/signed/obj?{query}"))
    errors.append(info.value)
    with pytest.raises(UsageError) as usage:
        backend.stat(ref(url).with_version("1"))
    errors.append(usage.value)
    for error in errors:
        for text in (str(error), str(error.__cause__), str(getattr(error, "uri", ""))):
            assert "deadbeef01" not in text and "AKIAXYZ" not in text
    assert "/signed/gone" in str(errors[0])
    # Harmless queries stay visible.
    with pytest.raises(ObjectNotFound, match=r"page=2"):
        backend.stat(ref(server.url + "/list?page=2"))


# -- options and concurrency --------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"endpoint_url": "x"}, "unknown option.*'endpoint_url'.*headers"),
        ({"headers": {"Authorization": 5}}, "headers"),
        ({"headers": {"X-Bad": "a\r\nInjected: 1"}}, "line break"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": {"connect": 1, "total": 2}}, "timeout"),
        ({"retries": -1}, "retries"),
        ({"retries": 1.5}, "retries"),
        ({"backoff": "fast"}, "backoff"),
        ({"ca_certs": 1}, "ca_certs"),
    ],
)
def test_storage_options_are_validated(options: dict[str, Any], match: str) -> None:
    with pytest.raises(UsageError, match=match) as info:
        HTTPBackend(options)
    assert "Injected" not in str(info.value)


def test_bad_constructor_arguments() -> None:
    with pytest.raises(UsageError, match="ftp"):
        HTTPBackend(scheme="ftp")
    with pytest.raises(UsageError, match="concurrency"):
        HTTPBackend(concurrency=0)


def test_concurrent_stats_and_reads_share_one_pool(server: HTTPServer) -> None:
    urls = {server.put(f"p/{i}", str(i).encode() * (i + 1)): i for i in range(64)}
    backend = HTTPBackend({"backoff": 0}, scheme="http", concurrency=8)

    def work(url: str) -> tuple[int | None, bytes]:
        size = backend.stat(ref(url)).size
        with backend.open(ref(url)) as reader:
            return size, read_all(reader, 3)

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = dict(zip(urls, pool.map(work, urls), strict=True))
    for url, i in urls.items():
        assert results[url] == (i + 1 if i < 10 else 2 * (i + 1), str(i).encode() * (i + 1))
    assert backend.requests == 128 == server.count()


# -- https --------------------------------------------------------------------------------


def test_https_with_a_private_certificate_authority(https_server: HTTPServer) -> None:
    url = https_server.put("tls/file", b"secure bytes")
    assert url.startswith("https://")
    untrusted = HTTPBackend({"retries": 3, "backoff": 0})
    with pytest.raises(BackendError, match=r"securely.*ca_certs") as info:
        untrusted.stat(ref(url))
    assert untrusted.requests == 1  # a certificate problem is not retried
    assert not isinstance(info.value, ObjectNotFound)
    backend = HTTPBackend({"ca_certs": https_server.ca_file, "backoff": 0})
    assert backend.scheme == "https"
    assert backend.stat(ref(url)).size == 12
    with backend.open(ref(url)) as reader:
        assert read_all(reader) == b"secure bytes"
    assert [r.method for r in https_server.log] == ["HEAD", "GET"]
