"""Verification in memory that does not grow with the number of entries, against moto's
server: a logged version's manifest is streamed from the registry and verified a window of
entries at a time (``reftrack.verify.WINDOW``, made small here), with the same results and
about the same requests as a verification of the whole manifest at once; large reports
count their ``ok`` results instead of listing them (``KEEP_ALL``); a corrupt stored manifest
fails the verification; samples, ``--since``, resuming and interruptions work across windows.

moto (5.2) quirk: a ListObjectVersions ``KeyMarker`` that is not an existing key makes moto
skip the first version after it (real S3 does not); the verifier starts listings after keys
of the manifest, so the tests never delete a key entirely at a window boundary.
"""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import sqlalchemy as sa
from click.testing import Result
from clocks import Clock
from typer.testing import CliRunner

import reftrack
import reftrack.backends.s3
import reftrack.verify
from reftrack.backends import Backends
from reftrack.backends.s3 import S3Backend
from reftrack.cli import app
from reftrack.errors import ManifestError
from reftrack.manifest import Manifest
from reftrack.registry import Registry
from reftrack.registry import schema as t
from reftrack.settings import Settings
from reftrack.uri import RefURI
from reftrack.verify import Status, VerifyReport, verify_manifest

N = 60  # objects under the prefix
WINDOW = 7
ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def api(clock: Clock) -> reftrack.Api:
    return reftrack.Api(settings=Settings.from_env(clock=clock))


@pytest.fixture
def window(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """``window(n)``: verify ``n`` entries at a time from now on in this test."""
    return lambda n: monkeypatch.setattr(reftrack.verify, "WINDOW", n)


def cli(*args: str) -> Result:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"reftrack {' '.join(args)} raised {result.exception!r}:\n"
                             f"{result.output}") from result.exception
    return result


def flat(text: str) -> str:
    return " ".join(text.split())


def key(i: int) -> str:
    return f"w/f{i:03d}"


def drifted_prefix(s3: Any, bucket: str, seed: Any, put: Any, n: int = N,
                   name: str = "ds") -> dict[str, str]:
    """``n`` objects under w/, logged; then some overwritten, deleted (a delete marker),
    one pinned version destroyed, and new keys written between and after the logged ones.
    Returns the statuses a verification must find (path -> status)."""
    seed(bucket, {key(i): f"{i}".encode() for i in range(n)})
    with reftrack.init(project="p") as run:
        art = reftrack.Artifact(name, type="dataset")
        art.add_reference(f"s3://{bucket}/w/")
        run.log_artifact(art)
    expected = {f"f{i:03d}": "ok" for i in range(n)}
    for i in range(3, n, 9):  # overwritten
        put(bucket, key(i), b"new bytes")
        expected[f"f{i:03d}"] = "moved"
    for i in range(5, n, 11):  # deleted: the key's current version is a delete marker
        s3.delete_object(Bucket=bucket, Key=key(i))
        expected[f"f{i:03d}"] = "deleted"
    lost = 2  # the pinned version destroyed (the key lives on with a newer one)
    pinned = art.manifest.entries[f"f{lost:03d}"].version_id
    put(bucket, key(lost), b"replacement")
    s3.delete_object(Bucket=bucket, Key=key(lost), VersionId=pinned)
    expected[f"f{lost:03d}"] = "version_missing"
    seed(bucket, {f"w/f{i:03d}-new": b"not in the manifest" for i in (10, 20, 33)})
    seed(bucket, {"w/zz-after": b"after every entry"})
    return expected


def statuses(report: VerifyReport) -> dict[str, str]:
    return {e.path: e.status.value for e in report.entries}


def listings(log: Any) -> list[str]:
    """The query strings of the ListObjectVersions requests made."""
    return [q for m, _, q in log.calls if m == "GET" and "versions" in q.split("&")]


# -- the same results, about the same requests ---------------------------------------------


