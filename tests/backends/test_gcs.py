"""The GCS backend against gcp-storage-emulator (gcsfs's session underneath), bound to the
contract suite, plus what is particular to GCS: generations are checked, not trusted."""

from __future__ import annotations

import hashlib
import math
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from datetime import UTC, datetime

import pytest
from gcs_fixtures import GCSFixture

from reftrack.backends import ScanLimitReached
from reftrack.backends import gcs as gcs_module
from reftrack.backends.gcs import GCSBackend
from reftrack.checksums import crc32c_hex
from reftrack.errors import (
    BackendError,
    BucketAccessDenied,
    BucketNotFound,
    IntegrityError,
    ObjectNotFound,
)
from reftrack.uri import RefURI

from .contract import ErrorContract, ReadContract, ScanContract, StatContract, read_all


class GCSStore:
    """The contract's store on the emulator, which keeps no old generations."""

    versioned = False
    missing_bucket_error = BucketNotFound

    def __init__(self, gcs: GCSFixture) -> None:
        self.gcs = gcs
        self.bucket = gcs.bucket
        self.backend = GCSBackend()  # no options: STORAGE_EMULATOR_HOST leads to the emulator

    def uri(self, key: str, version: str | None = None) -> RefURI:
        return RefURI("gs", self.bucket, key, version)

    def write(self, key: str, data: bytes) -> str | None:
        return self.gcs.write(key, data)

    def delete(self, key: str) -> None:
        self.gcs.delete(key)

    def purge_version(self, key: str, version: str) -> None:
        pass  # the emulator never keeps a noncurrent generation: it is gone already

    def missing_bucket_uri(self, key: str) -> RefURI:
        return RefURI("gs", "no-such-bucket", key)

    def deny_access(self) -> AbstractContextManager[None]:
        return self.gcs.deny()


class TestGCS(StatContract, ScanContract, ReadContract, ErrorContract):
    @pytest.fixture
    def store(self, gcs: GCSFixture) -> GCSStore:
        return GCSStore(gcs)


@pytest.fixture
def backend(gcs: GCSFixture) -> GCSBackend:
    return GCSBackend()


def _uri(gcs: GCSFixture, key: str, generation: str | None = None) -> RefURI:
    return RefURI("gs", gcs.bucket, key, generation)


# -- generations are checked, not trusted -------------------------------------------------


def test_pinned_generation_of_an_overwritten_object_is_refused(gcs: GCSFixture,
                                                              backend: GCSBackend) -> None:
    old = gcs.write("k", b"old bytes")
    new = gcs.write("k", b"new bytes")
    assert old != new
    gcs.log.clear()
    # The emulator answers generation=old with the live object (generation new) ...
    with pytest.raises(ObjectNotFound, match=f"generation {old} no longer exists.*{new}") as info:
        backend.stat(_uri(gcs, "k", old))
    assert "refusing to fall back to the live object" in str(info.value)
    assert gcs.log.count("GET", f"generation={old}") == 1 == len(gcs.log)
    # ... and serves the live bytes for it, without saying which generation they are.
    gcs.log.clear()
    with pytest.raises(ObjectNotFound, match="refusing"):
        backend.open(_uri(gcs, "k", old))
    assert gcs.log.count("GET", "alt=media") == 1 and len(gcs.log) == 2  # media + metadata


def test_pinned_generation_refused_from_the_media_headers(gcs: GCSFixture,
                                                          backend: GCSBackend) -> None:
    """When the media response states its generation (as real GCS does): one request."""
    gcs.media_headers = True
    old = gcs.write("k", b"old bytes")
    new = gcs.write("k", b"new bytes")
    gcs.log.clear()
    with pytest.raises(ObjectNotFound, match=f"generation {old} no longer exists.*{new}"):
        backend.open(_uri(gcs, "k", old))
    assert len(gcs.log) == 1


