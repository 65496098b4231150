"""The set-up promises: README's two commands, .ci/run, dependency floors, entry points."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_readme_opens_with_exactly_two_setup_commands() -> None:
    commands = readme_setup_commands()
    assert len(commands) == 2
    demo, tests = commands
    assert "'.[demo]'" in demo and demo.endswith("reftrack demo")
    assert "'.[test]'" in tests and "pytest" in tests


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    command = readme_setup_commands()[1]
    assert [line for line in ci if line.startswith(command)] == [f"{command} || status=$?"]
    assert any("pip check" in line for line in ci)


def test_ci_fails_when_the_install_fails(tmp_path: Path) -> None:
    """A failure on the left of `&&` must fail the run (set -e alone would not)."""
    ci = (ROOT / ".ci" / "run").read_text()
    command = readme_setup_commands()[1]
    fake = ci.replace(command, "false && true").replace("python3 -m venv .ci-venv", "true")
    fake = fake.replace(". .ci-venv/bin/activate", "true")
    script = tmp_path / "run"
    script.write_text(fake.replace('cd "$(dirname "$0")/.."', f"cd {tmp_path}"))
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "REFTRACK_TEST_NO_POSTGRES": "1"})  # no install
    assert result.returncode == 1 and "failed with status 1" in result.stderr


def test_dependency_floors_avoid_the_resolver_trap() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = {re.split(r"[<>=!\[; ]", d, maxsplit=1)[0].lower(): d for d in project["dependencies"]}
    for name in ("s3fs", "fsspec"):
        floor = re.search(r">=\s*(\d+)", deps[name])
        assert floor and int(floor.group(1)) >= 2024, deps[name]
    # A direct boto3 requirement makes pip 23's resolver fail (it takes the newest boto3,
    # whose botocore aiobotocore refuses); botocore comes through s3fs -> aiobotocore.
    assert "boto3" not in deps and "botocore" not in deps
    assert {"test", "demo"} <= set(project["optional-dependencies"])


def test_version_and_module_entry_point() -> None:
    import reftrack

    out = subprocess.run([sys.executable, "-m", "reftrack", "--version"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"reftrack {reftrack.__version__}"


def test_ci_installs_postgresql_before_the_tests() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    command = readme_setup_commands()[1]
    assert "/usr/lib/postgresql/*/bin" in ci
    assert ci.index("apt-get install -y -q postgresql") < ci.index(f"{command} ||")


@pytest.mark.parametrize(("env", "outcome"), [({}, "1 error"),
                                              ({"REFTRACK_TEST_NO_POSTGRES": "1"}, "1 skipped")])
def test_postgres_tests_fail_without_the_binaries_unless_told_to_skip(
        tmp_path: Path, env: dict[str, str], outcome: str) -> None:
    """No PostgreSQL binaries must never pass as a green run: the fixture fails and says how
    to install them; REFTRACK_TEST_NO_POSTGRES=1 skips instead."""
    (tmp_path / "conftest.py").write_text(
        "import pg_fixtures\npg_fixtures.PG_BIN_DIRS = '/nonexistent/*/bin'\n"
        "pytest_plugins = ['pg_fixtures']\n")
    (tmp_path / "test_pg.py").write_text("def test_pg(pg_url):\n    pass\n")
    path = ":".join(p for p in os.environ["PATH"].split(":")
                    if p and not (Path(p) / "initdb").exists())
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PATH": path, "PYTHONPATH": str(ROOT / "tests"), **env})
    assert outcome in result.stdout, result.stdout + result.stderr
    if not env:
        assert result.returncode != 0 and "apt-get install -y postgresql" in result.stdout