def test_windows_give_the_same_results_as_the_whole_manifest(
        s3: Any, bucket: str, seed: Any, put: Any, requests_log: Any,
        window: Callable[[int], None]) -> None:
    expected = drifted_prefix(s3, bucket, seed, put)
    requests_log.clear()
    whole = reftrack.Api().artifact("p/ds:v0").verify()
    assert len(listings(requests_log)) == 1 and requests_log.count("HEAD") == 0
    assert statuses(whole) == expected

    window(WINDOW)
    requests_log.clear()
    windowed = reftrack.Api().artifact("p/ds:v0").verify()
    assert [e.model_dump(exclude={"checked_at"}) for e in windowed.entries] == \
        [e.model_dump(exclude={"checked_at"}) for e in whole.entries]
    assert windowed.summary == whole.summary and windowed.exit_code == whole.exit_code == 1
    assert windowed.digest == whole.digest and windowed.total == N
    assert windowed.warnings == whole.warnings
    # one listing per window (each from after the keys of the windows before it), no HEAD,
    # plus the bucket's lifecycle rules and versioning state
    pages = listings(requests_log)
    windows = math.ceil(N / WINDOW)
    assert len(pages) == windows <= math.ceil(N / WINDOW) + 2
    assert requests_log.count("HEAD") == 0
    assert len(requests_log) == windowed.requests == windows + 2
    assert "key-marker" not in pages[0]
    assert all("key-marker=w%2Ff" in q for q in pages[1:])


def test_a_window_stops_listing_after_its_own_keys(
        s3: Any, bucket: str, seed: Any, put: Any, requests_log: Any,
        window: Callable[[int], None], monkeypatch: pytest.MonkeyPatch) -> None:
    """With pages of 5 keys, every window but the last reads only the pages up to its own
    last key: no page is listed twice, so the windows cost about what one listing does."""
    expected = drifted_prefix(s3, bucket, seed, put)
    monkeypatch.setattr(reftrack.backends.s3, "PAGE_SIZE", 5)
    requests_log.clear()
    assert statuses(reftrack.Api().artifact("p/ds:v0").verify()) == expected
    whole = len(listings(requests_log))
    versions = sum(len(s3.list_object_versions(Bucket=bucket, Prefix="w/").get(kind, []))
                   for kind in ("Versions", "DeleteMarkers"))
    assert whole == math.ceil(versions / 5)

    window(WINDOW)
    requests_log.clear()
    assert statuses(reftrack.Api().artifact("p/ds:v0").verify()) == expected
    windowed = len(listings(requests_log))
    windows = math.ceil(N / WINDOW)
    # each window may end inside a page, which the next window asks for again (from its
    # own start): at most one more page per window than one listing of the whole prefix
    assert whole < windowed <= whole + windows
    assert requests_log.count("HEAD") == 0


