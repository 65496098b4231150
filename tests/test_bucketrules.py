"""The bucket's own rules, against moto's S3 server: lifecycle and versioning warnings in
``verify`` and ``show`` (with their dates and request costs), and ``protect``/``unprotect``
(S3 Object Lock legal holds).

moto (5.2) notes: it keeps lifecycle rules but drops ``NewerNoncurrentVersions`` (tested on
the parser instead), never runs the rules itself, answers ``GetObjectLegalHold`` on a bucket
without Object Lock with an empty hold (S3: InvalidRequest), and fails with a 500 when a legal
hold is put on a version that does not exist (failures are injected instead).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

import reftrack
from reftrack.backends.base import LifecycleRule
from reftrack.backends.s3 import S3Backend, lifecycle_rule
from reftrack.bucketrules import eligible_at
from reftrack.cli import app
from reftrack.errors import BucketAccessDenied, ObjectNotFound, UsageError
from reftrack.manifest import Manifest, ManifestEntry
from reftrack.protection import ProtectionFailed, _targets
from reftrack.uri import parse_uri

LOCKED = "locked-bucket"
runner = CliRunner()


def cli(*args: str) -> Result:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"reftrack {' '.join(args)} raised {result.exception!r}:\n"
                             f"{result.output}") from result.exception
    return result


def cli_json(*args: str, code: int = 0) -> Any:
    result = cli(*args, "--json")
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    return json.loads(result.stdout)


def flat(text: str) -> str:
    return " ".join(text.split())


def log(*uris: str, name: str = "ds") -> reftrack.Artifact:
    with reftrack.init(project="p", job_type="ingest") as run:
        art = reftrack.Artifact(name, type="dataset")
        for uri in uris:
            art.add_reference(uri)
        run.log_artifact(art)
    return art


def noncurrent_rule(s3: Any, bucket: str, days: int = 30, prefix: str = "d/",
                    **extra: Any) -> None:
    rule = {"ID": "nc30", "Status": "Enabled", "Filter": {"Prefix": prefix},
            "NoncurrentVersionExpiration": {"NoncurrentDays": days}, **extra}
    s3.put_bucket_lifecycle_configuration(Bucket=bucket,
                                          LifecycleConfiguration={"Rules": [rule]})


def midnight_after(moment: datetime, days: int) -> datetime:
    """S3's rounding, spelled out independently: the midnight UTC that ends the day of
    ``moment + days``."""
    day = (moment.astimezone(UTC) + timedelta(days=days)).date()
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


# -- dates and parsing ----------------------------------------------------------------------


def test_eligible_at_rounds_up_to_the_next_midnight_utc() -> None:
    # AWS's own example: created 2014-01-15 10:30 UTC, 3 days -> 2014-01-19 00:00 UTC.
    assert eligible_at(datetime(2014, 1, 15, 10, 30, tzinfo=UTC), 3) == \
        datetime(2014, 1, 19, tzinfo=UTC)
    # From exactly midnight it still moves to the next one; other time zones count in UTC.
    assert eligible_at(datetime(2024, 2, 28, tzinfo=UTC), 1) == datetime(2024, 3, 1, tzinfo=UTC)
    cet = datetime(2024, 1, 1, 0, 30, tzinfo=UTC).astimezone(timezone(timedelta(hours=1)))
    assert eligible_at(cet, 0) == datetime(2024, 1, 2, tzinfo=UTC)


def test_lifecycle_rules_are_normalised() -> None:
    rule = lifecycle_rule({
        "ID": "r", "Status": "Enabled",
        "Filter": {"And": {"Prefix": "d/", "Tags": [{"Key": "k", "Value": "v"}],
                           "ObjectSizeGreaterThan": 10}},
        "NoncurrentVersionExpiration": {"NoncurrentDays": 7, "NewerNoncurrentVersions": 2},
    })
    assert rule == LifecycleRule(id="r", prefix="d/", tags=(("k", "v"),), size_greater_than=10,
                                 noncurrent_days=7, newer_noncurrent_versions=2)
    assert rule.applies_to("d/x", 11) == "maybe"  # tags: reftrack does not read them
    assert rule.applies_to("d/x", 5) == "no" and rule.applies_to("e/x", 11) == "no"
    legacy = lifecycle_rule({"ID": "old", "Status": "Enabled", "Prefix": "logs/",
                             "Expiration": {"Days": 3}})
    assert legacy == LifecycleRule(id="old", prefix="logs/", expiration_days=3)
    assert legacy.applies_to("logs/a", None) == "yes"
    dated = lifecycle_rule({"Status": "Enabled", "Filter": {},
                            "Expiration": {"Date": datetime(2030, 1, 1)}})
    assert dated is not None and dated.expiration_date == datetime(2030, 1, 1, tzinfo=UTC)
    assert lifecycle_rule({"ID": "off", "Status": "Disabled", "Filter": {},
                           "Expiration": {"Days": 1}}) is None
    assert lifecycle_rule({"ID": "t", "Status": "Enabled", "Filter": {},
                           "Transitions": [{"Days": 1, "StorageClass": "GLACIER"}]}) is None
    assert lifecycle_rule({"ID": "m", "Status": "Enabled", "Filter": {},
                           "Expiration": {"ExpiredObjectDeleteMarker": True}}) is None


def test_backend_reads_rules_and_object_lock(s3: Any, bucket: str) -> None:
    backend = S3Backend()
    assert backend.lifecycle_rules(bucket) == []  # NoSuchLifecycleConfiguration
    noncurrent_rule(s3, bucket)
    assert backend.lifecycle_rules(bucket) == [
        LifecycleRule(id="nc30", prefix="d/", noncurrent_days=30)]
    assert backend.object_lock_enabled(bucket) is False
    s3.create_bucket(Bucket=LOCKED, ObjectLockEnabledForBucket=True)
    assert backend.object_lock_enabled(LOCKED) is True


# -- warnings ---------------------------------------------------------------------------------


def test_verify_dates_noncurrent_expiration_from_the_successor(s3: Any, bucket: str, put: Any,
                                                               requests_log: Any) -> None:
    noncurrent_rule(s3, bucket)
    put(bucket, "d/a", b"a1")
    put(bucket, "d/b", b"b1")
    log(f"s3://{bucket}/d/")
    put(bucket, "d/a", b"a2")  # the pinned d/a is now noncurrent
    successor = s3.head_object(Bucket=bucket, Key="d/a")["LastModified"]
    expected = midnight_after(successor, 30)

    requests_log.clear()
    report = reftrack.Api().artifact("p/ds:v0").verify()
    assert report.exit_code == 0 and report.passed  # warnings never fail a verify
    [warning] = report.warnings
    assert warning.kind == "noncurrent_expiration" and warning.rule_id == "nc30"
    assert warning.bucket == f"s3://{bucket}" and warning.entries == 2
    assert warning.first_date == expected and warning.date_basis == "successor"
    assert f"{expected:%Y-%m-%d} 00:00 UTC" in warning.message
    assert "1 still current: each goes 30 days after it is overwritten" in warning.message
    # one listing, plus the bucket's lifecycle configuration and versioning state, once each
    assert requests_log.count("GET", "lifecycle") == 1
    assert requests_log.count("GET", "versioning") == 1
    assert requests_log.count("GET", "versions") == 1 and len(requests_log) == 3
    assert report.requests == 3

    result = cli("verify", "p/ds:v0")
    assert result.exit_code == 0
    out = flat(result.stdout)
    assert "warning:" in out and "lifecycle rule 'nc30'" in out
    assert f"the first goes on {expected:%Y-%m-%d} 00:00 UTC" in out
    data = cli_json("verify", "p/ds:v0")
    assert data["warnings"][0]["first_date"].startswith(f"{expected:%Y-%m-%d}T00:00:00")
    assert data["warnings"][0]["date_basis"] == "successor"


def test_show_warns_with_the_earliest_date(s3: Any, bucket: str, put: Any,
                                          requests_log: Any) -> None:
    noncurrent_rule(s3, bucket)
    put(bucket, "d/a", b"a1")
    put(bucket, "d/b", b"b1")
    art = log(f"s3://{bucket}/d/")
    written = min(e.last_modified for e in art.manifest if e.last_modified is not None)
    earliest = midnight_after(written, 30)

    requests_log.clear()
    result = cli("show", "p/ds:v0")
    assert result.exit_code == 0
    out = flat(result.stdout)
    assert f"the first goes on {earliest:%Y-%m-%d} 00:00 UTC (at the earliest" in out
    assert "protected (legal hold)" not in out
    assert requests_log.count("GET", "lifecycle") == 1
    assert requests_log.count("GET", "versioning") == 1 and len(requests_log) == 2

    data = cli_json("show", "p/ds:v0")
    [warning] = data["warnings"]
    assert warning["date_basis"] == "earliest" and warning["entries"] == 2
    assert warning["first_date"].startswith(f"{earliest:%Y-%m-%d}")
    assert data["protected"] is False

    requests_log.clear()
    offline = cli_json("show", "p/ds:v0", "--offline")
    assert offline["warnings"] == [] and len(requests_log) == 0


def test_verify_by_head_dates_from_the_current_version(s3: Any, bucket: str, put: Any) -> None:
    noncurrent_rule(s3, bucket, days=7)
    put(bucket, "d/a", b"a1")
    log(f"s3://{bucket}/d/a")  # one object: checked by HEAD, not by a listing
    put(bucket, "d/a", b"a2")
    current = s3.head_object(Bucket=bucket, Key="d/a")["LastModified"]
    [warning] = reftrack.Api().artifact("p/ds:v0").verify().warnings
    assert warning.date_basis == "current_version"
    assert warning.first_date == midnight_after(current, 7)
    assert "earlier if it was overwritten more than once" in warning.message


def test_expiration_on_an_unversioned_bucket(s3: Any, unversioned_bucket: str, put: Any) -> None:
    b = unversioned_bucket
    s3.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration={"Rules": [
        {"ID": "ten-days", "Status": "Enabled", "Filter": {"Prefix": "u/"},
         "Expiration": {"Days": 10}},
        {"ID": "elsewhere", "Status": "Enabled", "Filter": {"Prefix": "other/"},
         "Expiration": {"Days": 1}},
    ]})
    put(b, "u/x", b"x")
    put(b, "u/y", b"yy")
    art = log(f"s3://{b}/u/")
    written = min(e.last_modified for e in art.manifest if e.last_modified is not None)
    report = reftrack.Api().artifact("p/ds:v0").verify()
    kinds = {w.kind: w for w in report.warnings}
    assert set(kinds) == {"versioning_disabled", "expiration"} and report.exit_code == 0
    expiration = kinds["expiration"]
    assert expiration.rule_id == "ten-days" and expiration.entries == 2
    assert expiration.date_basis == "written"
    assert expiration.first_date == midnight_after(written, 10)
    assert "deleted for good" in expiration.message
    assert kinds["versioning_disabled"].entries == 2
    assert "overwrite or delete destroys the bytes" in kinds["versioning_disabled"].message


def test_suspended_versioning_warns(s3: Any, bucket: str, put: Any) -> None:
    put(bucket, "d/a", b"a")
    log(f"s3://{bucket}/d/")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    [warning] = reftrack.Api().artifact("p/ds:v0").verify().warnings
    assert warning.kind == "versioning_suspended" and "suspended" in warning.message
    result = cli("show", "p/ds:v0")
    assert "versioning is suspended" in flat(result.stdout) and result.exit_code == 0


def test_no_rule_no_warning(s3: Any, bucket: str, put: Any) -> None:
    put(bucket, "d/a", b"a")
    log(f"s3://{bucket}/d/")
    assert reftrack.Api().artifact("p/ds:v0").verify().warnings == []
    result = cli("verify", "p/ds:v0")
    assert result.exit_code == 0 and "warning" not in result.stdout
    noncurrent_rule(s3, bucket, prefix="elsewhere/")  # a rule that covers nothing pinned
    assert cli_json("show", "p/ds:v0")["warnings"] == []


def test_one_rules_request_per_bucket(s3: Any, bucket: str, put: Any,
                                      requests_log: Any) -> None:
    s3.create_bucket(Bucket="second-bucket")
    s3.put_bucket_versioning(Bucket="second-bucket",
                             VersioningConfiguration={"Status": "Enabled"})
    for i in range(3):
        put(bucket, f"d/{i}", b"x")
        put("second-bucket", f"e/x{i}", b"y")
    log(f"s3://{bucket}/d/", "s3://second-bucket/e/")
    requests_log.clear()
    reftrack.Api().artifact("p/ds:v0").verify()
    assert requests_log.count("GET", "lifecycle") == 2
    assert requests_log.count("GET", "versioning") == 2


def test_tag_filtered_rule_may_apply_and_expiration_makes_current_noncurrent(
    s3: Any, bucket: str, put: Any
) -> None:
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "tagged", "Status": "Enabled",
         "Filter": {"And": {"Prefix": "d/", "Tags": [{"Key": "tmp", "Value": "1"}]}},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 3}},
        {"ID": "expire", "Status": "Enabled", "Filter": {"Prefix": "d/"},
         "Expiration": {"Days": 5}},
        {"ID": "nc", "Status": "Enabled", "Filter": {"Prefix": "d/"},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 7}},
    ]})
    put(bucket, "d/a", b"a")
    art = log(f"s3://{bucket}/d/")
    written = art.manifest.entries["a"].last_modified
    assert written is not None
    warnings = {w.rule_id: w for w in reftrack.Api().artifact("p/ds:v0").verify().warnings}
    assert warnings["tagged"].may_apply and "if their tags" in warnings["tagged"].message
    assert "expire" not in warnings  # pinned versions only become noncurrent
    chained = warnings["nc"]
    assert chained.date_basis == "expiration_rule"
    assert chained.first_date == eligible_at(eligible_at(written, 5), 7)


def test_newer_noncurrent_versions_keep_the_pinned_version(
    s3: Any, bucket: str, put: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # moto drops NewerNoncurrentVersions from the stored rule: serve it from the backend.
    rule = LifecycleRule(id="keep3", prefix="d/", noncurrent_days=1, newer_noncurrent_versions=3)
    monkeypatch.setattr(S3Backend, "lifecycle_rules", lambda self, bucket: [rule])
    put(bucket, "d/a", b"1")
    log(f"s3://{bucket}/d/")
    put(bucket, "d/a", b"2")
    put(bucket, "d/a", b"3")  # one newer noncurrent version: fewer than 3
    [warning] = reftrack.Api().artifact("p/ds:v0").verify().warnings
    assert warning.first_date is None
    assert "1 kept while fewer than 3 newer noncurrent versions exist" in warning.message


def test_unreadable_rules_are_a_warning_not_an_error(
    s3: Any, bucket: str, put: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(self: S3Backend, name: str) -> list[LifecycleRule]:
        raise BucketAccessDenied(f"access denied to s3://{name} (AccessDenied)", name)

    monkeypatch.setattr(S3Backend, "lifecycle_rules", denied)
    put(bucket, "d/a", b"a")
    log(f"s3://{bucket}/d/")
    report = reftrack.Api().artifact("p/ds:v0").verify()
    [warning] = report.warnings
    assert warning.kind == "rules_unknown" and report.exit_code == 0
    assert "s3:GetLifecycleConfiguration" in warning.message


# -- protect / unprotect ----------------------------------------------------------------------


def locked_bucket(s3: Any, put: Any) -> dict[str, str]:
    s3.create_bucket(Bucket=LOCKED, ObjectLockEnabledForBucket=True)
    return {key: put(LOCKED, key, key.encode()) for key in ("d/a", "d/b", "d/c")}


def hold(s3: Any, key: str, version: str) -> str | None:
    head = s3.head_object(Bucket=LOCKED, Key=key, VersionId=version)
    status: str | None = head.get("ObjectLockLegalHoldStatus")
    return status


def test_protect_places_a_legal_hold_on_every_pinned_version(s3: Any, put: Any,
                                                             requests_log: Any) -> None:
    versions = locked_bucket(s3, put)
    log(f"s3://{LOCKED}/d/")
    put(LOCKED, "d/a", b"newer")  # the current version is not pinned: it gets no hold

    requests_log.clear()
    data = cli_json("protect", "p/ds:v0")
    assert data["objects"] == 3 == data["succeeded"] and data["failed"] == []
    assert data["protected"] is True and data["buckets"] == [f"s3://{LOCKED}"]
    assert data["exit_code"] == 0
    assert requests_log.count("GET", "object-lock") == 1  # checked once per bucket
    assert requests_log.count("PUT", "legal-hold") == 3 == len(requests_log) - 1
    for key, version in versions.items():
        assert hold(s3, key, version) == "ON"
        assert s3.get_object_legal_hold(Bucket=LOCKED, Key=key, VersionId=version)[
            "LegalHold"]["Status"] == "ON"
    assert hold(s3, "d/a", s3.head_object(Bucket=LOCKED, Key="d/a")["VersionId"]) is None
    backend = S3Backend()
    assert backend.legal_hold(parse_uri(f"s3://{LOCKED}/d/b?versionId={versions['d/b']}"))
    assert not backend.legal_hold(parse_uri(f"s3://{LOCKED}/d/a"))  # current, unpinned
    # a held version cannot be deleted
    with pytest.raises(Exception, match="AccessDenied"):
        s3.delete_object(Bucket=LOCKED, Key="d/b", VersionId=versions["d/b"])

    noncurrent_rule(s3, LOCKED)
    shown = cli("show", "p/ds:v0")
    assert "protected (legal hold)" in flat(shown.stdout)
    assert "no rule deletes them while it is on" in flat(shown.stdout)
    assert cli_json("show", "p/ds:v0")["protected"] is True

    result = cli("unprotect", "p/ds:v0")
    assert result.exit_code == 0, result.stderr
    assert "removed from 3 of 3 object version(s)" in flat(result.stdout)
    for key, version in versions.items():
        assert hold(s3, key, version) == "OFF"
    assert "protected (legal hold)" not in cli("show", "p/ds:v0").stdout
    assert reftrack.Api().artifact("p/ds:v0")._logged().protected is False


def test_python_api_protect_and_unprotect(s3: Any, put: Any) -> None:
    versions = locked_bucket(s3, put)
    art = log(f"s3://{LOCKED}/d/")
    report = art.protect()
    assert report.protected and report.succeeded == 3 and report.hold
    assert reftrack.Api().artifact("p/ds:v0")._logged().protected
    assert art.unprotect().protected is False
    assert {hold(s3, k, v) for k, v in versions.items()} == {"OFF"}


def test_protect_refuses_a_bucket_without_object_lock(s3: Any, bucket: str, put: Any,
                                                      requests_log: Any) -> None:
    put(bucket, "d/a", b"a")
    log(f"s3://{bucket}/d/")
    requests_log.clear()
    result = cli("protect", "p/ds:v0")
    assert result.exit_code == 2
    err = flat(result.stderr)
    assert f"Object Lock is not enabled on s3://{bucket}" in err
    assert "create-bucket --object-lock-enabled-for-bucket" in err
    assert requests_log.count("PUT") == 0 and len(requests_log) == 1  # no hold attempted
    data = cli_json("unprotect", "p/ds:v0", code=2)
    assert data["error"]["type"] == "UsageError"
    assert reftrack.Api().artifact("p/ds:v0")._logged().protected is False


def test_protect_refuses_entries_it_cannot_hold(s3: Any, put: Any, unversioned_bucket: str,
                                                tmp_path: Path, http_server: Any,
                                                requests_log: Any) -> None:
    locked_bucket(s3, put)
    local = tmp_path / "f.txt"
    local.write_bytes(b"local")
    log(f"s3://{LOCKED}/d/", str(local), name="mixed")
    requests_log.clear()
    result = cli("protect", "p/mixed:v0")
    assert result.exit_code == 2 and "local files" in flat(result.stderr)
    assert len(requests_log) == 0  # refused before asking any bucket

    log(http_server.put("f.bin", b"web"), name="web")
    result = cli("protect", "p/web:v0")
    assert result.exit_code == 2 and "HTTP resources" in flat(result.stderr)

    put(unversioned_bucket, "u/a", b"a")
    log(f"s3://{unversioned_bucket}/u/", name="plain")
    result = cli("protect", "p/plain:v0")
    assert result.exit_code == 2 and "no version id" in flat(result.stderr)

    gs = Manifest([ManifestEntry(path="g", ref="gs://bkt/g", version_id="1", size=1)])
    with pytest.raises(UsageError, match="event-based or temporary holds are not supported"):
        _targets("p/g:v0", gs)


def test_partial_failure_names_the_objects_and_leaves_the_flag(
    s3: Any, put: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    versions = locked_bucket(s3, put)
    log(f"s3://{LOCKED}/d/")
    real = S3Backend.set_legal_hold

    def flaky(self: S3Backend, uri: Any, on: bool) -> None:
        if uri.key == "d/b":
            raise ObjectNotFound(f"{uri}: version no longer exists", str(uri))
        real(self, uri, on)

    monkeypatch.setattr(S3Backend, "set_legal_hold", flaky)
    data = cli_json("protect", "p/ds:v0", code=1)
    assert data["error"]["type"] == "ProtectionFailed"
    assert data["succeeded"] == 2 and data["protected"] is False
    [failure] = data["failed"]
    assert failure["uri"] == f"s3://{LOCKED}/d/b?versionId={versions['d/b']}"
    assert failure["paths"] == ["b"] and failure["error"] == "ObjectNotFound"
    assert hold(s3, "d/a", versions["d/a"]) == "ON"  # the others were placed
    assert reftrack.Api().artifact("p/ds:v0")._logged().protected is False

    result = cli("protect", "p/ds:v0")
    assert result.exit_code == 1
    assert "failed" in result.stdout and "d/b" in flat(result.stderr)
    with pytest.raises(ProtectionFailed) as info:
        reftrack.Api().artifact("p/ds:v0").protect()
    assert info.value.report.failed[0].paths == ["b"]


def test_partial_unprotect_clears_the_flag(s3: Any, put: Any,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    versions = locked_bucket(s3, put)
    art = log(f"s3://{LOCKED}/d/")
    assert art.protect().protected
    real = S3Backend.set_legal_hold

    def flaky(self: S3Backend, uri: Any, on: bool) -> None:
        if uri.key == "d/c":
            raise BucketAccessDenied(f"access denied to {uri} (AccessDenied)", LOCKED)
        real(self, uri, on)

    monkeypatch.setattr(S3Backend, "set_legal_hold", flaky)
    data = cli_json("unprotect", "p/ds:v0", code=3)  # access denied: a backend failure
    assert data["succeeded"] == 2 and [f["paths"] for f in data["failed"]] == [["c"]]
    assert data["protected"] is False  # not every pinned version is held any more
    assert hold(s3, "d/c", versions["d/c"]) == "ON" and hold(s3, "d/a", versions["d/a"]) == "OFF"
