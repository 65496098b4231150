import gzip
import io
import json

import pytest

from reftrack.errors import ManifestError, UsageError
from reftrack.manifest import SCHEMA_VERSION, Manifest, ManifestEntry, ManifestSource


def entry(path: str, version: str | None = "v1", etag: str = "e" * 32, size: int = 3):
    return ManifestEntry(path=path, ref=f"s3://bkt/{path}", version_id=version, etag=etag,
                         size=size, digest=etag)


def test_wandb_shapes() -> None:
    e = entry("a.png", version="3/L4kqtJlcpXroDTDm")
    assert e.extra == {"etag": "e" * 32, "versionID": "3/L4kqtJlcpXroDTDm"}
    assert e.ref == "s3://bkt/a.png"
    # version ids are percent-encoded in URIs ('/' and '+' occur in S3 version ids)
    assert e.uri == "s3://bkt/a.png?versionId=3%2FL4kqtJlcpXroDTDm"
    from reftrack.uri import parse_uri

    assert parse_uri(e.uri).version_id == "3/L4kqtJlcpXroDTDm"
    assert e.digest == e.etag and e.size == 3
    m = Manifest([e])
    assert m.entries["a.png"] == e  # (built from the manifest's compact row when asked for)


def test_digest_is_order_independent_and_covers_version_ids() -> None:
    a, b = entry("a"), entry("b")
    assert Manifest([a, b]).digest == Manifest([b, a]).digest
    assert Manifest([a, b]).digest != Manifest([a, entry("b", version="v2")]).digest
    assert Manifest([a]).digest != Manifest([entry("a", size=4)]).digest
    assert Manifest([a]).digest != Manifest([entry("a", etag="f" * 32)]).digest


def test_digest_ignores_sources_and_last_modified() -> None:
    from datetime import UTC, datetime

    a = entry("a")
    later = a.model_copy(update={"last_modified": datetime.now(UTC)})
    src = ManifestSource(uri="s3://bkt/", kind="prefix", entries=1, listed=1)
    assert Manifest([a]).digest == Manifest([later], sources=[src]).digest


def test_conflicting_paths_are_refused() -> None:
    m = Manifest([entry("a")])
    m.add(entry("a"))  # the same reference again is fine
    with pytest.raises(UsageError, match="already taken"):
        m.add(entry("a", version="other"))


def test_unsafe_path_is_refused() -> None:
    with pytest.raises(ValueError, match="safe relative path"):
        ManifestEntry(path="../escape", ref="s3://bkt/x")


def test_round_trip_is_gzip_json_lines_with_header() -> None:
    src = ManifestSource(uri="s3://bkt/data/", kind="prefix", entries=2, listed=3,
                         versioning="enabled")
    m = Manifest([entry("b"), entry("a", version=None)], sources=[src])
    data = m.to_bytes()
    lines = gzip.decompress(data).decode().splitlines()
    header = json.loads(lines[0])
    assert header["format"] == "reftrack.manifest"
    assert header["schema_version"] == SCHEMA_VERSION
    assert header["digest"] == m.digest and header["entries"] == 2
    assert header["fields"] == ["path", "ref", "version_id", "etag", "size", "digest",
                                "last_modified", "checksums"]
    assert [json.loads(line)[0] for line in lines[1:]] == ["a", "b"]  # an array per entry
    back = Manifest.from_bytes(data)
    assert back.digest == m.digest
    assert back.sources == [src]
    assert back.entries["a"].version_id is None
    assert m.to_bytes() == data  # deterministic bytes


def _rewrite(data: bytes, edit) -> bytes:
    lines = gzip.decompress(data).decode().splitlines()
    lines = edit(lines)
    return gzip.compress(("\n".join(lines) + "\n").encode())