def test_listing_started_late_costs_fewer_pages(s3: Any, bucket: str, seed: Any,
                                                requests_log: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    seed(bucket, {key(i): b"x" for i in range(30)})
    monkeypatch.setattr(reftrack.backends.s3, "PAGE_SIZE", 5)
    backend, prefix = S3Backend(), RefURI("s3", bucket, "w/")
    requests_log.clear()
    assert len(list(backend.scan(prefix, all_versions=True))) == 30
    assert len(listings(requests_log)) == 6
    requests_log.clear()
    later = [s.key for s in backend.scan(prefix, all_versions=True, start_after=key(20))]
    assert later == [key(i) for i in range(21, 30)]
    assert len(listings(requests_log)) == 2
    requests_log.clear()
    scan = backend.scan(prefix, all_versions=True)
    assert [next(scan).key for _ in range(3)] == [key(0), key(1), key(2)]
    scan.close()  # type: ignore[attr-defined]  # stopped early: no further page
    assert len(listings(requests_log)) == 1


def test_singles_directories_and_out_of_order_paths_across_windows(
        s3: Any, bucket: str, seed: Any, put: Any, window: Callable[[int], None]) -> None:
    """Entries added one by one (HEADs, and a directory listed once it holds 8 of them) and
    a path whose order differs from its key's (so a later window must not start its listing
    after that key) verify the same in windows as whole."""
    seed(bucket, {key(i): f"{i}".encode() for i in range(30)})
    seed(bucket, {f"flat/g{i:02d}": b"flat" for i in range(10)})
    seed(bucket, {f"single{i}/obj": b"one" for i in range(3)})
    with reftrack.init(project="p") as run:
        art = reftrack.Artifact("mixed", type="dataset")
        art.add_reference(f"s3://{bucket}/w/", name="p")
        art.add_reference(f"s3://{bucket}/{key(29)}", name="aaa-first")  # key sorts last
        art.add_reference(f"s3://{bucket}/{key(1)}", name="zzz-last")  # key sorts first
        for i in range(10):
            art.add_reference(f"s3://{bucket}/flat/g{i:02d}", name=f"q/g{i:02d}")
        for i in range(3):
            art.add_reference(f"s3://{bucket}/single{i}/obj", name=f"s{i}")
        run.log_artifact(art)
    put(bucket, key(29), b"moved")
    put(bucket, "flat/g04", b"moved")
    s3.delete_object(Bucket=bucket, Key="single1/obj")
    s3.delete_object(Bucket=bucket, Key=key(12))
    whole = statuses(reftrack.Api().artifact("p/mixed:v0").verify())
    assert whole["aaa-first"] == whole["p/f029"] == whole["q/g04"] == "moved"
    assert whole["s1"] == whole["p/f012"] == "deleted"
    assert list(whole.values()).count("ok") == len(whole) - 5
    for size in (3, 5, 8):
        window(size)
        assert statuses(reftrack.Api().artifact("p/mixed:v0").verify()) == whole, size


def test_bucket_warnings_are_the_same_in_windows(
        s3: Any, bucket: str, seed: Any, put: Any, window: Callable[[int], None]) -> None:
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "nc7", "Status": "Enabled", "Filter": {"Prefix": "w/"},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 7}},
        {"ID": "half", "Status": "Enabled", "Filter": {"Prefix": "w/f02"},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 3}},
    ]})
    drifted_prefix(s3, bucket, seed, put, n=30)
    whole = reftrack.Api().artifact("p/ds:v0").verify()
    assert {w.rule_id for w in whole.warnings} == {"nc7", "half"}
    window(4)
    windowed = reftrack.Api().artifact("p/ds:v0").verify()
    assert windowed.warnings == whole.warnings


def test_gcs_windows_give_the_same_results(gcs: Any, window: Callable[[int], None]) -> None:
    """GCS lists from ``startOffset`` (inclusive, and ignored by the emulator: the backend
    drops the keys at or before the start itself)."""
    gcs.seed({f"g/f{i:02d}": f"{i}".encode() for i in range(20)})
    with reftrack.init(project="g") as run:
        art = reftrack.Artifact("gds", type="dataset")
        art.add_reference(f"gs://{gcs.bucket}/g/")
        run.log_artifact(art)
    gcs.write("g/f03", b"overwritten")  # (the emulator keeps no old generation)
    gcs.delete("g/f11")
    gcs.write("g/f05-new", b"not in the manifest")
    whole = statuses(reftrack.Api().artifact("g/gds:v0").verify())
    assert whole["f03"] == whole["f11"] == "version_missing"
    assert list(whole.values()).count("ok") == 18
    window(6)
    gcs.log.clear()
    assert statuses(reftrack.Api().artifact("g/gds:v0").verify()) == whole
    pages = [parse_qs(q) for m, p, q in gcs.log.calls if m == "GET" and p.endswith("/o")]
    assert len(pages) == 4 and "startOffset" not in pages[0]
    assert [q["startOffset"] for q in pages[1:]] == [["g/f05"], ["g/f11"], ["g/f17"]]


# -- the stream -----------------------------------------------------------------------------


