"""What differs between the registry's two databases, SQLite and PostgreSQL, in one place:
opening (URLs, drivers, connection settings), the write lock, and database errors turned
into reftrack errors. Every statement the registry runs is otherwise the same on both
(SQLAlchemy Core; timestamps are stored tz-aware and read back as UTC, see ``utc``).

**The write lock.** Registry writes are serialised, one writer at a time, on both databases:
a write reads the highest version number, then inserts the next one, then moves aliases, and
two writers doing that at once would race. On SQLite a write transaction starts with ``BEGIN
IMMEDIATE`` (the database's write lock, taken at once). On PostgreSQL it starts with
``SELECT pg_advisory_xact_lock(WRITE_LOCK_KEY)``, a transaction-scoped advisory lock on one
fixed key, in a READ COMMITTED transaction, so every statement after the lock sees what the
previous writer committed. It is released when the transaction commits or rolls back (a crashed
client's too: the server ends its session). Chosen over row locks or SERIALIZABLE retries
because it is simple and plainly correct (version numbers stay gap-free and unique, ``latest``
and aliases are never lost), and registry writes are short (milliseconds: manifests are
stored as a few chunks), so writers queueing costs little. Readers never wait for it: reads
run in REPEATABLE READ transactions (one consistent snapshot each, as on SQLite in WAL mode).
A writer that waited :data:`LOCK_TIMEOUT_MS` gets a :class:`~reftrack.errors.BackendError`
instead of a driver traceback, on both databases.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..errors import BackendError, ReftrackError, UsageError

__all__ = ["LOCK_TIMEOUT_MS", "WRITE_LOCK_KEY", "PgErrors", "begin_write", "make_engine",
           "redact", "registry_url", "scrub", "utc", "watch_errors", "write_error",
           "write_options"]

LOCK_TIMEOUT_MS = 30_000
"""How long a writer waits for the write lock before giving up (SQLite's busy timeout,
PostgreSQL's ``lock_timeout`` for the advisory lock)."""

WRITE_LOCK_KEY = 0x7265_6674_7261_636B
"""The advisory lock key of registry writes on PostgreSQL (``b"reftrack"`` as a signed 64-bit
integer). Advisory locks are per database: registries in other databases never contend."""

_SQLITE_BUSY = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED
_PG_LOCK_TIMEOUT = "55P03"  # lock_not_available
_PG_CONFLICTS = {"40001": "a serialization failure", "40P01": "a deadlock"}
_DRIVERS = {"postgresql": "psycopg", "postgres": "psycopg"}  # plain URLs -> psycopg (v3)
_POSTGRES_EXTRA = "pip install 'reftrack[postgres]'"


def redact(location: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``."""
    return re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", location)


def scrub(text: str, url: str) -> str:
    """``text`` (a driver's message) with the password of ``url`` never shown."""
    text = redact(text)
    try:
        password = sa.engine.make_url(url).password if "://" in url else None
    except sa.exc.ArgumentError:
        password = None
    for secret in {password, unquote(password)} if password else ():
        if len(secret) >= 3:  # shorter ones would garble the message, and say nothing
            text = text.replace(secret, "***")
    return text


def registry_url(location: str) -> str:
    """The SQLAlchemy URL of a registry location: a path is an SQLite file (a directory holds
    ``registry.db``); ``postgresql://`` and ``postgres://`` use the psycopg (v3) driver."""
    if "://" in location:
        scheme, _, rest = location.partition("://")
        driver = _DRIVERS.get(scheme.lower())
        return f"postgresql+{driver}://{rest}" if driver else location
    path = Path(location).expanduser()
    if path.exists() and path.is_dir():
        path = path / "registry.db"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot create the registry directory {path.parent} ({exc.strerror}); set "
            "REFTRACK_REGISTRY or --registry to a writable path"
        ) from exc
    return f"sqlite:///{path.resolve()}"


def make_engine(url: str, location: str) -> Engine:
    """An engine for a registry at ``url`` (``location``: the same, redacted, for messages),
    set up for its database (see the module docstring). Other databases are refused: the
    registry's guarantees are only tested, and its write lock only exists, on these two."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise UsageError(
            f"cannot open registry {location!r}: {scrub(str(exc), url)}. Give a file path or "
            "a URL such as postgresql://user@host/db"
        ) from exc
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise UsageError(
            f"cannot open registry {location!r}: a registry is an SQLite file (a path or "
            f"sqlite:///path) or a PostgreSQL database (postgresql://user@host/db), not "
            f"{backend}://"
        )
    options: dict[str, Any] = {}
    if backend == "postgresql":
        connect_args: dict[str, Any] = {"application_name": "reftrack"}
        if "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = 10
        options = {"isolation_level": "REPEATABLE READ", "pool_pre_ping": True,
                   "connect_args": connect_args}
    try:
        engine = sa.create_engine(parsed, **options)
    except ImportError as exc:
        if backend != "postgresql":  # pragma: no cover - sqlite3 is part of Python
            raise
        driver = parsed.get_driver_name()
        advice = (f"install it: {_POSTGRES_EXTRA}" if driver == "psycopg" else
                  f"install it, or use postgresql:// (psycopg: {_POSTGRES_EXTRA})")
        raise UsageError(
            f"registry {location} is a PostgreSQL database, and its driver ({driver}) is not "
            f"installed; {advice}"
        ) from exc
    except sa.exc.ArgumentError as exc:
        raise UsageError(f"cannot open registry {location!r}: {scrub(str(exc), url)}") \
            from exc
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
    return engine


def watch_errors(engine: Engine, url: str, location: str) -> PgErrors | None:
    """Turn ``engine``'s PostgreSQL errors into reftrack errors (see :class:`PgErrors`);
    None on SQLite (its one such error, a locked database, is mapped by ``write_error``)."""
    if engine.dialect.name != "postgresql":
        return None
    hook = PgErrors(url, location)
    sa.event.listen(engine, "handle_error", hook)
    return hook


def write_options(engine: Engine) -> dict[str, Any]:
    """Execution options of a write connection: ``BEGIN IMMEDIATE`` on SQLite (see
    ``_sqlite_begin``), READ COMMITTED on PostgreSQL (each statement after the lock sees the
    last writer's commit; a REPEATABLE READ snapshot would predate it)."""
    if engine.dialect.name == "postgresql":
        return {"reftrack_write": True, "isolation_level": "READ COMMITTED"}
    return {"reftrack_write": True}


def begin_write(conn: Connection) -> None:
    """The first statements of a write transaction: take the write lock (PostgreSQL; SQLite
    took it with ``BEGIN IMMEDIATE``)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(LOCK_TIMEOUT_MS)}")
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(WRITE_LOCK_KEY)))


def _locked_error(location: str) -> BackendError:
    return BackendError(
        f"registry {location} stayed locked by another writer for "
        f"{LOCK_TIMEOUT_MS / 1000:g} s (a long `reftrack gc`, or another process logging); "
        "retry when it has finished",
        location,
    )


def write_error(exc: sa.exc.DBAPIError, location: str) -> ReftrackError | None:
    """The reftrack error for a write that found the registry locked (SQLite; PostgreSQL's
    are mapped as they happen, by :class:`PgErrors`); None for any other error."""
    if getattr(exc.orig, "sqlite_errorcode", None) in _SQLITE_BUSY:
        return _locked_error(location)
    return None


class PgErrors:
    """PostgreSQL errors that are not the caller's doing, as reftrack errors (an engine
    ``handle_error`` hook, so that reads and writes alike raise them): the server
    unreachable or refusing the connection, a lock wait that timed out, a serialization
    failure or deadlock; and a value it cannot store (a NUL character, a value too long for
    its column) as the caller's :class:`~reftrack.errors.UsageError`. Driver messages have
    the URL's password removed."""

    def __init__(self, url: str, location: str) -> None:
        self.url = url
        self.location = location
        self.opened = False
        """Set once the registry is open: an unreachable server is then a
        :class:`~reftrack.errors.BackendError` (it was there), no longer the
        :class:`~reftrack.errors.UsageError` of a registry that cannot be opened."""

    def __call__(self, context: sa.engine.ExceptionContext) -> None:
        orig = context.original_exception
        if context.is_pre_ping or not isinstance(orig, Exception):
            return  # the pool's liveness check reconnects by itself
        state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        detail = scrub(" ".join(str(orig).split()).rstrip("."), self.url)
        if state == _PG_LOCK_TIMEOUT:
            raise _locked_error(self.location) from orig
        if state in _PG_CONFLICTS:
            raise BackendError(
                f"registry {self.location}: a write met {_PG_CONFLICTS[state]} with a "
                f"concurrent writer and was rolled back ({detail}); retry it", self.location,
            ) from orig
        unreachable = context.is_disconnect or (
            state is None and isinstance(context.sqlalchemy_exception, sa.exc.OperationalError))
        if unreachable and not self.opened:
            raise UsageError(
                f"cannot open registry {self.location} ({detail}); check that the PostgreSQL "
                "server is running and that the URL's host, port, user, password and database "
                "are right (REFTRACK_REGISTRY, --registry)"
            ) from orig
        if unreachable:
            raise BackendError(
                f"lost the connection to registry {self.location} ({detail}); check that the "
                "PostgreSQL server is running and reachable, then retry", self.location,
            ) from orig
        if isinstance(context.sqlalchemy_exception, sa.exc.DataError):
            if "NUL" in detail:
                raise UsageError(
                    f"registry {self.location} cannot store a text containing a NUL character "
                    "(\\x00): PostgreSQL refuses them in text; remove it from the name, notes "
                    "or other text you passed") from orig
            raise UsageError(f"registry {self.location} cannot store a value you passed "
                             f"({detail}); shorten or correct it") from orig


def utc(value: datetime) -> datetime:
    """A timestamp read back, in UTC: PostgreSQL returns it tz-aware in the session's time
    zone, SQLite naive (it was stored in UTC)."""
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get("reftrack_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling is off; _sqlite_begin emits BEGIN instead
    # (SQLAlchemy's documented recipe for SQLite transactions).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(LOCK_TIMEOUT_MS)}")
    _wal(cursor)
    cursor.close()


def _wal(cursor: Any) -> None:
    """Switch the database to WAL (once: it stays so). SQLite does not call the busy handler
    for this switch, so a connection opened while another process holds a lock (8 processes
    opening a fresh registry at once) gets "database is locked" at once: wait and retry, up
    to the lock timeout, then let the error through (mapped to the usual locked error)."""
    import sqlite3
    import time

    deadline = time.monotonic() + LOCK_TIMEOUT_MS / 1000
    pause = 0.01
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)
