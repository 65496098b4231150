"""The registry on PostgreSQL: URLs and drivers, errors without passwords, the write lock
(an advisory lock, with a timeout), tz-aware UTC timestamps, and in-place upgrades on both
databases. The rest of tests/registry runs on both databases (``registry_location``)."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from pg_fixtures import admin

from reftrack.errors import BackendError, UsageError
from reftrack.manifest import Manifest, ManifestEntry
from reftrack.registry import Registry, VersionRecord, dialects
from reftrack.registry import schema as t


def manifest(tag: str) -> Manifest:
    return Manifest([ManifestEntry(path="f", ref="s3://bkt/f", version_id=tag, etag="e" * 32,
                                   size=1)])


def log(reg: Registry, tag: str, **kw: Any) -> VersionRecord:
    return reg.log_version(project="p", name="ds", type="dataset", manifest=manifest(tag),
                           **kw)[0]


def with_password(url: str, password: str) -> str:
    return url.replace("reftrack@", f"reftrack:{password}@")


def test_plain_urls_use_psycopg(pg_registry_url: str) -> None:
    assert pg_registry_url.startswith("postgresql://")
    reg = Registry(pg_registry_url)
    assert reg.url.startswith("postgresql+psycopg://")
    assert reg.engine.dialect.name == "postgresql" and reg.engine.dialect.driver == "psycopg"
    explicit = Registry(pg_registry_url.replace("postgresql://", "postgresql+psycopg://"))
    short = Registry(pg_registry_url.replace("postgresql://", "postgres://"))
    log(reg, "a")
    assert explicit.resolve("p", "ds").version == short.resolve("p", "ds").version == "v0"


def test_passwords_never_show(pg_registry_url: str) -> None:
    # trust authentication ignores the password: the registry opens, and never shows it
    reg = Registry(with_password(pg_registry_url, "s3cr3t-pw"))
    assert "s3cr3t" not in repr(reg) and "reftrack:***@" in reg.location
    log(reg, "a")
    closed = with_password(pg_registry_url.rsplit(":", 1)[0] + ":9/x", "s3cr3t-pw")
    with pytest.raises(UsageError, match="cannot open registry") as info:
        Registry(closed)
    message = str(info.value)
    assert "s3cr3t" not in message and "reftrack:***@127.0.0.1:9/x" in message
    assert "refused" in message and "server is running" in message


def test_a_missing_database_or_role_is_a_clear_usage_error(pg_registry_url: str) -> None:
    base = pg_registry_url.rsplit("/", 1)[0]
    with pytest.raises(UsageError, match=r'cannot open registry .*/nodb \(.*"nodb" does not'):
        Registry(base + "/nodb")
    with pytest.raises(UsageError, match=r'role "nobody" does not exist'):
        Registry(base.replace("reftrack@", "nobody:pw1234@") + "/postgres")


def test_a_lost_server_after_opening_is_a_backend_error(pg_url: str,
                                                        pg_registry_url: str) -> None:
    reg = Registry(with_password(pg_registry_url, "s3cr3t-pw"))
    log(reg, "a")
    name = pg_registry_url.rsplit("/", 1)[1]
    # a dropped connection is replaced (the pool checks before use)
    admin(pg_url, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  f"WHERE datname = '{name}'")
    assert reg.resolve("p", "ds").version == "v0"
    admin(pg_url, f'DROP DATABASE "{name}" WITH (FORCE)')
    with pytest.raises(BackendError, match="lost the connection to registry") as info:
        reg.resolve("p", "ds")
    assert "s3cr3t" not in str(info.value) and "reftrack:***@" in str(info.value)


def test_without_psycopg_the_message_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg -> ImportError
    with pytest.raises(UsageError, match=r"pip install 'reftrack\[postgres\]'") as info:
        Registry("postgresql://me:s3cr3t-pw@db.example/reftrack")
    assert "s3cr3t" not in str(info.value) and "me:***@db.example" in str(info.value)


def test_other_databases_are_refused() -> None:
    with pytest.raises(UsageError, match=r"SQLite file .* or a PostgreSQL database"):
        Registry("mysql://me:s3cr3t-pw@db.example/reftrack")


def test_writes_take_the_advisory_lock_and_queue_behind_it(pg_registry_url: str) -> None:
    reg = Registry(pg_registry_url)
    with reg.engine.connect() as conn:  # what a write's first statement is
        conn.execution_options(**dialects.write_options(reg.engine))
        with conn.begin():
            dialects.begin_write(conn)
            held = conn.execute(sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND pid = pg_backend_pid()")).scalar_one()
            level = conn.execute(sa.text("SHOW transaction_isolation")).scalar_one()
    assert held == 1 and level == "read committed"
    with reg.engine.connect() as conn:  # reads: one snapshot each, and no lock
        assert conn.execute(sa.text("SHOW transaction_isolation")).scalar_one() \
            == "repeatable read"
    with psycopg.connect(pg_registry_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (dialects.WRITE_LOCK_KEY,))
        threading.Timer(0.5, lambda: other.execute("SELECT pg_advisory_unlock_all()")).start()
        started = time.monotonic()
        log(reg, "a")  # waits for the other holder, then writes
        assert time.monotonic() - started >= 0.4
    assert reg.resolve("p", "ds").version == "v0"


def test_a_writer_locked_out_gets_a_clear_error(pg_registry_url: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    reg = Registry(pg_registry_url)
    monkeypatch.setattr(dialects, "LOCK_TIMEOUT_MS", 200)
    with psycopg.connect(pg_registry_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (dialects.WRITE_LOCK_KEY,))
        with pytest.raises(BackendError, match="stayed locked by another writer") as info:
            reg.create_run(project="p")
        assert pg_registry_url.rsplit("/", 1)[1] in str(info.value)
    assert reg.projects() == []  # nothing was written
    reg.create_run(project="p")  # the lock is free again


@pytest.mark.parametrize(("code", "words"), [("serialization_failure", "serialization failure"),
                                             ("deadlock_detected", "deadlock")])
def test_conflicts_are_clear_backend_errors(pg_registry_url: str, code: str,
                                            words: str) -> None:
    reg = Registry(pg_registry_url)
    with pytest.raises(BackendError, match=f"met a {words} with a concurrent writer"), \
            reg._write() as conn:
        conn.execute(t.projects.insert().values(name="gone", created_at=reg.now()))
        conn.exec_driver_sql(f"DO $$ BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = "
                             f"'{code}'; END $$")
    assert reg.projects() == []  # rolled back


def test_timestamps_come_back_as_utc(pg_registry_url: str) -> None:
    """The test server's time zone is Pacific/Chatham (+12:45 or +13:45): what comes back is
    the same instant, in UTC."""
    when = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    reg = Registry(pg_registry_url, clock=lambda: when)
    with reg.engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW timezone").scalar_one() == "Pacific/Chatham"
    version = log(reg, "a", ttl=timedelta(days=2))
    run, _ = reg.create_run(project="p")
    for value in (version.created_at, version.expires_at, run.started_at,
                  reg.resolve("p", "ds").created_at):
        assert value is not None and value.tzinfo == UTC
    assert version.created_at == when and version.expires_at == when + timedelta(days=2)
    assert run.started_at == when
    deleted = reg.delete_version(reg.resolve("p", "ds"))
    assert deleted.deleted_at == when and deleted.deleted_at.tzinfo == UTC


def test_an_older_registry_is_upgraded_in_place(registry_location: str) -> None:
    """On both databases: a registry missing the columns and tables later schemas added is
    upgraded when opened (ALTER TABLE ... ADD COLUMN), keeping its rows."""
    reg = Registry(registry_location)
    log(reg, "a", aliases=["best"])
    run, _ = reg.create_run(project="p", group="g")
    reg.close()
    engine = sa.create_engine(reg.url)
    with engine.begin() as conn:
        for table in (t.verify_results, t.verify_runs, t.blob_leases):
            conn.execute(sa.text(f"DROP TABLE {table.name}"))
        quote = conn.dialect.identifier_preparer.quote
        for table, columns in t.ADDED_COLUMNS.items():
            for column in columns:
                conn.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {quote(column)}"))
        conn.execute(t.meta.update().values(value="1"))
    engine.dispose()
    again = Registry(registry_location)
    assert again.resolve("p", "ds", "best").version == "v0"
    old = again.run("p", run.id)
    assert old.group is None and old.summary == {}
    with again.engine.connect() as conn:
        assert conn.execute(sa.select(t.meta.c.value)).scalar_one() == str(t.SCHEMA_VERSION)
        names = {c["name"] for c in sa.inspect(conn).get_columns("versions")}
    assert set(t.ADDED_COLUMNS["versions"]) <= names
    assert log(again, "b").version == "v1"
    again.set_ttl(again.resolve("p", "ds"), timedelta(days=1))


@pytest.fixture
def icu_registry_url(pg_url: str) -> Iterator[str]:
    """A database whose default collation is a natural-language one (ICU en-US), which sorts
    ``a-1`` after ``a_1`` and ``B`` after ``b``."""
    name = f"icu_{uuid.uuid4().hex[:12]}"
    try:
        admin(pg_url, f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu "
                      "ICU_LOCALE 'en-US' LOCALE 'C'")
    except psycopg.Error as exc:  # pragma: no cover - a server built without ICU
        pytest.skip(f"this PostgreSQL cannot create an ICU database: {exc}")
    yield pg_url.rsplit("/", 1)[0] + "/" + name
    admin(pg_url, f"DROP DATABASE {name} WITH (FORCE)")


def test_names_sort_by_code_point_whatever_the_locale(icu_registry_url: str,
                                                      tmp_path: Path) -> None:
    names = ["b", "B", "a_1", "a-1", "a.1", "A", "Z9"]
    aliases = ["x_1", "x-1", "X1", "x.1", "x1"]
    listings = []
    for location in (str(tmp_path / "r.db"), icu_registry_url):
        reg = Registry(location)
        for i, name in enumerate(names):
            reg.log_version(project=name, name=name, type="dataset", manifest=manifest(name))
            reg.log_version(project="one", name=name, type="dataset", manifest=manifest(name),
                            aliases=aliases if i == 0 else [])
        listings.append((reg.projects(), [a.name for a in reg.artifacts("one")],
                         reg.resolve("one", "b").aliases))
    assert listings[0] == listings[1] == (sorted([*names, "one"]), sorted(names),
                                          ["latest", *sorted(aliases)])
    with psycopg.connect(icu_registry_url) as conn:  # the database itself sorts otherwise
        rows = conn.execute("SELECT n FROM (VALUES ('a_1'), ('a-1')) AS v(n) ORDER BY n")
        assert [r[0] for r in rows] == ["a_1", "a-1"]


def test_values_postgresql_cannot_store_are_usage_errors(pg_registry_url: str) -> None:
    """A NUL character (PostgreSQL refuses it in text) or a value longer than its column
    (SQLite would keep it) is the caller's mistake: a UsageError, nothing written."""
    registry = Registry(pg_registry_url)
    with pytest.raises(UsageError, match=r"NUL character .*remove it") as nul:
        registry.create_run(project="p", run_id="r1", notes="before\x00after")
    assert "INSERT" not in str(nul.value)  # the message, not the statement
    with pytest.raises(UsageError, match=r"cannot store a value you passed .*shorten"):
        registry.create_run(project="p", run_id="r2", git_commit="f" * 65)
    assert registry.projects() == []  # rolled back whole: not even the project
    run, _ = registry.create_run(project="p", run_id="r3", notes="fine", git_commit="f" * 40)
    assert run.notes == "fine"
    registry.close()
