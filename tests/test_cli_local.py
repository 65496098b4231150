"""The command line with local-file references: log, show, verify (--deep), get."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from typer.testing import CliRunner

from reftrack.cli import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"traceback for reftrack {args}: {result.exception!r}")
    return result.exit_code, result.stdout, result.stderr


def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha")
    (root / "sub" / "b.txt").write_bytes(b"bravo")
    return root


def test_log_show_verify_get_local_dir(tmp_path: Path, monkeypatch: object) -> None:
    root = tree(tmp_path)
    code, out, err = run("log", str(root), "-p", "p", "-n", "files", "--json")
    assert code == 0, err
    logged = json.loads(out)
    assert logged["entries"] == 2 and logged["warnings"] == []  # no bucket-versioning warning
    assert logged["sources"][0]["uri"] == f"file://{root}/"

    code, out, _ = run("show", "p/files:v0", "--json")
    entries = {e["path"]: e for e in json.loads(out)["entries"]}
    assert entries["a.txt"]["checksums"] == {"sha256": hashlib.sha256(b"alpha").hexdigest()}
    code, out, _ = run("show", "p/files:v0")
    assert "(local file)" in out and "sha256:" in out and "local files" in out

    (root / "a.txt").write_bytes(b"ALPHA")  # same size, new bytes, new mtime
    code, out, _ = run("verify", "p/files:v0", "--json")
    report = json.loads(out)
    assert code == 1 and report["summary"]["changed"] == 1 and report["deep"] is False
    code, out, _ = run("verify", "p/files:v0")
    assert code == 1 and "FAILED" in out and "changed" in out

    (root / "a.txt").write_bytes(b"alpha")
    code, out, _ = run("verify", "p/files:v0", "--deep")
    assert code == 0 and "deep" in out and "INTACT" in out

    dest = tmp_path / "out"
    code, out, _ = run("get", "p/files:v0", str(dest), "--json")
    assert code == 0 and json.loads(out)["downloaded"] == 2
    assert (dest / "sub" / "b.txt").read_bytes() == b"bravo"


def test_missing_local_path_is_exit_4_and_outside_link_exit_2(tmp_path: Path) -> None:
    code, out, _ = run("log", str(tmp_path / "nope"), "-p", "p", "-n", "x", "--json")
    assert code == 4 and json.loads(out)["error"]["type"] == "ObjectNotFound"
    root = tree(tmp_path)
    os.symlink("/etc/hostname", root / "escape")
    code, _, err = run("log", str(root), "-p", "p", "-n", "x")
    assert code == 2 and "outside the referenced directory" in " ".join(err.split())
