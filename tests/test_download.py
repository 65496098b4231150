"""Downloads against moto's server: exact versions, checks, atomic writes, skipping."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

import reftrack
from reftrack.errors import DownloadFailed, UsageError
from reftrack.manifest import Manifest, ManifestEntry
from reftrack.transfer import download_manifest, multipart_etag_matches


def log_prefix(bucket: str, prefix: str, **kw: Any) -> reftrack.Artifact:
    with reftrack.init(project="p") as run:
        art = reftrack.Artifact("ds", type="dataset")
        art.add_reference(f"s3://{bucket}/{prefix}", **kw)
        run.log_artifact(art)
    return art


def object_gets(requests_log: Any, bucket: str) -> int:
    return sum(1 for m, path, _ in requests_log.calls if m == "GET" and path != f"/{bucket}")


def test_download_returns_the_pinned_bytes_after_drift(s3: Any, bucket: str, put: Any,
                                                       tmp_path: Path, requests_log: Any) -> None:
    originals = {"a.txt": b"alpha", "sub/b.bin": os.urandom(3000), "empty": b""}
    for name, data in originals.items():
        put(bucket, f"d/{name}", data)
    log_prefix(bucket, "d/")
    put(bucket, "d/a.txt", b"overwritten!")
    s3.delete_object(Bucket=bucket, Key="d/sub/b.bin")
    requests_log.clear()
    path = reftrack.Api().artifact("p/ds:v0").download(tmp_path / "out")
    assert Path(path) == (tmp_path / "out").resolve()
    for name, data in originals.items():
        assert (Path(path) / name).read_bytes() == data
    assert path.report.downloaded == 3 and path.report.bytes == 5 + 3000
    assert object_gets(requests_log, bucket) == 3  # one GET per entry, nothing else
    assert len(requests_log) == 3
    leftovers = [p for p in Path(path).rglob("*") if "reftrack-part" in p.name]
    assert leftovers == []


def test_second_download_skips_with_no_request(bucket: str, put: Any, tmp_path: Path,
                                               requests_log: Any) -> None:
    for i in range(4):
        put(bucket, f"d/{i}", f"content {i}".encode())
    art = log_prefix(bucket, "d/")
    art.download(tmp_path)
    (tmp_path / "2").write_bytes(b"content X")  # same size, wrong bytes: must be refetched
    requests_log.clear()
    again = art.download(tmp_path)
    assert again.report.skipped == 3 and again.report.downloaded == 1
    assert len(requests_log) == 1
    assert (tmp_path / "2").read_bytes() == b"content 2"


def test_lost_version_fails_naming_the_entry(s3: Any, bucket: str, put: Any,
                                             tmp_path: Path) -> None:
    pinned = put(bucket, "d/lost.bin", b"1")
    put(bucket, "d/fine.bin", b"2")
    art = log_prefix(bucket, "d/")
    put(bucket, "d/lost.bin", b"newer")
    s3.delete_object(Bucket=bucket, Key="d/lost.bin", VersionId=pinned)
    with pytest.raises(DownloadFailed) as info:
        art.download(tmp_path)
    message = str(info.value)
    assert "1 of 2 entries" in message and "lost.bin" in message and pinned in message
    assert "lost" in message
    report = info.value.report
    assert [(f.path, f.action) for f in report.files] == [("fine.bin", "downloaded"),
                                                           ("lost.bin", "failed")]
    assert (tmp_path / "fine.bin").read_bytes() == b"2"
    assert not (tmp_path / "lost.bin").exists()


def test_unversioned_objects_download_only_if_unchanged(unversioned_bucket: str, put: Any,
                                                        tmp_path: Path) -> None:
    b = unversioned_bucket
    put(b, "u/a", b"same")
    put(b, "u/b", b"before")
    art = log_prefix(b, "u/")
    put(b, "u/b", b"after!")
    with pytest.raises(DownloadFailed, match="changed since it was recorded"):
        art.download(tmp_path)
    assert (tmp_path / "a").read_bytes() == b"same"
    assert not (tmp_path / "b").exists()


def test_checksum_false_downloads_the_current_object(bucket: str, put: Any,
                                                     tmp_path: Path) -> None:
    put(bucket, "n/a", b"first")
    art = log_prefix(bucket, "n/", checksum=False)
    put(bucket, "n/a", b"second")
    path = art.download(tmp_path)
    assert (tmp_path / "a").read_bytes() == b"second"
    assert "not pinned" in (path.report.files[0].note or "")


def test_paths_that_escape_the_root_are_refused_before_any_request(
    bucket: str, put: Any, tmp_path: Path, requests_log: Any
) -> None:
    put(bucket, "k", b"x")
    for evil in ["../escape", "/abs/path", "a/../../b"]:
        entry = ManifestEntry.model_construct(
            path=evil, ref=f"s3://{bucket}/k", version_id=None, etag=None, size=None,
            digest=None, last_modified=None,
        )
        manifest = Manifest()
        manifest.entries[evil] = entry
        requests_log.clear()
        with pytest.raises(UsageError, match="not a safe relative path"):
            download_manifest(manifest, tmp_path / "root", reftrack.Artifact(
                "x", type="t")._ctx.backends)
        assert len(requests_log) == 0
    assert not (tmp_path / "escape").exists()


def test_symlink_out_of_the_root_is_refused(bucket: str, put: Any, tmp_path: Path) -> None:
    put(bucket, "d/sub/file", b"x")
    art = log_prefix(bucket, "d/")
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "sub").symlink_to(outside)
    with pytest.raises(UsageError, match="outside the download directory"):
        art.download(root)
    assert list(outside.iterdir()) == []


def test_file_and_directory_clash_is_refused(bucket: str, put: Any, tmp_path: Path) -> None:
    put(bucket, "a", b"x")
    put(bucket, "dir/a/b", b"y")
    with reftrack.init(project="p") as run:
        art = reftrack.Artifact("ds", type="dataset")
        art.add_reference(f"s3://{bucket}/a")
        art.add_reference(f"s3://{bucket}/dir/")
        run.log_artifact(art)
    with pytest.raises(UsageError, match="cannot both be files"):
        art.download(tmp_path)


def test_corrupt_transfer_is_caught_by_md5(bucket: str, put: Any, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    put(bucket, "c/data", b"precious bytes")
    art = log_prefix(bucket, "c/")
    from reftrack.backends import s3 as s3_backend

    real_read = s3_backend.S3Reader.read

    def flip(self: Any, size: int) -> bytes:
        data = real_read(self, size)
        return bytes([data[0] ^ 1]) + data[1:] if data else data

    monkeypatch.setattr(s3_backend.S3Reader, "read", flip)
    root = tmp_path / "out"
    with pytest.raises(DownloadFailed, match="corrupt transfer"):
        art.download(root)
    assert list(root.iterdir()) == []  # neither the file nor a temp file left behind


def test_multipart_object(s3: Any, bucket: str, tmp_path: Path, requests_log: Any) -> None:
    part = 5 * 1024 * 1024
    body = [os.urandom(part), os.urandom(1234)]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp/big.bin")
    parts = []
    for number, data in enumerate(body, start=1):
        etag = s3.upload_part(Bucket=bucket, Key="mp/big.bin", PartNumber=number,
                              UploadId=upload["UploadId"], Body=data)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(Bucket=bucket, Key="mp/big.bin", UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": parts})
    art = log_prefix(bucket, "mp/")
    entry = art.manifest.entries["big.bin"]
    assert entry.etag.endswith("-2")
    path = art.download(tmp_path)
    assert (tmp_path / "big.bin").read_bytes() == b"".join(body)
    assert "multipart" in (path.report.files[0].note or "")
    requests_log.clear()
    again = art.download(tmp_path)  # the multipart ETag is recomputed locally: skipped
    assert again.report.skipped == 1 and len(requests_log) == 0


def test_multipart_etag_matches(tmp_path: Path) -> None:
    data = os.urandom(8 * 1024 * 1024 + 10)
    path = tmp_path / "f"
    path.write_bytes(data)
    part = 8 * 1024 * 1024
    digests = [hashlib.md5(data[:part]).digest(), hashlib.md5(data[part:]).digest()]
    etag = hashlib.md5(b"".join(digests)).hexdigest() + "-2"
    assert multipart_etag_matches(path, etag, len(data))
    assert not multipart_etag_matches(path, "0" * 32 + "-2", len(data))
    assert not multipart_etag_matches(path, hashlib.md5(data).hexdigest(), len(data))


def test_concurrent_download_of_many_files(bucket: str, seed: Any, tmp_path: Path) -> None:
    files = {f"many/{i:03d}": f"file {i}".encode() * 10 for i in range(60)}
    seed(bucket, files)
    art = log_prefix(bucket, "many/")
    path = art.download(tmp_path, concurrency=8)
    assert path.report.downloaded == 60
    for key, data in files.items():
        assert (tmp_path / key.removeprefix("many/")).read_bytes() == data


def test_default_root_is_artifacts_name_version(bucket: str, put: Any, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    put(bucket, "d/x", b"1")
    art = log_prefix(bucket, "d/")
    monkeypatch.chdir(tmp_path)
    path = art.download()
    assert Path(path) == (tmp_path / "artifacts" / "ds:v0").resolve()
    assert (Path(path) / "x").read_bytes() == b"1"
