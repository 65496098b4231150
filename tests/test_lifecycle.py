"""Lifecycle on moto's S3 server: ttl with a controllable clock, project default ttl,
delete/restore, and gc that keeps shared blobs and never races a concurrent log.

Versions reference objects in a moto bucket (``log_files``); managed files go to a local blob
store unless a test says otherwise (the s3:// and gs:// stores have their own tests below)."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from clocks import Clock

import reftrack
from reftrack.errors import BlobsBeingCollected, NotFound, UsageError
from reftrack.lifecycle import parse_duration

T0 = datetime(2026, 1, 1, tzinfo=UTC)

# Every test here runs on an SQLite and on a PostgreSQL registry (pg_fixtures.py).
pytestmark = pytest.mark.usefixtures("each_registry")


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


class Bucket:
    """Where ``log_files`` puts the objects its versions reference."""

    client: Any = None
    name = ""


REFS = Bucket()


@pytest.fixture(autouse=True)
def references_bucket(request: pytest.FixtureRequest) -> None:
    if "gcs" in request.fixturenames:
        REFS.client = None  # this test runs against the GCS emulator only
        return
    REFS.client = request.getfixturevalue("s3")
    REFS.name = request.getfixturevalue("bucket")


@pytest.fixture
def settings(clock: Clock, tmp_path: Path) -> reftrack.Settings:
    return reftrack.Settings.from_env(clock=clock, blob_store=str(tmp_path / "blobs"))


def log_files(settings: reftrack.Settings, root: Path, files: dict[str, bytes], *,
              name: str = "ds", ttl: Any = "unset", aliases: list[str] | None = None,
              managed: bool = False, upload: bool = True) -> reftrack.Artifact:
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    with reftrack.init(project="lc", job_type="ingest", settings=settings) as run:
        art = reftrack.Artifact(name, type="dataset", settings=settings)
        for rel, data in files.items():
            if managed:
                art.add_file(root / rel)
            elif REFS.client is not None:
                key = f"refs/{root.name}/{rel}"
                if upload:
                    REFS.client.put_object(Bucket=REFS.name, Key=key, Body=data)
                art.add_reference(f"s3://{REFS.name}/{key}")
            else:
                art.add_reference(str(root / rel))
        if ttl != "unset":
            art.ttl = ttl
        run.log_artifact(art, aliases=aliases)
    return art


def versions(settings: reftrack.Settings, name: str = "lc/ds") -> list[str]:
    return [a.version for a in reftrack.Api(settings=settings).artifact_versions(name)]


def test_ttl_before_logging_expires_with_the_clock(settings: reftrack.Settings, clock: Clock,
                                                   tmp_path: Path) -> None:
    v0 = log_files(settings, tmp_path / "a", {"x": b"1"})
    v1 = log_files(settings, tmp_path / "b", {"x": b"2"}, ttl=timedelta(days=30))
    assert v1.ttl == timedelta(days=30) and v1.expires_at == T0 + timedelta(days=30)
    api = reftrack.Api(settings=settings)
    clock.advance(days=29)
    assert api.artifact("lc/ds:latest").version == "v1"
    clock.advance(days=2)
    assert versions(settings) == ["v0"]  # expired versions disappear from queries
    assert api.artifact("lc/ds:latest").version == "v0"  # latest moved back
    with pytest.raises(NotFound, match="expired on 2026-01-31"):
        api.artifact("lc/ds:v1")
    summary = api.artifact_collections("lc")[0]
    assert (summary.versions, summary.latest) == (1, "v0")
    dry = api.gc(dry_run=True)
    assert [(v.version, v.reason) for v in dry.versions] == [("lc/ds:v1", "expired")]
    assert versions(settings) == ["v0"] and dry.dry_run
    api.gc()
    with pytest.raises(NotFound, match="no version v1"):
        api.artifact("lc/ds:v1")
    assert v0.version == "v0"


def test_ttl_after_logging_and_project_default(settings: reftrack.Settings, clock: Clock,
                                               tmp_path: Path) -> None:
    api = reftrack.Api(settings=settings)
    keep = log_files(settings, tmp_path / "a", {"x": b"1"}, ttl=None)  # explicitly forever
    plain = log_files(settings, tmp_path / "b", {"x": b"2"})
    assert plain.ttl is None and api.project_ttl("lc") is None
    assert api.set_project_ttl("lc", timedelta(days=10)) == 1  # governs plain, not keep
    assert api.artifact("lc/ds:v1").ttl == timedelta(days=10)
    later = log_files(settings, tmp_path / "c", {"x": b"3"})
    assert later.expires_at == T0 + timedelta(days=10)
    fetched = api.artifact("lc/ds:v2")
    fetched.ttl = timedelta(days=100)  # after logging: its own ttl wins
    clock.advance(days=11)
    assert versions(settings) == ["v0", "v2"]
    assert keep.ttl is None
    with pytest.raises(UsageError, match="timedelta"):
        fetched.ttl = 30  # type: ignore[assignment]
    api.set_project_ttl("lc", None)
    assert versions(settings) == ["v0", "v1", "v2"]  # the default no longer applies


def test_delete_aliases_restore_and_grace(settings: reftrack.Settings, clock: Clock,
                                          tmp_path: Path) -> None:
    api = reftrack.Api(settings=settings)
    log_files(settings, tmp_path / "a", {"x": b"1"})
    best = log_files(settings, tmp_path / "b", {"x": b"2"}, aliases=["best"])
    with pytest.raises(UsageError, match="aliases best"):
        best.delete()
    best.delete(delete_aliases=True)
    assert versions(settings) == ["v0"] and api.artifact("lc/ds:latest").version == "v0"
    with pytest.raises(NotFound, match=r"was deleted on .*reftrack restore lc/ds:v1"):
        api.artifact("lc/ds:v1")
    with pytest.raises(NotFound, match="alias 'best'"):
        api.artifact("lc/ds:best")
    clock.advance(days=6)
    assert api.gc().versions == []  # within the grace period: kept
    restored = api.restore("lc/ds:v1")
    assert restored.version == "v1" and api.artifact("lc/ds:latest").version == "v1"
    assert restored.aliases == ["latest"]  # the deleted aliases stay deleted
    with pytest.raises(UsageError, match="not deleted"):
        api.restore("lc/ds:v1")
    restored.delete()
    clock.advance(days=8)
    report = api.gc()
    assert [(v.version, v.reason) for v in report.versions] == [("lc/ds:v1", "deleted")]
    with pytest.raises(NotFound, match="purged"):
        api.restore("lc/ds:v1")
    with pytest.raises(UsageError, match="version number"):
        api.restore("lc/ds:best")


def test_logging_identical_content_revives_a_deleted_version(settings: reftrack.Settings,
                                                             tmp_path: Path) -> None:
    art = log_files(settings, tmp_path / "a", {"x": b"1"})
    art.delete()
    again = log_files(settings, tmp_path / "a", {"x": b"1"}, upload=False)  # same version
    assert again.version == "v0" and again.new_version is False
    assert versions(settings) == ["v0"]


def test_gc_keeps_blobs_that_any_remaining_version_shares(settings: reftrack.Settings,
                                                          clock: Clock, tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    first = log_files(settings, tmp_path / "v0", {"shared": b"shared", "only0": b"zero"},
                      managed=True)
    log_files(settings, tmp_path / "v1", {"shared": b"shared", "only1": b"one"}, managed=True)
    log_files(settings, tmp_path / "o", {"shared": b"shared"}, name="other", managed=True)

    def stored() -> int:
        return sum(1 for p in blobs.rglob("*") if p.is_file())

    assert stored() == 3  # shared once, only0, only1
    first.delete()
    clock.advance(days=8)
    report = reftrack.Api(settings=settings).gc()
    assert [v.version for v in report.versions] == ["lc/ds:v0"]
    assert len(report.blobs) == 1 and report.blobs[0].endswith(
        "/" + __import__("hashlib").sha256(b"zero").hexdigest())
    assert stored() == 2
    api = reftrack.Api(settings=settings)
    api.artifact("lc/ds:v1").delete()
    clock.advance(days=8)
    api.gc()
    assert stored() == 1  # the shared blob stays for lc/other
    assert api.artifact("lc/other:v0").verify().passed
    api.artifact("lc/other:v0").delete()
    clock.advance(days=8)
    api.gc()
    assert stored() == 0


def test_gc_never_deletes_a_blob_a_pending_log_uses(settings: reftrack.Settings,
                                                    clock: Clock, tmp_path: Path) -> None:
    old = log_files(settings, tmp_path / "a", {"f": b"payload"}, managed=True)
    old.delete()
    clock.advance(days=8)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "f").write_bytes(b"payload")
    art = reftrack.Artifact("ds2", type="dataset", settings=settings)
    art.add_file(tmp_path / "b" / "f")  # found the blob (dedup) and leased it
    report = reftrack.Api(settings=settings).gc()  # purges v0, the blob's only user
    assert [v.version for v in report.versions] == ["lc/ds:v0"] and report.blobs == []
    with reftrack.init(project="lc", settings=settings) as run:
        run.log_artifact(art)
    assert art.verify().passed  # the blob is there
    art.delete()
    clock.advance(days=8)
    assert len(reftrack.Api(settings=settings).gc().blobs) == 1  # now it can go


def test_concurrent_gc_and_logs_lose_nothing(tmp_path: Path, bucket: str) -> None:
    settings = reftrack.Settings.from_env(blob_store=f"s3://{bucket}/blobs/",
                                          grace=timedelta(hours=1))
    src = tmp_path / "src"
    src.mkdir()
    (src / "common").write_bytes(b"common bytes")
    stop = threading.Event()
    errors: list[BaseException] = []

    def collector() -> None:
        api = reftrack.Api(settings=settings)
        while not stop.wait(0.05):  # a maintenance loop: gc, pause, gc ...
            try:
                api.gc(grace=timedelta(0))
            except BaseException as exc:  # surfaced below
                errors.append(exc)
                return

    thread = threading.Thread(target=collector)
    thread.start()
    try:
        for i in range(12):
            (src / "own").write_bytes(f"own {i}".encode())
            with reftrack.init(project="cc", settings=settings) as run:
                art = reftrack.Artifact("ds", type="dataset", settings=settings)
                art.add_file(src / "common")
                art.add_file(src / "own")
                run.log_artifact(art)
            if i % 2:
                art.delete()  # grace 0 in the collector: purged at its next pass
    finally:
        stop.set()
        thread.join(timeout=60)
    assert errors == []
    api = reftrack.Api(settings=settings)
    api.gc(grace=timedelta(0))
    remaining = api.artifact_versions("cc/ds")
    assert [v.version for v in remaining] == [f"v{i}" for i in range(0, 12, 2)]
    for version in remaining:
        assert version.verify(deep=True).passed, version.qualified_name


def test_protected_versions_are_neither_deleted_nor_purged(settings: reftrack.Settings,
                                                           clock: Clock, tmp_path: Path) -> None:
    art = log_files(settings, tmp_path / "a", {"x": b"1"}, ttl=timedelta(days=1))
    registry = reftrack.Api(settings=settings)._ctx.registry
    registry.set_protected(registry.resolve("lc", "ds", "v0"), True)
    with pytest.raises(UsageError, match="unprotect"):
        reftrack.Api(settings=settings).artifact("lc/ds:v0").delete()
    clock.advance(days=2)
    report = reftrack.Api(settings=settings).gc()
    assert report.versions == [] and report.kept_protected == ["lc/ds:v0"]
    assert art.version == "v0"


def test_referenced_bucket_objects_are_never_deleted(settings: reftrack.Settings, clock: Clock,
                                                     tmp_path: Path) -> None:
    art = log_files(settings, tmp_path / "data", {"x": b"1"})
    art.delete()
    clock.advance(days=8)
    report = reftrack.Api(settings=settings).gc()
    assert [v.version for v in report.versions] == ["lc/ds:v0"] and report.blobs == []
    kept = REFS.client.get_object(Bucket=REFS.name, Key="refs/data/x")["Body"].read()
    assert kept == b"1"  # the referenced object is untouched: reftrack does not own it


@pytest.mark.parametrize(("text", "expected"), [
    ("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("1d12h", timedelta(hours=36)),
    ("2w", timedelta(weeks=2)), ("none", None), ("90m", timedelta(minutes=90)),
])
def test_parse_duration(text: str, expected: timedelta | None) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["30", "abc", "0d", "3 days", "-1d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


def test_version_numbers_are_never_given_twice(settings: reftrack.Settings, clock: Clock,
                                               tmp_path: Path) -> None:
    log_files(settings, tmp_path / "a", {"x": b"1"})
    gone = log_files(settings, tmp_path / "b", {"x": b"2"})
    gone.delete()
    clock.advance(days=8)
    reftrack.Api(settings=settings).gc()
    assert log_files(settings, tmp_path / "c", {"x": b"3"}).version == "v2"


def test_gc_deletes_unreferenced_blobs_in_a_gcs_store(gcs: Any, tmp_path: Path) -> None:
    settings = reftrack.Settings.from_env(blob_store=f"gs://{gcs.bucket}/blobs/")
    keep = log_files(settings, tmp_path / "a", {"k": b"keep me"}, name="keep", managed=True)
    gone = log_files(settings, tmp_path / "b", {"g": b"delete me"}, name="gone", managed=True)
    gone.delete()
    api = reftrack.Api(settings=settings)
    report = api.gc(grace=timedelta(0))
    assert [v.version for v in report.versions] == ["lc/gone:v0"] and len(report.blobs) == 1
    assert report.ok
    names = {k for k in gcs.emulator.storage.objects.get(gcs.bucket, {})}
    assert len(names) == 1 and keep.verify().passed


def test_gc_on_an_s3_blob_store_keeps_shared_blobs(s3: Any, bucket: str,
                                                   tmp_path: Path) -> None:
    """On moto's server: two versions share a managed file in an s3:// blob store; gc of one
    keeps the shared blob and removes every version of the other's own blob."""
    settings = reftrack.Settings.from_env(blob_store=f"s3://{bucket}/blobs/")
    first = log_files(settings, tmp_path / "v0", {"shared": b"shared", "own": b"own 0"},
                      managed=True)
    log_files(settings, tmp_path / "v1", {"shared": b"shared", "own": b"own 1"}, managed=True)

    def blob_versions() -> dict[str, int]:
        found: dict[str, int] = {}
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket,
                                                                       Prefix="blobs/"):
            for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                found[item["Key"].rpartition("/")[2][:8]] = \
                    found.get(item["Key"].rpartition("/")[2][:8], 0) + 1
        return found

    import hashlib

    own0 = hashlib.sha256(b"own 0").hexdigest()[:8]
    shared = hashlib.sha256(b"shared").hexdigest()[:8]
    assert set(blob_versions()) == {own0, shared, hashlib.sha256(b"own 1").hexdigest()[:8]}
    first.delete()
    report = reftrack.Api(settings=settings).gc(grace=timedelta(0))
    assert report.ok and [b.rpartition("/")[2][:8] for b in report.blobs] == [own0]
    left = blob_versions()
    assert own0 not in left and shared in left  # every version of the own blob is gone
    assert reftrack.Api(settings=settings).artifact("lc/ds:v1").verify(deep=True).passed


