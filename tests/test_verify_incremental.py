"""Incremental and resumable verification, against moto's server: results kept per entry
(``--since``), interrupted runs resumed, random samples, JUnit XML, and the registry side
(gc purges results, a version-3 registry is upgraded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result
from clocks import Clock
from typer.testing import CliRunner

import reftrack
import reftrack.verify
from reftrack.backends.s3 import S3Backend
from reftrack.cli import app
from reftrack.errors import UsageError
from reftrack.junit import junit_xml, write_junit
from reftrack.registry import Registry
from reftrack.registry import schema as t
from reftrack.settings import Settings
from reftrack.verify import EntryResult, Status, VerifyReport, parse_sample

runner = CliRunner()
SINGLES = 12  # objects referenced one by one, each in its own directory: one HEAD each


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def api(clock: Clock) -> reftrack.Api:
    return reftrack.Api(settings=Settings.from_env(clock=clock))


def cli(*args: str) -> Result:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"reftrack {' '.join(args)} raised {result.exception!r}:\n"
                             f"{result.output}") from result.exception
    return result


def flat(text: str) -> str:
    return " ".join(text.split())


def log_singles(bucket: str, put: Callable[..., str], n: int = SINGLES,
                name: str = "one") -> dict[str, str]:
    """``n`` objects referenced one by one (verified by HEAD); returns path -> version id."""
    versions = {}
    with reftrack.init(project="p") as run:
        art = reftrack.Artifact(name, type="dataset")
        for i in range(n):
            versions[f"e{i:02d}"] = put(bucket, f"k{i:02d}/obj", f"data {i}".encode())
            art.add_reference(f"s3://{bucket}/k{i:02d}/obj", name=f"e{i:02d}")
        run.log_artifact(art)
    return versions


def log_prefix(bucket: str, seed_objects: Callable[..., None], n: int,
               name: str = "ds") -> None:
    seed_objects(bucket, {f"d/f{i:03d}": f"{i}".encode() for i in range(n)})
    with reftrack.init(project="p") as run:
        art = reftrack.Artifact(name, type="dataset")
        art.add_reference(f"s3://{bucket}/d/")
        run.log_artifact(art)


def stored(api: reftrack.Api, name: str = "p/one:v0") -> dict[str, Any]:
    art = api.artifact(name)
    return art._ctx.registry.results(art._logged().id)


class Interrupt:
    """Ctrl-C in the middle of a verification: S3 HEADs raise KeyboardInterrupt from the
    (n+1)-th on (``arm(n)``), until ``disarm()``."""

    def __init__(self) -> None:
        self.limit: int | None = None
        self.calls = 0

    def arm(self, n: int) -> None:
        self.limit, self.calls = n, 0

    def disarm(self) -> None:
        self.limit = None


@pytest.fixture
def interrupt(monkeypatch: pytest.MonkeyPatch) -> Interrupt:
    state = Interrupt()
    original = S3Backend.stat

    def stat(self: S3Backend, uri: Any) -> Any:
        if state.limit is not None:
            state.calls += 1
            if state.calls > state.limit:
                raise KeyboardInterrupt
        return original(self, uri)

    monkeypatch.setattr(S3Backend, "stat", stat)
    return state


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reftrack.verify, "RESULT_BATCH", 5)


# -- results kept per entry; --since -------------------------------------------------------


def test_results_are_stored_per_entry_with_the_time_checked(
        bucket: str, put: Any, api: reftrack.Api, clock: Clock) -> None:
    log_singles(bucket, put)
    report = api.artifact("p/one:v0").verify()
    assert report.checked == SINGLES and report.reused == 0 and report.total == SINGLES
    assert {e.checked_at for e in report.entries} == {clock.now}
    results = stored(api)
    assert sorted(results) == [f"e{i:02d}" for i in range(SINGLES)]
    first = results["e00"]
    assert first.status == "ok" and first.checked_at == clock.now and first.deep is False
    assert first.data["uri"].startswith(f"s3://{bucket}/k00/obj?versionId=")
    clock.advance(hours=1)
    api.artifact("p/one:v0").verify()  # a full verification again: every result replaced
    assert {r.checked_at for r in stored(api).values()} == {clock.now}


def test_since_rechecks_only_stale_entries(bucket: str, put: Any, api: reftrack.Api,
                                           clock: Clock, requests_log: Any) -> None:
    log_singles(bucket, put)
    t0 = clock.now
    api.artifact("p/one:v0").verify()
    clock.advance(hours=20)
    half = api.artifact("p/one:v0").verify(sample=0.5, seed=3)  # 6 entries checked at t0+20h
    recent = {e.path for e in half.entries}
    assert len(recent) == SINGLES // 2

    # everything is fresh: no request at all (not even the bucket's rules)
    clock.advance(hours=1)
    requests_log.clear()
    fresh = api.artifact("p/one:v0").verify(since=timedelta(hours=24))
    assert len(requests_log) == 0 and fresh.requests == 0
    assert fresh.checked == 0 and fresh.reused == SINGLES and fresh.exit_code == 0
    assert fresh.reused_since == clock.now - timedelta(hours=24)
    assert all(e.reused for e in fresh.entries)
    assert {e.checked_at for e in fresh.entries} == {t0, t0 + timedelta(hours=20)}

    # 30h after the first check: the other 6 are stale, and only they are asked for
    clock.advance(hours=9)
    requests_log.clear()
    partial = api.artifact("p/one:v0").verify(since=timedelta(hours=24))
    checked = {e.path for e in partial.entries if not e.reused}
    assert checked == {f"e{i:02d}" for i in range(SINGLES)} - recent
    assert requests_log.count("HEAD") == SINGLES - len(recent) == partial.checked
    assert partial.reused == len(recent) and len(partial.entries) == SINGLES
    assert {stored(api)[p].checked_at for p in checked} == {clock.now}


def test_since_on_a_prefix_lists_once_for_the_stale_entries(
        bucket: str, seed: Any, api: reftrack.Api, clock: Clock, requests_log: Any) -> None:
    log_prefix(bucket, seed, 20)
    api.artifact("p/ds:v0").verify()
    clock.advance(hours=23)
    api.artifact("p/ds:v0").verify(sample=0.5, seed=1)
    clock.advance(hours=2)
    requests_log.clear()
    report = api.artifact("p/ds:v0").verify(since=timedelta(hours=24))
    assert report.checked == 10 and report.reused == 10
    # one listing judges only the stale entries; no HEADs
    assert requests_log.count("GET", "versions") == 1 and requests_log.count("HEAD") == 0


def test_reused_failure_still_fails_and_unreachable_is_rechecked(
        s3: Any, bucket: str, put: Any, api: reftrack.Api, clock: Clock,
        requests_log: Any) -> None:
    versions = log_singles(bucket, put, n=3)
    s3.delete_object(Bucket=bucket, Key="k01/obj", VersionId=versions["e01"])
    first = api.artifact("p/one:v0").verify()
    assert first.exit_code == 1
    clock.advance(minutes=5)
    requests_log.clear()
    again = api.artifact("p/one:v0").verify(since=timedelta(hours=1))
    assert len(requests_log) == 0
    assert again.exit_code == 1 and again.by_status(Status.VERSION_MISSING)[0].reused
    result = cli("verify", "p/one:v0", "--since", "1h")
    assert result.exit_code == 1
    assert "from an earlier check, not checked again now" in flat(result.stdout)
    assert "reused:" in result.stdout  # the table says when the reused result was checked

    # a bucket that cannot be asked gives `unreachable`, which never stands for a check
    for item in s3.list_object_versions(Bucket=bucket).get("Versions", []):
        s3.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])
    s3.delete_bucket(Bucket=bucket)
    gone = api.artifact("p/one:v0").verify()
    assert gone.exit_code == 3
    requests_log.clear()
    later = api.artifact("p/one:v0").verify(since=timedelta(hours=1))
    assert later.checked == 3 and later.reused == 0 and len(requests_log) > 0


def test_deep_reuses_only_deep_results(bucket: str, put: Any, api: reftrack.Api,
                                       requests_log: Any) -> None:
    log_singles(bucket, put, n=4)
    api.artifact("p/one:v0").verify()
    deep = api.artifact("p/one:v0").verify(deep=True, since=timedelta(hours=1))
    assert deep.checked == 4  # shallow results do not stand for a deep check
    assert all(r.deep for r in stored(api).values())
    requests_log.clear()
    shallow = api.artifact("p/one:v0").verify(since=timedelta(hours=1))
    assert shallow.reused == 4 and len(requests_log) == 0  # deep ones do for a shallow one


def test_since_needs_a_logged_version(bucket: str, put: Any) -> None:
    put(bucket, "x", b"x")
    art = reftrack.Artifact("new", type="dataset")
    art.add_reference(f"s3://{bucket}/x")
    with pytest.raises(UsageError, match="not logged yet"):
        art.verify(since=timedelta(hours=1))
    assert art.verify().exit_code == 0  # without since it verifies, storing nothing
    with pytest.raises(UsageError, match="timedelta"):
        art.verify(since=3600)  # type: ignore[arg-type]


# -- interrupted and resumed ---------------------------------------------------------------


def test_interrupted_verification_resumes_where_it_stopped(
        bucket: str, put: Any, api: reftrack.Api, clock: Clock, requests_log: Any,
        interrupt: Interrupt, small_batches: None) -> None:
    log_singles(bucket, put)
    art = api.artifact("p/one:v0")
    registry, version_id = art._ctx.registry, art._logged().id
    started = clock.now
    interrupt.arm(7)
    with pytest.raises(KeyboardInterrupt):
        art.verify(concurrency=1)
    done = stored(api)
    # batches of 5 were stored as they filled; what was decided before Ctrl-C too
    assert len(done) == 7 and {r.status for r in done.values()} == {"ok"}
    mark = registry.last_verification(version_id)
    assert mark is not None and mark.finished_at is None and mark.started_at == started

    interrupt.disarm()  # HEADs work again
    clock.advance(minutes=10)
    requests_log.clear()
    resumed = api.artifact("p/one:v0").verify()
    assert resumed.resumed_from == started and resumed.reused == 7
    assert requests_log.count("HEAD") == SINGLES - 7 == resumed.checked
    assert {e.path for e in resumed.entries if e.reused} == set(done)
    mark = registry.last_verification(version_id)
    assert mark is not None and mark.finished_at == clock.now

    requests_log.clear()
    full = api.artifact("p/one:v0").verify()  # the last one finished: nothing to resume
    assert full.resumed_from is None and requests_log.count("HEAD") == SINGLES


def test_interrupted_twice_resumes_from_the_first_start(
        bucket: str, put: Any, api: reftrack.Api, clock: Clock, requests_log: Any,
        interrupt: Interrupt, small_batches: None) -> None:
    log_singles(bucket, put)
    started = clock.now
    interrupt.arm(4)
    with pytest.raises(KeyboardInterrupt):
        api.artifact("p/one:v0").verify(concurrency=1)
    clock.advance(minutes=1)
    interrupt.arm(4)  # counted afresh: four more HEADs, then Ctrl-C again
    with pytest.raises(KeyboardInterrupt):
        api.artifact("p/one:v0").verify(concurrency=1)
    assert len(stored(api)) == 8
    art = api.artifact("p/one:v0")
    mark = art._ctx.registry.last_verification(art._logged().id)
    assert mark is not None and mark.started_at == started and mark.finished_at is None
    interrupt.disarm()
    requests_log.clear()
    last = api.artifact("p/one:v0").verify()
    assert last.resumed_from == started and requests_log.count("HEAD") == 4


def test_no_resume_and_old_interruptions_check_everything(
        bucket: str, put: Any, api: reftrack.Api, clock: Clock, requests_log: Any,
        interrupt: Interrupt) -> None:
    log_singles(bucket, put)
    interrupt.arm(6)
    with pytest.raises(KeyboardInterrupt):
        api.artifact("p/one:v0").verify(concurrency=1)
    interrupt.disarm()
    requests_log.clear()
    fresh = api.artifact("p/one:v0").verify(resume=False)
    assert fresh.resumed_from is None and requests_log.count("HEAD") == SINGLES

    interrupt.arm(6)
    with pytest.raises(KeyboardInterrupt):
        api.artifact("p/one:v0").verify(concurrency=1)
    interrupt.disarm()
    clock.advance(hours=25)  # an interruption older than a day is not resumed
    requests_log.clear()
    late = api.artifact("p/one:v0").verify()
    assert late.resumed_from is None and late.reused == 0
    assert requests_log.count("HEAD") == SINGLES


def test_resumed_sample_keeps_its_seed(
        bucket: str, put: Any, api: reftrack.Api, requests_log: Any,
        interrupt: Interrupt, small_batches: None) -> None:
    log_singles(bucket, put)
    interrupt.arm(2)
    with pytest.raises(KeyboardInterrupt):
        api.artifact("p/one:v0").verify(sample=0.5, concurrency=1)  # a random seed
    art = api.artifact("p/one:v0")
    mark = art._ctx.registry.last_verification(art._logged().id)
    assert mark is not None and mark.sample == 0.5 and mark.seed is not None
    interrupt.disarm()
    requests_log.clear()
    report = api.artifact("p/one:v0").verify(sample=0.5)
    assert report.seed == mark.seed and report.resumed_from == mark.started_at
    assert report.reused == 2 and report.checked == 4 and requests_log.count("HEAD") == 4
    again = api.artifact("p/one:v0").verify(sample=0.5, seed=mark.seed, resume=False)
    assert {e.path for e in again.entries} == {e.path for e in report.entries}


def test_a_crash_keeps_the_finished_batches(bucket: str, put: Any, api: reftrack.Api,
                                            requests_log: Any, tmp_path: Path) -> None:
    """A hard crash (no exception handler runs) loses only the batch being filled."""
    log_singles(bucket, put)
    script = textwrap.dedent("""
        import os
        import reftrack, reftrack.verify
        from reftrack.backends.s3 import S3Backend
        reftrack.verify.RESULT_BATCH = 5
        original, calls = S3Backend.stat, [0]
        def stat(self, uri):
            calls[0] += 1
            if calls[0] > 12 - 1:
                os._exit(9)  # the process dies here: nothing else runs
            return original(self, uri)
        S3Backend.stat = stat
        reftrack.Api().artifact("p/one:v0").verify(concurrency=1)
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=os.environ.copy(),
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 9, proc.stderr
    # Whole batches of 5 survive the crash; the batch being filled is lost. How many were
    # stored depends on how far the calling thread got with storing while the worker ran
    # ahead (one worker: at most one batch behind), so: 5 or 10, never a part of a batch,
    # never the 11th result.
    done = len(stored(api))
    assert done in (5, 10), done
    requests_log.clear()
    report = api.artifact("p/one:v0").verify()
    assert report.reused == done and requests_log.count("HEAD") == SINGLES - done