def test_missing_generation_answered_404_as_real_gcs(gcs: GCSFixture,
                                                     backend: GCSBackend) -> None:
    gcs.preconditions = True
    old = gcs.write("k", b"old bytes")
    gcs.write("k", b"new bytes")
    with pytest.raises(ObjectNotFound, match="version no longer exists") as info:
        backend.stat(_uri(gcs, "k", old))
    assert info.value.__cause__ is not None
    with pytest.raises(ObjectNotFound, match="version no longer exists"):
        backend.open(_uri(gcs, "k", old))


def test_live_generation_pin_works(gcs: GCSFixture, backend: GCSBackend) -> None:
    generation = gcs.write("k", b"live bytes")
    stat = backend.stat(_uri(gcs, "k", generation))
    assert (stat.version_id, stat.size) == (generation, 10)
    gcs.log.clear()
    with backend.open(_uri(gcs, "k", generation)) as reader:
        assert reader.stat.version_id == generation
        assert reader.stat.etag == stat.etag and reader.stat.size == 10
        assert read_all(reader, 3) == b"live bytes"
    # The emulator does not say which generation it served: one metadata GET confirms it.
    assert len(gcs.log) == 2 and gcs.log.count("GET", "alt=media") == 1


def test_live_generation_in_one_request_with_real_gcs_headers(gcs: GCSFixture,
                                                              backend: GCSBackend) -> None:
    gcs.media_headers = True
    data = b"live bytes"
    generation = gcs.write("k", data)
    stat = backend.stat(_uri(gcs, "k"))
    gcs.log.clear()
    with backend.open(_uri(gcs, "k", generation), if_match=stat.etag) as reader:
        assert reader.stat.version_id == generation
        assert reader.stat.etag == stat.etag
        assert reader.stat.last_modified is not None
        assert reader.stat.last_modified.tzinfo is not None
        assert reader.stat.checksums == stat.checksums
        assert read_all(reader) == data
    assert len(gcs.log) == 1 == gcs.log.count("GET", "alt=media")


def test_if_match_from_the_etag_header(gcs: GCSFixture, backend: GCSBackend) -> None:
    gcs.media_headers = True
    gcs.write("im", b"first")
    etag = backend.stat(_uri(gcs, "im")).etag
    gcs.write("im", b"second")
    gcs.log.clear()
    with pytest.raises(IntegrityError, match="changed"):
        backend.open(_uri(gcs, "im"), if_match=etag)
    assert len(gcs.log) == 1


def test_if_match_precondition_failed_412(gcs: GCSFixture, backend: GCSBackend) -> None:
    gcs.preconditions = True
    gcs.write("im", b"first")
    etag = backend.stat(_uri(gcs, "im")).etag
    gcs.write("im", b"second")
    gcs.log.clear()
    with pytest.raises(IntegrityError, match="changed") as info:
        backend.open(_uri(gcs, "im"), if_match=etag)
    assert info.value.__cause__ is not None  # the 412
    assert len(gcs.log) == 1
    assert gcs.log.calls[0][0] == "GET"


def test_if_match_sends_the_etag(gcs: GCSFixture, backend: GCSBackend) -> None:
    gcs.preconditions = True
    gcs.write("im", b"same")
    etag = backend.stat(_uri(gcs, "im")).etag
    with backend.open(_uri(gcs, "im"), if_match=etag) as reader:
        assert read_all(reader) == b"same"


# -- checksums ------------------------------------------------------------------------------


def test_checksums_are_hex_md5_and_crc32c(gcs: GCSFixture, backend: GCSBackend) -> None:
    data = b"some dataset bytes\n" * 100
    gcs.write("c/obj", data)
    expected = {"md5": hashlib.md5(data).hexdigest(), "crc32c": crc32c_hex(data)}
    assert dict(backend.stat(_uri(gcs, "c/obj")).checksums) == expected
    [listed] = backend.scan(_uri(gcs, "c/"))
    assert dict(listed.checksums) == expected
    with backend.open(_uri(gcs, "c/obj")) as reader:  # from x-goog-hash
        assert dict(reader.stat.checksums) == expected
        assert read_all(reader, 1000) == data