def test_add_dir_leases_its_blobs_in_one_transaction(settings: reftrack.Settings,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from reftrack.registry import Registry

    calls: list[int] = []
    real = Registry.lease_blobs

    def spy(self: Registry, store: str, sha256s: list[str]) -> None:
        calls.append(len(sha256s))
        real(self, store, sha256s)

    monkeypatch.setattr(Registry, "lease_blobs", spy)
    src = tmp_path / "many"
    src.mkdir()
    for i in range(20):
        (src / f"f{i}").write_bytes(f"file {i}".encode())
    art = reftrack.Artifact("dir", type="code", settings=settings)
    art.add_dir(src)
    assert calls == [20] and len(art.manifest) == 20  # one write, not one per file


# -- gc claims: the registry decides, the caller deletes ------------------------------------

WEEK = timedelta(days=7)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_gc_claims_unreferenced_blobs_and_leases_wait_for_them(settings: reftrack.Settings,
                                                               clock: Clock,
                                                               tmp_path: Path) -> None:
    from reftrack.registry import Registry
    from reftrack.registry import schema as t

    log_files(settings, tmp_path / "k", {"kept": b"kept"}, managed=True)
    gone = log_files(settings, tmp_path / "g", {"gone": b"gone"}, name="old", managed=True)
    gone.delete()
    registry = Registry(settings.registry, clock=clock)
    [store] = registry.gc_purge(timedelta(0), dry_run=True).stores
    sha = {name: _sha(name.encode()) for name in ("kept", "gone", "stray", "leased")}
    shas = list(sha.values())
    clock.advance(days=1)
    registry.lease_blobs(store, [sha["leased"]])  # an add_file building a version

    def claims() -> int:
        with registry.engine.connect() as conn:
            return len(conn.execute(sa.select(t.blob_claims)).all())

    # dry runs claim nothing; the grace decides whether the deleted version still counts
    assert registry.gc_claim_blobs(store, shas, lease_window=WEEK,
                                   dry_run_grace=timedelta(0)) == [sha["gone"], sha["stray"]]
    assert registry.gc_claim_blobs(store, shas, lease_window=WEEK,
                                   dry_run_grace=timedelta(days=30)) == [sha["stray"]]
    assert claims() == 0
    clock.advance(hours=2)  # a lease older than the window holds nothing
    assert registry.gc_claim_blobs(store, shas, lease_window=timedelta(hours=1),
                                   dry_run_grace=timedelta(days=30)) == [sha["stray"],
                                                                         sha["leased"]]

    purged = registry.gc_purge(timedelta(0), lease_window=WEEK)
    assert purged.versions == [("lc/old:v0", "deleted")] and purged.manifests == 1
    claimed = registry.gc_claim_blobs(store, shas, lease_window=WEEK,
                                      claim_for=timedelta(minutes=10))
    assert claimed == [sha["gone"], sha["stray"]] and claims() == 2
    with pytest.raises(BlobsBeingCollected, match="a gc is deleting") as caught:
        registry.lease_blobs(store, [sha["kept"], sha["gone"]])
    assert caught.value.retry_after == 600
    with registry.engine.connect() as conn:  # the refused lease left nothing behind
        leased = set(conn.execute(sa.select(t.blob_leases.c.sha256)).scalars())
    assert sha["kept"] not in leased
    registry.lease_blobs(store, [sha["kept"]])  # blobs nobody claimed lease as before
    registry.gc_release_blobs(store, [sha["gone"]])
    registry.lease_blobs(store, [sha["gone"]])  # released: leasable again
    clock.advance(minutes=4)
    with pytest.raises(BlobsBeingCollected) as caught:
        registry.lease_blobs(store, [sha["stray"]])
    assert caught.value.retry_after == 360
    clock.advance(minutes=7)
    registry.lease_blobs(store, [sha["stray"]])  # an abandoned claim expires by itself
    registry.gc_purge(WEEK, lease_window=WEEK)
    assert claims() == 0  # expired claims are dropped by the next gc
    with pytest.raises(UsageError, match="claim_for or dry_run_grace"):
        registry.gc_claim_blobs(store, shas, lease_window=WEEK)
    with pytest.raises(UsageError, match="positive"):
        registry.gc_claim_blobs(store, shas, lease_window=WEEK, claim_for=timedelta(0))
    registry.close()


def test_add_file_waits_while_gc_deletes_its_blob_then_stores_it_again(
        settings: reftrack.Settings, clock: Clock, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The race gc's claims close: gc found the blob unreferenced and is deleting it when
    add_file (which would otherwise find it and reuse it) wants it."""
    import reftrack.lifecycle
    from reftrack.registry import Registry

    old = log_files(settings, tmp_path / "a", {"f": b"payload"}, managed=True)
    old.delete()
    clock.advance(days=8)
    registry = Registry(settings.registry, clock=clock)
    [store] = registry.gc_purge(WEEK, lease_window=WEEK).stores
    sha = _sha(b"payload")
    assert registry.gc_claim_blobs(store, [sha], lease_window=WEEK,
                                   claim_for=timedelta(minutes=10)) == [sha]
    [blob] = [p for p in (tmp_path / "blobs").rglob(sha) if p.is_file()]
    waits: list[float] = []

    def gc_finishes(seconds: float) -> None:  # while add_file waits, gc deletes and releases
        waits.append(seconds)
        blob.unlink()
        registry.gc_release_blobs(store, [sha])

    monkeypatch.setattr(reftrack.lifecycle, "_sleep", gc_finishes)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "f").write_bytes(b"payload")
    with reftrack.init(project="lc", settings=settings) as run:
        art = reftrack.Artifact("ds2", type="dataset", settings=settings)
        art.add_file(tmp_path / "b" / "f")
        run.log_artifact(art)
    assert len(waits) == 1 and blob.read_bytes() == b"payload"  # stored again
    assert art.verify(deep=True).passed
    registry.close()


def test_gc_deletes_nothing_once_its_claim_runs_out(settings: reftrack.Settings,
                                                    clock: Clock, tmp_path: Path) -> None:
    from reftrack.lifecycle import collect_garbage
    from reftrack.registry import Registry
    from reftrack.registry import schema as t

    art = log_files(settings, tmp_path / "a", {"a": b"1", "b": b"2", "c": b"3"}, managed=True)
    art.delete()
    clock.advance(days=8)
    readings = iter([0.0, 0.0, 479.0, 481.0])  # claimed at 0; 80% of 600 s is 480 s

    report = collect_garbage(reftrack.Api(settings=settings)._ctx, claim_seconds=600,
                             monotonic=lambda: next(readings))
    assert len(report.blobs) == 2 and not report.ok
    [late] = report.blob_errors
    assert "claim on it ran out" in late and "the next gc deletes it" in late
    left = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert len(left) == 1 and left[0].name in late  # the one left is the one reported
    registry = Registry(settings.registry, clock=clock)
    with registry.engine.connect() as conn:
        assert conn.execute(sa.select(t.blob_claims)).all() == []  # released all the same
    registry.close()
    again = reftrack.Api(settings=settings).gc()
    assert again.ok and len(again.blobs) == 1
    assert not [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
