"""Managed files: ``Artifact.add_file`` / ``add_dir`` copy local files into a content-addressed
blob store (a local directory by default, or an S3 / GCS prefix); identical files are stored
once; ``verify`` and ``download`` work on the stored copies."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import reftrack
from reftrack.backends import Backends
from reftrack.backends import gcs as gcs_module
from reftrack.backends import s3 as s3_module
from reftrack.backends.local import LocalBackend
from reftrack.blobs import BlobStore, default_blob_store
from reftrack.cli import app
from reftrack.errors import (
    DownloadFailed,
    IntegrityError,
    InvalidURIError,
    ObjectNotFound,
    UsageError,
)
from reftrack.render import sources_lines
from reftrack.settings import Settings
from reftrack.uri import RefURI

S3_STORE = "s3://test-bucket/reftrack-blobs/"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blobs_on_disk(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def log(art: reftrack.Artifact, project: str = "p") -> reftrack.Artifact:
    with reftrack.init(project=project, job_type="train") as run:
        run.log_artifact(art)
    return art


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """The default store: ``blobs/`` next to the test registry (``tmp_path/registry.db``)."""
    return tmp_path / "blobs"


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Spy on LocalBackend.put: which blobs were written."""
    seen: list[str] = []
    real = LocalBackend.put

    def spy(self: LocalBackend, uri: RefURI, *args: Any, **kw: Any) -> Any:
        seen.append(os.path.basename(uri.key))
        return real(self, uri, *args, **kw)

    monkeypatch.setattr(LocalBackend, "put", spy)
    return seen


def make_tree(root: Path) -> dict[str, bytes]:
    files = {"train.py": b"print('train')\n", "lib/util.py": b"X = 1\n",
             "lib/data/config.yaml": b"lr: 0.1\n", "empty": b""}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


# -- local blob store -------------------------------------------------------------------------