def test_a_logged_version_is_streamed_not_loaded(
        s3: Any, bucket: str, seed: Any, put: Any, window: Callable[[int], None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    expected = drifted_prefix(s3, bucket, seed, put, n=20)

    def refuse(self: Registry, digest: str) -> Manifest:
        raise AssertionError("verify loaded the whole manifest")

    monkeypatch.setattr(Registry, "load_manifest", refuse)
    window(WINDOW)
    report = reftrack.Api().artifact("p/ds:v0").verify()
    assert statuses(report) == expected


def test_stream_manifest_gives_the_header_and_the_entries(bucket: str, seed: Any) -> None:
    seed(bucket, {key(i): b"x" for i in range(12)})
    with reftrack.init(project="p") as run:
        art = reftrack.Artifact("ds", type="dataset")
        art.add_reference(f"s3://{bucket}/w/")
        run.log_artifact(art)
    registry = art._ctx.registry
    with registry.stream_manifest(art.digest) as stored:
        assert stored.digest == art.digest and stored.total == len(stored) == 12
        assert stored.sources == art.manifest.sources
        assert list(stored.entries()) == art.manifest.sorted_entries()
        assert [e.path for e in stored] == sorted(art.manifest.entries)  # read again
    with pytest.raises(ManifestError, match="missing"), registry.stream_manifest("0" * 64):
        pass


def _rewrite_stored(registry: Registry, digest: str,
                    change: Callable[[list[bytes]], list[bytes]]) -> None:
    with registry.engine.begin() as conn:
        chunks = conn.execute(sa.select(t.manifest_chunks.c.data)
                              .where(t.manifest_chunks.c.digest == digest)
                              .order_by(t.manifest_chunks.c.seq)).scalars().all()
        lines = gzip.decompress(b"".join(chunks)).split(b"\n")
        conn.execute(t.manifest_chunks.delete().where(t.manifest_chunks.c.digest == digest))
        conn.execute(t.manifest_chunks.insert().values(
            digest=digest, seq=0, data=gzip.compress(b"\n".join(change(lines)))))


def test_a_corrupt_stored_manifest_fails_the_verification(
        bucket: str, seed: Any, window: Callable[[int], None]) -> None:
    seed(bucket, {key(i): f"{i}".encode() for i in range(20)})
    with reftrack.init(project="p") as run:
        art = reftrack.Artifact("ds", type="dataset")
        art.add_reference(f"s3://{bucket}/w/")
        run.log_artifact(art)
    registry, digest = art._ctx.registry, art.digest
    window(WINDOW)

    def tamper(lines: list[bytes]) -> list[bytes]:  # a valid entry, another ETag
        entry = json.loads(lines[15])
        fields = json.loads(lines[0]).get("fields")  # schema 3: an array of these per entry
        for name in ("etag", "digest"):
            entry[fields.index(name) if isinstance(entry, list) else name] = "0" * 32
        return [*lines[:15], json.dumps(entry).encode(), *lines[16:]]

    _rewrite_stored(registry, digest, tamper)
    with pytest.raises(ManifestError, match="corrupt"):
        reftrack.Api().artifact("p/ds:v0").verify()
    result = cli("verify", "p/ds:v0")
    assert result.exit_code != 0 and "corrupt" in flat(result.output)

    _rewrite_stored(registry, digest, lambda lines: [lines[0], *lines[2:]])  # one fewer
    with pytest.raises(ManifestError, match=r"truncated|corrupt"):
        reftrack.Api().artifact("p/ds:v0").verify()

    with registry.engine.begin() as conn:
        conn.execute(t.manifest_chunks.update().values(data=b"garbage"))
    with pytest.raises(ManifestError, match="unreadable"):
        reftrack.Api().artifact("p/ds:v0").verify()


# -- large reports ----------------------------------------------------------------------------


def test_large_reports_count_ok_results_instead_of_listing_them(
        s3: Any, bucket: str, seed: Any, put: Any, window: Callable[[int], None],
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    expected = drifted_prefix(s3, bucket, seed, put, n=20)
    not_ok = {p: s for p, s in expected.items() if s != "ok"}
    ok = len(expected) - len(not_ok)
    window(WINDOW)
    monkeypatch.setattr(reftrack.verify, "KEEP_ALL", 10)
    report = reftrack.Api().artifact("p/ds:v0").verify()
    assert statuses(report) == not_ok and report.omitted_ok == ok
    assert report.summary["ok"] == ok and sum(report.summary.values()) == 20
    assert report.checked == 20 and report.reused == 0 and report.total == 20
    assert report.exit_code == 1 and not report.passed
    art = reftrack.Api().artifact("p/ds:v0")
    stored = art._ctx.registry.results(art._logged().id)
    assert len(stored) == 20 and sum(r.status == "ok" for r in stored.values()) == ok

    out = tmp_path / "junit.xml"
    result = cli("verify", "p/ds:v0", "--json", "--junit", str(out))
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["omitted_ok"] == ok and data["summary"]["ok"] == ok
    assert data["checked"] == 20 and len(data["entries"]) == len(not_ok)
    suite = ET.parse(out).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "20"
    assert suite.get("failures") == "1" and len(suite.findall("testcase")) == len(not_ok)
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["omitted_ok"] == str(ok) and props["checked"] == "20"
    assert f"{ok} ok entries passed but are not listed" in (suite.findtext("system-out") or "")

    text = flat(cli("verify", "p/ds:v0", "--all").stdout)
    assert "verified p/ds:v0: 20 entries" in text
    assert f"{ok} ok entries are counted, not listed" in text
    assert "FAILED: 1 of 20 entries" in text

    monkeypatch.setattr(reftrack.verify, "KEEP_ALL", 20)  # at most KEEP_ALL: all listed
    full = reftrack.Api().artifact("p/ds:v0").verify()
    assert len(full.entries) == 20 and full.omitted_ok == 0


def test_in_memory_and_reused_ok_results_are_counted_too(
        s3: Any, bucket: str, seed: Any, put: Any, window: Callable[[int], None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    expected = drifted_prefix(s3, bucket, seed, put, n=20)
    ok = list(expected.values()).count("ok")
    window(WINDOW)
    monkeypatch.setattr(reftrack.verify, "KEEP_ALL", 5)
    art = reftrack.Artifact("fresh", type="dataset")  # not logged: in memory
    art.add_reference(f"s3://{bucket}/w/")
    report = art.verify()
    assert report.omitted_ok == len(art.manifest) == report.checked  # all ok right now
    assert report.entries == [] and report.passed and report.exit_code == 0

    reftrack.Api().artifact("p/ds:v0").verify()
    again = reftrack.Api().artifact("p/ds:v0").verify(since=timedelta(hours=1))
    assert again.omitted_reused_ok == ok and again.omitted_ok == 0
    assert again.reused == 20 and again.checked == 0 and again.requests == 0
    assert all(e.reused for e in again.entries) and again.summary["ok"] == ok


# -- samples, --since, resuming, interruptions ----------------------------------------------


def test_samples_are_the_same_in_windows_and_reproducible(
        s3: Any, bucket: str, seed: Any, put: Any, window: Callable[[int], None]) -> None:
    expected = drifted_prefix(s3, bucket, seed, put)
    whole = reftrack.Api().artifact("p/ds:v0").verify(sample=0.25, seed=11)
    assert len(whole.entries) == whole.checked == math.ceil(0.25 * N) and whole.total == N
    window(WINDOW)
    windowed = reftrack.Api().artifact("p/ds:v0").verify(sample=0.25, seed=11)
    assert statuses(windowed) == statuses(whole)
    assert all(expected[p] == s for p, s in statuses(windowed).items())
    other = reftrack.Api().artifact("p/ds:v0").verify(sample=0.25, seed=12)
    assert statuses(other) != statuses(windowed) and len(other.entries) == len(whole.entries)


def test_since_with_stale_entries_in_late_windows_only(
        s3: Any, bucket: str, seed: Any, put: Any, api: reftrack.Api, clock: Clock,
        requests_log: Any, window: Callable[[int], None]) -> None:
    """Nothing is asked when nothing is stale; when only late windows are, the bucket's
    rules are read then, and the warnings still cover the windows before."""
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "nc7", "Status": "Enabled", "Filter": {"Prefix": "w/"},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 7}}]})
    drifted_prefix(s3, bucket, seed, put, n=30)
    art = api.artifact("p/ds:v0")
    registry, version_id = art._ctx.registry, art._logged().id

    def verify_with_stale_tail() -> VerifyReport:
        with registry.engine.begin() as conn:  # the last 8 entries were checked long ago
            conn.execute(t.verify_results.update()
                         .where(t.verify_results.c.version_id == version_id,
                                t.verify_results.c.path >= "f022")
                         .values(checked_at=clock.now - timedelta(days=3)))
        requests_log.clear()
        return api.artifact("p/ds:v0").verify(since=timedelta(hours=1))

    api.artifact("p/ds:v0").verify()
    whole = verify_with_stale_tail()
    assert whole.checked == 8 and whole.reused == 22 and whole.warnings
    window(5)
    requests_log.clear()
    fresh = api.artifact("p/ds:v0").verify(since=timedelta(hours=1))
    assert len(requests_log) == 0 and fresh.requests == 0 and fresh.warnings == []
    assert fresh.reused == 30
    windowed = verify_with_stale_tail()
    assert statuses(windowed) == statuses(whole)
    assert [e.reused for e in windowed.entries] == [e.reused for e in whole.entries]
    assert windowed.warnings == whole.warnings
    assert len(listings(requests_log)) == 2  # the two windows holding the 8 stale entries


