"""Local-file references end to end: record (size, mtime, sha256), verify (re-hash only what
changed, or everything with deep=True), download (copy after re-hashing), symlink rules."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

import reftrack
from reftrack.backends.local import LocalBackend
from reftrack.errors import DownloadFailed, InvalidURIError, ObjectNotFound, UsageError


def make_tree(root: Path) -> dict[str, bytes]:
    files = {"a.txt": b"alpha", "sub/b.bin": b"\x00\x01" * 1000, "sub/deep/c.csv": b"x,y\n1,2\n",
             "empty": b""}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def log(*uris: str, name: str = "local", **kw: Any) -> reftrack.Artifact:
    with reftrack.init(project="p", job_type="ingest") as run:
        art = reftrack.Artifact(name, type="dataset")
        for uri in uris:
            art.add_reference(uri, **kw)
        run.log_artifact(art)
    return art


@pytest.fixture
def opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Spy on the real LocalBackend.open: which files were read (hashed or copied)."""
    seen: list[str] = []
    real = LocalBackend.open

    def spy(self: LocalBackend, uri: Any, **kw: Any) -> Any:
        seen.append(os.path.basename(uri.key))
        return real(self, uri, **kw)

    monkeypatch.setattr(LocalBackend, "open", spy)
    return seen


def test_directory_reference_records_size_mtime_sha256(tmp_path: Path) -> None:
    root = tmp_path / "data"
    files = make_tree(root)
    art = log(str(root))
    entries = art.manifest.entries
    assert set(entries) == set(files)
    for rel, data in files.items():
        e = entries[rel]
        sha = hashlib.sha256(data).hexdigest()
        assert e.checksums == {"sha256": sha} and e.digest == sha
        assert e.size == len(data) and e.version_id is None and e.etag is None
        assert e.ref == f"file://{root}/{rel}"
        assert e.last_modified is not None
        assert e.last_modified.timestamp() == pytest.approx(os.stat(root / rel).st_mtime,
                                                            abs=1e-5)
    source = art.manifest.sources[0]
    assert source.kind == "prefix" and source.entries == len(files)


def test_file_uri_relative_path_and_single_file(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data"
    make_tree(root)
    monkeypatch.chdir(tmp_path)
    art = reftrack.Artifact("x", type="dataset")
    art.add_reference("./data/sub")
    art.add_reference(f"file://{root}/a.txt", name="renamed.txt")
    assert set(art.manifest.entries) == {"b.bin", "deep/c.csv", "renamed.txt"}
    with pytest.raises(InvalidURIError, match="no scheme"):
        art.add_reference("data/a.txt")  # bare relative paths need ./
    with pytest.raises(ObjectNotFound, match="no-such"):
        art.add_reference(f"{tmp_path}/no-such")


def test_same_content_same_digest_even_if_touched(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_tree(root)
    first = log(str(root))
    os.utime(root / "a.txt", (1, 1))
    second = log(str(root))
    assert second.new_version is False and second.version == first.version


def test_verify_rehashes_only_what_changed(tmp_path: Path, opens: list[str]) -> None:
    root = tmp_path / "data"
    make_tree(root)
    log(str(root))
    opens.clear()
    art = reftrack.Api().artifact("p/local:v0")
    report = art.verify()
    assert report.passed and set(report.summary) and report.summary["ok"] == 4
    assert opens == []  # size and mtime unchanged: nothing is read
    assert report.requests == 0

    os.utime(root / "a.txt", None)  # touched: mtime moves, content does not
    (root / "sub/b.bin").write_bytes(b"\x00\x02" * 1000)  # same size, new content
    (root / "sub/deep/c.csv").write_bytes(b"longer content now")  # size changed
    os.remove(root / "empty")
    report = art.verify()
    by_path = {e.path: e for e in report.entries}
    assert by_path["a.txt"].status == "ok" and "identical" in by_path["a.txt"].detail
    assert by_path["sub/b.bin"].status == "changed" and "sha256" in by_path["sub/b.bin"].detail
    assert by_path["sub/deep/c.csv"].status == "changed"
    assert by_path["empty"].status == "version_missing"
    assert report.exit_code == 1
    # Re-hashed: the touched file and the same-size rewrite; not the file whose size changed.
    assert sorted(opens) == ["a.txt", "b.bin"]


def test_deep_catches_what_metadata_hides(tmp_path: Path, opens: list[str]) -> None:
    root = tmp_path / "data"
    make_tree(root)
    log(str(root))
    target = root / "a.txt"
    st = os.stat(target)
    target.write_bytes(b"ALPHA")  # same size...
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # ...and the old mtime restored
    art = reftrack.Api().artifact("p/local:v0")
    assert art.verify().passed  # metadata cannot tell
    opens.clear()
    deep = art.verify(deep=True)
    assert {e.path: e.status.value for e in deep.entries}["a.txt"] == "changed"
    assert deep.deep and deep.exit_code == 1
    assert sorted(opens) == ["a.txt", "b.bin", "c.csv", "empty"]  # every file read once
    with pytest.raises(UsageError):
        art.verify(deep="yes")  # type: ignore[arg-type]


def test_download_copies_after_rehashing(tmp_path: Path) -> None:
    root = tmp_path / "data"
    files = make_tree(root)
    log(str(root))
    art = reftrack.Api().artifact("p/local:v0")
    dest = tmp_path / "out"
    path = art.download(dest)
    assert {f.action for f in path.report.files} == {"downloaded"}
    for rel, data in files.items():
        assert (dest / rel).read_bytes() == data
    again = art.download(dest)
    assert {f.action for f in again.report.files} == {"skipped"}

    (root / "a.txt").write_bytes(b"omega")  # same size, other bytes
    os.remove(dest / "a.txt")
    with pytest.raises(DownloadFailed) as info:
        art.download(dest)
    failed = [f for f in info.value.report.files if f.action == "failed"]
    assert [f.path for f in failed] == ["a.txt"] and "sha256" in (failed[0].error or "")
    assert not (dest / "a.txt").exists()  # never the changed bytes under the real name
    assert not [p for p in dest.iterdir() if p.name.endswith(".reftrack-part")]


def test_symlink_outside_is_refused_and_nothing_added(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_tree(root)
    (tmp_path / "secret").write_bytes(b"private")
    (root / "leak").symlink_to(tmp_path / "secret")
    art = reftrack.Artifact("x", type="dataset")
    with pytest.raises(UsageError, match="outside the referenced directory"):
        art.add_reference(str(root))
    assert len(art.manifest) == 0


def test_symlink_inside_records_target_content(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_tree(root)
    (root / "link.txt").symlink_to(root / "a.txt")
    art = log(str(root))
    link = art.manifest.entries["link.txt"]
    assert link.checksums == art.manifest.entries["a.txt"].checksums
    dest = tmp_path / "out"
    art.download(dest)
    assert not (dest / "link.txt").is_symlink() and (dest / "link.txt").read_bytes() == b"alpha"


def test_checksum_false_records_paths_only(tmp_path: Path, opens: list[str]) -> None:
    root = tmp_path / "data"
    make_tree(root)
    art = log(str(root), checksum=False)
    assert opens == []
    assert all(e.checksums is None and e.size is None for e in art.manifest)