def test_add_file_stores_blob_and_records_entry(tmp_path: Path, store_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = b"import reftrack\nprint('train')\n"
    Path("train.py").write_bytes(data)
    art = reftrack.Artifact("train-code", type="code")
    entry = art.add_file("./train.py")
    digest = sha(data)
    blob = store_dir / "sha256" / digest[:2] / digest
    assert blob.read_bytes() == data
    assert stat.S_IMODE(blob.stat().st_mode) == 0o444  # blobs are read-only
    assert entry.path == "train.py" and entry.ref == f"file://{blob}"
    assert entry.checksums == {"sha256": digest} and entry.digest == digest
    assert entry.size == len(data) and entry.version_id is None
    assert art.manifest.entries["train.py"] == entry
    source = art.manifest.sources[0]
    assert source.kind == "managed" and source.uri == f"file://{tmp_path}/train.py"
    assert source.entries == 1 and source.versioning == "disabled"
    assert "managed" in sources_lines(art.manifest)[0]

    log(art)
    assert art.qualified_name == "p/train-code:v0" and art.type == "code"
    report = art.verify()
    assert report.passed and report.summary["ok"] == 1
    assert art.verify(deep=True).summary["ok"] == 1


def test_name_relative_paths_and_pathlike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("a.txt").write_bytes(b"a")
    art = reftrack.Artifact("x", type="code")
    assert art.add_file("a.txt", name="src/renamed.txt").path == "src/renamed.txt"
    assert art.add_file(tmp_path / "a.txt").path == "a.txt"  # a Path works too
    assert art.add_file(f"file://{tmp_path}/a.txt").path == "a.txt"  # same entry again: fine
    assert set(art.manifest.entries) == {"src/renamed.txt", "a.txt"}
    with pytest.raises(UsageError, match="not a safe relative path"):
        art.add_file("a.txt", name="../escape")


def test_add_dir_walks_directory(tmp_path: Path, store_dir: Path) -> None:
    root = tmp_path / "project"
    files = make_tree(root)
    art = reftrack.Artifact("code", type="code")
    entries = art.add_dir(root)
    assert [e.path for e in entries] == sorted(files)
    for rel, data in files.items():
        e = art.manifest.entries[rel]
        assert e.checksums == {"sha256": sha(data)} and e.size == len(data)
        assert Path(e.ref.removeprefix("file://")).read_bytes() == data
    assert len(blobs_on_disk(store_dir)) == len(files)
    source = art.manifest.sources[0]
    assert source.kind == "managed" and source.uri == f"file://{root}/" and source.entries == 4

    named = reftrack.Artifact("code2", type="code")
    named.add_dir(str(root / "lib"), name="pkg")
    assert set(named.manifest.entries) == {"pkg/util.py", "pkg/data/config.yaml"}
    assert len(blobs_on_disk(store_dir)) == len(files)  # nothing new to store


def test_add_dir_symlinks_follow_local_reference_rules(tmp_path: Path) -> None:
    root = tmp_path / "project"
    make_tree(root)
    (root / "alias.py").symlink_to(root / "train.py")
    art = reftrack.Artifact("code", type="code")
    art.add_dir(root)
    assert art.manifest.entries["alias.py"].checksums == art.manifest.entries["train.py"].checksums

    (tmp_path / "secret").write_bytes(b"private")
    (root / "leak").symlink_to(tmp_path / "secret")
    other = reftrack.Artifact("code2", type="code")
    with pytest.raises(UsageError, match="outside the referenced directory"):
        other.add_dir(root)
    assert len(other.manifest) == 0 and other.manifest.sources == []


def test_dedup_across_versions_stores_shared_file_once(
    tmp_path: Path, store_dir: Path, writes: list[str]
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "shared.py").write_bytes(b"shared = True\n")
    (src / "one.py").write_bytes(b"version = 1\n")
    v0 = reftrack.Artifact("code", type="code")
    v0.add_file(src / "shared.py")
    v0.add_file(src / "one.py")
    log(v0)
    assert len(writes) == 2 and len(blobs_on_disk(store_dir)) == 2

    blob = store_dir / "sha256" / sha(b"shared = True\n")[:2] / sha(b"shared = True\n")
    mtime = blob.stat().st_mtime_ns
    (src / "one.py").write_bytes(b"version = 2\n")
    v1 = reftrack.Artifact("code", type="code")
    v1.add_file(src / "shared.py")
    v1.add_file(src / "one.py")
    log(v1)
    assert v1.version == "v1"
    assert len(writes) == 3  # only the changed file was written
    assert len(blobs_on_disk(store_dir)) == 3  # shared.py is stored once for both versions
    assert blob.stat().st_mtime_ns == mtime
    assert v0.manifest.entries["shared.py"] == v1.manifest.entries["shared.py"]
    assert v0.manifest.entries["one.py"].ref != v1.manifest.entries["one.py"].ref

    same = reftrack.Artifact("code", type="code")
    same.add_file(src / "shared.py")
    same.add_file(src / "one.py")
    log(same)
    assert same.new_version is False and same.version == "v1"  # identical content: no version
    assert len(writes) == 3


def test_download_works_after_source_is_deleted(tmp_path: Path) -> None:
    root = tmp_path / "project"
    files = make_tree(root)
    art = reftrack.Artifact("code", type="code")
    art.add_dir(root)
    log(art)
    for rel in files:
        os.remove(root / rel)
    fetched = reftrack.Api().artifact("p/code:latest")
    assert fetched.verify().passed  # the stored copies are what is checked
    dest = fetched.download(tmp_path / "out")
    for rel, data in files.items():
        assert (Path(dest) / rel).read_bytes() == data
        assert os.access(Path(dest) / rel, os.W_OK)  # downloads are ordinary files


def test_corrupt_blob_is_detected_and_refused(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_bytes(b"weights = [1, 2, 3]\n")
    art = reftrack.Artifact("code", type="code")
    entry = art.add_file(tmp_path / "model.py")
    log(art)
    blob = Path(entry.ref.removeprefix("file://"))
    st = blob.stat()
    blob.chmod(0o644)
    blob.write_bytes(b"weights = [6, 6, 6]\n")  # same size, other bytes
    report = art.verify()
    assert report.summary["changed"] == 1 and report.exit_code == 1
    assert "sha256" in report.entries[0].detail

    os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))  # hide it from the metadata
    assert art.verify().passed  # size and mtime cannot tell...
    deep = art.verify(deep=True)  # ...the bytes can
    assert deep.summary["changed"] == 1 and deep.exit_code == 1

    dest = tmp_path / "out"
    with pytest.raises(DownloadFailed) as info:
        art.download(dest)
    failed = info.value.report.files[0]
    assert failed.action == "failed" and "sha256" in (failed.error or "")
    assert not (dest / "model.py").exists()


def test_damaged_blob_is_replaced_by_next_add(tmp_path: Path, store_dir: Path) -> None:
    data = b"print('hello')\n"
    (tmp_path / "hello.py").write_bytes(data)
    first = reftrack.Artifact("a", type="code").add_file(tmp_path / "hello.py")
    blob = Path(first.ref.removeprefix("file://"))
    blob.chmod(0o644)
    blob.write_bytes(b"trunc")  # another size: not what its name says
    reftrack.Artifact("b", type="code").add_file(tmp_path / "hello.py")
    assert blob.read_bytes() == data
    assert not [p for p in blob.parent.iterdir() if p.name.endswith(".reftrack-part")]