def test_cli_ctrl_c_exits_130_and_the_next_run_resumes(
        bucket: str, put: Any, requests_log: Any, small_batches: None,
        interrupt: Interrupt) -> None:
    log_singles(bucket, put)
    interrupt.arm(6)
    result = cli("verify", "p/one:v0")
    assert result.exit_code == 130
    assert "run the same command again to resume" in flat(result.stderr)
    done = len(stored(reftrack.Api()))
    assert done == 6  # every HEAD that answered gave a result, and each one was stored
    interrupt.disarm()
    requests_log.clear()
    again = cli("verify", "p/one:v0")
    assert again.exit_code == 0, again.output
    text = flat(again.stdout)
    assert f"resuming: {done} of {SINGLES} entries already checked since" in text
    assert f"checked {SINGLES - done} of {SINGLES} entries" in text
    assert requests_log.count("HEAD") == SINGLES - done


# -- samples -------------------------------------------------------------------------------


def test_sample_checks_the_right_number_and_says_so(
        s3: Any, bucket: str, put: Any, requests_log: Any) -> None:
    versions = log_singles(bucket, put, n=20)
    requests_log.clear()
    report = reftrack.Api().artifact("p/one:v0").verify(sample=0.1, seed=42)
    assert len(report.entries) == 2 == report.checked and report.total == 20
    assert report.sampled == 0.1 and report.seed == 42
    assert requests_log.count("HEAD") == 2
    sampled = sorted(e.path for e in report.entries)
    same = reftrack.Api().artifact("p/one:v0").verify(sample=0.1, seed=42)
    assert sorted(e.path for e in same.entries) == sampled  # the seed reproduces it

    result = cli("verify", "p/one:v0", "--sample", "10%", "--seed", "42")
    assert result.exit_code == 0, result.output
    text = flat(result.stdout)
    assert "checked 2 of 20 entries (10% sample, seed 42) with" in text
    assert "SAMPLE INTACT: all 2 sampled entries match (a 10% sample of 20 entries, seed 42: " \
           "not a full verification)" in text
    data = json.loads(cli("verify", "p/one:v0", "--sample", "0.1", "--seed", "42",
                          "--json").stdout)
    assert data["sampled"] == 0.1 and data["seed"] == 42 and data["checked"] == 2
    assert data["total"] == 20 and len(data["entries"]) == 2 and data["exit_code"] == 0

    # the exit code comes from the sample only
    outside = next(p for p in sorted(versions) if p not in sampled)
    s3.delete_object(Bucket=bucket, Key=f"k{outside[1:]}/obj", VersionId=versions[outside])
    assert cli("verify", "p/one:v0", "--sample", "10%", "--seed", "42").exit_code == 0
    assert cli("verify", "p/one:v0").exit_code == 1
    inside = sampled[0]
    s3.delete_object(Bucket=bucket, Key=f"k{inside[1:]}/obj", VersionId=versions[inside])
    failed = cli("verify", "p/one:v0", "--sample", "10%", "--seed", "42")
    assert failed.exit_code == 1
    assert "FAILED: 1 of 2 sampled entries" in flat(failed.stdout)


