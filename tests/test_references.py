"""Artifact.add_reference against moto's S3 server, counting requests server-side."""

from __future__ import annotations

import math
from typing import Any

import pytest

import reftrack
from reftrack.errors import (
    BucketAccessDenied,
    BucketNotFound,
    InvalidURIError,
    ObjectNotFound,
    UsageError,
)


def versions_of(s3: Any, bucket: str, prefix: str) -> int:
    total = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        total += len(page.get("Versions", [])) + len(page.get("DeleteMarkers", []))
    return total


def test_prefix_records_every_current_object(s3: Any, bucket: str, put: Any) -> None:
    put(bucket, "data/a.txt", b"old a")
    va = put(bucket, "data/a.txt", b"new a")
    vb = put(bucket, "data/sub/b.bin", b"bb")
    vz = put(bucket, "data/empty", b"")
    put(bucket, "data/gone", b"x")
    s3.delete_object(Bucket=bucket, Key="data/gone")
    put(bucket, "data2/sibling", b"not mine")
    put(bucket, "datax", b"not mine either")

    art = reftrack.Artifact("ds", type="dataset")
    added = art.add_reference(f"s3://{bucket}/data/")
    entries = art.manifest.entries
    assert sorted(entries) == ["a.txt", "empty", "sub/b.bin"] == sorted(e.path for e in added)
    a = entries["a.txt"]
    assert a.ref == f"s3://{bucket}/data/a.txt"
    assert a.extra == {"versionID": va, "etag": s3.head_object(Bucket=bucket,
                                                               Key="data/a.txt")["ETag"].strip('"')}
    assert a.size == 5 and a.digest == a.etag and not a.etag.startswith('"')
    assert entries["sub/b.bin"].version_id == vb
    assert entries["empty"].size == 0 and entries["empty"].version_id == vz
    (source,) = art.manifest.sources
    assert source.kind == "prefix" and source.versioning == "enabled"
    assert source.entries == 3 and source.listed == 6  # every version and delete marker seen


def test_prefix_without_slash_when_no_such_object(bucket: str, put: Any) -> None:
    put(bucket, "data/a", b"1")
    put(bucket, "data2/b", b"2")
    art = reftrack.Artifact("ds", type="dataset")
    art.add_reference(f"s3://{bucket}/data")
    assert list(art.manifest.entries) == ["a"]
    assert art.manifest.sources[0].uri == f"s3://{bucket}/data/"


def test_an_object_named_like_the_prefix_wins(bucket: str, put: Any) -> None:
    version = put(bucket, "data", b"an object called data")
    put(bucket, "data/inner", b"x")
    art = reftrack.Artifact("ds", type="dataset")
    art.add_reference(f"s3://{bucket}/data")
    assert list(art.manifest.entries) == ["data"]
    assert art.manifest.entries["data"].version_id == version
    assert art.manifest.sources[0].kind == "object"


def test_explicit_old_version_is_recorded_not_the_latest(bucket: str, put: Any) -> None:
    old = put(bucket, "model.bin", b"weights v1")
    new = put(bucket, "model.bin", b"weights v2 (longer)")
    art = reftrack.Artifact("m", type="model")
    art.add_reference(f"s3://{bucket}/model.bin?versionId={old}", name="weights.bin")
    entry = art.manifest.entries["weights.bin"]
    assert entry.version_id == old != new
    assert entry.size == len(b"weights v1")
    import hashlib

    assert entry.etag == hashlib.md5(b"weights v1").hexdigest()


def test_single_object_latest_and_default_name(bucket: str, put: Any) -> None:
    version = put(bucket, "dir/file.csv", b"a,b\n")
    art = reftrack.Artifact("ds", type="dataset")
    art.add_reference(f"s3://{bucket}/dir/file.csv")
    assert art.manifest.entries["file.csv"].version_id == version
    art.add_reference(f"s3://{bucket}/dir/file.csv", name="renamed/copy.csv")
    assert set(art.manifest.entries) == {"file.csv", "renamed/copy.csv"}


def test_zero_byte_object_alone(bucket: str, put: Any) -> None:
    put(bucket, "_SUCCESS", b"")
    art = reftrack.Artifact("ds", type="dataset")
    art.add_reference(f"s3://{bucket}/_SUCCESS")
    assert art.manifest.entries["_SUCCESS"].size == 0


