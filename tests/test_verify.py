"""The verifier against moto's server: statuses, exit codes, request counts."""

from __future__ import annotations

import json
import math
from typing import Any

import reftrack
from reftrack.verify import Status


def log_prefix(bucket: str, prefix: str, name: str = "ds", **kw: Any) -> reftrack.Artifact:
    with reftrack.init(project="p", job_type="ingest") as run:
        art = reftrack.Artifact(name, type="dataset")
        art.add_reference(f"s3://{bucket}/{prefix}", **kw)
        run.log_artifact(art)
    return art


def statuses(report: reftrack.VerifyReport) -> dict[str, str]:
    return {e.path: e.status.value for e in report.entries}


def test_intact(bucket: str, put: Any, requests_log: Any) -> None:
    for i in range(5):
        put(bucket, f"d/{i}", str(i).encode())
    art = log_prefix(bucket, "d/")
    requests_log.clear()
    report = reftrack.Api().artifact("p/ds:v0").verify()
    assert set(statuses(report).values()) == {"ok"}
    assert report.passed and report.exit_code == 0 and report.drift == []
    assert report.summary["ok"] == 5 and sum(report.summary.values()) == 5
    # one listing page, plus the bucket's lifecycle rules and versioning state (once each)
    assert report.requests == 3 == len(requests_log)
    assert requests_log.count("GET", "versions") == 1
    assert requests_log.count("GET", "lifecycle") == requests_log.count("GET", "versioning") == 1
    assert report.artifact == "p/ds:v0" and report.digest == art.digest


def test_overwrite_is_moved_delete_is_deleted(s3: Any, bucket: str, put: Any) -> None:
    put(bucket, "d/keep", b"k")
    put(bucket, "d/over", b"original")
    put(bucket, "d/del", b"bye")
    log_prefix(bucket, "d/")
    new = put(bucket, "d/over", b"replacement")
    s3.delete_object(Bucket=bucket, Key="d/del")
    report = reftrack.Api().artifact("p/ds:latest").verify()
    assert statuses(report) == {"del": "deleted", "keep": "ok", "over": "moved"}
    moved = next(e for e in report.entries if e.path == "over")
    assert moved.current_version_id == new and moved.current_size == len(b"replacement")
    assert "intact" in moved.detail
    assert report.passed and report.exit_code == 0
    assert {e.path for e in report.drift} == {"del", "over"}


def test_permanently_deleted_version_fails(s3: Any, bucket: str, put: Any) -> None:
    pinned = put(bucket, "d/a", b"1")
    put(bucket, "d/b", b"2")
    log_prefix(bucket, "d/")
    put(bucket, "d/a", b"newer")
    s3.delete_object(Bucket=bucket, Key="d/a", VersionId=pinned)
    lone = s3.list_object_versions(Bucket=bucket, Prefix="d/b")["Versions"][0]["VersionId"]
    s3.delete_object(Bucket=bucket, Key="d/b", VersionId=lone)  # the key vanishes entirely
    report = reftrack.Api().artifact("p/ds:v0").verify()
    assert statuses(report) == {"a": "version_missing", "b": "version_missing"}
    assert report.exit_code == 1 and not report.passed
    assert pinned in report.entries[0].detail and "lost" in report.entries[0].detail


def test_unversioned_overwrite_is_changed_delete_is_missing(s3: Any, unversioned_bucket: str,
                                                           put: Any) -> None:
    b = unversioned_bucket
    for key in ("u/same", "u/over", "u/del"):
        put(b, key, key.encode())
    log_prefix(b, "u/")
    put(b, "u/over", b"different content")
    s3.delete_object(Bucket=b, Key="u/del")
    report = reftrack.Api().artifact("p/ds:v0").verify()
    assert statuses(report) == {"del": "version_missing", "over": "changed", "same": "ok"}
    changed = next(e for e in report.entries if e.status is Status.CHANGED)
    assert "unversioned" in changed.detail and changed.current_size == len(b"different content")
    assert report.exit_code == 1