def test_sample_without_seed_reports_the_seed(bucket: str, put: Any) -> None:
    log_singles(bucket, put, n=10)
    result = cli("verify", "p/one:v0", "--sample", "30%", "--json")
    data = json.loads(result.stdout)
    assert data["checked"] == 3 and isinstance(data["seed"], int)
    again = json.loads(cli("verify", "p/one:v0", "--sample", "30%", "--seed",
                           str(data["seed"]), "--json").stdout)
    assert [e["path"] for e in again["entries"]] == [e["path"] for e in data["entries"]]


def test_parse_sample_and_bad_options(bucket: str, put: Any) -> None:
    assert parse_sample("1%") == 0.01 and parse_sample("0.5%") == 0.005
    assert parse_sample("0.01") == 0.01 and parse_sample(" 25 % ") == 0.25
    assert parse_sample("100%") == 1.0 and parse_sample("1") == 1.0
    for bad in ("0", "0%", "150%", "2", "abc", "-1%", "1e-2"):
        with pytest.raises(UsageError):
            parse_sample(bad)
    log_singles(bucket, put, n=2)
    full = reftrack.Api().artifact("p/one:v0").verify(sample=1.0)
    assert full.sampled is None and full.checked == 2  # all of it: a full verification
    for args in (("--sample", "0"), ("--seed", "3"), ("--since", "soon"),
                 ("--sample", "5")):
        result = cli("verify", "p/one:v0", *args)
        assert result.exit_code == 2, (args, result.output)
    assert "give --sample too" in flat(cli("verify", "p/one:v0", "--seed", "3").stderr)