def test_normaliser_composite_object_has_crc32c_only() -> None:
    resource = {
        "name": "parts/all",
        "bucket": "b",
        "generation": "1700000000000001",
        "size": "12",
        "etag": "CIGAgICAgICAAhAB",
        "updated": "2024-05-01T10:20:30.123Z",
        "crc32c": "yZRlqg==",
        "componentCount": 3,
    }
    stat = GCSBackend._from_info("b", "", resource=resource)
    assert stat.uri == RefURI("gs", "b", "parts/all", "1700000000000001")
    assert (stat.size, stat.etag) == (12, "CIGAgICAgICAAhAB")
    assert dict(stat.checksums) == {"crc32c": "c99465aa"}
    assert stat.last_modified == datetime(2024, 5, 1, 10, 20, 30, 123000, tzinfo=UTC)
    assert stat.is_latest and not stat.is_delete_marker and stat.encryption is None


def test_normaliser_noncurrent_generation_and_encryption() -> None:
    resource = {
        "name": "k",
        "generation": "5",
        "size": "0",
        "etag": '"abc"',
        "updated": "2024-05-01T10:20:30Z",
        "timeDeleted": "2024-05-02T00:00:00Z",
        "md5Hash": "1B2M2Y8AsgTpgAmY7PhCfg==",
        "kmsKeyName": "projects/p/locations/l/keyRings/r/cryptoKeys/k",
    }
    stat = GCSBackend._from_info("b", "", resource=resource)
    assert stat.is_latest is False and stat.version_id == "5" and stat.etag == "abc"
    assert dict(stat.checksums) == {"md5": "d41d8cd98f00b204e9800998ecf8427e"}
    assert stat.encryption == "CMEK:projects/p/locations/l/keyRings/r/cryptoKeys/k"


def test_normaliser_media_headers() -> None:
    headers = {
        "x-goog-generation": "77",
        "x-goog-hash": "crc32c=yZRlqg==,md5=None",  # the emulator writes md5=None for none
        "content-length": "12",
        "etag": '"CIGA"',
        "last-modified": "Wed, 01 May 2024 10:20:30 GMT",
    }
    stat = GCSBackend._from_info("b", "k", headers=headers)
    assert stat.uri == RefURI("gs", "b", "k", "77")
    assert (stat.size, stat.etag) == (12, "CIGA")
    assert dict(stat.checksums) == {"crc32c": "c99465aa"}
    assert stat.last_modified == datetime(2024, 5, 1, 10, 20, 30, tzinfo=UTC)


# -- requests -------------------------------------------------------------------------------


def test_request_counts(gcs: GCSFixture, backend: GCSBackend) -> None:
    gcs.seed({f"rc/{i}": b"x" for i in range(20)})
    gcs.log.clear()
    backend.stat(_uri(gcs, "rc/3"))
    assert len(gcs.log) == 1 == backend.requests
    gcs.log.clear()
    assert len(list(backend.scan(_uri(gcs, "rc/")))) == 20
    assert len(gcs.log) == 1 == gcs.log.lists()  # one page, never a request per object
    gcs.log.clear()
    with backend.open(_uri(gcs, "rc/4")) as reader:
        assert read_all(reader) == b"x"
    assert len(gcs.log) == 1
    assert backend.requests == 3


def test_scan_pages_of_1000(gcs: GCSFixture, backend: GCSBackend) -> None:
    count = 2001
    gcs.seed({f"many/{i:05d}": b"x" for i in range(count)} | {"other/k": b"y"})
    gcs.log.clear()
    keys = [s.key for s in backend.scan(_uri(gcs, "many/"))]
    assert len(keys) == count and len(set(keys)) == count
    assert len(gcs.log) == math.ceil(count / 1000) == gcs.log.count("GET", "maxResults=1000")
    assert gcs.log.count("GET", "prefix=many/") == 3
    assert backend.requests == 3