def test_errors(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "f.txt").write_bytes(b"f")
    (tmp_path / "empty-dir").mkdir()
    art = reftrack.Artifact("code", type="code")
    with pytest.raises(ObjectNotFound, match=r"no-such\.py"):
        art.add_file(tmp_path / "no-such.py")
    with pytest.raises(UsageError, match="use add_dir"):
        art.add_file(tmp_path / "dir")
    with pytest.raises(UsageError, match="use add_file"):
        art.add_dir(tmp_path / "dir" / "f.txt")
    with pytest.raises(ObjectNotFound, match="no-such-dir"):
        art.add_dir(tmp_path / "no-such-dir")
    with pytest.raises(ObjectNotFound, match="holds no files"):
        art.add_dir(tmp_path / "empty-dir")
    with pytest.raises(UsageError, match="add_reference"):
        art.add_file("s3://bucket/key.py")
    with pytest.raises(InvalidURIError):
        art.add_file("ftp://host/x")
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(UsageError, match="not a regular file"):
        art.add_file(tmp_path / "pipe")  # refused, never opened (that would block)
    assert len(art.manifest) == 0

    art.add_file(tmp_path / "dir" / "f.txt")
    log(art)
    with pytest.raises(UsageError, match="immutable"):
        art.add_file(tmp_path / "dir" / "f.txt")
    with pytest.raises(UsageError, match="immutable"):
        art.add_dir(tmp_path / "dir")


def test_server_registry_needs_a_blob_store(tmp_path: Path) -> None:
    (tmp_path / "f.py").write_bytes(b"f")
    settings = Settings(registry="postgresql://user:s3cr3t@db.example/reftrack")
    art = reftrack.Artifact("code", type="code", settings=settings)
    with pytest.raises(UsageError, match="REFTRACK_BLOB_STORE") as info:
        art.add_file(tmp_path / "f.py")
    assert "s3cr3t" not in str(info.value) and "postgresql://" in str(info.value)

    # With a store, the file is leased in the registry before it is stored (gc safety), so
    # an unreachable registry is a clear error, and its password is never shown.
    store = tmp_path / "team-blobs"
    art = reftrack.Artifact("code", type="code",
                            settings=settings.model_copy(update={"blob_store": str(store)}))
    with pytest.raises(UsageError, match="cannot open registry") as info:
        art.add_file(tmp_path / "f.py")
    assert "s3cr3t" not in str(info.value) and "user:***@db.example" in str(info.value)
    assert not store.exists() or not any(store.rglob("*/*"))  # nothing stored unleased


def test_blob_store_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFTRACK_BLOB_STORE", str(tmp_path / "env-blobs"))
    assert Settings.from_env().blob_store == str(tmp_path / "env-blobs")
    (tmp_path / "f.py").write_bytes(b"f")
    entry = reftrack.Artifact("code", type="code").add_file(tmp_path / "f.py")
    assert entry.ref.startswith(f"file://{tmp_path}/env-blobs/sha256/")
    with pytest.raises(UsageError, match="blob store location is empty"):
        Settings(blob_store="  ")
    with pytest.raises(UsageError, match="cannot live at https://"):
        BlobStore("https://example.com/blobs/", Backends(Settings()))
    with pytest.raises(UsageError, match="not an object version"):
        BlobStore("s3://bucket/blobs?versionId=abc", Backends(Settings()))


def test_default_blob_store_locations(tmp_path: Path) -> None:
    assert default_blob_store(str(tmp_path / "reg" / "registry.db")) == str(tmp_path / "reg/blobs")
    assert default_blob_store(str(tmp_path)) == str(tmp_path / "blobs")  # a directory
    assert default_blob_store(f"sqlite:///{tmp_path}/r.db") == str(tmp_path / "blobs")
    assert default_blob_store(f"sqlite+pysqlite:///{tmp_path}/r.db?timeout=5") == str(
        tmp_path / "blobs")
    assert default_blob_store("sqlite://") is None
    assert default_blob_store("sqlite:///:memory:") is None
    assert default_blob_store("postgresql+psycopg://u:p@host/db") is None


def test_show_marks_managed_sources(tmp_path: Path) -> None:
    root = tmp_path / "project"
    make_tree(root)
    art = reftrack.Artifact("code", type="code")
    art.add_dir(root, name="src")
    log(art)
    result = CliRunner().invoke(app, ["show", "p/code:v0"])
    assert result.exit_code == 0, result.output
    assert "managed, 4 files copied into the blob store" in result.output


