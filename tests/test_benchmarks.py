"""Smoke test for benchmarks/bench_s3.py: it runs end to end on a tiny size and its request
bounds hold. No timing assertions. The script starts (and stops) its own moto server."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_s3.py"


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("bench_s3", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_s3_small_run(capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load()
    assert bench.main(["--sizes", "40", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] and result["problems"] == []
    rows = {row["operation"]: row for row in result["rows"]}
    log = rows["log"]
    assert log["n"] == 40
    assert log["bound"] == math.ceil(log["versions"] / 1000) + 2
    assert 0 < log["requests"] <= log["bound"]
    assert log["within_bound"] is True
    assert rows["download"]["requests"] == 40
    assert rows["download-again"]["requests"] == 0


SCHEMES_SCRIPT = SCRIPT.parent / "bench_schemes.py"


def test_bench_schemes_small_run(capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/bench_schemes.py: GCS (emulator), local files and HTTP at N=30, all bounds
    and result checks hold. It starts and stops its own servers and sets its own environment."""
    spec = importlib.util.spec_from_file_location("bench_schemes", SCHEMES_SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--sizes", "30", "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is True and result["problems"] == []
    rows = {(row["scheme"], row["operation"]): row for row in result["rows"]}
    assert all(row["n"] == 30 for row in result["rows"])
    assert all(row["within_bound"] is not False for row in result["rows"])
    # GCS: one list page (+ the bucket GET) to log, one to verify, nothing to re-download
    assert rows[("gcs", "log")]["requests"] == 2
    assert rows[("gcs", "verify")]["requests"] == 1
    assert rows[("gcs", "verify-drift")]["requests"] == 1
    assert rows[("gcs", "verify-drift")]["details"]["statuses"] == {"ok": 29, "version_missing": 1}
    assert rows[("gcs", "download-again")]["requests"] == 0
    assert rows[("gcs", "naive")]["requests"] == 30
    # local: an untouched verify reads nothing; only the 2 drifted files are re-read
    assert rows[("local", "log")]["bytes_read"] == 30 * 64 * 1024
    assert rows[("local", "verify")]["bytes_read"] == 0
    assert rows[("local", "verify-drift")]["files_read"] == 2
    assert rows[("local", "verify-deep")]["files_read"] == 30
    assert rows[("local", "download-again")]["files_read"] == 0
    # HTTP: verify is HEADs only; a changed file costs one GET to re-hash
    assert rows[("http", "log")]["by_operation"] == {"GET": 30, "HEAD": 30}
    assert rows[("http", "verify")]["by_operation"] == {"GET": 0, "HEAD": 30}
    assert rows[("http", "verify-drift")]["by_operation"] == {"GET": 1, "HEAD": 30}
    assert rows[("http", "download")]["requests"] == 30
    assert rows[("http", "download-again")]["requests"] == 0


MANIFEST_SCRIPT = SCRIPT.parent / "bench_manifest.py"


def test_bench_manifest_small_run(capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/bench_manifest.py at 2,000 entries: every phase runs and its result checks
    hold (diff counts, digest and count after reading back). No timing assertions: the
    targets are only checked from 1,000,000 entries."""
    spec = importlib.util.spec_from_file_location("bench_manifest", MANIFEST_SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--entries", "2000", "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is True and result["problems"] == []
    assert result["entries"] == 2000
    assert result["targets"]["checked"] is False and result["targets"]["missed"] == []
    phases = [row["phase"] for row in result["rows"]]
    assert phases == ["build", "digest", "store", "load", "derive", "diff"]
    assert all(row["seconds"] >= 0 and row["peak_rss"] > 0 for row in result["rows"])
    diff = next(row for row in result["rows"] if row["phase"] == "diff")
    assert diff["note"] == "added=2 removed=2 changed=20 unchanged=1,978"
