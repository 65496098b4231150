"""PostgreSQL for the tests: a real server from the machine's binaries (initdb + pg_ctl).

``pg_url`` (session) starts one throw-away PostgreSQL server for the whole test session:
``initdb`` into a temporary directory (trust authentication, UTF-8, C locale, no fsync),
``pg_ctl start`` listening on 127.0.0.1 on a free port only (its unix socket goes into that
same temporary directory, never a shared one), and ``pg_ctl stop -m immediate`` plus removal of
the directory when the session ends. It takes about a second. ``initdb`` refuses to run as
root, so as root the server runs as the ``postgres`` system user (``runuser``, else ``su``),
in a directory that user owns.

``pg_registry_url`` (function) is a fresh, empty database on that server for one test
(``CREATE DATABASE``; dropped afterwards), so tests never see each other's registries.

The binaries are looked for on ``PATH``, then in ``/usr/lib/postgresql/<version>/bin`` (where
Debian and Ubuntu put them). When they are missing, every PostgreSQL test **fails** saying how
to install them: a missing server must never pass as a green run. Set
``REFTRACK_TEST_NO_POSTGRES=1`` to skip the PostgreSQL tests instead (read when the test
session starts).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

try:  # imported once, here: a test may hide it from later imports (sys.modules)
    import psycopg
except ImportError:  # pragma: no cover - the [test] extra installs it
    psycopg = None  # type: ignore[assignment]

NO_POSTGRES = os.environ.get("REFTRACK_TEST_NO_POSTGRES", "") not in ("", "0")
"""Read at import: the tests' isolated environment clears ``REFTRACK_*`` variables."""

SUPERUSER = "reftrack"
PG_BIN_DIRS = "/usr/lib/postgresql/*/bin"
"""Where Debian and Ubuntu put the server binaries (looked at after ``PATH``)."""
_BINARIES = ("initdb", "pg_ctl", "postgres")
_INSTALL = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH or in "
    "/usr/lib/postgresql/*/bin, and the tests need a real PostgreSQL server. Install them: "
    "`sudo apt-get install -y postgresql` (Debian/Ubuntu; .ci/run does this), "
    "`sudo dnf install postgresql-server` (Fedora), `brew install postgresql@15` (macOS); or set "
    "REFTRACK_TEST_NO_POSTGRES=1 to skip the PostgreSQL tests"
)
_names = itertools.count()


