"""The backend contract: one mixin class per behaviour. Every backend's test module binds
these to its own store through the ``store`` fixture (see test_s3.py).

Where a behaviour does not apply to a scheme, the backend declares it (``keeps_versions``,
``can_scan``) and the suite checks that the backend refuses it clearly (a ``UsageError``
naming the URI) instead of skipping. ``store.versioned`` says whether this particular store
keeps old versions (an S3 bucket without versioning, or a GCS emulator that keeps no old
generations, does not), which is a property of the store, not of the backend."""

from __future__ import annotations

from typing import Any, Protocol

import pytest

from reftrack.backends import Backend
from reftrack.errors import (
    BackendError,
    BucketAccessDenied,
    IntegrityError,
    ObjectNotFound,
    ReftrackError,
    UsageError,
)
from reftrack.uri import RefURI


class Store(Protocol):
    """What a backend's test module provides."""

    backend: Backend
    bucket: str
    versioned: bool
    missing_bucket_error: type[Exception]  # BucketNotFound, or BackendError where no buckets

    def uri(self, key: str, version: str | None = None) -> RefURI: ...
    def write(self, key: str, data: bytes) -> str | None: ...
    def delete(self, key: str) -> None: ...
    def purge_version(self, key: str, version: str) -> None: ...
    def missing_bucket_uri(self, key: str) -> RefURI: ...
    def deny_access(self) -> Any: ...  # context manager


def needs_versions(store: Store) -> None:
    """Skip when the store keeps no old versions; for a backend that cannot pin versions at
    all, check that it refuses a pinned URI clearly instead."""
    if not store.backend.keeps_versions:
        store.write("pinned", b"x")
        pinned = store.uri("pinned").with_version("12345")
        with pytest.raises(UsageError, match="version"):
            store.backend.stat(pinned)
        with pytest.raises(UsageError, match="version"):
            store.backend.open(pinned)
        return
    if not store.versioned:
        pytest.skip("this store keeps no old versions")


def needs_scan(store: Store) -> bool:
    """False (after checking the refusal) when the backend cannot list prefixes."""
    if store.backend.can_scan:
        return True
    with pytest.raises(UsageError, match="list"):
        list(store.backend.scan(store.uri("d/")))
    return False


def rel(store: Store, stat: Any) -> str:
    """The stat's key relative to the store's root (local stores live under a directory)."""
    root = store.uri("").key
    key: str = stat.key
    return key[len(root):] if key.startswith(root) else key


def read_all(reader: Any, chunk: int = 7) -> bytes:
    parts = []
    while data := reader.read(chunk):
        parts.append(data)
    return b"".join(parts)


class StatContract:
    def test_stat_current(self, store: Store) -> None:
        version = store.write("d/a.txt", b"hello")
        stat = store.backend.stat(store.uri("d/a.txt"))
        assert stat.size == 5
        if store.backend.hashes_content:  # local files have no ETag; HTTP servers may omit it
            assert stat.etag is None or not stat.etag.startswith('"')
            assert stat.etag or stat.last_modified is not None
        else:
            assert stat.etag and not stat.etag.startswith('"')
        assert stat.version_id == version  # None where nothing is versioned
        assert rel(store, stat) == "d/a.txt" and stat.is_latest and not stat.is_delete_marker

    def test_stat_exact_version_after_overwrite(self, store: Store) -> None:
        if not (store.backend.keeps_versions and store.versioned):
            needs_versions(store)
            return
        old = store.write("k", b"old bytes")
        new = store.write("k", b"new")
        assert old != new
        stat = store.backend.stat(store.uri("k", old))
        assert (stat.size, stat.version_id) == (9, old)
        assert store.backend.stat(store.uri("k")).version_id == new

    def test_zero_byte_object(self, store: Store) -> None:
        store.write("empty", b"")
        assert store.backend.stat(store.uri("empty")).size == 0

    def test_missing_key(self, store: Store) -> None:
        with pytest.raises(ObjectNotFound) as info:
            store.backend.stat(store.uri("nope"))
        assert isinstance(info.value, FileNotFoundError)
        assert "nope" in str(info.value) and not info.value.delete_marker

    def test_missing_version(self, store: Store) -> None:
        if not (store.backend.keeps_versions and store.versioned):
            needs_versions(store)
            return
        store.write("k", b"x")
        old = store.write("k", b"y")
        store.write("k", b"z")
        assert old is not None
        store.purge_version("k", old)
        with pytest.raises(ObjectNotFound, match="version no longer exists"):
            store.backend.stat(store.uri("k", old))

    def test_deleted_key_reports_the_delete_marker(self, store: Store) -> None:
        store.write("gone", b"x")
        store.delete("gone")
        with pytest.raises(ObjectNotFound) as info:
            store.backend.stat(store.uri("gone"))
        assert info.value.delete_marker is store.versioned


