"""Faults on a real S3 API: throttling (SlowDown/503), 500s and dropped connections injected in
front of moto's server. They are retried with backoff; after the retries the entry is
`unreachable`, the rest of the run goes on, and nothing is reported `ok` that was not checked."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import reftrack
from reftrack.errors import DownloadFailed


def log(bucket: str, uris: list[str], name: str = "ds") -> reftrack.Artifact:
    with reftrack.init(project="f", job_type="ingest") as run:
        art = reftrack.Artifact(name, type="dataset")
        for uri in uris:
            art.add_reference(uri)
        run.log_artifact(art)
    return art


@pytest.fixture
def prefix_version(bucket: str, put: Any) -> reftrack.Artifact:
    for i in range(6):
        put(bucket, f"p/{i}", f"object {i}".encode())
    return log(bucket, [f"s3://{bucket}/p/"])


@pytest.fixture
def single_objects(bucket: str, put: Any) -> reftrack.Artifact:
    for i in range(3):
        put(bucket, f"s/{i}.bin", f"single {i}".encode())
    return log(bucket, [f"s3://{bucket}/s/{i}.bin" for i in range(3)], name="singles")


@pytest.fixture
def fewer_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    """3 attempts per request instead of 5: persistent failures fail faster (backoff of up to
    1 s, then 2 s), the behaviour under test is the same."""
    from reftrack.backends import s3 as s3_backend

    monkeypatch.setattr(s3_backend, "DEFAULT_ATTEMPTS", 3)


def statuses(report: reftrack.VerifyReport) -> dict[str, str]:
    return {e.path: e.status.value for e in report.entries}


def test_throttled_listing_is_retried(prefix_version: reftrack.Artifact, faults: Any,
                                      requests_log: Any) -> None:
    faults.add(method="GET", query="versions", status=503, code="SlowDown", times=2)
    requests_log.clear()
    report = reftrack.Api().artifact("f/ds:v0").verify()
    assert set(statuses(report).values()) == {"ok"} and report.exit_code == 0
    assert faults.injected == 2 and requests_log.count("GET", "versions") == 3


def test_500_and_dropped_connection_on_heads_are_retried(single_objects: reftrack.Artifact,
                                                         bucket: str, faults: Any) -> None:
    faults.add(method="HEAD", path="/s/0.bin", status=500, code="InternalError", times=2)
    faults.add(method="GET", query="versions", drop=True, times=1)
    report = reftrack.Api().artifact("f/singles:v0").verify()
    assert set(statuses(report).values()) == {"ok"}
    assert faults.injected >= 2


def test_persistent_failure_is_unreachable_and_the_rest_goes_on(
        single_objects: reftrack.Artifact, faults: Any, requests_log: Any,
        fewer_attempts: None) -> None:
    faults.add(method="HEAD", path="/s/1.bin", status=503, code="SlowDown")
    requests_log.clear()
    started = time.monotonic()
    report = reftrack.Api().artifact("f/singles:v0").verify()
    assert statuses(report) == {"0.bin": "ok", "1.bin": "unreachable", "2.bin": "ok"}
    assert report.exit_code == 3 and not report.passed
    attempts = sum(1 for m, p, _ in requests_log.calls if m == "HEAD" and p.endswith("/1.bin"))
    assert attempts == 3  # bounded retries (3 in this test), with backoff ...
    assert time.monotonic() - started < 30  # ... that do not stall the run


def test_a_listing_that_keeps_failing_reports_nothing_ok(prefix_version: reftrack.Artifact,
                                                         faults: Any, fewer_attempts: None,
                                                         ) -> None:
    faults.add(method="GET", query="versions", status=500, code="InternalError")
    faults.add(method="HEAD", status=500, code="InternalError")
    report = reftrack.Api().artifact("f/ds:v0").verify()
    assert set(statuses(report).values()) == {"unreachable"}  # none claimed ok unchecked
    assert report.summary["ok"] == 0 and report.exit_code == 3


def test_download_goes_on_past_a_failing_object(single_objects: reftrack.Artifact,
                                                faults: Any, tmp_path: Path,
                                                fewer_attempts: None) -> None:
    faults.add(method="GET", path="/s/2.bin", status=503, code="SlowDown")
    with pytest.raises(DownloadFailed) as info:
        reftrack.Api().artifact("f/singles:v0").download(tmp_path / "out")
    files = {f.path: (f.action, f.unreachable) for f in info.value.report.files}
    assert files == {"0.bin": ("downloaded", False), "1.bin": ("downloaded", False),
                     "2.bin": ("failed", True)}
    assert info.value.exit_code == 3
    assert not (tmp_path / "out" / "2.bin").exists()