def find_pg_bin() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres (PATH first, then Debian's)."""
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    for path in sorted(glob.glob(PG_BIN_DIRS),
                       key=lambda p: [int(x) for x in Path(p).parent.name.split(".")
                                      if x.isdigit()], reverse=True):
        candidates.append(Path(path))
    for directory in candidates:
        if all((directory / name).exists() for name in _BINARIES):
            return directory
    return None


class PgServer:
    """A PostgreSQL server in ``root`` (data, log, socket), run as ``user`` when given."""

    def __init__(self, bindir: Path, root: Path, user: str | None) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.user = user
        self.port = 0

    def _command(self, *args: str) -> list[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.user is None:
            return command
        if shutil.which("runuser"):
            return ["runuser", "-u", self.user, "--", *command]
        return ["su", self.user, "-s", "/bin/sh", "-c", shlex.join(command)]

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self._command(*args), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, cwd=self.root)

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
            raise RuntimeError(f"PostgreSQL {what} failed ({result.returncode}):\n"
                               f"{result.stdout}\n{result.stderr}\n{log}")

    def start(self) -> None:
        self._check(self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                              "-E", "UTF8", "--locale=C", "--no-sync"), "initdb")
        for _attempt in range(5):  # the free port may be taken between choosing and binding
            self.port = _free_port()
            with open(self.data / "postgresql.conf", "a") as conf:
                conf.write(
                    "\n# reftrack tests\n"
                    "listen_addresses = '127.0.0.1'\n"
                    f"port = {self.port}\n"
                    f"unix_socket_directories = '{self.root}'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "max_connections = 200\nshared_buffers = 32MB\n"
                    # not UTC, so that a timestamp read back in the session's zone shows
                    "timezone = 'Pacific/Chatham'\n"
                )
            result = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w",
                               "-t", "60", "start", timeout=90)
            if result.returncode == 0:
                return
            if "could not bind" not in self.log.read_text(errors="replace"):
                break
        self._check(result, "start")

    def _stop_command(self) -> list[str]:
        return self._command("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        subprocess.run(self._stop_command(), stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=60, cwd=self.root)

    def watchdog(self) -> subprocess.Popen[bytes]:
        """A process that stops the server and removes its directory if this test session
        dies without its teardown (killed, say): no server is ever left behind."""
        script = (f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 2; done; "
                  f"{shlex.join(self._stop_command())}; rm -rf {shlex.quote(str(self.root))}")
        return subprocess.Popen(["sh", "-c", script], start_new_session=True, cwd="/",
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_user() -> str | None:
    """None: run as ourselves; as root, the ``postgres`` system user (initdb refuses root)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("the tests run as root, where initdb refuses to run, and there is no "
                    "`postgres` system user to run PostgreSQL as (apt-get install postgresql "
                    "creates it); or set REFTRACK_TEST_NO_POSTGRES=1 to skip the PostgreSQL "
                    "tests", pytrace=False)
    return "postgres"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """The URL of a PostgreSQL server for this session (superuser ``reftrack``, trust auth,
    database ``postgres``); see the module docstring."""
    if NO_POSTGRES:
        pytest.skip("REFTRACK_TEST_NO_POSTGRES is set: PostgreSQL tests skipped")
    bindir = find_pg_bin()
    if bindir is None:
        pytest.fail(_INSTALL, pytrace=False)
    user = _server_user()
    root = Path(tempfile.mkdtemp(prefix="reftrack-pg-"))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    server = PgServer(bindir, root, user)
    watchdog = server.watchdog()
    try:
        server.start()
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
        watchdog.kill()
        watchdog.wait()


def admin(url: str, *statements: str) -> None:
    """Run ``statements`` on the server at ``url`` in autocommit (CREATE/DROP DATABASE)."""
    if psycopg is None:  # pragma: no cover - the [test] extra installs it
        pytest.fail("psycopg is not installed: pip install -e '.[test]'", pytrace=False)
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


@pytest.fixture
def pg_registry_url(pg_url: str) -> Iterator[str]:
    """A fresh, empty database for one test: ``postgresql://reftrack@127.0.0.1:PORT/t_N``."""
    name = f"t_{os.getpid()}_{next(_names)}"
    admin(pg_url, f'CREATE DATABASE "{name}"')
    yield pg_url.rsplit("/", 1)[0] + "/" + name
    # FORCE: a registry the test left open holds pooled connections to the database
    admin(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def registry_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty registry on each database in turn: an SQLite file, then a PostgreSQL
    database (``pg_registry_url``)."""
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_registry_url"))
    return str(tmp_path / "registry.db")


@pytest.fixture
def each_registry(registry_location: str, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once on SQLite and once on PostgreSQL: ``REFTRACK_REGISTRY`` points at
    ``registry_location``, and ``REFTRACK_BLOB_STORE`` at ``tmp_path/blobs`` (a registry on a
    server has no default blob store). Use with ``pytest.mark.usefixtures``."""
    monkeypatch.setenv("REFTRACK_REGISTRY", registry_location)
    monkeypatch.setenv("REFTRACK_BLOB_STORE", str(tmp_path / "blobs"))
    return registry_location


ALL_ON_POSTGRES = os.environ.get("REFTRACK_TEST_REGISTRY", "") == "postgres"
"""``REFTRACK_TEST_REGISTRY=postgres python3 -m pytest``: every test's default registry (the
``REFTRACK_REGISTRY`` of ``isolated_env``) is a fresh PostgreSQL database instead of an SQLite
file. Tests that open an SQLite file by path still do."""


@pytest.fixture(autouse=True)
def _default_registry_on_postgres(request: pytest.FixtureRequest, isolated_env: None,
                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if ALL_ON_POSTGRES:
        monkeypatch.setenv("REFTRACK_REGISTRY", request.getfixturevalue("pg_registry_url"))
        monkeypatch.setenv("REFTRACK_BLOB_STORE", str(tmp_path / "blobs"))
