"""Checksums and the content rule shared by verify and download."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pytest

from reftrack import checksums
from reftrack.backends import ObjectStat
from reftrack.integrity import content_match, expected_checksums
from reftrack.manifest import ManifestEntry
from reftrack.uri import parse_uri


def test_crc32c_known_vectors_fast_and_pure_python() -> None:
    # RFC 3720 test vector: 32 bytes of zeros -> 0x8a9136aa; "123456789" -> 0xe3069283.
    for data, want in ((b"\x00" * 32, "8a9136aa"), (b"123456789", "e3069283")):
        assert checksums.crc32c_hex(data) == want
        slow = checksums._PyCRC32C()
        slow.update(data[:5])
        slow.update(data[5:])
        assert slow.hexdigest() == want


def test_hasher_feeds_every_algorithm_once() -> None:
    h = checksums.Hasher(["sha256", "md5", "crc32c", "md5"])
    h.update(b"hello ")
    h.update(b"world")
    out = h.hexdigests()
    assert out["sha256"] == hashlib.sha256(b"hello world").hexdigest()
    assert out["md5"] == hashlib.md5(b"hello world").hexdigest()
    assert out["crc32c"] == checksums.crc32c_hex(b"hello world")
    assert h.size == 11
    with pytest.raises(ValueError, match="unknown checksum"):
        checksums.Hasher(["whirlpool"])


def test_b64_to_hex() -> None:
    raw = hashlib.md5(b"x").digest()
    assert checksums.b64_to_hex(base64.b64encode(raw).decode()) == raw.hex()
    assert checksums.b64_to_hex(None) is None and checksums.b64_to_hex("not base64!") is None


def test_compare_uses_the_strongest_shared_algorithm() -> None:
    assert checksums.compare({"sha256": "aa", "md5": "bb"}, {"sha256": "aa", "md5": "cc"}) is True
    assert checksums.compare({"md5": "bb"}, {"crc32c": "cc"}) is None
    assert checksums.compare(None, {"md5": "bb"}) is None
    assert checksums.compare({"crc32c": "0a"}, {"crc32c": "0b"}) is False


def stat(**kw: object) -> ObjectStat:
    base: dict[str, object] = {"uri": parse_uri("https://h/x"), "size": 3, "etag": None}
    base.update(kw)
    return ObjectStat(**base)  # type: ignore[arg-type]


T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 1, 2, tzinfo=UTC)


def test_content_rule() -> None:
    sha = {"sha256": "ab" * 32}
    e = ManifestEntry(path="x", ref="https://h/x", size=3, etag="e1", last_modified=T0,
                      checksums=sha)
    assert content_match(e, stat(size=4, etag="e1")) is False  # size decides first
    assert content_match(e, stat(etag="e1")) is True
    assert content_match(e, stat(etag="e2")) is None  # a sha256 was recorded: hash to know
    s3 = ManifestEntry(path="x", ref="s3://b/x", size=3, etag="e1")
    assert content_match(s3, stat(etag="e2")) is False
    assert content_match(e, stat(checksums={"sha256": "ab" * 32}, etag="e2")) is True
    no_etag = e.model_copy(update={"etag": None})
    assert content_match(no_etag, stat(last_modified=T0)) is True
    assert content_match(no_etag, stat(last_modified=T1)) is None  # re-hash to know


def test_expected_checksums_treats_single_part_s3_etags_as_md5() -> None:
    md5 = hashlib.md5(b"x").hexdigest()
    s3 = ManifestEntry(path="x", ref="s3://bkt/x", etag=md5, size=1)
    assert expected_checksums(s3) == {"md5": md5}
    assert expected_checksums(s3, "aws:kms") == {}
    multipart = s3.model_copy(update={"etag": md5 + "-3"})
    assert expected_checksums(multipart) == {}
    gcs = ManifestEntry(path="x", ref="gs://bkt/x", etag=md5, size=1, checksums={"crc32c": "0a"})
    assert expected_checksums(gcs) == {"crc32c": "0a"}  # a GCS ETag is no MD5