# -- JUnit XML ------------------------------------------------------------------------------


ODD = "odd/a&b<c>\"q'; ü.txt"


def test_junit_xml_with_failures_and_json(s3: Any, bucket: str, put: Any,
                                          tmp_path: Path) -> None:
    keep = put(bucket, "d/keep", b"k")
    lost = put(bucket, "d/lost", b"l")
    put(bucket, f"d/{ODD}", b"o")
    with reftrack.init(project="p") as run:
        art = reftrack.Artifact("ds", type="dataset")
        art.add_reference(f"s3://{bucket}/d/")
        run.log_artifact(art)
    s3.delete_object(Bucket=bucket, Key="d/lost", VersionId=lost)
    assert keep
    out = tmp_path / "junit.xml"
    result = cli("verify", "p/ds:v0", "--junit", str(out), "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["summary"]["version_missing"] == 1
    root = ET.parse(out).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "3"
    assert root.get("failures") == "1" and root.get("errors") == "0"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "p/ds:v0" and suite.get("failures") == "1"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["total"] == "3" and props["checked"] == "3" and props["exit_code"] == "1"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {"keep", "lost", ODD}
    failure = cases["lost"].find("failure")
    assert failure is not None and failure.get("type") == "version_missing"
    assert lost in (failure.get("message") or "")
    assert cases[ODD].find("failure") is None and cases["keep"].find("failure") is None
    assert not list(tmp_path.glob(".junit.xml.*"))  # written atomically, no temp file left


def test_junit_unreachable_reused_sample_and_unprintable_paths(tmp_path: Path) -> None:
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)

    def entry(path: str, status: Status, *, reused: bool = False) -> EntryResult:
        return EntryResult(path=path, uri=f"s3://b/{path}", status=status, detail="why <&>",
                           checked_at=now, reused=reused)

    report = VerifyReport(
        artifact="p/ds:v1", digest="0" * 64, checked_at=now, requests=1, total=40,
        sampled=0.1, seed=5, entries=[
            entry("ctl\x01\x1f\ud800x", Status.OK),
            entry("gone", Status.UNREACHABLE),
            entry("old", Status.CORRUPT, reused=True),
            entry("drift", Status.MOVED),
        ])
    root = ET.fromstring(junit_xml([report]))
    suite = root.find("testsuite")
    assert suite is not None and suite.get("errors") == "1" and suite.get("failures") == "1"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert "ctl\\x01\\x1f\\xd800x" in cases
    error = cases["gone"].find("error")
    assert error is not None and error.get("type") == "unreachable"
    old = cases["old"]
    failure = old.find("failure")
    assert failure is not None
    assert "reused from the check at 2026-05-01 12:00:00" in (failure.get("message") or "")
    assert {p.get("name"): p.get("value") for p in old.iter("property")}["reused"] == "true"
    assert cases["drift"].find("failure") is None
    assert "moved" in (cases["drift"].findtext("system-out") or "")
    assert "10% sample (seed 5): 4 of 40 entries" in (suite.findtext("system-out") or "")
    with pytest.raises(UsageError, match="does not exist"):
        write_junit([report], tmp_path / "no" / "such.xml")
    with pytest.raises(UsageError, match="is a directory"):
        write_junit([report], tmp_path)


