"""The team server's access control, against a real uvicorn process on 127.0.0.1.

Every endpoint is checked for each visibility (private, public, open) x principal
(anonymous, non-member, member, project admin, server admin): the exact status, the
404 body of a hidden project (identical to a missing one), and that refused requests
change nothing in the registry (a snapshot of every table before and after). Every test
that uses ``team_server`` runs twice: with the server on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import gzip
import io
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from server_fixtures import PRINCIPALS, Principals, TeamServer, add_principals, start_server
from typer.testing import CliRunner

from reftrack.cli import app
from reftrack.manifest import Manifest, ManifestEntry
from reftrack.server import create_app

VISIBILITIES = ("private", "public", "open")
OK = 0  # the case's own success status

# The expected answer per (visibility, action) for each principal, written out by hand (not
# computed by the code under test):  anonymous, outsider, member, project admin, server admin
EXPECTED: dict[tuple[str, str], tuple[int, int, int, int, int]] = {
    ("private", "read"): (404, 404, OK, OK, OK),
    ("private", "write"): (404, 404, OK, OK, OK),
    ("private", "members"): (404, 404, OK, OK, OK),
    ("private", "manage"): (404, 404, 403, OK, OK),
    ("public", "read"): (OK, OK, OK, OK, OK),
    ("public", "write"): (403, 403, OK, OK, OK),
    ("public", "members"): (403, 403, OK, OK, OK),
    ("public", "manage"): (403, 403, 403, OK, OK),
    ("open", "read"): (OK, OK, OK, OK, OK),
    ("open", "write"): (OK, OK, OK, OK, OK),
    ("open", "members"): (403, 403, OK, OK, OK),
    ("open", "manage"): (403, 403, 403, OK, OK),
}


def manifest(*paths: str) -> Manifest:
    return Manifest([ManifestEntry(path=p, ref=f"s3://bucket/{p}", version_id="1", etag="e",
                                   size=1) for p in paths])


def b64(m: Manifest) -> str:
    return base64.b64encode(m.to_bytes()).decode()


def not_found(project: str) -> dict[str, Any]:
    return {"error": {"type": "NotFound", "status": 404,
                      "message": f"project {project!r} does not exist, or you have no access "
                                 "to it"}}


@dataclass
class World:
    """A fresh project: ds:v0 (alias best) used by run r0, ds:v1 deleted, run r1 (unused),
    a verification of v0 started."""

    project: str
    v0: int
    started_at: str


def make_world(server: TeamServer, visibility: str) -> World:
    team, reg = server.team(), server.registry()
    name = f"{visibility[:3]}-{uuid.uuid4().hex[:10]}"
    team.create_project(name, owner="admin", visibility=visibility)  # type: ignore[arg-type]
    team.set_member(name, "member", "member", by="admin")
    team.set_member(name, "helper", "member", by="admin")
    v0 = reg.log_version(project=name, name="ds", type="dataset", manifest=manifest("a"),
                         aliases=["best"])[0]
    v1 = reg.log_version(project=name, name="ds", type="dataset", manifest=manifest("b"))[0]
    reg.delete_version(v1)
    r0 = reg.create_run(project=name, run_id="r0")[0]
    reg.record_use(r0.pk, v0)
    reg.create_run(project=name, run_id="r1")
    mark = reg.start_verification(v0.id, deep=False, sample=None, seed=None, entries=1)
    return World(name, v0.id, mark.started_at.isoformat())


@dataclass
class Case:
    id: str
    action: str
    method: str
    path: str  # {p} project, {v} version id
    ok: int = 200
    body: Callable[[World], Any] | None = None
    params: dict[str, Any] | None = None


NOW = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
CASES = [
    Case("get-project", "read", "GET", "/api/v1/projects/{p}"),
    Case("set-visibility", "manage", "PUT", "/api/v1/projects/{p}/visibility",
         body=lambda w: {"visibility": "private" if w.project[:3] != "pri" else "open"}),
    Case("list-members", "members", "GET", "/api/v1/projects/{p}/members"),
    Case("add-member", "manage", "PUT", "/api/v1/projects/{p}/members/outsider",
         body=lambda w: {"role": "member"}),
    Case("remove-member", "manage", "DELETE", "/api/v1/projects/{p}/members/helper", ok=200),
    Case("audit", "manage", "GET", "/api/v1/projects/{p}/audit"),
    Case("get-project-ttl", "read", "GET", "/api/v1/projects/{p}/ttl"),
    Case("set-project-ttl", "manage", "PUT", "/api/v1/projects/{p}/ttl",
         body=lambda w: {"ttl_seconds": 86400}),
    Case("list-artifacts", "read", "GET", "/api/v1/projects/{p}/artifacts"),
    Case("list-versions", "read", "GET", "/api/v1/projects/{p}/artifacts/ds/versions"),
    Case("resolve", "read", "GET", "/api/v1/projects/{p}/artifacts/ds/versions/best"),
    Case("log-version", "write", "POST", "/api/v1/projects/{p}/artifacts/ds/versions", ok=201,
         body=lambda w: {"type": "dataset", "manifest": b64(manifest("new")),
                         "aliases": ["prod"], "run_id": "r1"}),
    Case("restore", "write", "POST", "/api/v1/projects/{p}/artifacts/ds/versions/v1/restore"),
    Case("get-version", "read", "GET", "/api/v1/projects/{p}/versions/{v}"),
    Case("get-manifest", "read", "GET", "/api/v1/projects/{p}/versions/{v}/manifest"),
    Case("set-alias", "write", "PUT", "/api/v1/projects/{p}/versions/{v}/aliases/prod"),
    Case("set-ttl", "write", "PUT", "/api/v1/projects/{p}/versions/{v}/ttl",
         body=lambda w: {"ttl_seconds": 3600}),
    Case("delete-version", "write", "DELETE", "/api/v1/projects/{p}/versions/{v}",
         params={"delete_aliases": "true"}),
    Case("set-protected", "write", "PUT", "/api/v1/projects/{p}/versions/{v}/protected",
         body=lambda w: {"protected": True}),
    Case("version-users", "read", "GET", "/api/v1/projects/{p}/versions/{v}/users"),
    Case("record-results", "write", "POST",
         "/api/v1/projects/{p}/versions/{v}/verification/results",
         body=lambda w: {"results": [{"path": "a", "status": "ok", "detail": "",
                                      "checked_at": NOW, "deep": False, "data": {}}]}),
    Case("search-results", "read", "POST",
         "/api/v1/projects/{p}/versions/{v}/verification/results/search",
         body=lambda w: {"paths": ["a"]}),
    Case("last-verification", "read", "GET",
         "/api/v1/projects/{p}/versions/{v}/verification/last"),
    Case("interrupted-verification", "read", "GET",
         "/api/v1/projects/{p}/versions/{v}/verification/interrupted"),
    Case("start-verification", "write", "POST",
         "/api/v1/projects/{p}/versions/{v}/verification/start",
         body=lambda w: {"deep": True, "entries": 1}),
    Case("finish-verification", "write", "POST",
         "/api/v1/projects/{p}/versions/{v}/verification/finish", ok=204,
         body=lambda w: {"started_at": w.started_at}),
    Case("list-runs", "read", "GET", "/api/v1/projects/{p}/runs",
         params={"filters": json.dumps({"state": "running"}), "order": "-started_at"}),
    Case("create-run", "write", "POST", "/api/v1/projects/{p}/runs", ok=201,
         body=lambda w: {"run_id": "new", "config": {"lr": 0.1}}),
    Case("get-run", "read", "GET", "/api/v1/projects/{p}/runs/r0"),
    Case("update-summary", "write", "PATCH", "/api/v1/projects/{p}/runs/r1/summary",
         body=lambda w: {"values": {"acc": 0.9}}),
    Case("log-history", "write", "POST", "/api/v1/projects/{p}/runs/r1/history",
         body=lambda w: {"data": {"loss": 0.5}}),
    Case("get-history", "read", "GET", "/api/v1/projects/{p}/runs/r0/history"),
    Case("finish-run", "write", "POST", "/api/v1/projects/{p}/runs/r1/finish",
         body=lambda w: {"state": "finished"}),
    Case("record-use", "write", "POST", "/api/v1/projects/{p}/runs/r1/inputs", ok=204,
         body=lambda w: {"project": w.project, "version_id": w.v0}),
    Case("run-inputs", "read", "GET", "/api/v1/projects/{p}/runs/r0/inputs"),
    Case("run-outputs", "read", "GET", "/api/v1/projects/{p}/runs/r0/outputs"),
]
# Writes that create their project when it does not exist (for authenticated callers: see
# test_writes_to_a_missing_project_create_it_for_users_only).
CREATING = {"log-version", "create-run"}
# Endpoints that name no project, checked by their own tests below.
UNSCOPED = {("GET", "/healthz"), ("GET", "/api/v1/whoami"), ("GET", "/api/v1/clock"),
            ("GET", "/api/v1/projects"), ("POST", "/api/v1/projects"),
            ("GET", "/api/v1/artifacts"), ("POST", "/api/v1/blob-leases"),
            # gc: server admins only, tested in test_remote_gc.py
            ("POST", "/api/v1/gc/purge"), ("POST", "/api/v1/gc/claims"),
            ("POST", "/api/v1/gc/release")}


@pytest.fixture(scope="module")
def team_server(team_server_each_db: TeamServer) -> TeamServer:
    """Every test here runs against a server on SQLite, then on PostgreSQL."""
    return team_server_each_db


@pytest.fixture(scope="module")
def principals(team_server: TeamServer) -> Principals:
    team_server.reset()
    return add_principals(team_server.team())


def call(server: TeamServer, case: Case, world: World, token: str | None) -> Any:
    path = case.path.replace("{p}", world.project).replace("{v}", str(world.v0))
    body = case.body(world) if case.body else None
    return server.request(case.method, path, token, json=body, params=case.params)


def test_every_endpoint_is_in_the_matrix(tmp_path: Any) -> None:
    app = create_app(str(tmp_path / "r.db"))
    routes = {(method.upper(), path) for path, methods in app.openapi()["paths"].items()
              for method in methods}
    covered = {(c.method, c.path.replace("{p}", "{project}").replace("{v}", "{version_id}"))
               for c in CASES}
    templated = {(m, p) for m, p in routes if "{project}" in p}
    normalise = {"/members/outsider": "/members/{user}", "/members/helper": "/members/{user}",
                 "/versions/best": "/versions/{selector}", "/versions/v1/": "/versions/{index}/",
                 "/aliases/prod": "/aliases/{alias}", "/runs/r0": "/runs/{run_id}",
                 "/runs/r1": "/runs/{run_id}", "/artifacts/ds/": "/artifacts/{name}/"}
    named = set()
    for method, path in covered:
        for old, new in normalise.items():
            path = path.replace(old, new)
        named.add((method, path))
    assert templated == named
    assert routes - templated == UNSCOPED


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_access_matrix(team_server: TeamServer, principals: Principals, case: Case) -> None:
    problems: list[str] = []
    for visibility in VISIBILITIES:
        shared = make_world(team_server, visibility)
        expected_row = EXPECTED[(visibility, case.action)]
        for who, expected in zip(PRINCIPALS, expected_row, strict=True):
            status = case.ok if expected == OK else expected
            allowed_write = expected == OK and case.action in ("write", "manage")
            world = make_world(team_server, visibility) if allowed_write else shared
            before = team_server.snapshot() if expected != OK else None
            response = call(team_server, case, world, principals.tokens[who])
            label = f"{visibility}/{who}"
            if response.status_code != status:
                problems.append(f"{label}: {response.status_code} != {status} "
                                f"({response.text[:200]})")
                continue
            if status == 404 and response.json() != not_found(world.project):
                problems.append(f"{label}: 404 body {response.text}")
            if status == 404 and (who == "anonymous" or case.id not in CREATING):
                missing = call(team_server, case, World("no-such-project", world.v0,
                                                        world.started_at),
                               principals.tokens[who])
                if (missing.status_code, missing.json()) != (404, not_found("no-such-project")):
                    problems.append(f"{label}: a missing project answers {missing.text}")
            if before is not None and team_server.snapshot() != before:
                problems.append(f"{label}: a refused request changed the registry")
    assert not problems, "\n".join([case.id, *problems])


def test_listings_never_show_hidden_projects(team_server: TeamServer,
                                             principals: Principals) -> None:
    worlds = {v: make_world(team_server, v) for v in VISIBILITIES}
    for who in PRINCIPALS:
        token = principals.tokens[who]
        listed = {p["name"] for p in team_server.request("GET", "/api/v1/projects", token).json()}
        arts = {a["project"] for a in team_server.request("GET", "/api/v1/artifacts",
                                                          token).json()}
        for visibility, world in worlds.items():
            sees = visibility != "private" or who in ("member", "admin", "root")
            assert (world.project in listed) is sees, (who, visibility)
            assert (world.project in arts) is sees, (who, visibility)


def test_lineage_edges_into_hidden_projects_are_left_out(team_server: TeamServer,
                                                         principals: Principals) -> None:
    secret, public = make_world(team_server, "private"), make_world(team_server, "public")
    reg = team_server.registry()
    spy = reg.run(secret.project, "r1")
    public_v0 = reg.resolve(public.project, "ds", "v0")
    reg.record_use(spy.pk, public_v0)  # a private run used a public version
    path = f"/api/v1/projects/{public.project}/versions/{public.v0}/users"
    users = {r["project"] for r in team_server.request("GET", path,
                                                       principals.tokens["outsider"]).json()}
    assert users == {public.project}
    users = {r["project"] for r in team_server.request("GET", path,
                                                       principals.tokens["member"]).json()}
    assert users == {public.project, secret.project}
    # using a hidden project's version from a run one may write: 404, nothing recorded
    open_world = make_world(team_server, "open")
    before = team_server.snapshot()
    response = team_server.request(
        "POST", f"/api/v1/projects/{open_world.project}/runs/r1/inputs",
        principals.tokens["outsider"], json={"project": secret.project, "version_id": secret.v0})
    assert response.status_code == 404 and response.json() == not_found(secret.project)
    # a version id of another project, named as this one's: 404
    response = team_server.request(
        "GET", f"/api/v1/projects/{open_world.project}/versions/{secret.v0}",
        principals.tokens["outsider"])
    assert response.status_code == 404 and secret.project not in response.text
    assert team_server.snapshot() == before


def test_tokens_bad_revoked_and_never_stored(team_server: TeamServer,
                                             principals: Principals) -> None:
    world = make_world(team_server, "public")
    team = team_server.team()
    record, token = team.create_token("member", "short-lived")
    path = f"/api/v1/projects/{world.project}/runs"
    assert team_server.request("GET", "/api/v1/whoami", token).json()["user"] == "member"
    snapshot = team_server.snapshot()
    assert token not in repr(snapshot) and token[3:] not in repr(snapshot)
    # the operator revokes it on the server's machine, while the server runs
    result = CliRunner().invoke(app, ["admin", "token", "revoke", str(record.id),
                                      "--registry", team_server.location])
    assert result.exit_code == 0, result.output
    for method, url in (("GET", "/api/v1/whoami"), ("GET", path), ("POST", path)):
        response = team_server.request(method, url, token, json={"run_id": "x"})
        assert response.status_code == 401, (method, url, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert token not in response.text
    # a bad token is an error, never anonymous (anonymous may read a public project)
    assert team_server.request("GET", path).status_code == 200
    before = team_server.snapshot()
    for header in ("Bearer rt_" + "x" * 43, "Bearer nonsense", "Bearer", "Basic dXNlcjpwdw==",
                   "bearer x y", "Token " + (principals.tokens["member"] or "")):
        with team_server.client(Authorization=header) as client:
            response = client.get(path)
        assert response.status_code == 401, header
        assert "rt_xxx" not in response.text
        with team_server.client(Authorization=header) as client:
            assert client.post(path, json={"run_id": "x"}).status_code == 401
    assert team_server.snapshot() == before
    log = team_server.log()
    assert token not in log and (principals.tokens["member"] or "") not in log


def test_malformed_oversized_and_path_like_requests_change_nothing(
        team_server: TeamServer, principals: Principals) -> None:
    world = make_world(team_server, "open")
    token = principals.tokens["admin"]
    p = world.project
    before = team_server.snapshot()
    json_limit, manifest_limit = 65536, 262144
    runs = f"/api/v1/projects/{p}/runs"
    versions = f"/api/v1/projects/{p}/artifacts/ds/versions"
    headers = {"Content-Type": "application/json"}
    checks: list[tuple[str, str, dict[str, Any], int]] = [
        ("POST", runs, {"content": b'{"run_id": "x",', "headers": headers}, 422),
        ("POST", runs, {"content": b"[" * 60_000, "headers": headers}, 400),
        ("POST", runs, {"content": b"not json", "headers": {"Content-Type": "text/plain"}}, 422),
        ("POST", runs, {"json": {"run_id": "x", "config": {"pad": "x" * json_limit}}}, 413),
        ("POST", runs, {"json": {"run_id": "x", "surprise": 1}}, 422),
        ("POST", runs, {"json": {"run_id": "../x"}}, 422),
        ("POST", runs, {"json": {"run_id": "a/b"}}, 422),
        ("POST", runs, {"json": {"run_id": "x", "notes": "a\x00b"}}, 422),
        ("POST", runs, {"content": b'{"run_id": "x", "config": {"a": NaN}}',
                        "headers": headers}, 400),
        ("POST", "/api/v1/projects/..%2Fetc/runs", {"json": {"run_id": "x"}}, 404),
        ("POST", "/api/v1/projects/a%00b/runs", {"json": {"run_id": "x"}}, 422),
        ("POST", "/api/v1/projects/.hidden/runs", {"json": {"run_id": "x"}}, 422),
        ("POST", f"/api/v1/projects/{p}/artifacts/..%2Fx/versions", {"json": {}}, 404),
        ("POST", f"/api/v1/projects/{p}/artifacts/a%00/versions", {"json": {}}, 422),
        ("PUT", f"/api/v1/projects/{p}/versions/{world.v0}/aliases/v9", {}, 422),
        ("PUT", f"/api/v1/projects/{p}/members/.x", {"json": {"role": "member"}}, 422),
        ("PUT", f"/api/v1/projects/{p}/members/..", {"json": {"role": "member"}}, 405),
        ("PUT", f"/api/v1/projects/{p}/members/nobody", {"json": {"role": "member"}}, 404),
        ("PUT", f"/api/v1/projects/{p}/members/helper", {"json": {"role": "owner"}}, 422),
        ("POST", versions, {"json": {"type": "dataset", "manifest": "@@not base64@@"}}, 422),
        ("POST", versions, {"json": {"type": "dataset",
                                     "manifest": base64.b64encode(b"plain").decode()}}, 422),
        ("POST", versions, {"json": {"type": "../t", "manifest": b64(manifest("x"))}}, 422),
        ("POST", versions, {"json": {"type": "dataset", "manifest": b64(manifest("x")),
                                     "run_id": "no-such-run"}}, 404),
        ("POST", versions, {"json": {"type": "dataset", "manifest": b64(manifest("x")),
                                     "aliases": ["a/b"]}}, 422),
    ]
    # bodies just over the JSON limit (413) and exactly at it (read, then refused: 422)
    def body_of(size: int) -> bytes:
        head, tail = b'{"run_id": "x", "surprise": "', b'"}'
        return head + b"p" * (size - len(head) - len(tail)) + tail
    checks.append(("POST", runs, {"content": body_of(json_limit + 1), "headers": headers}, 413))
    checks.append(("POST", runs, {"content": body_of(json_limit), "headers": headers}, 422))
    # manifests just over the stored-bytes limit (413) and at it (then parsed: 422); more
    # entries than allowed; and a gzip bomb
    for size, status in ((manifest_limit + 1, 413), (manifest_limit, 422)):
        raw = base64.b64encode(b"\x1f" * size).decode()
        checks.append(("POST", versions, {"json": {"type": "dataset", "manifest": raw}},
                       status))
    crowded = manifest(*(f"f{i}" for i in range(1001)))
    checks.append(("POST", versions, {"json": {"type": "dataset", "manifest": b64(crowded)}},
                   413))
    bomb = io.BytesIO()
    with gzip.GzipFile(fileobj=bomb, mode="wb") as gz:
        gz.write(b"x" * (64 * 1024 * 1024))
    checks.append(("POST", versions, {"json": {"type": "dataset", "manifest":
                                               base64.b64encode(bomb.getvalue()).decode()}},
                   413))
    for method, path, kwargs, status in checks:
        response = team_server.request(method, path, token, **kwargs)
        assert response.status_code == status, (method, path, response.text[:300])
        assert "error" in response.json(), response.text[:300]
    # a chunked body (no Content-Length) over the limit: counted as it arrives
    def chunks() -> Any:
        yield b'{"run_id": "x", "config": {"pad": "'
        for _ in range(20):
            yield b"y" * 8192
        yield b'"}}'
    with team_server.client(token) as client:
        response = client.post(runs, content=chunks(), headers=headers)
    assert response.status_code == 413
    assert team_server.snapshot() == before


def test_manifest_round_trip_and_limits_accept_what_fits(team_server: TeamServer,
                                                         principals: Principals) -> None:
    world = make_world(team_server, "private")
    m = manifest(*(f"dir/file-{i:04d}.bin" for i in range(900)))
    path = f"/api/v1/projects/{world.project}/artifacts/big/versions"
    response = team_server.request("POST", path, principals.tokens["member"],
                                   json={"type": "dataset", "manifest": b64(m),
                                         "metadata": {"k": [1, 2]}, "ttl_seconds": None})
    assert response.status_code == 201, response.text
    logged = response.json()["version"]
    assert logged["entry_count"] == 900 and logged["ttl"] is None
    again = team_server.request("POST", path, principals.tokens["member"],
                                json={"type": "dataset", "manifest": b64(m), "aliases": ["x"]})
    assert again.status_code == 200 and again.json()["created"] is False
    got = team_server.request("GET", f"/api/v1/projects/{world.project}/versions/"
                              f"{logged['id']}/manifest", principals.tokens["member"])
    assert got.headers["x-reftrack-digest"] == m.digest
    assert Manifest.from_bytes(got.content).digest == m.digest == logged["digest"]


def test_writes_to_a_missing_project_create_it_for_users_only(
        team_server: TeamServer, principals: Principals) -> None:
    name = f"new-{uuid.uuid4().hex[:8]}"
    before = team_server.snapshot()
    response = team_server.request("POST", f"/api/v1/projects/{name}/runs", None,
                                   json={"run_id": "r"})
    assert response.status_code == 404 and response.json() == not_found(name)
    # a rejected first write creates no project
    response = team_server.request("POST", f"/api/v1/projects/{name}/artifacts/ds/versions",
                                   principals.tokens["outsider"],
                                   json={"type": "dataset", "manifest": b64(manifest("a")),
                                         "run_id": "missing"})
    assert response.status_code == 404
    assert team_server.snapshot() == before
    response = team_server.request("POST", f"/api/v1/projects/{name}/runs",
                                   principals.tokens["outsider"],
                                   json={"run_id": "r", "host": "laptop"})
    assert response.status_code == 201, response.text
    run = response.json()["run"]
    assert (run["user"], run["host"]) == ("outsider", "laptop")
    project = team_server.request("GET", f"/api/v1/projects/{name}",
                                  principals.tokens["outsider"]).json()
    assert (project["visibility"], project["role"]) == ("private", "admin")
    assert team_server.request("GET", f"/api/v1/projects/{name}",
                               principals.tokens["member"]).status_code == 404


def test_project_creation_and_audit(team_server: TeamServer, principals: Principals) -> None:
    name = f"made-{uuid.uuid4().hex[:8]}"
    assert team_server.request("POST", "/api/v1/projects", None,
                               json={"name": name}).status_code == 401
    response = team_server.request("POST", "/api/v1/projects", principals.tokens["member"],
                                   json={"name": name, "visibility": "public"})
    assert response.status_code == 201 and response.json()["role"] == "admin"
    taken = team_server.request("POST", "/api/v1/projects", principals.tokens["outsider"],
                                json={"name": name})
    assert taken.status_code == 409
    token = principals.tokens["member"]
    base = f"/api/v1/projects/{name}"
    assert team_server.request("PUT", f"{base}/visibility", token,
                               json={"visibility": "open"}).status_code == 200
    assert team_server.request("PUT", f"{base}/members/helper", token,
                               json={"role": "admin"}).status_code == 200
    assert team_server.request("PUT", f"{base}/members/helper", token,
                               json={"role": "member"}).status_code == 200
    removed = team_server.request("DELETE", f"{base}/members/helper", token)
    assert removed.status_code == 200
    assert (removed.json()["user"], removed.json()["removed_role"]) == ("helper", "member")
    last = team_server.request("DELETE", f"{base}/members/member", token)
    assert last.status_code == 400 and "last admin" in last.text
    rows = team_server.request("GET", f"{base}/audit", token).json()
    assert [(r["actor"], r["action"], r["subject"], r["old"], r["new"]) for r in rows] == [
        ("member", "create", None, None, "public"),
        ("member", "member_add", "member", None, "admin"),
        ("member", "visibility", None, "public", "open"),
        ("member", "member_add", "helper", None, "admin"),
        ("member", "member_role", "helper", "admin", "member"),
        ("member", "member_remove", "helper", "member", None),
    ]
    assert all(datetime.fromisoformat(r["at"]).tzinfo is not None for r in rows)
    # a server admin who is no member may manage, and is recorded as who did it
    assert team_server.request("PUT", f"{base}/visibility", principals.tokens["root"],
                               json={"visibility": "private"}).status_code == 200
    assert team_server.team().audit(name)[-1].actor == "root"


def test_service_endpoints_and_openapi(team_server: TeamServer,
                                       principals: Principals) -> None:
    assert team_server.request("GET", "/healthz").json() == {"status": "ok"}
    assert team_server.request("GET", "/api/v1/whoami").json() == {
        "anonymous": True, "user": None, "is_admin": False, "token": None}
    me = team_server.request("GET", "/api/v1/whoami", principals.tokens["root"]).json()
    assert (me["user"], me["is_admin"]) == ("root", True)
    assert team_server.request("GET", "/api/v1/clock").status_code == 200
    lease = {"store": "/tmp/blobs", "sha256s": ["0" * 64]}
    assert team_server.request("POST", "/api/v1/blob-leases", None,
                               json=lease).status_code == 401
    assert team_server.request("POST", "/api/v1/blob-leases", principals.tokens["outsider"],
                               json=lease).status_code == 204
    assert team_server.request("GET", "/docs").status_code == 200
    schema = team_server.request("GET", "/openapi.json").json()
    paths = schema["paths"]
    for case in CASES:
        template = case.path.replace("{p}", "{project}").replace("{v}", "{version_id}")
        template = template.replace("/ds/", "/{name}/")
        assert any(_same_route(template, p) and case.method.lower() in methods
                   for p, methods in paths.items()), case.id
    assert "VersionIn" in schema["components"]["schemas"]


def _same_route(concrete: str, template: str) -> bool:
    a, b = concrete.split("/"), template.split("/")
    return len(a) == len(b) and all(x == y or y.startswith("{") for x, y in zip(a, b,
                                                                              strict=True))


def test_the_same_server_over_postgresql(pg_registry_url: str, tmp_path: Any) -> None:
    """``reftrack server --registry postgresql://...``: the same rules, on PostgreSQL."""
    server = start_server(tmp_path / "pg", location=pg_registry_url)
    try:
        who = add_principals(server.team())
        world = make_world(server, "private")
        path = f"/api/v1/projects/{world.project}/artifacts/ds/versions"
        body = {"type": "dataset", "manifest": b64(manifest("pg")), "run_id": "r1"}
        assert server.request("POST", path, who.tokens["member"], json=body).status_code == 201
        before = server.snapshot()
        for token in (who.tokens["outsider"], None):
            denied = server.request("POST", path, token, json=body)
            assert (denied.status_code, denied.json()) == (404, not_found(world.project))
            missing = server.request("GET", "/api/v1/projects/absent/artifacts", token)
            assert (missing.status_code, missing.json()) == (404, not_found("absent"))
        assert server.request("POST", path, who.tokens["member"],
                              json={**body, "run_id": "../x"}).status_code == 422
        assert server.snapshot() == before
        versions = server.request("GET", path, who.tokens["root"]).json()
        assert [v["index"] for v in versions] == [0, 2]  # v1 was deleted
        got = server.request("GET", f"/api/v1/projects/{world.project}/versions/"
                             f"{versions[-1]['id']}/manifest", who.tokens["member"])
        assert Manifest.from_bytes(got.content).digest == manifest("pg").digest
        record = server.team().tokens("member")[0]
        server.team().revoke_token(record.id)
        assert server.request("GET", path, who.tokens["member"]).status_code == 401
    finally:
        server.stop()
