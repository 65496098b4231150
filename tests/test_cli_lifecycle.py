"""The lifecycle commands: ttl (version and project), delete, restore, gc."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reftrack.cli import app

# Every test here runs on an SQLite and on a PostgreSQL registry (pg_fixtures.py).
pytestmark = pytest.mark.usefixtures("each_registry")

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"traceback for reftrack {args}: {result.exception!r}")
    return result.exit_code, result.stdout, result.stderr


def log(tmp_path: Path, name: str, data: bytes, *extra: str) -> None:
    src = tmp_path / f"{name}-{len(data)}"
    src.mkdir()
    (src / "f").write_bytes(data)
    code, _, err = run("log", str(src), "-p", "p", "-n", name, *extra)
    assert code == 0, err


def test_ttl_delete_restore_gc(tmp_path: Path) -> None:
    log(tmp_path, "ds", b"one")
    log(tmp_path, "ds", b"two!", "--alias", "best")
    code, out, _ = run("ttl", "p/ds:v0", "30d", "--json")
    assert code == 0 and json.loads(out)["ttl_seconds"] == 30 * 86400
    code, out, _ = run("ttl", "p", "7d", "--project", "--json")
    assert code == 0 and json.loads(out) == {"project": "p", "default_ttl_seconds": 7 * 86400,
                                             "versions_governed": 1}
    code, out, _ = run("show", "p/ds:v0", "--offline")
    assert code == 0 and "ttl:         30 days, 0:00:00, expires" in out
    code, out, _ = run("ttl", "p/ds:v0", "none")
    assert code == 0 and "none (kept forever)" in out
    code, _, err = run("ttl", "p/ds:v0", "soon")
    assert code == 2 and "not a duration" in err

    code, _, err = run("delete", "p/ds:best")
    assert code == 2 and "aliases best" in " ".join(err.split())
    code, out, _ = run("delete", "p/ds:v1", "--delete-aliases", "--json")
    assert code == 0 and json.loads(out)["deleted"] == "p/ds:v1"
    code, out, _ = run("show", "p/ds:latest", "--json")
    assert json.loads(out)["version"] == "v0"
    code, _, err = run("show", "p/ds:v1")
    assert code == 4 and "was deleted" in err

    code, out, _ = run("gc", "--dry-run", "--json")
    assert code == 0 and json.loads(out)["versions"] == []  # within the grace period
    code, out, _ = run("restore", "p/ds:v1")
    assert code == 0 and "restored p/ds:v1" in out
    run("delete", "p/ds:v1")
    code, out, _ = run("gc", "--grace", "0", "--dry-run")
    assert code == 0 and "would purge 1 version(s)" in out and "p/ds:v1 (deleted)" in out
    code, out, _ = run("gc", "--grace", "0", "--json")
    report = json.loads(out)
    assert code == 0 and [v["version"] for v in report["versions"]] == ["p/ds:v1"]
    code, _, err = run("restore", "p/ds:v1")
    assert code == 4 and "purged" in err
    code, _, err = run("gc", "--grace", "none")
    assert code == 2
