"""Manifest.diff / diff_entries, Manifest.stream, and the fast paths of manifest.py (stored
entries built without a pydantic pass, canonical text built directly, batched writing):
each must give exactly what the plain pydantic / json.dumps way gives."""

from __future__ import annotations

import gc
import gzip
import io
import json
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from reftrack.errors import ManifestError, UsageError
from reftrack.manifest import (
    EntryChange,
    Manifest,
    ManifestDiff,
    ManifestEntry,
    ManifestSource,
    diff_entries,
)
from reftrack.manifest_entry import FIELDS, _plainly_safe, _stored_entry, entry_of, row_of
from reftrack.manifest_store import canonical_lines, entry_lines
from reftrack.uri import check_entry_path

WHEN = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def _canonical_lines(entries: list[ManifestEntry]) -> bytes:
    return canonical_lines([row_of(e) for e in entries])


def entry(path: str, version: str | None = "v1", etag: str | None = "e" * 32, size: int = 3,
          **more: object) -> ManifestEntry:
    return ManifestEntry(path=path, ref=f"s3://bkt/{path}", version_id=version, etag=etag,
                         size=size, digest=etag, **more)  # type: ignore[arg-type]


def stored(manifest: Manifest) -> io.BytesIO:
    return io.BytesIO(manifest.to_bytes())


def _gz_lines(lines: list[str]) -> bytes:
    return gzip.compress(("\n".join(lines) + "\n").encode())


# -- diff -----------------------------------------------------------------------------------


def test_diff_reports_added_removed_changed_and_unchanged() -> None:
    old = Manifest([entry("a"), entry("b"), entry("c"), entry("d", size=4)])
    new = Manifest([entry("b"), entry("c", version="v2", etag="f" * 32), entry("d", size=5),
                    entry("e")])
    diff = old.diff(new)
    assert isinstance(diff, ManifestDiff)
    assert [e.path for e in diff.added] == ["e"]
    assert [e.path for e in diff.removed] == ["a"]
    assert diff.changed == (
        EntryChange(path="c", fields=("version_id", "etag", "digest"),
                    old=old.entries["c"], new=new.entries["c"]),
        EntryChange(path="d", fields=("size",), old=old.entries["d"], new=new.entries["d"]),
    )
    assert diff.unchanged == 1
    assert diff.summary == {"added": 1, "removed": 1, "changed": 2, "unchanged": 1}
    assert not diff.identical
    back = new.diff(old)
    assert [e.path for e in back.added] == ["a"] and [e.path for e in back.removed] == ["e"]


def test_diff_compares_exactly_what_the_digest_covers() -> None:
    a = entry("a", last_modified=WHEN)
    moved = a.model_copy(update={"last_modified": WHEN + timedelta(days=1)})
    assert Manifest([a]).diff(Manifest([moved])).identical  # mtime is not in the digest
    sha = "ab" * 32
    local = ManifestEntry(path="x", ref="file:///d/x", size=3, digest=sha,
                          checksums={"sha256": sha})
    other = local.model_copy(update={"checksums": {"sha256": "cd" * 32}})
    (change,) = Manifest([local]).diff(Manifest([other])).changed
    assert change.fields == ("checksums",)
    renamed = entry("a").model_copy(update={"ref": "s3://other/a"})
    assert Manifest([entry("a")]).diff(Manifest([renamed])).changed[0].fields == ("ref",)


def test_diff_is_identical_exactly_when_digests_are_equal() -> None:
    rng = random.Random(7)
    base = [entry(f"d/{i:03d}", version=str(i)) for i in range(60)]
    for _ in range(40):
        mutated = []
        for e in base:
            roll = rng.random()
            if roll < 0.03:
                continue  # removed
            if roll < 0.06:
                e = e.model_copy(update={"size": e.size + 1})  # type: ignore[operator]
            mutated.append(e)
        if rng.random() < 0.3:
            mutated.append(entry(f"d/new-{rng.randrange(5)}"))
        a, b = Manifest(base), Manifest(mutated)
        diff = a.diff(b)
        assert diff.identical == (a.digest == b.digest)
        assert diff.unchanged + len(diff.changed) + len(diff.removed) == len(a)
        assert diff.unchanged + len(diff.changed) + len(diff.added) == len(b)


def test_diff_of_empty_manifests() -> None:
    assert Manifest().diff(Manifest()).identical
    diff = Manifest().diff(Manifest([entry("a")]))
    assert [e.path for e in diff.added] == ["a"] and diff.unchanged == 0


