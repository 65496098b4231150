import threading
from typing import Any

import pytest
import sqlalchemy as sa

from reftrack.errors import ManifestError, NotFound, UsageError
from reftrack.manifest import Manifest, ManifestEntry
from reftrack.registry import Registry, parse_artifact_path, store
from reftrack.registry import schema as t


def manifest(*versions: str) -> Manifest:
    return Manifest(
        ManifestEntry(path=f"f{i}", ref=f"s3://bkt/f{i}", version_id=v, etag="e" * 32, size=1)
        for i, v in enumerate(versions)
    )


@pytest.fixture
def reg(registry_location: str) -> Registry:
    """A fresh registry, on SQLite and on PostgreSQL (``registry_location``, pg_fixtures.py)."""
    return Registry(registry_location)


def log(reg: Registry, m: Manifest, name: str = "ds", **kw):
    return reg.log_version(project="p", name=name, type=kw.pop("type", "dataset"), manifest=m, **kw)


def counts(reg: Registry) -> dict[str, int]:
    with reg.engine.connect() as conn:
        return {
            table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in (t.projects, t.artifacts, t.versions, t.manifests, t.manifest_chunks,
                          t.aliases)
        }


def test_versions_count_up_and_latest_moves(reg: Registry) -> None:
    v0, created0 = log(reg, manifest("a"))
    v1, created1 = log(reg, manifest("b"))
    assert (v0.version, created0, v1.version, created1) == ("v0", True, "v1", True)
    assert reg.resolve("p", "ds").version == "v1"
    assert reg.resolve("p", "ds", "latest").aliases == ["latest"]
    assert "latest" not in reg.resolve("p", "ds", "v0").aliases


def test_same_manifest_twice_creates_no_version(reg: Registry) -> None:
    v0, _ = log(reg, manifest("a"))
    again, created = log(reg, manifest("a"), aliases=["best"])
    assert not created and again.id == v0.id and again.version == "v0"
    assert "best" in again.aliases
    assert [v.version for v in reg.versions("p", "ds")] == ["v0"]
    # the same digest in another artifact is a new artifact's v0, sharing the stored manifest
    other, created = log(reg, manifest("a"), name="copy")
    assert created and other.version == "v0"
    assert counts(reg)["manifests"] == 1


def test_aliases_are_unique_per_artifact_and_move(reg: Registry) -> None:
    log(reg, manifest("a"), aliases=["best", "prod"])
    log(reg, manifest("b"), aliases=["best"])
    assert reg.resolve("p", "ds", "best").version == "v1"
    assert reg.resolve("p", "ds", "prod").version == "v0"
    assert reg.resolve("p", "ds", "v0").aliases == ["prod"]
    moved = reg.set_alias(reg.resolve("p", "ds", "v0"), "best")
    assert moved.aliases == ["best", "prod"]
    assert reg.resolve("p", "ds", "v1").aliases == ["latest"]
    # aliases of another artifact are independent
    log(reg, manifest("c"), name="other", aliases=["best"])
    assert reg.resolve("p", "ds", "best").version == "v0"


def test_latest_passed_as_alias_is_accepted(reg: Registry) -> None:
    v0, _ = log(reg, manifest("a"), aliases=["latest"])
    assert v0.aliases == ["latest"]


@pytest.mark.parametrize("alias", ["a/b", "a:b", "v3", "", "with space"])
def test_bad_aliases_are_refused_and_nothing_is_written(reg: Registry, alias: str) -> None:
    before = counts(reg)
    with pytest.raises(UsageError, match="alias"):
        log(reg, manifest("a"), aliases=[alias])
    assert counts(reg) == before


@pytest.mark.parametrize(
    ("field", "value"), [("project", "a/b"), ("name", "x:y"), ("type", ""), ("name", "-lead")]
)
def test_bad_names_are_refused(reg: Registry, field: str, value: str) -> None:
    kw = {"project": "p", "name": "n", "type": "dataset", "manifest": manifest("a")}
    kw[field] = value
    with pytest.raises(UsageError, match="invalid"):
        reg.log_version(**kw)
    assert counts(reg)["versions"] == 0


def test_type_is_fixed_per_artifact(reg: Registry) -> None:
    log(reg, manifest("a"))
    with pytest.raises(UsageError, match="of type 'dataset', not 'model'"):
        log(reg, manifest("b"), type="model")
    assert [v.version for v in reg.versions("p", "ds")] == ["v0"]


def test_metadata_must_be_json(reg: Registry) -> None:
    with pytest.raises(UsageError, match="JSON"):
        log(reg, manifest("a"), metadata={"x": object()})
    log(reg, manifest("a"), metadata={"lr": 0.1, "tags": ["a"], "nested": {"k": None}})
    assert reg.resolve("p", "ds").metadata == {"lr": 0.1, "tags": ["a"], "nested": {"k": None}}