def test_emulator_ignores_max_results(gcs: GCSFixture, backend: GCSBackend) -> None:
    """The bare emulator answers every object on one page and never a nextPageToken; the
    scan still sees everything (in one request)."""
    gcs.paginate = False
    gcs.seed({f"many/{i:05d}": b"x" for i in range(1500)})
    gcs.log.clear()
    assert len(list(backend.scan(_uri(gcs, "many/"), page_limit=1))) == 1500
    assert len(gcs.log) == 1


def test_page_limit_stops_before_fetching_another_page(gcs: GCSFixture,
                                                       backend: GCSBackend) -> None:
    gcs.seed({f"pl/{i:04d}": b"x" for i in range(1500)})
    gcs.log.clear()
    with pytest.raises(ScanLimitReached):
        list(backend.scan(_uri(gcs, "pl/"), page_limit=1))
    assert len(gcs.log) == 1
    gcs.log.clear()
    assert len(list(backend.scan(_uri(gcs, "pl/"), page_limit=2))) == 1500
    assert len(gcs.log) == 2


def test_scan_not_recursive_skips_deeper_keys(gcs: GCSFixture, backend: GCSBackend) -> None:
    gcs.seed({"t/a": b"1", "t/b": b"2", "t/deep/c": b"3", "t/deeper/d": b"4"})
    found = [s.key for s in backend.scan(_uri(gcs, "t/"), recursive=False)]
    assert found == ["t/a", "t/b"]


def test_scan_all_versions_asks_for_versions(gcs: GCSFixture, backend: GCSBackend) -> None:
    gcs.write("v/k", b"1")
    gcs.log.clear()
    items = list(backend.scan(_uri(gcs, "v/"), all_versions=True))
    assert [s.key for s in items] == ["v/k"] and items[0].is_latest
    assert gcs.log.count("GET", "versions=true") == 1


# -- errors ---------------------------------------------------------------------------------


def test_access_denied_names_bucket_permission_and_fix(gcs: GCSFixture,
                                                       backend: GCSBackend) -> None:
    gcs.write("secret", b"x")
    with gcs.deny():
        with pytest.raises(BucketAccessDenied) as info:
            backend.stat(_uri(gcs, "secret"))
        message = str(info.value)
        assert f"gs://{gcs.bucket}" in message and "storage.objects.get" in message
        assert "GOOGLE_APPLICATION_CREDENTIALS" in message and "token" in message
        assert info.value.code == "forbidden" and info.value.__cause__ is not None
        with pytest.raises(BucketAccessDenied, match=r"storage\.objects\.list"):
            list(backend.scan(_uri(gcs, "")))
        with pytest.raises(BucketAccessDenied, match=r"storage\.objects\.get"):
            backend.open(_uri(gcs, "secret"))
        with pytest.raises(BucketAccessDenied, match=gcs.bucket):
            backend.check_bucket(gcs.bucket)
        assert backend.versioning(gcs.bucket) == "unknown"
    assert len(gcs.log) == 5  # a 403 is never retried


def test_unreachable_endpoint_is_a_backend_error() -> None:
    backend = GCSBackend({"endpoint_url": "http://127.0.0.1:9", "retries": 1})
    started = time.monotonic()
    with pytest.raises(BackendError, match="cannot reach GCS") as info:
        backend.stat(RefURI("gs", "some-bucket", "k"))
    assert "STORAGE_EMULATOR_HOST" in str(info.value) and info.value.__cause__ is not None
    with pytest.raises(BackendError, match="cannot reach GCS"):
        list(backend.scan(RefURI("gs", "some-bucket", "")))
    assert time.monotonic() - started < 5


def test_unreachable_default_endpoint_retries_then_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """No options: the autouse fixture points STORAGE_EMULATOR_HOST at a closed port."""
    monkeypatch.setattr(gcs_module, "BACKOFF_SECONDS", 0.01)
    backend = GCSBackend({"retries": 3})
    with pytest.raises(BackendError, match=r"cannot reach GCS at http://127\.0\.0\.1:9"):
        backend.stat(RefURI("gs", "some-bucket", "k"))
    assert backend.requests == 3