def test_single_objects_use_heads(s3: Any, bucket: str, put: Any, requests_log: Any) -> None:
    old = put(bucket, "m/w.bin", b"v1")
    put(bucket, "m/w.bin", b"v2")
    put(bucket, "m/cfg.json", b"{}")
    with reftrack.init(project="p") as run:
        art = reftrack.Artifact("model", type="model")
        art.add_reference(f"s3://{bucket}/m/w.bin?versionId={old}")
        art.add_reference(f"s3://{bucket}/m/cfg.json")
        run.log_artifact(art)
    requests_log.clear()
    report = art.verify()
    assert statuses(report) == {"cfg.json": "ok", "w.bin": "moved"}
    # ok costs one HEAD; moved costs the current HEAD plus the pinned-version HEAD
    assert requests_log.count("HEAD") == 3 == len(requests_log) - 2 == report.requests - 2


def test_many_single_objects_in_one_directory_are_listed(bucket: str, put: Any,
                                                         requests_log: Any) -> None:
    for i in range(10):
        put(bucket, f"flat/f{i}", b"x")
    put(bucket, "flat/deeper/ignored", b"y")
    with reftrack.init(project="p") as run:
        art = reftrack.Artifact("ds", type="dataset")
        for i in range(10):
            art.add_reference(f"s3://{bucket}/flat/f{i}")
        run.log_artifact(art)
    requests_log.clear()
    report = art.verify()
    assert report.summary["ok"] == 10
    listings = [c for c in requests_log.calls if "versions" in c[2].split("&")]
    assert len(requests_log) == 3 and len(listings) == 1 and "delimiter=%2F" in listings[0][2]


def test_listing_over_budget_falls_back_to_heads(s3: Any, bucket: str, put: Any, seed: Any,
                                                 requests_log: Any) -> None:
    put(bucket, "g/a", b"1")
    put(bucket, "g/b", b"2")
    art = log_prefix(bucket, "g/")
    seed(bucket, {f"g/zz/{i:05d}": b"noise" for i in range(2100)})  # the prefix grew a lot
    requests_log.clear()
    report = art.verify()
    assert statuses(report) == {"a": "ok", "b": "ok"}
    # the listing is abandoned after the 2 pages two HEADs would cost, then 2 HEADs
    assert requests_log.count("GET", "versions") == 2 and requests_log.count("HEAD") == 2


def test_request_bound_for_verify(s3: Any, bucket: str, seed: Any, requests_log: Any) -> None:
    seed(bucket, {f"big/{i:05d}": b"x" for i in range(1100)})
    art = log_prefix(bucket, "big/")
    seed(bucket, {f"big/{i:05d}": b"changed" for i in range(0, 200, 2)})
    s3.delete_object(Bucket=bucket, Key="big/00001")
    versions = 1100 + 100 + 1
    requests_log.clear()
    report = art.verify()
    assert report.summary["moved"] == 100 and report.summary["deleted"] == 1
    assert report.summary["ok"] == 999
    assert len(requests_log) <= math.ceil(versions / 1000) + 2
    assert requests_log.count("HEAD") == 0


def test_delete_is_seen_at_once_by_the_same_artifact(s3: Any, bucket: str, put: Any) -> None:
    """s3fs's listing cache would answer from the first listing; reftrack must not."""
    put(bucket, "c/a", b"1")
    put(bucket, "c/b", b"2")
    art = log_prefix(bucket, "c/")
    assert art.verify().summary["ok"] == 2
    s3.delete_object(Bucket=bucket, Key="c/a")
    assert statuses(art.verify()) == {"a": "deleted", "b": "ok"}


def test_missing_bucket_is_unreachable(s3: Any, put: Any) -> None:
    s3.create_bucket(Bucket="doomed")
    put("doomed", "d/a", b"1")
    put("doomed", "single", b"2")
    with reftrack.init(project="p") as run:
        art = reftrack.Artifact("ds", type="dataset")
        art.add_reference("s3://doomed/d/")
        art.add_reference("s3://doomed/single")
        run.log_artifact(art)
    for obj in s3.list_objects_v2(Bucket="doomed")["Contents"]:
        s3.delete_object(Bucket="doomed", Key=obj["Key"])
    s3.delete_bucket(Bucket="doomed")
    report = art.verify()
    assert statuses(report) == {"a": "unreachable", "single": "unreachable"}
    assert all("s3://doomed" in e.detail and "does not exist" in e.detail
               for e in report.entries)
    assert report.exit_code == 3 and not report.passed