def test_a_failure_mid_log_leaves_no_trace(reg: Registry, monkeypatch) -> None:
    log(reg, manifest("a"))
    before = counts(reg)

    def boom(*args, **kwargs):
        raise RuntimeError("crash while setting aliases")

    monkeypatch.setattr(Registry, "_set_alias", boom)
    with pytest.raises(RuntimeError):
        log(reg, manifest("b"), name="fresh", aliases=["best"])
    assert counts(reg) == before  # no project/artifact/version/manifest/chunk rows
    with pytest.raises(NotFound):
        reg.resolve("p", "fresh")


def test_concurrent_writers_get_distinct_versions(registry_location: str) -> None:
    path = registry_location
    Registry(path)
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            r = Registry(path)  # own engine, like another process
            for j in range(5):
                log(r, manifest(f"w{i}-{j}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert [v.version for v in Registry(path).versions("p", "ds")] == [f"v{i}" for i in range(20)]


def test_large_manifest_is_stored_in_chunks(reg: Registry, monkeypatch) -> None:
    monkeypatch.setattr(store, "CHUNK_BYTES", 4096)
    m = Manifest(
        ManifestEntry(path=f"d/{i:05d}", ref=f"s3://bkt/d/{i:05d}", version_id=f"{i:032x}",
                      etag=f"{i * 7919:032x}", size=i)
        for i in range(3000)
    )
    v, _ = log(reg, m)
    assert counts(reg)["manifest_chunks"] > 3
    back = reg.load_manifest(v.digest)
    assert back.digest == m.digest and len(back) == 3000
    assert v.entry_count == 3000 and v.size == sum(range(3000))


def test_corrupt_stored_manifest_is_detected(reg: Registry) -> None:
    v, _ = log(reg, manifest("a", "b"))
    with reg.engine.begin() as conn:
        conn.execute(t.manifest_chunks.update().values(data=b"garbage"))
    with pytest.raises(ManifestError):
        reg.load_manifest(v.digest)


def test_not_found_messages_name_what_exists(reg: Registry) -> None:
    log(reg, manifest("a"), aliases=["best"])
    with pytest.raises(NotFound, match=r"project 'nope' does not exist.*projects: p"):
        reg.resolve("nope", "ds")
    with pytest.raises(NotFound, match=r"p/other does not exist.*artifacts in p: ds"):
        reg.resolve("p", "other")
    with pytest.raises(NotFound, match=r"no version v9 \(versions are v0..v0\)"):
        reg.resolve("p", "ds", "v9")
    with pytest.raises(NotFound, match=r"no alias 'prod'.*best"):
        reg.resolve("p", "ds", "prod")


def test_registry_locations(tmp_path) -> None:
    folder = tmp_path / "dir"
    folder.mkdir()
    assert Registry(str(folder)).url.endswith("dir/registry.db")
    nested = tmp_path / "a" / "b" / "reg.db"
    Registry(str(nested))
    assert nested.exists()
    assert Registry(f"sqlite:///{tmp_path / 'url.db'}").url.startswith("sqlite:///")
    bad = tmp_path / "notadb"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UsageError, match="not a reftrack registry"):
        Registry(str(bad))
    with pytest.raises(UsageError, match="cannot"):
        Registry("nosuchdialect://x/y")


def test_newer_schema_is_refused(reg: Registry) -> None:
    with reg.engine.begin() as conn:
        conn.execute(t.meta.update().values(value="99"))
    with pytest.raises(UsageError, match="upgrade reftrack"):
        Registry(reg.location)


def test_artifact_paths() -> None:
    p = parse_artifact_path("proj/name:v3")
    assert (p.project, p.name, p.selector) == ("proj", "name", "v3")
    assert parse_artifact_path("proj/name").selector == "latest"
    assert parse_artifact_path("name:best", default_project="d").project == "d"
    for bad in ["", "noproject", "a/b/c:v0", "p/n:", "p/n:a/b", "p/n:x:y"]:
        with pytest.raises(UsageError):
            parse_artifact_path(bad)


def test_runs_and_use_edges(reg: Registry) -> None:
    producer, resumed = reg.create_run(project="p", job_type="ingest", config={"a": 1})
    assert resumed is False
    v, _ = log(reg, manifest("a"), run_pk=producer.pk)
    consumer, _ = reg.create_run(project="p", job_type="train")
    reg.record_use(consumer.pk, v)
    reg.record_use(consumer.pk, v)  # idempotent
    assert [r.id for r in reg.version_users(v.id)] == [consumer.id]
    assert [x.id for x in reg.run_inputs(consumer.pk)] == [v.id]
    assert [x.id for x in reg.run_outputs(producer.pk)] == [v.id]
    assert reg.resolve("p", "ds").run_id == producer.id
    with pytest.raises(UsageError, match="lineage must not loop"):
        reg.record_use(producer.pk, v)
    with pytest.raises(UsageError, match="already exists"):
        reg.create_run(project="p", run_id=producer.id)
    finished = reg.finish_run(consumer.pk, "finished")
    assert finished.state == "finished" and finished.finished_at is not None


def test_version_1_registry_is_upgraded_in_place(tmp_path: Any) -> None:
    """A registry written by reftrack 0.1 (schema 1: runs without the new columns) opens,
    keeps its rows, and gains the schema-2 columns."""


    path = tmp_path / "old.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE reftrack_meta (key VARCHAR(64) PRIMARY KEY, "
                             "value TEXT NOT NULL)"))
        conn.execute(sa.text("INSERT INTO reftrack_meta VALUES ('schema_version', '1')"))
        conn.execute(sa.text("CREATE TABLE projects (id INTEGER PRIMARY KEY, name VARCHAR(128) "
                             "NOT NULL UNIQUE, created_at DATETIME NOT NULL)"))
        conn.execute(sa.text("INSERT INTO projects VALUES (1, 'p', '2026-01-01 00:00:00')"))
        conn.execute(sa.text(
            "CREATE TABLE runs (pk INTEGER PRIMARY KEY, id VARCHAR(64) NOT NULL, project_id "
            "INTEGER NOT NULL, name VARCHAR(256), job_type VARCHAR(128), config JSON NOT NULL, "
            "state VARCHAR(16) NOT NULL, started_at DATETIME NOT NULL, finished_at DATETIME, "
            "host VARCHAR(256), user VARCHAR(256))"))
        conn.execute(sa.text("INSERT INTO runs (pk, id, project_id, config, state, started_at) "
                             "VALUES (1, 'old1', 1, '{\"lr\": 0.1}', 'finished', "
                             "'2026-01-01 00:00:00')"))
    engine.dispose()
    reg = Registry(str(path))
    old = reg.run("p", "old1")
    assert old.config == {"lr": 0.1} and old.summary == {} and old.group is None
    with reg.engine.connect() as conn:
        version = conn.execute(sa.text(
            "SELECT value FROM reftrack_meta WHERE key='schema_version'")).scalar()
    assert version == str(t.SCHEMA_VERSION)
    resumed, again = reg.create_run(project="p", run_id="old1", resume="allow")
    assert again and resumed.state == "running"
    assert reg.log_history(resumed.pk, {"acc": 0.5}, None).summary == {"acc": 0.5}