def test_name_prefixes_the_entries_of_a_prefix(bucket: str, put: Any) -> None:
    put(bucket, "raw/x/1", b"1")
    put(bucket, "raw/x/2", b"2")
    art = reftrack.Artifact("ds", type="dataset")
    art.add_reference(f"s3://{bucket}/raw/", name="train")
    assert sorted(art.manifest.entries) == ["train/x/1", "train/x/2"]


@pytest.mark.parametrize("slash", ["/", ""])
def test_request_bound_for_a_prefix(s3: Any, bucket: str, seed: Any, requests_log: Any,
                                    slash: str) -> None:
    """N objects with V versions cost at most ceil(V/1000) + 2 requests, none per object."""
    n = 1100
    seed(bucket, {f"big/{i:05d}": b"x" for i in range(n)})
    seed(bucket, {f"big/{i:05d}": b"yy" for i in range(0, 300, 2)})  # 150 overwrites
    seed(bucket, {f"big2/{i}": b"sibling" for i in range(50)})
    total_versions = versions_of(s3, bucket, "big/")
    assert total_versions == n + 150

    art = reftrack.Artifact("big", type="dataset")
    requests_log.clear()
    art.add_reference(f"s3://{bucket}/big{slash}")
    bound = math.ceil(total_versions / 1000) + 2
    assert len(art.manifest.entries) == n
    assert len(requests_log) <= bound, requests_log.calls
    assert requests_log.count("GET", "versions") == math.ceil(total_versions / 1000)
    assert requests_log.count("HEAD") <= 1  # only to tell "big" (object?) from "big/"
    object_gets = [c for c in requests_log.calls if c[0] == "GET" and c[1] != f"/{bucket}"]
    assert object_gets == []
    assert art.manifest.entries["00000"].size == 2 and art.manifest.entries["00001"].size == 1


def test_max_objects_is_an_error_never_a_truncation(bucket: str, put_many: Any) -> None:
    put_many(bucket, {f"p/{i}": b"x" for i in range(5)})
    art = reftrack.Artifact("ds", type="dataset")
    art.add_reference(f"s3://{bucket}/p/4")
    with pytest.raises(UsageError) as info:
        art.add_reference(f"s3://{bucket}/p/", max_objects=3)
    message = str(info.value)
    assert "more than max_objects=3" in message and "at 4" in message
    assert "max_objects=" in message and "--max-objects" in message
    assert list(art.manifest.entries) == ["4"]  # nothing from the failed call
    assert len(art.manifest.sources) == 1
    assert len(art.add_reference(f"s3://{bucket}/p/", max_objects=5, name="all")) == 5


@pytest.mark.parametrize("bad", [0, -1, 1.5, "10"])
def test_max_objects_must_be_positive(bucket: str, bad: Any) -> None:
    with pytest.raises(UsageError, match="max_objects"):
        reftrack.Artifact("ds", type="dataset").add_reference(f"s3://{bucket}/x",
                                                              max_objects=bad)


def test_unversioned_bucket(unversioned_bucket: str, put: Any) -> None:
    put(unversioned_bucket, "u/a", b"1")
    art = reftrack.Artifact("ds", type="dataset")
    art.add_reference(f"s3://{unversioned_bucket}/u/")
    entry = art.manifest.entries["a"]
    assert entry.version_id is None and entry.etag and entry.size == 1
    assert entry.extra == {"etag": entry.etag}
    assert art.manifest.sources[0].versioning == "disabled"


def test_checksum_false_records_the_uri_only(bucket: str, put: Any) -> None:
    put(bucket, "c/a", b"1")
    put(bucket, "c/b", b"2")
    art = reftrack.Artifact("ds", type="dataset")
    art.add_reference(f"s3://{bucket}/c/", checksum=False)
    entry = art.manifest.entries["a"]
    assert entry.ref == f"s3://{bucket}/c/a"
    assert (entry.version_id, entry.etag, entry.size, entry.digest) == (None, None, None, None)
    assert not entry.checksummed and entry.extra == {}
    assert art.manifest.sources[0].checksum is False