class ScanContract:
    def test_scan_lists_current_objects_only_under_the_prefix(self, store: Store) -> None:
        if not needs_scan(store):
            return
        for key in ("data/a", "data/sub/b", "data/empty", "data2/sibling", "other"):
            store.write(key, b"" if key.endswith("empty") else key.encode())
        store.write("data/a", b"overwritten")
        store.write("data/deleted", b"x")
        store.delete("data/deleted")
        found = {rel(store, s): s for s in store.backend.scan(store.uri("data/"))}
        assert set(found) == {"data/a", "data/sub/b", "data/empty"}
        assert found["data/a"].size == len(b"overwritten")
        assert found["data/empty"].size == 0
        assert all(s.is_latest and not s.is_delete_marker for s in found.values())

    def test_scan_all_versions(self, store: Store) -> None:
        if not needs_scan(store):
            return
        if not (store.backend.keeps_versions and store.versioned):
            needs_versions(store)
            return
        v1 = store.write("p/k", b"1")
        v2 = store.write("p/k", b"22")
        store.write("p/d", b"x")
        store.delete("p/d")
        items = list(store.backend.scan(store.uri("p/"), all_versions=True))
        versions = {(rel(store, s), s.version_id): s for s in items if not s.is_delete_marker}
        assert versions[("p/k", v1)].is_latest is False
        assert versions[("p/k", v2)].is_latest is True
        markers = [s for s in items if s.is_delete_marker]
        assert [rel(store, m) for m in markers] == ["p/d"] and markers[0].is_latest

    def test_scan_not_recursive(self, store: Store) -> None:
        if not needs_scan(store):
            return
        for key in ("t/a", "t/b", "t/deep/c"):
            store.write(key, b"x")
        keys = {rel(store, s) for s in store.backend.scan(store.uri("t/"), recursive=False)}
        assert keys == {"t/a", "t/b"}

    def test_scan_sees_a_delete_at_once(self, store: Store) -> None:
        """No listing cache: the same backend instance must see a delete immediately."""
        if not needs_scan(store):
            return
        store.write("c/a", b"x")
        store.write("c/b", b"y")
        assert {rel(store, s) for s in store.backend.scan(store.uri("c/"))} == {"c/a", "c/b"}
        store.backend.stat(store.uri("c/a"))
        store.delete("c/a")
        assert {rel(store, s) for s in store.backend.scan(store.uri("c/"))} == {"c/b"}
        with pytest.raises(ObjectNotFound):
            store.backend.stat(store.uri("c/a"))


    def test_scan_start_after_lists_exactly_the_later_keys(self, store: Store) -> None:
        if not needs_scan(store):
            return
        keys = ["s/a", "s/b", "s/b0", "s/c-e", "s/c/d", "s/e"]
        for key in keys:
            store.write(key, key.encode())
        store.write("s/b", b"again")  # two versions where versions are kept
        store.write("s/c-e", b"again")
        root = store.uri("").key  # local stores live under a directory

        def listed(after: str | None, **kw: Any) -> list[str]:
            start = None if after is None else root + after
            return [rel(store, s) for s in store.backend.scan(store.uri("s/"), start_after=start,
                                                             **kw)]

        assert sorted(listed(None)) == sorted(keys)
        # Existing keys as the start (what the verifier passes; moto's server mishandles a
        # KeyMarker that is not a key, real S3 does not).
        for after in keys:
            assert sorted(listed(after)) == [k for k in sorted(keys) if k > after], after
            everything = listed(after, all_versions=True)
            assert after not in everything and all(k > after for k in everything)
        assert listed("s/e") == [] == listed("s/e", all_versions=True)
        if store.backend.keeps_versions and store.versioned:
            versions = listed("s/b0", all_versions=True)
            assert versions.count("s/c-e") == 2 and "s/b" not in versions

    def test_bucket_scans_are_in_key_order(self, store: Store) -> None:
        """Keys ascending, a key's versions and delete markers together (local directories
        are walked one by one, so only bucket stores promise this)."""
        if not needs_scan(store) or not store.backend.keeps_versions:
            return
        for key in ("o/b", "o/a/x", "o/a-y", "o/c", "o/a/z"):
            store.write(key, b"1")
        store.write("o/a-y", b"2")
        store.delete("o/b")
        store.write("o/c", b"2")
        found = [rel(store, s) for s in store.backend.scan(store.uri("o/"), all_versions=True)]
        assert found == sorted(found)