def test_a_writer_locked_out_gets_a_clear_error(tmp_path: Any) -> None:
    """SQLITE_BUSY after the busy timeout becomes a BackendError naming the registry."""
    from reftrack.errors import BackendError

    reg = Registry(str(tmp_path / "r.db"))
    holder = sa.create_engine(f"sqlite:///{tmp_path / 'r.db'}")
    with holder.connect() as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # another process holds the write lock
        reg.engine.dispose()

        @sa.event.listens_for(reg.engine, "connect")
        def quick(dbapi_connection: Any, _record: Any) -> None:  # wait 0.1 s, not 30 s
            dbapi_connection.execute("PRAGMA busy_timeout=100")

        with pytest.raises(BackendError, match="stayed locked by another writer") as info:
            reg.create_run(project="p")
        assert "r.db" in str(info.value)
        conn.exec_driver_sql("ROLLBACK")


def test_switching_to_wal_waits_when_sqlite_answers_locked_at_once() -> None:
    """Seen in CI: 8 processes opening a fresh registry; one got "database is locked" from
    ``PRAGMA journal_mode=WAL`` (SQLite calls no busy handler there). It is retried."""
    import sqlite3

    from reftrack.registry import dialects

    class Cursor:
        def __init__(self, busy: int) -> None:
            self.busy = busy
            self.sets = 0

        def execute(self, sql: str) -> Any:
            if self.busy:
                self.busy -= 1
                raise sqlite3.OperationalError("database is locked")
            self.sets += sql.endswith("=WAL")
            return self

        def fetchone(self) -> tuple[str]:
            return ("delete",)

    cursor = Cursor(busy=3)
    dialects._wal(cursor)
    assert cursor.busy == 0 and cursor.sets == 1
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        class Broken(Cursor):
            def execute(self, sql: str) -> Any:
                raise sqlite3.OperationalError("disk I/O error")  # not retried
        dialects._wal(Broken(busy=0))
