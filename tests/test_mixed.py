"""One artifact referencing S3, GCS, local files and HTTP at once: log, verify, download."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import reftrack
from reftrack.cli import app
from reftrack.errors import DownloadFailed


@pytest.fixture
def sources(bucket: str, put: Any, gcs: Any, http_server: Any, tmp_path: Path) -> dict[str, str]:
    put(bucket, "train/x.bin", b"s3-x")
    put(bucket, "train/y.bin", b"s3-y")
    gcs.seed({"val/a.bin": b"gcs-a", "val/b.bin": b"gcs-b"})
    local = tmp_path / "local"
    local.mkdir()
    (local / "notes.txt").write_bytes(b"local notes")
    url = http_server.put("labels/classes.txt", b"cat\ndog\n")
    return {"s3": f"s3://{bucket}/train/", "gs": f"gs://{gcs.bucket}/val/",
            "local": str(local), "http": url}


def log_mixed(sources: dict[str, str]) -> reftrack.Artifact:
    with reftrack.init(project="m", job_type="ingest") as run:
        art = reftrack.Artifact("mixed", type="dataset")
        for scheme, uri in sources.items():  # name= prefixes a directory, names one file
            art.add_reference(uri, name="http/classes.txt" if scheme == "http" else scheme)
        run.log_artifact(art)
    return art


EXPECTED = {"s3/x.bin": b"s3-x", "s3/y.bin": b"s3-y", "gs/a.bin": b"gcs-a",
            "gs/b.bin": b"gcs-b", "local/notes.txt": b"local notes",
            "http/classes.txt": b"cat\ndog\n"}


def test_mixed_artifact_logs_verifies_and_downloads(sources: dict[str, str],
                                                    tmp_path: Path) -> None:
    art = log_mixed(sources)
    assert set(art.manifest.entries) == set(EXPECTED)
    schemes = {p: e.ref.partition("://")[0] for p, e in art.manifest.entries.items()}
    assert set(schemes.values()) == {"s3", "gs", "file", "http"}
    logged = reftrack.Api().artifact("m/mixed:latest")
    report = logged.verify()
    assert report.passed and report.summary["ok"] == 6
    path = logged.download(tmp_path / "out")
    for rel, data in EXPECTED.items():
        assert (tmp_path / "out" / rel).read_bytes() == data
    assert path.report.downloaded == 6


def test_mixed_drift_is_reported_per_scheme(sources: dict[str, str], bucket: str, put: Any,
                                            gcs: Any, http_server: Any, tmp_path: Path) -> None:
    log_mixed(sources)
    put(bucket, "train/x.bin", b"s3-x overwritten")  # versioned: pinned bytes still there
    gcs.write("val/a.bin", b"gcs-a overwritten")  # the emulator loses the old generation
    (Path(sources["local"]) / "notes.txt").write_bytes(b"LOCAL NOTES")
    http_server.put("labels/classes.txt", b"cat\ndog\nbird\n")
    art = reftrack.Api().artifact("m/mixed:v0")
    statuses = {e.path: e.status.value for e in art.verify().entries}
    assert statuses == {"s3/x.bin": "moved", "s3/y.bin": "ok", "gs/a.bin": "version_missing",
                        "gs/b.bin": "ok", "local/notes.txt": "changed",
                        "http/classes.txt": "changed"}
    with pytest.raises(DownloadFailed) as info:
        art.download(tmp_path / "out")
    files = {f.path: f.action for f in info.value.report.files}
    assert files == {"s3/x.bin": "downloaded", "s3/y.bin": "downloaded",
                     "gs/a.bin": "failed", "gs/b.bin": "downloaded",
                     "local/notes.txt": "failed", "http/classes.txt": "failed"}
    assert (tmp_path / "out" / "s3/x.bin").read_bytes() == b"s3-x"  # the pinned S3 version
    for failed in ("gs/a.bin", "local/notes.txt", "http/classes.txt"):
        assert not (tmp_path / "out" / failed).exists()


def test_mixed_cli(sources: dict[str, str]) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["log", *sources.values(), "-p", "m", "-n", "cli", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["entries"] == 6 and len(out["sources"]) == 4
    result = runner.invoke(app, ["verify", "m/cli:v0", "--deep", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["deep"] is True and report["summary"]["ok"] == 6