def test_unavailable_is_retried(gcs: GCSFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gcs_module, "BACKOFF_SECONDS", 0.01)
    gcs.write("k", b"x")
    backend = GCSBackend({"retries": 3})
    with gcs.unavailable(2):
        assert backend.stat(_uri(gcs, "k")).size == 1
    assert len(gcs.log) == 3 == backend.requests
    gcs.log.clear()
    with gcs.unavailable(10), pytest.raises(BackendError, match="unavailable") as info:
        backend.stat(_uri(gcs, "k"))
    assert "REFTRACK_CONCURRENCY" in str(info.value) and "3 attempt" in str(info.value)
    assert len(gcs.log) == 3
    with gcs.unavailable(1), backend.open(_uri(gcs, "k")) as reader:
        assert read_all(reader) == b"x"


def test_missing_bucket(gcs: GCSFixture, backend: GCSBackend) -> None:
    with pytest.raises(BucketNotFound, match="gs://nope-bucket"):
        backend.check_bucket("nope-bucket")
    with pytest.raises(BucketNotFound):
        backend.versioning("nope-bucket")
    with pytest.raises(ObjectNotFound, match="no such object"):
        backend.open(RefURI("gs", "nope-bucket", "k"))
    backend.check_bucket(gcs.bucket)


def test_versioning(gcs: GCSFixture) -> None:
    assert GCSBackend().versioning(gcs.bucket) == "disabled"
    gcs.set_versioning(True)
    backend = GCSBackend()
    gcs.log.clear()
    assert backend.versioning(gcs.bucket) == "enabled"
    assert backend.versioning(gcs.bucket) == "enabled"  # cached
    assert len(gcs.log) == 1 and gcs.log.count("GET", "fields=versioning") == 1


# -- configuration --------------------------------------------------------------------------


def test_storage_options_endpoint(gcs: GCSFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    gcs.write("k", b"abc")
    backend = GCSBackend({"endpoint_url": gcs.url})
    assert backend.stat(_uri(gcs, "k")).size == 3


def test_emulator_endpoint_is_anonymous(gcs: GCSFixture, backend: GCSBackend) -> None:
    """No Google credentials are looked up (no metadata server) or sent to an emulator."""
    assert backend._fs.credentials.method == "anon"
    assert "Authorization" not in backend._headers(_uri(gcs, "k"))


def test_bad_retries_option() -> None:
    from reftrack.errors import UsageError

    with pytest.raises(UsageError, match="retries"):
        GCSBackend({"retries": 0})


def test_keys_with_special_characters(gcs: GCSFixture, backend: GCSBackend) -> None:
    key = "dir/a b+c%d#e?f é.txt"
    gcs.write(key, b"odd")
    assert backend.stat(_uri(gcs, key)).key == key
    assert [s.key for s in backend.scan(_uri(gcs, "dir/"))] == [key]
    with backend.open(_uri(gcs, key)) as reader:
        assert read_all(reader) == b"odd"


def test_reader_streams_in_chunks(gcs: GCSFixture, backend: GCSBackend) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    gcs.write("big", data)
    with backend.open(_uri(gcs, "big")) as reader:
        first = reader.read(1000)
        assert 0 < len(first) <= 1000
        rest = read_all(reader, 65536)
        assert first + rest == data
        assert reader.read(10) == b""
    with backend.open(_uri(gcs, "big")) as reader:  # closed early: the connection is dropped
        assert len(reader.read(10)) <= 10
    with pytest.raises(ValueError, match="closed"):
        reader.read(1)


def test_concurrent_use_from_threads(gcs: GCSFixture, backend: GCSBackend) -> None:
    objects = {f"cc/{i:03d}": f"object {i}".encode() * (i + 1) for i in range(48)}
    generations = gcs.seed(objects)
    gcs.log.clear()

    def one(key: str) -> bytes:
        stat = backend.stat(_uri(gcs, key))
        assert stat.version_id == generations[key]
        with backend.open(_uri(gcs, key)) as reader:
            return read_all(reader, 64)

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert dict(zip(objects, pool.map(one, objects), strict=True)) == objects
    assert len(gcs.log) == 2 * len(objects) == backend.requests
