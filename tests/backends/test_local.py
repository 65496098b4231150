"""The local-file backend, bound to the contract suite, plus its symlink and hashing rules."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from reftrack.backends.local import LocalBackend
from reftrack.errors import BucketAccessDenied, ObjectNotFound, UsageError
from reftrack.uri import RefURI, parse_uri

from .contract import ErrorContract, ReadContract, ScanContract, StatContract


class LocalStore:
    versioned = False
    bucket = ""
    missing_bucket_error = ObjectNotFound

    def __init__(self, root: Path) -> None:
        self.root = root
        self.backend = LocalBackend()

    def uri(self, key: str, version: str | None = None) -> RefURI:
        return RefURI("file", "", f"{self.root}/{key}", version)

    def write(self, key: str, data: bytes) -> str | None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return None

    def delete(self, key: str) -> None:
        (self.root / key).unlink()

    def purge_version(self, key: str, version: str) -> None:  # pragma: no cover - unversioned
        raise NotImplementedError

    def missing_bucket_uri(self, key: str) -> RefURI:
        return RefURI("file", "", f"{self.root}/no-such-root/{key}")

    @contextmanager
    def deny_access(self) -> Iterator[None]:
        if os.geteuid() == 0:
            pytest.skip("root reads any file: permission errors cannot be produced as root "
                        "(see test_permission_error_is_access_denied)")
        os.chmod(self.root, 0)
        try:
            yield
        finally:
            os.chmod(self.root, 0o755)


class TestLocal(StatContract, ScanContract, ReadContract, ErrorContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> LocalStore:
        root = tmp_path / "store"
        root.mkdir()
        return LocalStore(root)


def test_permission_error_is_access_denied(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The translation of EACCES (root bypasses file modes, so the OS error is injected)."""
    target = tmp_path / "secret"
    target.write_bytes(b"x")

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "stat", refuse)
    with pytest.raises(BucketAccessDenied, match="permission denied") as info:
        LocalBackend().stat(parse_uri(str(target)))
    assert isinstance(info.value, PermissionError)


def test_stat_records_size_and_mtime(tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(b"12345")
    os.utime(f, ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    stat = LocalBackend().stat(parse_uri(str(f)))
    assert stat.size == 5 and stat.etag is None and stat.version_id is None
    assert stat.last_modified is not None
    assert stat.last_modified.timestamp() == pytest.approx(1_700_000_000.123456, abs=1e-6)


def test_directory_is_not_an_object(tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFound, match="directory"):
        LocalBackend().stat(parse_uri(str(tmp_path)))


def test_symlink_inside_is_recorded_as_its_target(tmp_path: Path) -> None:
    root = tmp_path / "d"
    (root / "real").mkdir(parents=True)
    (root / "real" / "f.txt").write_bytes(b"content")
    (root / "link.txt").symlink_to(root / "real" / "f.txt")
    (root / "alias").symlink_to(root / "real")  # a directory link inside: walked
    found = {s.key[len(str(root)) + 1:]: s for s in LocalBackend().scan(parse_uri(f"{root}/"))}
    assert set(found) == {"link.txt", "real/f.txt", "alias/f.txt"}
    assert found["link.txt"].size == 7
    with LocalBackend().open(found["link.txt"].uri) as reader:
        assert reader.read(100) == b"content"


@pytest.mark.parametrize("kind", ["outside", "dangling", "loop"])
def test_links_that_leave_the_directory_are_refused(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "d"
    root.mkdir()
    (root / "ok.txt").write_bytes(b"x")
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"do not follow")
    if kind == "outside":
        (root / "link").symlink_to(outside)
        match = "outside the referenced directory"
    elif kind == "dangling":
        (root / "link").symlink_to(tmp_path / "missing")
        match = "dangling"
    else:
        (root / "sub").mkdir()
        (root / "sub" / "link").symlink_to(root)
        match = "loop"
    with pytest.raises(UsageError, match=match) as info:
        list(LocalBackend().scan(parse_uri(f"{root}/")))
    assert "link" in str(info.value)


def test_fifo_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "d"
    root.mkdir()
    os.mkfifo(root / "pipe")
    with pytest.raises(UsageError, match="not a regular file"):
        list(LocalBackend().scan(parse_uri(f"{root}/")))


def test_missing_directory_scan_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFound):
        list(LocalBackend().scan(parse_uri(f"{tmp_path}/nope/")))


def test_storage_options_are_refused() -> None:
    with pytest.raises(UsageError, match="no storage options"):
        LocalBackend({"x": 1})