def test_rules_of_a_bucket_only_in_reused_windows_are_read_at_the_end_and_counted(
        s3: Any, bucket: str, unversioned_bucket: str, seed: Any, put: Any,
        api: reftrack.Api, clock: Clock, requests_log: Any,
        window: Callable[[int], None]) -> None:
    for i in range(3):
        put(unversioned_bucket, f"early/{i}", b"e")
    seed(bucket, {key(i): b"x" for i in range(12)})
    with reftrack.init(project="p", settings=Settings.from_env(clock=clock)) as run:
        art = reftrack.Artifact("two", type="dataset")
        art.add_reference(f"s3://{unversioned_bucket}/early/", name="a")  # paths a/0..a/2
        art.add_reference(f"s3://{bucket}/w/", name="w")
        run.log_artifact(art)
    api.artifact("p/two:v0").verify()
    art = api.artifact("p/two:v0")
    with art._ctx.registry.engine.begin() as conn:  # only the w/ entries are stale
        conn.execute(t.verify_results.update().where(t.verify_results.c.path >= "w/")
                     .values(checked_at=clock.now - timedelta(days=2)))
    window(3)  # the first window holds a/0..a/2 only: all reused
    requests_log.clear()
    report = api.artifact("p/two:v0").verify(since=timedelta(hours=1))
    assert report.checked == 12 and report.reused == 3
    assert {w.bucket for w in report.warnings} == {f"s3://{unversioned_bucket}"}
    assert report.warnings[0].kind == "versioning_disabled"
    assert report.requests == len(requests_log)
    assert requests_log.count("GET", "lifecycle") == 2  # both buckets, once each


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """``scans.append(n)``: listings raise KeyboardInterrupt from the (n+1)-th on (Ctrl-C
    in the middle of a windowed verification); ``scans.clear()`` to stop."""
    limit: list[int] = []
    calls = [0]
    original = S3Backend.scan

    def scan(self: S3Backend, prefix: RefURI, **kw: Any) -> Any:
        if limit:
            calls[0] += 1
            if calls[0] > limit[0]:
                raise KeyboardInterrupt
        return original(self, prefix, **kw)

    monkeypatch.setattr(S3Backend, "scan", scan)
    yield limit