# -- S3 blob store ----------------------------------------------------------------------------


def s3_settings() -> Settings:
    return Settings.from_env(blob_store=S3_STORE)


def test_s3_store_pins_version_and_dedups(
    bucket: str, s3: Any, requests_log: Any, tmp_path: Path
) -> None:
    data = b"def train():\n    return 42\n"
    (tmp_path / "train.py").write_bytes(data)
    digest = sha(data)
    key = f"reftrack-blobs/sha256/{digest[:2]}/{digest}"

    requests_log.clear()
    v0 = reftrack.Artifact("code", type="code", settings=s3_settings())
    entry = v0.add_file(tmp_path / "train.py")
    assert requests_log.count("HEAD") == 1  # is the blob there? (no)
    assert requests_log.count("PUT") == 1  # upload it
    assert len(requests_log) == 3  # + GetBucketVersioning, once per artifact, for `show`
    head = s3.head_object(Bucket=bucket, Key=key)
    assert entry.ref == f"s3://{bucket}/{key}" and entry.version_id == head["VersionId"]
    assert entry.etag == hashlib.md5(data).hexdigest() == head["ETag"].strip('"')
    assert entry.checksums is not None and entry.checksums["sha256"] == digest
    assert entry.digest == digest
    assert entry.size == len(data) and v0.manifest.sources[0].versioning == "enabled"
    log(v0)

    requests_log.clear()
    (tmp_path / "other.py").write_bytes(b"other\n")
    v1 = reftrack.Artifact("code", type="code", settings=s3_settings())
    again = v1.add_file(tmp_path / "train.py")
    assert requests_log.count("PUT") == 0  # identical content: one HEAD, no upload
    assert requests_log.count("HEAD") == 1 and len(requests_log) == 2
    assert again.canonical() == entry.canonical()  # the same pinned blob version
    v1.add_file(tmp_path / "other.py")
    assert requests_log.count("PUT") == 1 and len(requests_log) == 4  # new file: HEAD + PUT
    log(v1)
    assert v1.version == "v1"
    listed = s3.list_object_versions(Bucket=bucket, Prefix="reftrack-blobs/")
    assert len(listed["Versions"]) == 2  # train.py once, other.py once

    os.remove(tmp_path / "train.py")
    fetched = reftrack.Api().artifact("p/code:v0")
    fetched_entry = fetched.manifest.entries["train.py"]
    assert fetched_entry.uri == f"s3://{bucket}/{key}?versionId={entry.version_id}"
    assert fetched.verify().passed and fetched.verify(deep=True).summary["ok"] == 1
    dest = fetched.download(tmp_path / "out")
    assert (Path(dest) / "train.py").read_bytes() == data


def test_s3_blob_overwritten_in_store_still_downloads_pinned_version(
    bucket: str, s3: Any, tmp_path: Path
) -> None:
    data = b"x = 1\n"
    (tmp_path / "x.py").write_bytes(data)
    art = reftrack.Artifact("code", type="code", settings=s3_settings())
    entry = art.add_file(tmp_path / "x.py")
    log(art)
    key = entry.ref.removeprefix(f"s3://{bucket}/")
    s3.put_object(Bucket=bucket, Key=key, Body=b"tampered")
    report = art.verify()
    assert report.summary["moved"] == 1 and report.passed  # the pinned version is intact
    dest = art.download(tmp_path / "out")
    assert (Path(dest) / "x.py").read_bytes() == data


def test_s3_multipart_upload(bucket: str, requests_log: Any, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_module, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)
    monkeypatch.setattr(s3_module, "PART_SIZE", 5 * 1024 * 1024)
    data = os.urandom(6 * 1024 * 1024)
    (tmp_path / "big.bin").write_bytes(data)
    requests_log.clear()
    art = reftrack.Artifact("code", type="code", settings=s3_settings())
    entry = art.add_file(tmp_path / "big.bin")
    assert requests_log.count("POST", "uploads") == 1  # create
    assert requests_log.count("PUT") == 2  # two parts
    assert requests_log.count("POST") == 2  # + complete
    assert entry.etag is not None and entry.etag.endswith("-2")
    assert entry.checksums == {"sha256": sha(data)} and entry.version_id
    log(art)
    assert art.verify(deep=True).summary["ok"] == 1
    assert (Path(art.download(tmp_path / "out")) / "big.bin").read_bytes() == data