# -- the registry side -----------------------------------------------------------------------


def test_gc_purges_the_results_of_a_purged_version(bucket: str, put: Any) -> None:
    log_singles(bucket, put, n=3)
    api = reftrack.Api()
    art = api.artifact("p/one:v0")
    registry, version_id = art._ctx.registry, art._logged().id
    art.verify()
    assert len(registry.results(version_id)) == 3
    art.delete()
    api.gc(grace=timedelta(0))
    with registry.engine.connect() as conn:
        for table in (t.verify_results, t.verify_runs):
            count = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
            assert count == 0


def test_a_version_3_registry_is_upgraded(bucket: str, put: Any, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # an SQLite file whatever REFTRACK_TEST_REGISTRY says (PostgreSQL: tests/registry/)
    monkeypatch.setenv("REFTRACK_REGISTRY", str(tmp_path / "v3.db"))
    log_singles(bucket, put, n=2)
    path = os.environ["REFTRACK_REGISTRY"]
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:  # as reftrack with schema 3 left it
        conn.execute(sa.text("DROP TABLE verify_results"))
        conn.execute(sa.text("DROP TABLE verify_runs"))
        conn.execute(sa.text("UPDATE reftrack_meta SET value='3' WHERE key='schema_version'"))
    engine.dispose()
    registry = Registry(path)
    with registry.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT value FROM reftrack_meta WHERE "
                                    "key='schema_version'")).scalar() == str(t.SCHEMA_VERSION)
        assert {"verify_results", "verify_runs"} <= set(sa.inspect(conn).get_table_names())
    registry.close()
    report = reftrack.Api().artifact("p/one:v0").verify()
    assert report.exit_code == 0 and len(stored(reftrack.Api())) == 2
