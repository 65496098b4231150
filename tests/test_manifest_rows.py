"""The compact manifest: rows instead of entry objects, built inline from listings, a path
index built only when needed, and the batch checks that stand in for per-entry ones. Each
shortcut must give exactly what the plain way gives."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest

import reftrack
from reftrack.errors import ManifestError, UsageError
from reftrack.manifest import EntryList, Manifest, ManifestEntry
from reftrack.manifest_entry import _plainly_safe, check_paths, entry_of, row_for, row_of
from reftrack.manifest_store import _canonical_columns, canonical_lines
from reftrack.uri import check_entry_path

WHEN = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def entry(path: str, version: str = "v1", **more: Any) -> ManifestEntry:
    return ManifestEntry(path=path, ref=f"s3://bkt/{path}", version_id=version,
                         etag="e" * 32, size=3, digest="e" * 32, **more)


def test_rows_built_inline_from_a_listing_are_what_row_for_builds(
    bucket: str, put: Any, s3: Any
) -> None:
    """add_reference builds the common row inline (no quoting needed, no checksums): the
    same tuple row_for builds, quoted keys and checksummed objects included."""
    for key in ("data/a.txt", "data/sub/b 1.bin", "data/100%.csv", "data/q?x", "data/h#1"):
        put(bucket, key, key.encode())
    s3.put_object(Bucket=bucket, Key="data/summed", Body=b"s", ChecksumAlgorithm="SHA256")
    art = reftrack.Artifact("ds", type="dataset")
    added = art.add_reference(f"s3://{bucket}/data/", name="set")
    assert isinstance(added, EntryList) and len(added) == 6
    backend = art._ctx.backends.for_uri(reftrack.uri.parse_uri(f"s3://{bucket}/"))
    listed = {stat.key: stat for stat in backend.scan(reftrack.uri.parse_uri(
        f"s3://{bucket}/data/"), all_versions=True) if stat.is_latest}
    rows = art.manifest.sorted_rows()
    for row in rows:
        key = "data/" + row[0][len("set/"):]
        assert row == row_for(row[0], listed[key], True), key
    assert {r[0]: r[1] for r in rows}["set/100%.csv"] == f"s3://{bucket}/data/100%25.csv"
    assert added[0] == art.manifest.entries[added[0].path]


def test_path_batches_refuse_exactly_what_check_entry_path_refuses() -> None:
    good = ["a", "a/b.c", "x y/z", "é/ü", "ab:c", "..a", "a..", ".hidden/x"]
    check_paths(good)
    bad = ["", "/abs", "a//b", "a/./b", "a/../b", "..", "a\\b", "C:x", "a\x00b", "a/", "./a"]
    for path in bad:
        with pytest.raises(UsageError, match="safe relative path"):
            check_paths([*good, path], lambda i: f"entry {i}")
        with pytest.raises(UsageError):
            check_entry_path(path)
    # a path the batch test cannot clear (not printable) goes to check_entry_path's verdict
    assert not _plainly_safe("a\u00a0b")
    check_paths(["a\u00a0b"])


def test_the_column_fast_path_is_the_per_row_canonical_text() -> None:
    rows = [row_of(entry(f"p{i}", last_modified=WHEN)) for i in range(5)]
    fast = _canonical_columns(rows)
    assert fast is not None
    assert fast == "".join(entry_of(r).canonical() + "\n" for r in rows).encode()
    # what the fast path leaves to the per-row way: escapes, non-ASCII, mixed None,
    # checksums, an odd size type
    odd = [
        [row_of(entry('q"uote'))],
        [row_of(entry("ü"))],
        [row_of(entry("a")), row_of(ManifestEntry(path="b", ref="s3://bkt/b"))],
        [row_of(ManifestEntry(path="c", ref="file:///c", size=1, digest="ab" * 32,
                              checksums={"sha256": "ab" * 32}))],
        [row_of(ManifestEntry.model_construct(path="d", ref="r", size=True))],
    ]
    for batch in odd:
        assert _canonical_columns(batch) is None
        assert canonical_lines(batch) == "".join(
            entry_of(r).canonical() + "\n" for r in batch).encode()
    uniform_none = [row_of(ManifestEntry(path=p, ref=f"s3://b/{p}")) for p in "xyz"]
    assert canonical_lines(uniform_none) == "".join(
        entry_of(r).canonical() + "\n" for r in uniform_none).encode()


def test_a_manifest_read_back_builds_its_path_index_only_when_asked() -> None:
    m = Manifest([entry(f"p{i:03d}") for i in range(300)])
    back = Manifest.from_bytes(m.to_bytes())
    assert back._by_path is None  # rows in path order only
    assert len(back) == 300 and back.digest == m.digest
    assert back.diff(m).identical and back._by_path is None  # diff merges sorted rows
    assert "p007" in back.entries  # the index, built now
    assert back.entries["p007"] == m.entries["p007"]
    back.entries["p007"] = entry("p007", version="v2")  # a change drops the cached order
    assert back.digest != m.digest
    assert [c.path for c in m.diff(back).changed] == ["p007"]
    assert back.sorted_rows()[7][2] == "v2"


def test_entries_view_behaves_like_the_dict_it_was() -> None:
    m = Manifest([entry("b"), entry("a")])
    assert list(m.entries) == ["b", "a"] and len(m.entries) == 2
    assert dict(m.entries.items()) == {"b": entry("b"), "a": entry("a")}
    assert m.entries.get("nope") is None and "a" in m.entries
    with pytest.raises(UsageError, match="takes a ManifestEntry whose path"):
        m.entries["x"] = entry("a")
    del m.entries["a"]
    assert list(m.entries) == ["b"]
    with pytest.raises(KeyError):
        m.entries["a"]


def test_a_stored_manifest_with_a_path_twice_is_refused_or_merged_like_add_all() -> None:
    import gzip
    import json

    data = Manifest([entry("a"), entry("b")]).to_bytes()
    lines = gzip.decompress(data).decode().splitlines()
    twice = gzip.compress("\n".join([lines[0], lines[1], lines[1], lines[2]]).encode())
    with pytest.raises(ManifestError, match=r"truncated|corrupt"):
        Manifest.from_bytes(twice)
    header = json.loads(lines[0])
    header["entries"] = 3
    clash = lines[1].replace('"v1"', '"v9"')
    forged = gzip.compress("\n".join([json.dumps(header), lines[1], clash, lines[2]]).encode())
    with pytest.raises((UsageError, ManifestError)):
        Manifest.from_bytes(forged)
    with pytest.raises(ManifestError, match="not sorted"):
        list(Manifest.stream(io.BytesIO(forged)))