def test_corrupt_manifests_are_detected() -> None:
    data = Manifest([entry("a"), entry("b")]).to_bytes()
    with pytest.raises(ManifestError, match="truncated"):
        Manifest.from_bytes(_rewrite(data, lambda ls: ls[:2]))
    tampered = _rewrite(data, lambda ls: [ls[0], ls[1].replace(',3,', ',4,'), ls[2]])
    with pytest.raises(ManifestError, match="corrupt"):
        Manifest.from_bytes(tampered)
    with pytest.raises(ManifestError, match="unreadable"):
        Manifest.from_bytes(data[: len(data) // 2])
    with pytest.raises(ManifestError, match="not a reftrack manifest"):
        Manifest.from_bytes(gzip.compress(b'{"hello": 1}\n'))
    current = f'"schema_version":{SCHEMA_VERSION}'
    newer = _rewrite(data, lambda ls: [ls[0].replace(current, '"schema_version":99'), *ls[1:]])
    with pytest.raises(ManifestError, match="upgrade reftrack"):
        Manifest.from_bytes(newer)
    evil = _rewrite(data, lambda ls: [ls[0], ls[1].replace('["a"', '["../a"'), ls[2]])
    with pytest.raises(ManifestError, match="invalid entry"):
        Manifest.from_bytes(evil)


def test_large_manifest_streams(tmp_path) -> None:
    n = 20_000
    m = Manifest(entry(f"d/{i:06d}", version=str(i)) for i in range(n))
    path = tmp_path / "m.jsonl.gz"
    with path.open("wb") as f:
        m.write(f)
    with path.open("rb") as f:
        back = Manifest.read(f)
    assert len(back) == n and back.digest == m.digest
    assert path.stat().st_size < n * 60  # compressed well below one line per entry
    assert isinstance(io.BytesIO, type)


def test_checksums_are_in_the_digest_and_validated() -> None:
    sha = "ab" * 32
    a = ManifestEntry(path="a", ref="file:///d/a", size=3, digest=sha, checksums={"sha256": sha})
    b = a.model_copy(update={"checksums": {"sha256": "cd" * 32}})
    assert Manifest([a]).digest != Manifest([b]).digest
    assert Manifest.from_bytes(Manifest([a]).to_bytes()).entries["a"].checksums == {"sha256": sha}
    with pytest.raises(ValueError, match="unknown checksum"):
        ManifestEntry(path="a", ref="file:///d/a", checksums={"whirlpool": "ab"})
    with pytest.raises(ValueError, match="lowercase hex"):
        ManifestEntry(path="a", ref="file:///d/a", checksums={"md5": "AB=="})


def test_schema_1_manifests_still_read_with_the_same_digest() -> None:
    """A manifest written before checksums existed (schema 1) reads back, digest unchanged."""
    e = entry("a")
    canonical = json.dumps({"path": "a", "ref": "s3://bkt/a", "version_id": "v1",
                            "etag": "e" * 32, "size": 3, "digest": "e" * 32},
                           sort_keys=True, separators=(",", ":"))
    assert e.canonical() == canonical  # no "checksums" key when none were recorded
    import hashlib

    digest = hashlib.sha256(b"reftrack-manifest/1\n" + canonical.encode() + b"\n").hexdigest()
    header = {"format": "reftrack.manifest", "schema_version": 1, "digest": digest,
              "entries": 1, "size": 3, "sources": []}
    old = gzip.compress((json.dumps(header) + "\n" + e.model_dump_json(exclude_none=True)
                         + "\n").encode())
    m = Manifest.from_bytes(old)
    assert m.digest == digest and m.entries["a"] == e


def test_schema_2_manifests_an_object_per_line_still_read() -> None:
    """Manifests written before schema 3 (an object per line, fields left out when None)
    read as they are, with the digest they always had."""
    entries = [entry("a", version=None), entry("b"),
               ManifestEntry(path="c", ref="file:///c", size=1, digest="ab" * 32,
                             checksums={"sha256": "ab" * 32})]
    digest = Manifest(entries).digest
    header = {"format": "reftrack.manifest", "schema_version": 2, "digest": digest,
              "entries": 3, "sources": []}
    lines = [json.dumps(header)] + [e.model_dump_json(exclude_none=True) for e in entries]
    back = Manifest.from_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    assert back.digest == digest
    assert back.sorted_entries() == entries
    assert list(Manifest.stream(io.BytesIO(gzip.compress(("\n".join(lines) + "\n").encode())))
                ) == entries


def test_schema_3_lines_of_the_wrong_shape_name_the_line() -> None:
    data = Manifest([entry("a"), entry("b")]).to_bytes()
    short = _rewrite(data, lambda ls: [ls[0], ls[1], '["b","s3://bkt/b"]'])
    with pytest.raises(ManifestError, match=r"line 3: invalid entry .*array"):
        Manifest.from_bytes(short)
    bad_size = _rewrite(data, lambda ls: [ls[0], ls[1], ls[2].replace(",3,", ',"many",')])
    with pytest.raises(ManifestError, match="line 3: invalid entry"):
        Manifest.from_bytes(bad_size)
    unsafe = _rewrite(data, lambda ls: [ls[0], ls[1], ls[2].replace('["b"', '["../b"')])
    with pytest.raises(ManifestError, match=r"(?s)line 3: invalid entry.*safe relative path"):
        Manifest.from_bytes(unsafe)
    other_fields = _rewrite(data, lambda ls: [ls[0].replace('"fields":["path"',
                                                            '"fields":["name"'), *ls[1:]])
    with pytest.raises(ManifestError, match="header fields"):
        Manifest.from_bytes(other_fields)