def test_interrupted_windowed_verification_resumes(
        s3: Any, bucket: str, seed: Any, put: Any, api: reftrack.Api, clock: Clock,
        requests_log: Any, window: Callable[[int], None], scans: list[int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    expected = drifted_prefix(s3, bucket, seed, put, n=35)
    monkeypatch.setattr(reftrack.verify, "RESULT_BATCH", 4)
    window(WINDOW)
    scans.append(3)  # Ctrl-C when the 4th window lists
    with pytest.raises(KeyboardInterrupt):
        api.artifact("p/ds:v0").verify()
    art = api.artifact("p/ds:v0")
    done = art._ctx.registry.results(art._logged().id)
    assert sorted(done) == sorted(expected)[:3 * WINDOW]  # three windows, every result kept
    scans.clear()
    clock.advance(minutes=5)
    requests_log.clear()
    resumed = api.artifact("p/ds:v0").verify()
    assert resumed.resumed_from is not None and resumed.reused == 3 * WINDOW
    assert resumed.checked == 35 - 3 * WINDOW and statuses(resumed) == expected
    assert len(listings(requests_log)) == 2  # only the two windows left are listed


def test_interrupted_windowed_sample_resumes_with_the_same_entries(
        s3: Any, bucket: str, seed: Any, put: Any, api: reftrack.Api,
        window: Callable[[int], None], scans: list[int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    drifted_prefix(s3, bucket, seed, put, n=40)
    monkeypatch.setattr(reftrack.verify, "RESULT_BATCH", 2)
    window(8)
    full = api.artifact("p/ds:v0").verify(sample=0.5, seed=4, resume=False)
    scans.append(2)
    with pytest.raises(KeyboardInterrupt):
        api.artifact("p/ds:v0").verify(sample=0.5)  # a random seed, recorded
    art = api.artifact("p/ds:v0")
    mark = art._ctx.registry.last_verification(art._logged().id)
    assert mark is not None and mark.finished_at is None and mark.seed is not None
    scans.clear()
    resumed = api.artifact("p/ds:v0").verify(sample=0.5)
    assert resumed.seed == mark.seed and resumed.reused > 0
    assert resumed.reused + resumed.checked == 20 == len(full.entries)
    again = api.artifact("p/ds:v0").verify(sample=0.5, seed=mark.seed, resume=False)
    assert statuses(again) == statuses(resumed)


def test_results_go_out_in_batches_and_an_error_storing_them_stops_the_run(
        s3: Any, bucket: str, seed: Any, put: Any, window: Callable[[int], None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    drifted_prefix(s3, bucket, seed, put, n=30)
    art = reftrack.Api().artifact("p/ds:v0")
    registry = art._ctx.registry
    monkeypatch.setattr(reftrack.verify, "RESULT_BATCH", 4)
    window(WINDOW)
    batches: list[list[str]] = []

    def store(batch: list[Any]) -> None:
        if len(batches) == 3:
            raise OSError("disk full")
        batches.append([r.path for r in batch])

    with registry.stream_manifest(art.digest) as stored, pytest.raises(OSError, match="disk"):
        verify_manifest(stored, Backends(Settings.from_env()), on_results=store)
    assert [len(b) for b in batches] == [4, 4, 4]
    assert sorted(p for b in batches for p in b) == sorted(art.manifest.entries)[:12]

    seen: list[int] = []
    with registry.stream_manifest(art.digest) as stored:
        report = verify_manifest(stored, Backends(Settings.from_env()),
                                 on_results=lambda b: seen.append(len(b)))
    assert sum(seen) == 30 and all(n == 4 for n in seen[:-1]) and report.checked == 30


# -- the memory benchmark runs ----------------------------------------------------------------


def test_memory_benchmark_runs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_verify_memory.py"),
         "--entries", "3000,6000", "--window", "1000", "--json"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    rows = {row["entries"]: row for row in data["runs"]}
    assert set(rows) == {3000, 6000}
    for n, row in rows.items():
        assert row["checked"] == n and row["exit_code"] == 0
        assert row["listings"] == math.ceil(n / 1000) and row["traced_peak"] > 0
    assert data["window"] == 1000


def test_status_vocabulary_is_unchanged() -> None:
    assert {s.value for s in Status} == {"ok", "moved", "deleted", "version_missing",
                                         "changed", "corrupt", "unreachable"}