def test_directory_markers_are_skipped_and_counted(bucket: str, put: Any) -> None:
    put(bucket, "m/", b"")
    put(bucket, "m/sub/", b"")
    put(bucket, "m/sub/file", b"x")
    art = reftrack.Artifact("ds", type="dataset")
    art.add_reference(f"s3://{bucket}/m/")
    assert list(art.manifest.entries) == ["sub/file"]
    assert art.manifest.sources[0].skipped_markers == 2


@pytest.mark.parametrize("key", ["u/a//b", "u/x/../../etc", "u/./y"])
def test_keys_that_are_unsafe_paths_are_refused(bucket: str, put: Any, key: str) -> None:
    put(bucket, "u/fine", b"ok")
    put(bucket, key, b"evil")
    art = reftrack.Artifact("ds", type="dataset")
    with pytest.raises(UsageError, match="not a safe relative path") as info:
        art.add_reference(f"s3://{bucket}/u/")
    assert repr(key)[1:-1] in str(info.value) and "name=" in str(info.value)
    assert len(art.manifest) == 0


def test_missing_things_are_clear_errors(s3: Any, bucket: str, put: Any) -> None:
    art = reftrack.Artifact("ds", type="dataset")
    with pytest.raises(ObjectNotFound, match="no objects under"):
        art.add_reference(f"s3://{bucket}/nothing/")
    with pytest.raises(ObjectNotFound, match="is not an object, and there are no objects under"):
        art.add_reference(f"s3://{bucket}/nothing")
    put(bucket, "k", b"1")
    old = put(bucket, "k", b"2")
    put(bucket, "k", b"3")
    s3.delete_object(Bucket=bucket, Key="k", VersionId=old)
    with pytest.raises(ObjectNotFound, match="version no longer exists"):
        art.add_reference(f"s3://{bucket}/k?versionId={old}")
    s3.delete_object(Bucket=bucket, Key="k")
    with pytest.raises(ObjectNotFound, match="delete marker"):
        art.add_reference(f"s3://{bucket}/k")
    with pytest.raises(BucketNotFound, match="s3://no-such-bucket"):
        art.add_reference("s3://no-such-bucket/data/")
    assert len(art.manifest) == 0


def test_access_denied_names_the_bucket(bucket: str, put: Any) -> None:
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    put(bucket, "k", b"1")
    previous = settings.INITIAL_NO_AUTH_ACTION_COUNT
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin.request_count = 0
    try:
        with pytest.raises(BucketAccessDenied, match=f"s3://{bucket}"):
            reftrack.Artifact("ds", type="dataset").add_reference(f"s3://{bucket}/k")
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = previous


def test_bad_uris_touch_nothing(tmp_path: Any, requests_log: Any, s3: Any) -> None:
    art = reftrack.Artifact("ds", type="dataset")
    for uri in ["ftp://h/x", "s3:///key", "s3://AKIA:secret@bkt/k", "nobucket", ""]:
        with pytest.raises(InvalidURIError):
            art.add_reference(uri)
    assert len(requests_log) == 0
    assert not (tmp_path / "registry.db").exists()


def test_conflicting_paths_keep_the_first(bucket: str, put: Any) -> None:
    put(bucket, "a/x", b"1")
    put(bucket, "b/x", b"2")
    art = reftrack.Artifact("ds", type="dataset")
    art.add_reference(f"s3://{bucket}/a/")
    with pytest.raises(UsageError, match="already taken"):
        art.add_reference(f"s3://{bucket}/b/")
    assert art.manifest.entries["x"].ref == f"s3://{bucket}/a/x"
    art.add_reference(f"s3://{bucket}/a/")  # the same references again are fine


def test_names_and_arguments_are_validated(bucket: str) -> None:
    with pytest.raises(UsageError, match="artifact name"):
        reftrack.Artifact("bad/name", type="dataset")
    with pytest.raises(UsageError, match="artifact type"):
        reftrack.Artifact("ok", type="bad:type")
    with pytest.raises(UsageError, match="metadata"):
        reftrack.Artifact("ok", type="dataset", metadata={"x": {1, 2}})
    art = reftrack.Artifact("ok", type="dataset")
    with pytest.raises(UsageError, match="name"):
        art.add_reference(f"s3://{bucket}/k", name="../up")
    with pytest.raises(UsageError, match="checksum"):
        art.add_reference(f"s3://{bucket}/k", checksum="yes")  # type: ignore[arg-type]