def test_access_denied_is_unreachable(bucket: str, put: Any) -> None:
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    put(bucket, "d/a", b"1")
    art = log_prefix(bucket, "d/")
    previous = settings.INITIAL_NO_AUTH_ACTION_COUNT
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin.request_count = 0
    try:
        report = art.verify()
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = previous
    assert statuses(report) == {"a": "unreachable"}
    assert "access denied" in report.entries[0].detail and bucket in report.entries[0].detail
    assert report.exit_code == 3


def test_failure_outranks_unreachable(s3: Any, bucket: str, put: Any) -> None:
    pinned = put(bucket, "x/a", b"1")
    put(bucket, "x/a", b"2")
    s3.create_bucket(Bucket="other-bucket")
    put("other-bucket", "y", b"3")
    with reftrack.init(project="p") as run:
        art = reftrack.Artifact("ds", type="dataset")
        art.add_reference(f"s3://{bucket}/x/a?versionId={pinned}")
        art.add_reference("s3://other-bucket/y")
        run.log_artifact(art)
    s3.delete_object(Bucket=bucket, Key="x/a", VersionId=pinned)
    s3.delete_object(Bucket="other-bucket", Key="y")
    s3.delete_bucket(Bucket="other-bucket")
    report = art.verify()
    assert statuses(report) == {"a": "version_missing", "y": "unreachable"}
    assert report.exit_code == 1


def test_checksum_false_entries_check_existence_only(s3: Any, bucket: str, put: Any) -> None:
    put(bucket, "n/a", b"1")
    put(bucket, "n/b", b"2")
    art = log_prefix(bucket, "n/", checksum=False)
    put(bucket, "n/a", b"anything else")
    s3.delete_object(Bucket=bucket, Key="n/b")
    report = art.verify()
    assert statuses(report) == {"a": "ok", "b": "version_missing"}
    assert "checksum=False" in report.entries[0].detail


def test_metadata_mismatch_of_the_pinned_version_is_corrupt(bucket: str, put: Any) -> None:
    put(bucket, "z/a", b"1")
    with reftrack.init(project="p") as run:
        art = reftrack.Artifact("ds", type="dataset")
        art.add_reference(f"s3://{bucket}/z/")
        entry = art.manifest.entries["a"]
        art.manifest.entries["a"] = entry.model_copy(update={"etag": "0" * 32})
        run.log_artifact(art)
    report = reftrack.Api().artifact("p/ds:v0").verify()
    assert statuses(report) == {"a": "corrupt"} and report.exit_code == 1


def test_report_is_json_for_machines(bucket: str, put: Any) -> None:
    put(bucket, "j/a", b"1")
    art = log_prefix(bucket, "j/")
    data = json.loads(art.verify().model_dump_json())
    assert data["summary"]["ok"] == 1 and set(data["summary"]) == {s.value for s in Status}
    assert data["passed"] is True and data["exit_code"] == 0
    assert data["entries"][0]["status"] == "ok" and data["schema_version"] == 1


def test_a_listing_that_ends_exactly_on_its_budget_is_used(s3: Any, bucket: str, put: Any,
                                                           seed: Any, requests_log: Any) -> None:
    put(bucket, "e/a", b"1")
    art = log_prefix(bucket, "e/")
    seed(bucket, {f"e/zz/{i:04d}": b"n" for i in range(999)})  # exactly 1000 versions now
    requests_log.clear()
    assert statuses(art.verify()) == {"a": "ok"}
    # one complete page: no HEAD, no second page (+ lifecycle and versioning of the bucket)
    assert len(requests_log) == 3 and requests_log.count("GET", "versions") == 1
