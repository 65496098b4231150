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