class ReadContract:
    def test_read_exact_old_version(self, store: Store) -> None:
        if not (store.backend.keeps_versions and store.versioned):
            needs_versions(store)
            return
        old = store.write("r", b"original bytes")
        store.write("r", b"replacement")
        store.delete("r")
        with store.backend.open(store.uri("r", old)) as reader:
            assert reader.stat.version_id == old and reader.stat.size == 14
            assert read_all(reader) == b"original bytes"

    def test_read_current(self, store: Store) -> None:
        store.write("cur", b"abc" * 1000)
        with store.backend.open(store.uri("cur")) as reader:
            assert read_all(reader, 1000) == b"abc" * 1000

    def test_read_missing_version(self, store: Store) -> None:
        if not (store.backend.keeps_versions and store.versioned):
            needs_versions(store)
            return
        store.write("m", b"1")
        old = store.write("m", b"2")
        assert old is not None
        store.purge_version("m", old)
        with pytest.raises(ObjectNotFound):
            store.backend.open(store.uri("m", old))

    def test_if_match_refuses_a_changed_object(self, store: Store) -> None:
        store.write("im", b"first")
        etag = store.backend.stat(store.uri("im")).etag
        if etag is None:  # no ETags at all (local files): matching one is refused clearly
            with pytest.raises(UsageError, match="ETag"):
                store.backend.open(store.uri("im"), if_match="0123abcd")
            return
        store.write("im", b"second")
        with pytest.raises(IntegrityError, match="changed"):
            store.backend.open(store.uri("im"), if_match=etag)


class ErrorContract:
    def test_missing_bucket(self, store: Store) -> None:
        uri = store.missing_bucket_uri("k")
        error = store.missing_bucket_error
        with pytest.raises(BackendError):  # a missing key or bucket: one HEAD cannot tell
            store.backend.stat(uri)
        if store.backend.can_scan:
            with pytest.raises(error, match=uri.bucket or None):
                list(store.backend.scan(store.missing_bucket_uri("")))
        if uri.bucket:  # local files have no buckets: a missing root directory stands in
            with pytest.raises(error, match=uri.bucket):
                store.backend.check_bucket(uri.bucket)

    def test_access_denied(self, store: Store) -> None:
        store.write("secret", b"x")
        with store.deny_access():
            with pytest.raises(BucketAccessDenied) as info:
                store.backend.stat(store.uri("secret"))
            assert isinstance(info.value, PermissionError)
            assert store.bucket in str(info.value)
            if store.backend.can_scan:
                with pytest.raises(BucketAccessDenied):
                    list(store.backend.scan(store.uri("")))
            else:
                needs_scan(store)

    def test_errors_keep_the_original_cause(self, store: Store) -> None:
        with pytest.raises(ReftrackError) as info:
            store.backend.stat(store.uri("missing-key"))
        assert info.value.__cause__ is not None