def test_diff_entries_streams_two_stored_manifests() -> None:
    old = Manifest(entry(f"p/{i:04d}", version=str(i)) for i in range(5000))
    new = Manifest(e for e in old if not e.path.endswith(("7", "0001")))
    new.add_all([entry("p/0001", version="other"), entry("q/new")])
    streamed = diff_entries(Manifest.stream(stored(old)), Manifest.stream(stored(new)))
    assert streamed == old.diff(new)
    assert streamed.summary == {"added": 1, "removed": 500, "changed": 1, "unchanged": 4499}


def test_diff_entries_refuses_unsorted_or_repeated_paths() -> None:
    a, b = entry("a"), entry("b")
    with pytest.raises(UsageError, match="not sorted by path"):
        diff_entries([b, a], [a])
    with pytest.raises(UsageError, match="new entries are not sorted"):
        diff_entries([a], [a, a])


# -- streaming the stored form --------------------------------------------------------------


def test_stream_yields_the_entries_in_path_order_checked() -> None:
    src = ManifestSource(uri="s3://bkt/", kind="prefix", entries=3, listed=3)
    m = Manifest([entry("c"), entry("a", last_modified=WHEN), entry("b", version=None)],
                 sources=[src])
    streamed = list(Manifest.stream(stored(m)))
    assert streamed == m.sorted_entries()
    assert [e.path for e in streamed] == ["a", "b", "c"]


