"""The team registry server for the tests: a real uvicorn process on 127.0.0.1.

``team_server`` (module scope) starts ``python -m reftrack server`` over a fresh SQLite
registry on a free loopback port, waits for ``/healthz``, and stops it after the module.
Tests prepare state through the registry layer on the same file (``server.team()``,
``server.registry()``), reset it between tests (``server.reset()``), and compare registry
snapshots (``server.snapshot()``) to prove that refused requests changed nothing.

``team_server_each_db`` (module scope) is the same once on SQLite and once on a PostgreSQL
database of its own (on the session's ``pg_url`` server, dropped after the module); a test
module runs every test on both by naming it as its ``team_server``. ``start_server(...,
tls=ServerTLS(...))`` serves HTTPS instead (``server.verify`` trusts the given CA).
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from pg_fixtures import admin

from reftrack.registry import Registry
from reftrack.registry import schema as t
from reftrack.registry.team import TeamStore

# Small limits, so that "just over the limit" is a small request.
TEST_LIMITS = {"--max-json-bytes": 65536, "--max-manifest-bytes": 262144,
               "--max-manifest-entries": 1000}
SNAPSHOT_SKIP = {("api_tokens", "last_used_at")}
"""Columns a refused request may still change: a valid token's last use is recorded (at
most once a minute) before the access check refuses the request."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class ServerTLS:
    """The server's certificate and key (``--ssl-certfile``/``--ssl-keyfile``) and the CA
    certificate a client must trust to verify it (all PEM files)."""

    certfile: Path
    keyfile: Path
    cafile: Path

    def context(self) -> ssl.SSLContext:
        """A client context that trusts :attr:`cafile` only."""
        return ssl.create_default_context(cafile=str(self.cafile))


@dataclass
class TeamServer:
    url: str
    location: str
    log_path: Path
    process: subprocess.Popen[bytes]
    verify: ssl.SSLContext | bool = field(default=True, repr=False)
    """What the test's own httpx clients verify an HTTPS server with."""
    _registry: Registry | None = field(default=None, repr=False)
    _clients: dict[str | None, httpx.Client] = field(default_factory=dict, repr=False)

    def client(self, token: str | None = None, **headers: str) -> httpx.Client:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, verify=self.verify)

    def request(self, method: str, path: str, token: str | None = None,
                **kwargs: Any) -> httpx.Response:
        """One request, on a kept-alive connection per token."""
        if token not in self._clients:
            self._clients[token] = self.client(token)
        return self._clients[token].request(method, path, **kwargs)

    def registry(self) -> Registry:
        """A registry on the server's database, opened in the test process."""
        if self._registry is None:
            self._registry = Registry(self.location)
        return self._registry

    def team(self) -> TeamStore:
        return TeamStore(self.registry())

    def reset(self) -> None:
        """Empty every table (the server keeps running on the same database)."""
        with self.registry()._write() as conn:
            for table in reversed(t.metadata.sorted_tables):
                if table.name != "reftrack_meta":
                    conn.execute(table.delete())

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table (sorted), but the columns in :data:`SNAPSHOT_SKIP`."""
        out: dict[str, list[tuple[Any, ...]]] = {}
        with self.registry().engine.connect() as conn:
            for table in t.metadata.sorted_tables:
                columns = [c for c in table.columns if (table.name, c.name) not in SNAPSHOT_SKIP]
                rows = conn.execute(sa.select(*columns)).all()
                out[table.name] = sorted((tuple(r) for r in rows), key=repr)
        return out

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        for client in self._clients.values():
            client.close()
        if self._registry is not None:
            self._registry.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_server(workdir: Path, *, location: str | None = None,
                 args: dict[str, int] | None = None, attempts: int = 3,
                 tls: ServerTLS | None = None) -> TeamServer:
    """Start ``python -m reftrack server`` on a free port and wait until it answers; with
    ``tls``, serving HTTPS (``https://127.0.0.1:PORT``) with that certificate."""
    workdir.mkdir(parents=True, exist_ok=True)
    location = location or str(workdir / "registry.db")
    Registry(location).close()  # create the schema before the server and the test use it
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFTRACK_", "AWS_"))}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    limits = [str(x) for kv in (args or TEST_LIMITS).items() for x in kv]
    if tls is not None:
        limits += ["--ssl-certfile", str(tls.certfile), "--ssl-keyfile", str(tls.keyfile)]
    scheme, verify = ("https", tls.context()) if tls is not None else ("http", True)
    last = ""
    for attempt in range(attempts):
        port = free_port()
        log_path = workdir / f"server-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "reftrack", "server", "--registry", location,
                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                 *limits],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir)
        server = TeamServer(f"{scheme}://127.0.0.1:{port}", location, log_path, process,
                            verify)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(server.url + "/healthz", timeout=1,
                             verify=verify).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        last = server.log()
        server.stop()
        if "address already in use" not in last.lower() or attempt == attempts - 1:
            break
    raise RuntimeError(f"reftrack server did not start:\n{last}")


@pytest.fixture(scope="module")
def team_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamServer]:
    server = start_server(tmp_path_factory.mktemp("team-server"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def team_server_each_db(request: pytest.FixtureRequest,
                        tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamServer]:
    """``team_server``, once on SQLite and once on PostgreSQL: a database of its own on the
    session's PostgreSQL server (``pg_url``; skipped with ``REFTRACK_TEST_NO_POSTGRES=1``),
    created for the module and dropped after it."""
    workdir = tmp_path_factory.mktemp(f"team-server-{request.param}")
    if request.param == "sqlite":
        server = start_server(workdir)
        try:
            yield server
        finally:
            server.stop()
        return
    pg_url: str = request.getfixturevalue("pg_url")
    name = f"srv_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin(pg_url, f'CREATE DATABASE "{name}"')
    try:
        server = start_server(workdir, location=pg_url.rsplit("/", 1)[0] + "/" + name)
        try:
            yield server
        finally:
            server.stop()
    finally:
        admin(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Principals:
    """Users with tokens for the access tests: ``tokens[name]`` (None: anonymous)."""

    tokens: dict[str, str | None]
    names: dict[str, str | None]


PRINCIPALS = ("anonymous", "outsider", "member", "admin", "root")
"""anonymous (no token), a user who is no member, a project member, the project's admin,
and a server admin."""


def add_principals(team: TeamStore) -> Principals:
    tokens: dict[str, str | None] = {"anonymous": None}
    names: dict[str, str | None] = {"anonymous": None}
    for who in PRINCIPALS[1:]:
        team.add_user(who, is_admin=who == "root")
        tokens[who] = team.create_token(who, "tests")[1]
        names[who] = who
    team.add_user("helper")
    return Principals(tokens, names)
