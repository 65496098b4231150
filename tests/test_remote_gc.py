"""``gc`` over the team registry server, against a real ``reftrack server`` process and
moto's S3: the server purges versions and manifests and says which managed blobs nothing
references; the client lists the blob store and deletes the blobs with its own credentials.
The same flow gives the same report as on a local SQLite registry; only server admins may
run it; a log that wants a blob gc is deleting waits, then stores it again."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from server_fixtures import TeamServer
from typer.testing import CliRunner

import reftrack
import reftrack.lifecycle
from reftrack.cli import app
from reftrack.errors import AccessDenied, BlobsBeingCollected, Forbidden
from reftrack.registry import schema as t
from reftrack.registry.remote import RemoteRegistry

WEEK = timedelta(days=7)


@pytest.fixture
def gc_server(team_server: TeamServer) -> TeamServer:
    return team_server


@pytest.fixture
def tokens(gc_server: TeamServer) -> dict[str, str]:
    """A fresh registry on the running server: ``root`` (a server admin) and ``alice``."""
    gc_server.reset()
    team = gc_server.team()
    team.add_user("root", is_admin=True)
    team.add_user("alice")
    return {name: team.create_token(name, "tests")[1] for name in ("root", "alice")}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _blob_names(s3: Any, bucket: str, prefix: str) -> set[str]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {item["Key"].rpartition("/")[2] for item in listed}


def _log(settings: reftrack.Settings, work: Path, name: str, files: dict[str, bytes],
         ttl: timedelta | None = None) -> reftrack.Artifact:
    work.mkdir(parents=True, exist_ok=True)
    with reftrack.init(project="gcp", job_type="ingest", settings=settings) as run:
        art = reftrack.Artifact(name, type="dataset", settings=settings)
        for rel, data in files.items():
            (work / rel).write_bytes(data)
            art.add_file(work / rel)
        if ttl is not None:
            art.ttl = ttl
        run.log_artifact(art)
    return art


def gc_flow(settings: reftrack.Settings, s3: Any, bucket: str, prefix: str,
            work: Path) -> dict[str, Any]:
    """Versions sharing managed files in an s3:// blob store; one deleted, one expired; a
    dry run, a gc, and a gc with nothing left to do. What it saw, blobs by content."""
    names = {_sha(data): label for label, data in
             (("shared", b"shared"), ("own0", b"own 0"), ("own1", b"own 1"), ("brief", b"brief"))}

    def by_content(report: reftrack.lifecycle.GCReport) -> dict[str, Any]:
        return {"versions": [(v.version, v.reason) for v in report.versions],
                "manifests": report.manifests,
                "blobs": sorted(names[uri.rpartition("/")[2]] for uri in report.blobs),
                "bytes": report.blob_bytes, "errors": report.blob_errors, "ok": report.ok}

    first = _log(settings, work / "v0", "ds", {"shared": b"shared", "own": b"own 0"})
    _log(settings, work / "v1", "ds", {"shared": b"shared", "own": b"own 1"})
    _log(settings, work / "t", "scratch", {"brief": b"brief"}, ttl=timedelta(seconds=1))
    first.delete()
    time.sleep(1.5)  # lets gcp/scratch:v0 expire (the server's own clock decides)
    api = reftrack.Api(settings=settings)
    out = {"stored": sorted(names[n] for n in _blob_names(s3, bucket, prefix))}
    out["kept_in_grace"] = by_content(api.gc())  # the deletion is within the 7 d grace
    out["before_dry_run"] = sorted(names[n] for n in _blob_names(s3, bucket, prefix))
    out["dry_run"] = by_content(api.gc(dry_run=True, grace=timedelta(0)))
    out["dry_run_changed_nothing"] = sorted(names[n] for n in _blob_names(s3, bucket, prefix))
    out["gc"] = by_content(api.gc(grace=timedelta(0)))
    out["left"] = sorted(names[n] for n in _blob_names(s3, bucket, prefix))
    out["again"] = by_content(api.gc(grace=timedelta(0)))
    out["versions"] = [a.qualified_name for a in api.artifact_versions("gcp/ds")]
    out["intact"] = api.artifact("gcp/ds:v1").verify(deep=True).passed
    return out


def test_gc_over_the_server_matches_a_local_registry(gc_server: TeamServer,
                                                     tokens: dict[str, str], s3: Any,
                                                     bucket: str, tmp_path: Path,
                                                     requests_log: Any) -> None:
    local = reftrack.Settings.from_env(registry=str(tmp_path / "local.db"),
                                       blob_store=f"s3://{bucket}/local/")
    expected = gc_flow(local, s3, bucket, "local/", tmp_path / "local")
    # expired versions go at once; deleted ones after the grace (0 here)
    assert expected["kept_in_grace"] == {"versions": [("gcp/scratch:v0", "expired")],
                                         "manifests": 1, "blobs": ["brief"], "bytes": 5,
                                         "errors": [], "ok": True}
    assert expected["gc"] == {"versions": [("gcp/ds:v0", "deleted")], "manifests": 1,
                              "blobs": ["own0"], "bytes": 5, "errors": [], "ok": True}
    assert expected["left"] == ["own1", "shared"] and expected["intact"]
    assert expected["dry_run"] == expected["gc"]
    assert expected["stored"] == ["brief", "own0", "own1", "shared"]
    assert expected["dry_run_changed_nothing"] == expected["before_dry_run"] == \
        ["own0", "own1", "shared"]
    assert expected["again"]["versions"] == [] and expected["again"]["blobs"] == []

    remote = reftrack.Settings.from_env(registry=gc_server.url, token=tokens["root"],
                                        blob_store=f"s3://{bucket}/remote/")
    requests_log.clear()
    assert gc_flow(remote, s3, bucket, "remote/", tmp_path / "remote") == expected
    # the client deleted the blobs itself, on S3 (the server has no credentials)
    deletes = [path for method, path, _ in requests_log.calls if method == "DELETE"]
    assert deletes and all("/remote/sha256/" in path for path in deletes)
    with gc_server.registry().engine.connect() as conn:
        assert conn.execute(sa.select(t.blob_claims)).all() == []  # every claim released
        assert set(conn.execute(sa.select(t.blob_stores.c.store)).scalars()) == \
            {f"s3://{bucket}/remote"}


def test_only_server_admins_may_gc_and_a_refusal_changes_nothing(
        gc_server: TeamServer, tokens: dict[str, str], s3: Any, bucket: str,
        tmp_path: Path) -> None:
    alice = reftrack.Settings.from_env(registry=gc_server.url, token=tokens["alice"],
                                       blob_store=f"s3://{bucket}/blobs/")
    art = _log(alice, tmp_path / "a", "ds", {"f": b"alice's"})
    art.delete()
    before = gc_server.snapshot()
    with pytest.raises(Forbidden, match="only a server admin may run it") as caught:
        reftrack.Api(settings=alice).gc(grace=timedelta(0))
    assert caught.value.exit_code == 5
    anonymous = reftrack.Settings.from_env(registry=gc_server.url,
                                           blob_store=f"s3://{bucket}/blobs/")
    with pytest.raises(AccessDenied, match="REFTRACK_TOKEN"):
        reftrack.Api(settings=anonymous).gc(dry_run=True)
    store = f"s3://{bucket}/blobs"
    for path, body in [
        ("/api/v1/gc/purge", {"grace_seconds": 0, "lease_window_seconds": 0}),
        ("/api/v1/gc/claims", {"store": store, "sha256s": [_sha(b"alice's")],
                               "lease_window_seconds": 0, "claim_seconds": 600}),
        ("/api/v1/gc/release", {"store": store, "sha256s": [_sha(b"alice's")]}),
    ]:
        for token, status in ((None, 401), (tokens["alice"], 403)):
            response = gc_server.request("POST", path, token, json=body)
            assert response.status_code == status, (path, response.text)
    assert gc_server.snapshot() == before
    assert _blob_names(s3, bucket, "blobs/") == {_sha(b"alice's")}
    # a server admin may; the claim endpoint refuses malformed input with 422
    bad = gc_server.request("POST", "/api/v1/gc/claims", tokens["root"],
                            json={"store": store, "sha256s": ["../etc"],
                                  "lease_window_seconds": 0, "claim_seconds": 600})
    assert bad.status_code == 422 and gc_server.snapshot() == before
    root = reftrack.Settings.from_env(registry=gc_server.url, token=tokens["root"])
    report = reftrack.Api(settings=root).gc(grace=timedelta(0))
    assert [v.version for v in report.versions] == ["gcp/ds:v0"] and len(report.blobs) == 1
    assert _blob_names(s3, bucket, "blobs/") == set()


def test_a_log_waits_for_a_gc_over_the_server(gc_server: TeamServer, tokens: dict[str, str],
                                              s3: Any, bucket: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """gc (root) claimed a blob and is deleting it when alice's add_file wants it: her
    lease is refused (409 with retry_after), she waits, and stores it again once released."""
    alice = reftrack.Settings.from_env(registry=gc_server.url, token=tokens["alice"],
                                       blob_store=f"s3://{bucket}/blobs/")
    _log(alice, tmp_path / "a", "ds", {"f": b"payload"}).delete()
    root = RemoteRegistry(gc_server.url, tokens["root"])
    purged = root.gc_purge(timedelta(0), lease_window=WEEK)
    assert purged.versions == [("gcp/ds:v0", "deleted")]
    [store] = purged.stores
    sha = _sha(b"payload")
    assert root.gc_claim_blobs(store, [sha], lease_window=WEEK,
                               claim_for=timedelta(minutes=10)) == [sha]

    raw = gc_server.request("POST", "/api/v1/blob-leases", tokens["alice"],
                            json={"store": store, "sha256s": [sha]})
    assert raw.status_code == 409 and raw.json()["error"]["type"] == "BlobsBeingCollected"
    assert 590 <= raw.json()["error"]["retry_after"] <= 600
    assert 590 <= int(raw.headers["Retry-After"]) <= 600
    member = RemoteRegistry(gc_server.url, tokens["alice"])
    with pytest.raises(BlobsBeingCollected, match="a gc is deleting") as caught:
        member.lease_blobs(store, [sha])
    assert 590 <= caught.value.retry_after <= 600
    member.close()

    waits: list[float] = []

    def gc_finishes(seconds: float) -> None:
        waits.append(seconds)
        s3.delete_object(Bucket=bucket, Key=f"blobs/sha256/{sha[:2]}/{sha}")
        root.gc_release_blobs(store, [sha])

    monkeypatch.setattr(reftrack.lifecycle, "_sleep", gc_finishes)
    art = _log(alice, tmp_path / "b", "again", {"f": b"payload"})
    assert len(waits) == 1
    assert art.verify(deep=True).passed  # stored again after gc deleted it
    root.close()


def test_gc_cli_over_the_server(gc_server: TeamServer, tokens: dict[str, str], s3: Any,
                                bucket: str, tmp_path: Path) -> None:
    alice = reftrack.Settings.from_env(registry=gc_server.url, token=tokens["alice"],
                                       blob_store=f"s3://{bucket}/blobs/")
    _log(alice, tmp_path / "a", "ds", {"f": b"cli"}).delete()
    runner = CliRunner()
    env = {"REFTRACK_REGISTRY": gc_server.url, "REFTRACK_TOKEN": tokens["root"]}
    dry = runner.invoke(app, ["gc", "--dry-run", "--grace", "0", "--json"], env=env)
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.output)
    assert planned["dry_run"] and [v["version"] for v in planned["versions"]] == ["gcp/ds:v0"]
    assert [b.rpartition("/")[2] for b in planned["blobs"]] == [_sha(b"cli")]
    refused = runner.invoke(app, ["gc"], env={**env, "REFTRACK_TOKEN": tokens["alice"]})
    assert refused.exit_code == 5 and "server admin" in refused.output
    done = runner.invoke(app, ["gc", "--grace", "0"], env=env)
    assert done.exit_code == 0, done.output
    assert "purged 1 version(s), 1 manifest(s), 1 blob(s)" in done.output
    assert _blob_names(s3, bucket, "blobs/") == set()
    assert httpx.get(gc_server.url + "/healthz").status_code == 200