def test_stream_checks_count_and_digest_at_the_end() -> None:
    data = Manifest([entry("a"), entry("b")]).to_bytes()
    lines = gzip.decompress(data).decode().splitlines()
    truncated = _gz_lines(lines[:2])
    with pytest.raises(ManifestError, match="truncated"):
        list(Manifest.stream(io.BytesIO(truncated)))
    tampered = _gz_lines([lines[0], lines[1].replace(',3,', ',4,'), lines[2]])
    with pytest.raises(ManifestError, match="corrupt"):
        list(Manifest.stream(io.BytesIO(tampered)))
    with pytest.raises(ManifestError, match="unreadable"):
        list(Manifest.stream(io.BytesIO(data[: len(data) // 2])))
    unsorted = _gz_lines([lines[0], lines[2], lines[1]])
    with pytest.raises(ManifestError, match="not sorted by path"):
        list(Manifest.stream(io.BytesIO(unsorted)))


def test_read_still_accepts_an_unsorted_stored_manifest() -> None:
    """write() always sorts; read() never required it, so it still does not."""
    m = Manifest([entry("a"), entry("b"), entry("c")])
    lines = gzip.decompress(m.to_bytes()).decode().splitlines()
    back = Manifest.from_bytes(_gz_lines([lines[0], lines[3], lines[1], lines[2]]))
    assert back.digest == m.digest and sorted(back.entries) == ["a", "b", "c"]


def test_read_skips_blank_lines_and_names_the_bad_line() -> None:
    m = Manifest([entry("a"), entry("b")])
    lines = gzip.decompress(m.to_bytes()).decode().splitlines()
    assert Manifest.from_bytes(_gz_lines([lines[0], lines[1], "", "  ", lines[2]])).digest \
        == m.digest
    broken = _gz_lines([lines[0], lines[1], lines[2][:-5]])
    with pytest.raises(ManifestError, match="line 3: invalid entry"):
        Manifest.from_bytes(broken)
    two_on_one = _gz_lines([lines[0], lines[1] + "," + lines[2]])
    with pytest.raises(ManifestError, match="line 2: invalid entry"):
        Manifest.from_bytes(two_on_one)


def test_large_manifest_round_trips_across_batches_and_blocks() -> None:
    n = 30_000  # several parse batches and decompression blocks
    sha = "0123456789abcdef" * 4
    m = Manifest(
        ManifestEntry(path=f"d/{i:06d}/é \"q\" x", ref=f"file:///data/{i:06d}", size=i,
                      digest=sha, checksums={"sha256": sha},
                      last_modified=WHEN + timedelta(microseconds=i))
        if i % 3 == 0 else entry(f"d/{i:06d}", version=str(i), last_modified=WHEN)
        for i in range(n)
    )
    data = m.to_bytes()
    back = Manifest.from_bytes(data)
    assert back.digest == m.digest and len(back) == n
    assert back.sorted_entries() == m.sorted_entries()
    assert all(b.model_dump_json() == a.model_dump_json()
               for a, b in zip(m.sorted_entries(), back.sorted_entries(), strict=True))
    assert list(Manifest.stream(io.BytesIO(data))) == m.sorted_entries()


def test_reading_leaves_the_garbage_collector_as_it_was() -> None:
    data = Manifest([entry("a")]).to_bytes()
    assert gc.isenabled()
    Manifest.from_bytes(data)
    assert gc.isenabled()
    gc.disable()
    try:
        Manifest.from_bytes(data)
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(ManifestError):
        Manifest.from_bytes(data[:-8])
    assert gc.isenabled()


# -- the fast paths give what pydantic and json.dumps give ----------------------------------

TRICKY = [
    "plain/path.txt", "ünïcödé/日本語.bin", 'quote"in/name', "back\\slash", "tab\there",
    "a/./b", "a/../b", "../up", "/abs", "a//b", "a/", "", "C:/drive", "c:x", "x:y",
    "new\nline", "del\x7f", "nbsp\u00a0space", "zero\u200bwidth", ".hidden/.file", "...",
    "a/.../b", "a/..b", "..a", "ok/..", "trailing/.", "\u2028sep", "},{\"path\":\"x",
]


@pytest.mark.parametrize("path", TRICKY)
def test_plainly_safe_never_accepts_what_check_entry_path_refuses(path: str) -> None:
    try:
        check_entry_path(path)
        accepted = True
    except UsageError:
        accepted = False
    if _plainly_safe(path):
        assert accepted


def _reference_canonical(e: ManifestEntry) -> str:
    data = {name: getattr(e, name) for name in ("path", "ref", "version_id", "etag", "size",
                                                "digest")}
    if e.checksums:
        data["checksums"] = e.checksums
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _variety() -> list[ManifestEntry]:
    sha = "ab" * 32
    out = [
        entry("a"), entry("b", version=None, etag=None), entry("日本/ü", version="3/L+4=="),
        ManifestEntry(path="q", ref='s3://b/"q"\\\n\x01\u2028'),
        ManifestEntry(path="big", ref="s3://b/big", size=2**70, etag='"quoted"',
                      digest="other"),
        ManifestEntry(path="l", ref="file:///l", size=0, digest=sha,
                      checksums={"sha256": sha, "md5": "cd" * 16}, last_modified=WHEN),
        ManifestEntry(path="t", ref="s3://b/t", last_modified=datetime(
            2024, 1, 2, 3, 4, 5, 678, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))),
        ManifestEntry(path="n", ref="s3://b/n", last_modified=datetime(2024, 1, 2)),
        ManifestEntry(path="},{\"path\":\"x", ref='s3://b/},{"path":"y"}'),
    ]
    return [*out, *(e.model_copy(update={"size": True}) for e in out[:1])]


def test_canonical_is_json_dumps_with_sorted_keys() -> None:
    for e in _variety():
        assert e.canonical() == _reference_canonical(e), e
    odd = ManifestEntry.model_construct(path="p", ref="r", size=1.5, etag=7)
    assert odd.canonical() == _reference_canonical(odd)


def test_batched_canonical_lines_are_the_per_entry_ones() -> None:
    entries = _variety()
    per_entry = "".join(e.canonical() + "\n" for e in entries).encode()
    assert _canonical_lines(entries) == per_entry
    assert _canonical_lines(entries[:3]) == "".join(
        _reference_canonical(e) + "\n" for e in entries[:3]).encode()
    odd = ManifestEntry.model_construct(path="p", ref="r", size=1.5, etag=7)
    assert _canonical_lines([entries[0], odd]) == (
        entries[0].canonical() + "\n" + _reference_canonical(odd) + "\n").encode()
    unsorted = entries[5].model_copy(update={"checksums": {"sha256": "ab" * 32, "md5": "cd"}})
    assert _canonical_lines([unsorted]) == (_reference_canonical(unsorted) + "\n").encode()
    assert _canonical_lines([]) == b""
    with pytest.raises(UnicodeEncodeError):  # as json.dumps(...).encode() always did
        _canonical_lines([ManifestEntry(path="s", ref="s3://b/\ud800")])


def test_stored_lines_are_arrays_of_the_fields_and_read_back() -> None:
    entries = _variety()
    data = entry_lines([row_of(e) for e in entries])
    lines = data.decode().split("\n")[:-1]
    assert len(lines) == len(entries)
    for e, line in zip(entries, lines, strict=True):
        dumped = e.model_dump(mode="json")  # pydantic's own JSON values, datetimes included
        assert json.loads(line) == [dumped[f] for f in FIELDS]
        assert entry_of(row_of(e)) == e
    assert entry_lines([]) == b""
    # a path whose text looks like a row boundary: written one row at a time, still right
    tricky = [entry("x],[\"y"), entry("z")]
    assert json.loads(entry_lines([row_of(e) for e in tricky]).split(b"\n")[0])[0] == 'x],["y'
    m = Manifest(entries[:-1])  # (the last is the first with size=True: the same path)
    back = Manifest.from_bytes(m.to_bytes())
    assert back.digest == m.digest
    assert back.sorted_entries() == m.sorted_entries()


def test_stored_entries_are_what_pydantic_builds() -> None:
    for e in _variety():
        line = e.model_dump_json(exclude_none=True)
        fast = _stored_entry(json.loads(line))
        slow = ManifestEntry.model_validate_json(line)
        if fast is None:  # naive timestamps, odd values: left to pydantic, which is fine
            continue
        assert fast == slow
        assert fast.model_dump() == slow.model_dump()
        assert fast.model_dump_json() == slow.model_dump_json()
        assert fast.model_fields_set == slow.model_fields_set
        assert fast.canonical() == slow.canonical()
        if fast.checksums is None:  # (a dict field makes a pydantic model unhashable)
            assert hash(fast) == hash(slow)
        assert fast.model_copy(update={"size": 9}).size == 9


@pytest.mark.parametrize("line", [
    '{"path":"a","ref":"r","size":"3"}',              # pydantic coerces: left to it
    '{"path":"a","ref":"r","size":3.0}',
    '{"path":"a","ref":"r","last_modified":"2024-01-01"}',
    '{"path":"a","ref":"r","last_modified":"2024-01-01T00:00:00"}',
    '{"path":"a","ref":"r","last_modified":1700000000}',
    '{"path":"a","ref":"r","checksums":{}}',
    '{"path":"a","ref":"r","checksums":{"md5":"AB"}}',
    '{"path":"a","ref":"r","checksums":{"nope":"ab"}}',
    '{"path":"a","ref":"r","size":true}',
    '{"path":"a","ref":"r","extra":1}',
    '{"path":"../a","ref":"r"}',
    '{"path":"a\\u00a0b","ref":"r"}',
    '{"path":"a","ref":null}',
    '{"path":"a","ref":"r","last_modified":"2024-02-30T00:00:00Z"}',
    '{"path":"a","ref":"r","last_modified":"\\uff12\\uff10\\uff12\\uff14-01-01T00:00:00Z"}',
    '["path","a"]',
])
def test_stored_entries_defer_to_pydantic_when_unsure(line: str) -> None:
    """The fast path builds nothing pydantic would build differently or refuse."""
    fast = _stored_entry(json.loads(line))
    try:
        slow: ManifestEntry | None = ManifestEntry.model_validate_json(line)
    except ValueError:
        slow = None
    if fast is not None:
        assert slow is not None and fast == slow and fast.model_dump() == slow.model_dump()
    header = {"format": "reftrack.manifest", "schema_version": 2, "digest": "x",
              "entries": 1, "sources": []}
    data = _gz_lines([json.dumps(header), line])
    if slow is None:  # read() refuses exactly what pydantic refuses, naming the line
        with pytest.raises(ManifestError, match="line 2: invalid entry"):
            Manifest.from_bytes(data)
    else:  # and accepts what pydantic accepts (then only the digest is wrong here)
        with pytest.raises(ManifestError, match="corrupt"):
            Manifest.from_bytes(data)


def test_entries_share_their_fields_set_without_leaking_changes() -> None:
    a, b = entry("a"), entry("b")
    assert a.model_fields_set is b.model_fields_set
    before = set(a.model_fields_set)
    c = a.model_copy(update={"last_modified": WHEN})
    assert "last_modified" in c.model_fields_set
    assert a.model_fields_set == before == b.model_fields_set
    assert entry("d").digest is entry("d").etag or entry("d").digest == entry("d").etag


def test_add_all_is_all_or_nothing_within_the_batch_too() -> None:
    m = Manifest([entry("keep")])
    with pytest.raises(UsageError, match="already taken"):
        m.add_all([entry("x"), entry("x", version="other")])
    assert list(m.entries) == ["keep"]
    m.add_all([entry("x"), entry("x", last_modified=WHEN)])  # same reference twice: fine
    assert sorted(m.entries) == ["keep", "x"]
    with pytest.raises(UsageError, match="already taken"):
        m.add_all([entry("y"), entry("keep", size=99)])
    assert sorted(m.entries) == ["keep", "x"]
    empty = Manifest()
    with pytest.raises(UsageError, match="already taken"):
        empty.add_all([entry("a"), entry("b"), entry("a", size=99)])
    assert len(empty) == 0
    with pytest.raises(UsageError, match="already taken"):
        Manifest([entry("a"), entry("a", size=99)])


# -- reftrack diff --------------------------------------------------------------------------


def test_cli_diff_between_two_versions(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from reftrack.cli import app
    from reftrack.registry import Registry

    location = str(tmp_path / "registry.db")
    registry = Registry(location)
    try:
        old = Manifest([entry("a"), entry("b"), entry("c")])
        new = Manifest([entry("b", version="v2", etag="f" * 32), entry("c"), entry("d")])
        for manifest in (old, new):
            registry.log_version(project="p", name="data", type="dataset", manifest=manifest)
    finally:
        registry.close()
    runner = CliRunner()
    result = runner.invoke(app, ["--registry", location, "diff", "p/data:v0", "p/data:v1",
                                 "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["old"], data["new"]) == ("p/data:v0", "p/data:v1")
    assert (data["added"][0]["path"], data["removed"][0]["path"]) == ("d", "a")
    assert data["changed"][0]["fields"] == ["version_id", "etag", "digest"]
    assert data["changed"][0]["new"]["uri"] == "s3://bkt/b?versionId=v2"
    assert (data["unchanged"], data["identical"]) == (1, False)
    result = runner.invoke(app, ["--registry", location, "diff", "p/data:v0", "p/data:latest"])
    assert result.exit_code == 0, result.output
    assert "1 added, 1 removed, 1 changed, 1 unchanged" in result.output
    assert "~ b  version_id v1 -> v2" in result.output
    same = runner.invoke(app, ["--registry", location, "diff", "p/data:v1", "p/data:v1",
                               "--json"])
    assert json.loads(same.output)["identical"] is True
    missing = runner.invoke(app, ["--registry", location, "diff", "p/data:v0", "p/data:v9"])
    assert missing.exit_code == 4


class _Text(str):
    pass


@pytest.mark.parametrize("kwargs", [
    {"path": "a", "ref": "s3://b/a"},
    {"path": "a/b.txt", "ref": "s3://b/a/b.txt", "version_id": "v", "etag": "e" * 32,
     "size": 3, "digest": "e" * 32, "last_modified": WHEN},
    {"path": "a", "ref": "r", "last_modified": datetime(2024, 1, 1)},  # naive
    {"path": "a", "ref": "r", "last_modified": "2024-01-01T00:00:00.5+02:00"},
    {"path": "a", "ref": "r", "last_modified": "2024-01-01"},
    {"path": "a", "ref": "r", "size": "3"},
    {"path": "a", "ref": "r", "size": True},
    {"path": "a", "ref": "r", "size": 2**70},
    {"path": "a", "ref": "r", "checksums": {"sha256": "ab" * 32, "md5": "cd" * 16}},
    {"path": "a", "ref": "r", "checksums": {}},
    {"path": _Text("a"), "ref": "r"},
    {"path": "a", "ref": "r", "etag": None, "digest": None},
])
def test_constructor_fast_path_builds_what_pydantic_builds(kwargs: dict[str, object]) -> None:
    fast = ManifestEntry(**kwargs)  # type: ignore[arg-type]
    slow = ManifestEntry.model_validate(kwargs)  # pydantic's own validation, no __init__
    assert fast == slow
    assert fast.model_dump() == slow.model_dump()
    assert fast.model_dump_json() == slow.model_dump_json()
    assert fast.model_fields_set == slow.model_fields_set
    assert type(fast.path) is type(slow.path) and fast.canonical() == slow.canonical()


@pytest.mark.parametrize("kwargs", [
    {"path": "../a", "ref": "r"},
    {"path": "a", "ref": "r", "checksums": {"nope": "ab"}},
    {"path": "a", "ref": "r", "checksums": {"md5": "AB"}},
    {"path": "a", "ref": "r", "extra": 1},
    {"path": "a"},
    {"path": "a", "ref": "r", "size": "many"},
    {"path": "a", "ref": "r", "last_modified": "yesterday"},
])
def test_constructor_fast_path_refuses_what_pydantic_refuses(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as fast:
        ManifestEntry(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as slow:
        ManifestEntry.model_validate(kwargs)
    assert fast.value.errors(include_context=False) == slow.value.errors(include_context=False)