def test_changed_source_stores_nothing(bucket: str, s3: Any, requests_log: Any, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The bytes uploaded are checked against the hash that names the blob: a source that
    changed in between is refused before anything is visible."""
    (tmp_path / "f.bin").write_bytes(b"0123456789")
    backends = Backends(Settings.from_env())
    local = backends.for_scheme("file")
    source = RefURI("file", "", str(tmp_path / "f.bin"))
    wrong = {"sha256": sha(b"something else")}
    target = RefURI("s3", bucket, "blobs/x")
    requests_log.clear()
    with local.open(source) as reader, pytest.raises(IntegrityError, match="changed while"):
        s3_module.S3Backend().put(target, reader, size=10, checksums=wrong)
    assert requests_log.count("PUT") == 0

    monkeypatch.setattr(s3_module, "MULTIPART_THRESHOLD", 4)
    monkeypatch.setattr(s3_module, "PART_SIZE", 5 * 1024 * 1024)
    with local.open(source) as reader, pytest.raises(IntegrityError, match="changed while"):
        s3_module.S3Backend().put(target, reader, size=10, checksums=wrong)
    assert requests_log.count("DELETE") == 1  # the multipart upload was aborted
    assert "Versions" not in s3.list_object_versions(Bucket=bucket, Prefix="blobs/")

    dest = RefURI("file", "", str(tmp_path / "store" / "blob"))
    with local.open(source) as reader, pytest.raises(IntegrityError, match="changed while"):
        LocalBackend().put(dest, reader, size=10, checksums=wrong)
    assert list((tmp_path / "store").iterdir()) == []
    with local.open(source) as reader, pytest.raises(IntegrityError, match="changed while"):
        LocalBackend().put(dest, reader, size=9, checksums={"sha256": sha(b"0123456789")})


# -- GCS blob store ---------------------------------------------------------------------------


def test_gcs_store_pins_generation_and_dedups(gcs: Any, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env(blob_store=f"gs://{gcs.bucket}/blobs")
    small, big = b"small file\n", os.urandom(600 * 1024)
    (tmp_path / "small.txt").write_bytes(small)
    (tmp_path / "big.bin").write_bytes(big)
    monkeypatch.setattr(gcs_module, "SINGLE_UPLOAD_LIMIT", 256 * 1024)
    monkeypatch.setattr(gcs_module, "UPLOAD_CHUNK", 256 * 1024)
    gcs.log.clear()
    art = reftrack.Artifact("code", type="code", settings=settings)
    e_small = art.add_file(tmp_path / "small.txt")
    uploads = [c for c in gcs.log.calls if c[1].startswith("/upload/")]
    assert [c[0] for c in uploads] == ["POST"]  # one media upload
    e_big = art.add_file(tmp_path / "big.bin")
    uploads = [c for c in gcs.log.calls if c[1].startswith("/upload/")]
    assert [c[0] for c in uploads] == ["POST", "POST", "PUT", "PUT", "PUT"]  # resumable: 3 chunks
    for entry, data in ((e_small, small), (e_big, big)):
        digest = sha(data)
        key = f"blobs/sha256/{digest[:2]}/{digest}"
        assert entry.ref == f"gs://{gcs.bucket}/{key}"
        assert entry.version_id == str(gcs.resource(key)["generation"])
        assert entry.checksums is not None and entry.checksums["sha256"] == digest
        assert entry.checksums["md5"] == hashlib.md5(data).hexdigest()
    log(art)

    gcs.log.clear()
    again = reftrack.Artifact("code2", type="code", settings=settings)
    assert again.add_file(tmp_path / "big.bin") == e_big
    assert not [c for c in gcs.log.calls if c[1].startswith("/upload/")]  # deduplicated

    os.remove(tmp_path / "big.bin")
    assert art.verify().passed and art.verify(deep=True).summary["ok"] == 2
    dest = Path(art.download(tmp_path / "out"))
    assert (dest / "big.bin").read_bytes() == big and (dest / "small.txt").read_bytes() == small


def test_put_many_is_concurrent_and_ordered(tmp_path: Path, store_dir: Path) -> None:
    files = {f"f{i:02d}.txt": f"file {i % 5}".encode() for i in range(20)}  # 5 distinct
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    store = BlobStore(str(store_dir), Backends(Settings.from_env()), concurrency=8)
    blobs = store.put_many(str(tmp_path / name) for name in files)
    assert [b.sha256 for b in blobs] == [sha(d) for d in files.values()]
    assert len(blobs_on_disk(store_dir)) == 5
    assert store.uri_for(sha(b"x")).key == f"{store_dir}/sha256/{sha(b'x')[:2]}/{sha(b'x')}"
    with pytest.raises(UsageError):
        store.uri_for("ABC")
