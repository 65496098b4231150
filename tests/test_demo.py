"""`reftrack demo`: the README's first command, run for real in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reftrack.cli import app


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reftrack", *args],
        capture_output=True, text=True, timeout=240, env=os.environ.copy(),
    )


def test_demo_tells_the_whole_story(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    result = run_cli("demo", "--workdir", str(work))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Traceback" not in out + result.stderr
    assert "demo/images:v0" in out and "demo/images:v1" in out
    assert "10 entries pinned with 3 S3 requests" in out
    assert "moved" in out and "deleted" in out and "INTACT" in out
    assert "10 of 10" in out and "byte-identical" in out
    assert "version_missing" in out and "FAILED" in out and "exit code 1" in out
    assert "demo complete" in out
    # --workdir keeps the registry: the versions are there to inspect afterwards
    listing = run_cli("--registry", str(work / "registry.db"), "ls", "--json")
    assert listing.returncode == 0, listing.stderr
    assert '"latest": "v1"' in listing.stdout
    downloaded = work / "download-v0"
    assert sorted(p.name for p in downloaded.iterdir())[:2] == ["_SUCCESS", "bird_04.png"]


def test_demo_cleans_up_its_temporary_directory(tmp_path: Path) -> None:
    env = os.environ.copy()
    env["TMPDIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-m", "reftrack", "demo"], capture_output=True,
                            text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_demo_without_moto_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "moto.server", None)
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 2
    assert "pip install 'reftrack[demo]'" in result.output


def test_demo_dataset_is_deterministic() -> None:
    from reftrack.demo import demo_dataset

    first, second = demo_dataset(), demo_dataset()
    assert first == second and len(first) == 10 and first["_SUCCESS"] == b""
    assert all(v.startswith(b"\x89PNG") for k, v in first.items() if k.endswith(".png"))
