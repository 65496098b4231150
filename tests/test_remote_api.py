"""The public API and the CLI over the team registry server (``REFTRACK_REGISTRY=http://...``
with ``REFTRACK_TOKEN``), against a real ``reftrack server`` process on 127.0.0.1 and moto's
S3: the same flow gives the same answers as on a local SQLite registry, the client reads the
buckets itself (no cloud credential reaches the server), a reader of a public project can
verify (without storing results), and the server's errors come back as reftrack's."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_fixtures import TeamServer, free_port
from typer.testing import CliRunner

import reftrack
from reftrack.cli import app
from reftrack.errors import (
    AccessDenied,
    BackendError,
    Forbidden,
    NotFound,
    ReftrackError,
    UsageError,
)
from reftrack.registry.remote import RemoteRegistry

P = "vision"
KEY_ID = "AKIACLIENTONLY0000001"
SECRET = "client-only-secret-3f9a7c"
"""The client's cloud credentials: moto accepts any; they must never reach the server."""


@pytest.fixture(scope="module")
def tokens(team_server: TeamServer) -> dict[str, str]:
    team_server.reset()
    team = team_server.team()
    out = {}
    for name in ("alice", "bob", "reader"):
        team.add_user(name)
        out[name] = team.create_token(name, "tests")[1]
    return out


@pytest.fixture
def fresh(team_server: TeamServer, tokens: dict[str, str]) -> Iterator[TeamServer]:
    """The server with no projects, artifacts or runs (users and tokens kept)."""
    from reftrack.registry import schema as t

    keep = {"reftrack_meta", "users", "api_tokens"}
    with team_server.registry()._write() as conn:
        for table in reversed(t.metadata.sorted_tables):
            if table.name not in keep:
                conn.execute(table.delete())
    yield team_server


@pytest.fixture
def client_env(monkeypatch: pytest.MonkeyPatch, s3: Any) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)


def remote_settings(server: TeamServer, token: str | None, tmp_path: Path,
                    **extra: Any) -> reftrack.Settings:
    return reftrack.Settings(registry=server.url, token=token,
                             blob_store=str(tmp_path / "blobs"), **extra)


# -- the same flow, on SQLite and through the server ---------------------------------------


def _version(art: reftrack.Artifact) -> dict[str, Any]:
    return art._logged().model_dump(exclude={"id", "created_at", "expires_at", "deleted_at"})


def _run(run: reftrack.Run) -> dict[str, Any]:
    return {"id": run.id, "name": run.name, "job_type": run.job_type, "config": run.config,
            "state": run.state, "summary": dict(run.summary), "group": run.group}


def _error(call: Callable[[], Any]) -> tuple[str, str]:
    try:
        call()
    except ReftrackError as exc:
        return type(exc).__name__, re.sub(r"\d", "#", str(exc))
    raise AssertionError("no error")


def flow(settings: reftrack.Settings, bucket: str, old_version: str, work: Path, tag: str
         ) -> dict[str, Any]:
    """The main public API, end to end; returns what it saw, without ids and timestamps."""
    out: dict[str, Any] = {}
    with reftrack.init(project=P, id="ingest", job_type="ingest", config={"src": "s3"},
                       settings=settings) as ingest:
        raw = reftrack.Artifact("images", type="dataset", metadata={"n": 5}, settings=settings)
        raw.add_reference(f"s3://{bucket}/data/")
        raw.add_reference(f"s3://{bucket}/moved/x.bin?versionId={old_version}",
                          name="x-old.bin")
        ingest.log_artifact(raw, aliases=["raw", "best"])
        one = reftrack.Artifact("images", type="dataset", settings=settings)
        one.add_reference(f"s3://{bucket}/data/0.bin")
        ingest.log_artifact(one, aliases=["best"])
        same = reftrack.Artifact("images", type="dataset", settings=settings)
        same.add_reference(f"s3://{bucket}/data/0.bin")
        ingest.log_artifact(same, aliases=["again"])
        out["logged"] = [(a.version, a.new_version, a.aliases) for a in (raw, one, same)]
        ingest.log({"objects": 5})
    with reftrack.init(project=P, id="train", job_type="train", config={"lr": 0.1},
                       settings=settings) as train:
        used = train.use_artifact("images:raw")
        model = reftrack.Artifact("model", type="model", settings=settings)
        model.add_file(work / "weights.bin")
        model.add_reference(str(work / "card.txt"))
        train.log_artifact(model, aliases=["prod"])
        train.log({"acc": 0.9})
        train.log({"acc": 0.95, "loss": 0.1})
        out["train"] = ([a.qualified_name for a in train.used_artifacts()],
                        [a.qualified_name for a in train.logged_artifacts()], used.version)
    with reftrack.init(project=P, id="eval", job_type="eval", config={"lr": 0.01},
                       settings=settings) as evaluation:
        evaluation.use_artifact(f"{P}/model:prod", type="model")
        evaluation.log({"acc": 0.5})
    crashed = reftrack.init(project=P, id="crash", settings=settings)
    crashed.finish(1)

    api = reftrack.Api(settings=settings)
    best = api.artifact(f"{P}/images:raw")
    out["raw"] = _version(best)
    out["versions"] = [_version(a) for a in api.artifact_versions(f"{P}/images")]
    out["collections"] = [s.model_dump(exclude={"updated_at"})
                          for s in api.artifact_collections(P)]
    out["everything"] = [(s.project, s.name) for s in api.artifact_collections()]
    out["projects"] = api.projects()
    out["entries"] = {p: e.model_dump() for p, e in best.manifest.entries.items()}
    out["pinned"] = best.get_entry("x-old.bin").extra["versionID"]
    out["sources"] = [s.model_dump() for s in best.manifest.sources]
    out["missing"] = [_error(lambda: api.artifact(f"{P}/images:nope")),
                      _error(lambda: api.artifact(f"{P}/nothing:v0")),
                      _error(lambda: api.artifact(f"{P}/images:v9"))]

    target = work / f"download-{tag}"
    path = best.download(target)
    out["download"] = sorted(
        (str(f.relative_to(path)), hashlib.sha256(f.read_bytes()).hexdigest())
        for f in Path(path).rglob("*") if f.is_file())
    model_dir = api.artifact(f"{P}/model:prod").download(target / "model")
    out["model_files"] = sorted(p.name for p in Path(model_dir).iterdir())

    report = api.artifact(f"{P}/images:raw").verify()
    out["verify"] = (report.summary, report.passed, report.requests, report.results_stored,
                     sorted((e.path, e.status.value, e.reused) for e in report.entries))
    again = api.artifact(f"{P}/images:raw").verify(since=timedelta(hours=1))
    out["verify_since"] = (again.checked, again.reused, again.requests, again.summary)

    prod = api.artifact(f"{P}/model:prod")
    logged_by = prod.logged_by()
    out["logged_by"] = _run(logged_by) if logged_by else None
    out["used_by"] = [_run(r) for r in api.artifact(f"{P}/images:raw").used_by()]
    graph = prod.lineage()
    out["lineage"] = (sorted((n.id, n.kind, n.side, n.depth) for n in graph.nodes),
                      sorted((e.source, e.target, e.kind) for e in graph.edges),
                      graph.truncated)
    out["lineage_up"] = sorted(n.id for n in api.run(f"{P}/train").lineage("upstream").nodes)
    source_versions = prod.sources()
    out["source_versions"] = [s.qualified_name for s in source_versions]
    out["references"] = [[r.model_dump() for r in s.references(api._ctx.registry)]
                         for s in source_versions]

    out["runs"] = [r.id for r in api.runs(P)]
    out["runs_good"] = [r.id for r in api.runs(P, {"summary.acc": {"$gt": 0.6}},
                                                order="-summary.acc")]
    out["runs_crashed"] = [_run(r) for r in api.runs(P, {"state": "crashed"})]
    out["runs_lr"] = [r.id for r in api.runs(P, {"$or": [{"config.lr": 0.1},
                                                         {"config.lr": 0.01}]})]
    out["history"] = api.run(f"{P}/train").history()
    out["run"] = _run(api.run(f"{P}/train"))

    prod.ttl = timedelta(days=2)
    out["ttl"] = (prod.ttl, api.artifact(f"{P}/model:prod").ttl)
    out["project_ttl"] = (api.set_project_ttl(P, timedelta(days=30)), api.project_ttl(P),
                          api.artifact(f"{P}/images:v0").ttl, prod.ttl)
    api.set_project_ttl(P, None)

    v1 = api.artifact(f"{P}/images:v1")
    out["delete_refused"] = _error(lambda: v1.delete())
    v1.delete(delete_aliases=True)
    out["after_delete"] = ([a.version for a in api.artifact_versions(f"{P}/images")],
                           api.artifact(f"{P}/images:latest").version,
                           _error(lambda: api.artifact(f"{P}/images:v1"))[0])
    restored = api.restore(f"{P}/images:v1")
    out["restored"] = (restored.version, restored.aliases,
                       api.artifact(f"{P}/images:latest").version)
    out["restore_again"] = _error(lambda: api.restore(f"{P}/images:v1"))
    return out


@pytest.fixture
def bucket_data(bucket: str, put: Callable[..., str], tmp_path: Path) -> tuple[str, Path]:
    for i in range(5):
        put(bucket, f"data/{i}.bin", f"object {i}".encode())
    old = put(bucket, "moved/x.bin", b"the first x")
    put(bucket, "moved/x.bin", b"the second x")  # the pinned version is no longer current
    work = tmp_path / "work"
    work.mkdir()
    (work / "weights.bin").write_bytes(b"\x00weights" * 100)
    (work / "card.txt").write_text("a model card")
    return old, work


def test_the_public_api_over_the_server_matches_sqlite(
        fresh: TeamServer, tokens: dict[str, str], bucket: str, client_env: None,
        bucket_data: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, work = bucket_data
    local = reftrack.Settings(registry=str(tmp_path / "local.db"),
                              blob_store=str(tmp_path / "blobs"))
    expected = flow(local, bucket, old, work, "local")

    seen: list[httpx.Request] = []
    send = httpx.Client.send

    def recording(client: httpx.Client, request: httpx.Request, **kwargs: Any
                  ) -> httpx.Response:
        if str(request.url).startswith(fresh.url):
            seen.append(request)
        return send(client, request, **kwargs)

    monkeypatch.setattr(httpx.Client, "send", recording)
    got = flow(remote_settings(fresh, tokens["alice"], tmp_path), bucket, old, work, "remote")

    for key in expected:
        assert got[key] == expected[key], key
    assert got == expected
    assert got["pinned"] == old and got["verify"][1] and got["verify"][0]["moved"] == 1
    assert got["verify_since"][:3] == (0, 6, 0)
    # Only metadata and manifests reached the server: never a cloud credential
    assert seen and all(r.headers["authorization"] == f"Bearer {tokens['alice']}" for r in seen)
    for request in seen:
        sent = (str(request.url) + repr(dict(request.headers))).encode() + request.content
        assert KEY_ID.encode() not in sent and SECRET.encode() not in sent
    server_env = Path(f"/proc/{fresh.process.pid}/environ")
    if server_env.exists():  # Linux: the server process has no cloud credentials at all
        names = {item.split(b"=", 1)[0] for item in server_env.read_bytes().split(b"\0")}
        assert not {b"AWS_ACCESS_KEY_ID", b"AWS_SECRET_ACCESS_KEY"} & names
    # the run was stamped with the token's user on the server
    assert fresh.registry().run(P, "train").user == "alice"


# -- the command line --------------------------------------------------------------------------


def _cli(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(app, list(args), env=env)


def test_the_cli_over_the_server(fresh: TeamServer, tokens: dict[str, str], bucket: str,
                                 put: Callable[..., str], client_env: None,
                                 tmp_path: Path) -> None:
    for i in range(3):
        put(bucket, f"cli/{i}.txt", f"line {i}".encode())
    env = {"REFTRACK_REGISTRY": fresh.url, "REFTRACK_TOKEN": tokens["bob"]}
    logged = _cli(env, "log", f"s3://{bucket}/cli/", "-p", "cli", "-n", "texts", "-a", "gold")
    assert logged.exit_code == 0, logged.output
    assert "logged cli/texts:v0" in logged.output

    listing = _cli(env, "ls", "cli")
    assert listing.exit_code == 0 and "texts" in listing.output
    shown = _cli(env, "show", "cli/texts:gold", "--offline", "--json")
    assert shown.exit_code == 0, shown.output
    assert '"qualified_name": "cli/texts:v0"' in shown.output
    verified = _cli(env, "verify", "cli/texts:gold")
    assert verified.exit_code == 0, verified.output
    assert "INTACT" in verified.output and "not stored" not in verified.output
    reused = _cli(env, "verify", "cli/texts:gold", "--since", "1h", "--json")
    assert reused.exit_code == 0 and '"reused": 3' in reused.output
    got = _cli(env, "get", "cli/texts:gold", str(tmp_path / "dl"))
    assert got.exit_code == 0, got.output
    assert (tmp_path / "dl" / "1.txt").read_bytes() == b"line 1"
    lineage = _cli(env, "lineage", "cli/texts:gold", "-f", "json")
    assert lineage.exit_code == 0 and '"run:cli/' in lineage.output
    diff = _cli(env, "diff", "cli/texts:v0", "cli/texts:gold", "--json")
    assert diff.exit_code == 0 and '"identical": true' in diff.output
    ttl = _cli(env, "ttl", "cli/texts:v0", "30d")
    assert ttl.exit_code == 0, ttl.output

    # errors keep the exit codes of a local registry; the token is never shown
    outputs = []
    for code, extra_env, args, needle in [
        (4, {}, ("show", "cli/texts:nope"), "no alias 'nope'"),
        (4, {"REFTRACK_TOKEN": ""}, ("show", "cli/texts:gold"), "REFTRACK_TOKEN"),
        (5, {"REFTRACK_TOKEN": "rt_not-a-real-token"}, ("ls",), "REFTRACK_TOKEN"),
        (2, {}, ("admin", "user", "list"), "server's machine"),
    ]:
        result = _cli({**env, **extra_env}, *args)
        outputs.append(result.output)
        assert result.exit_code == code, (args, result.output)
        assert needle in " ".join(result.output.split()), (args, result.output)
    assert not any(tokens["bob"] in text for text in outputs)

    down = _cli({**env, "REFTRACK_REGISTRY": f"http://127.0.0.1:{free_port()}"}, "ls")
    assert down.exit_code == 3 and "cannot reach the registry server" in down.output


# -- verify as a reader ---------------------------------------------------------------------------


def test_a_reader_verifies_without_storing_results(fresh: TeamServer, tokens: dict[str, str],
                                                  bucket: str, put: Callable[..., str],
                                                  client_env: None, tmp_path: Path) -> None:
    for i in range(4):
        put(bucket, f"pub/{i}", b"x" * i)
    member = remote_settings(fresh, tokens["alice"], tmp_path)
    with reftrack.init(project="open-data", settings=member) as run:
        run.log_artifact(f"s3://{bucket}/pub/", name="pub", type="dataset")
    fresh.team().set_visibility("open-data", "public", by="alice")
    version_id = fresh.registry().resolve("open-data", "pub").id

    reader = reftrack.Api(settings=remote_settings(fresh, tokens["reader"], tmp_path))
    report = reader.artifact("open-data/pub:latest").verify()
    assert report.passed and report.checked == 4 and report.results_stored is False
    assert fresh.registry().results(version_id) == {}  # nothing was stored
    assert fresh.registry().last_verification(version_id) is None
    with pytest.raises(Forbidden, match="may read project 'open-data' but not write"):
        reader.artifact("open-data/pub:latest").ttl = timedelta(days=1)

    # a member's verification stores them; the reader then reuses them
    stored = reftrack.Api(settings=member).artifact("open-data/pub:latest").verify()
    assert stored.results_stored is True and len(fresh.registry().results(version_id)) == 4
    again = reader.artifact("open-data/pub:latest").verify(since=timedelta(hours=1))
    assert (again.reused, again.checked, again.requests) == (4, 0, 0)

    env = {"REFTRACK_REGISTRY": fresh.url, "REFTRACK_TOKEN": tokens["reader"]}
    result = _cli(env, "verify", "open-data/pub:latest")
    assert result.exit_code == 0, result.output
    assert "results not stored" in result.output
    as_json = _cli(env, "verify", "open-data/pub:latest", "--json")
    assert '"results_stored": false' in as_json.output
    anonymous = _cli({"REFTRACK_REGISTRY": fresh.url}, "verify", "open-data/pub:latest")
    assert anonymous.exit_code == 0 and "results not stored" in anonymous.output


# -- selection, URLs, tokens and errors ----------------------------------------------------------


def test_server_urls_tokens_and_settings(team_server: TeamServer, tokens: dict[str, str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFTRACK_REGISTRY", team_server.url)
    monkeypatch.setenv("REFTRACK_TOKEN", tokens["alice"] + "\n")
    settings = reftrack.Settings.from_env()
    assert settings.token == tokens["alice"]
    assert tokens["alice"] not in repr(settings) and tokens["alice"] not in str(settings)
    assert "token" not in settings.model_dump()
    registry = reftrack.Api(settings=settings)._ctx.registry
    assert isinstance(registry, RemoteRegistry)
    assert repr(registry) == f"RemoteRegistry({team_server.url!r})"
    assert isinstance(registry.projects(), list)
    assert abs((registry.now() - team_server.registry().now()).total_seconds()) < 5

    with pytest.raises(UsageError, match=r"refusing plain http:// to http://reftrack\.example"):
        RemoteRegistry("http://reftrack.example:8080")
    monkeypatch.setenv("REFTRACK_ALLOW_INSECURE_HTTP", "1")
    assert RemoteRegistry("http://reftrack.example:8080/api/v1/").url == \
        "http://reftrack.example:8080"
    monkeypatch.delenv("REFTRACK_ALLOW_INSECURE_HTTP")
    for loopback in ("http://localhost:1", "http://[::1]:1", "http://127.0.0.2:1"):
        RemoteRegistry(loopback).close()
    with pytest.raises(UsageError, match="must not hold credentials") as caught:
        RemoteRegistry("https://bob:hunter2@reftrack.example")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(UsageError, match="REFTRACK_TOKEN is malformed"):
        RemoteRegistry(team_server.url, "two words")

    unknown = RemoteRegistry(team_server.url, "rt_unknown")
    with pytest.raises(AccessDenied, match="refused the token") as denied:
        unknown.projects()
    assert "rt_unknown" not in str(denied.value)
    anonymous = RemoteRegistry(team_server.url)
    with pytest.raises(NotFound, match="you are anonymous"):
        anonymous.resolve("no-such-project", "x")
    with pytest.raises(AccessDenied, match="set REFTRACK_TOKEN"):
        anonymous.lease_blobs("/blobs", ["0" * 64])
    with pytest.raises(UsageError, match="not read through this registry client"):
        anonymous.history(12345)
    down = RemoteRegistry(f"http://127.0.0.1:{free_port()}", "rt_secret-token")
    with pytest.raises(BackendError, match="cannot reach the registry server") as caught_down:
        down.projects()
    assert "rt_secret-token" not in str(caught_down.value)
    assert caught_down.value.exit_code == 3
    for registry_ in (registry, unknown, anonymous, down):
        registry_.close()


@pytest.mark.parametrize("status", [502, 503])
def test_idempotent_requests_are_retried_writes_are_not(status: int,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) < 3:
            return httpx.Response(status, text="proxy trouble")
        return httpx.Response(200, json=[{"name": "p", "visibility": "open",
                                          "created_at": "2026-01-01T00:00:00Z", "role": None}])

    registry = RemoteRegistry("http://127.0.0.1:1", "rt_x")
    monkeypatch.setattr("reftrack.registry.remote_http.BACKOFF", 0.001)
    registry._http.client = httpx.Client(base_url="http://127.0.0.1:1/api/v1",
                                         transport=httpx.MockTransport(handler))
    assert registry.projects() == ["p"] and calls == ["GET"] * 3
    calls.clear()
    with pytest.raises(BackendError, match=f"HTTP {status}"):
        registry.create_run(project="p", run_id="r")
    assert calls == ["POST"]


def test_the_environment_selects_the_server(team_server: TeamServer, tokens: dict[str, str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFTRACK_REGISTRY", team_server.url)
    monkeypatch.setenv("REFTRACK_TOKEN", tokens["bob"])
    with reftrack.init(project="env-selected", id="r0") as run:
        run.log({"x": 1})
    assert team_server.registry().run("env-selected", "r0").summary == {"x": 1}
    assert os.environ["REFTRACK_TOKEN"] == tokens["bob"]


# -- protect / unprotect through the server ---------------------------------------------------


def test_protect_and_unprotect_over_the_server(fresh: TeamServer, tokens: dict[str, str],
                                               s3: Any, put: Any, client_env: None,
                                               tmp_path: Path) -> None:
    """Legal holds are placed by the client on the bucket (its own credentials); the server
    only records the version as protected, which then refuses deletion as locally."""
    from test_bucketrules import LOCKED, hold, locked_bucket

    versions = locked_bucket(s3, put)
    settings = remote_settings(fresh, tokens["alice"], tmp_path)
    with reftrack.init(project=P, job_type="ingest", settings=settings) as run:
        art = reftrack.Artifact("locked", type="dataset", settings=settings)
        art.add_reference(f"s3://{LOCKED}/d/")
        run.log_artifact(art)
    api = reftrack.Api(settings=settings)
    logged = api.artifact(f"{P}/locked:v0")
    report = logged.protect()
    assert report.protected and report.succeeded == 3 and report.hold
    assert {hold(s3, k, v) for k, v in versions.items()} == {"ON"}
    assert api.artifact(f"{P}/locked:v0")._logged().protected  # recorded on the server
    assert fresh.registry().resolve(P, "locked", "v0").protected
    with pytest.raises(ReftrackError, match="protected"):
        api.artifact(f"{P}/locked:v0").delete(delete_aliases=True)
    assert logged.unprotect().protected is False
    assert {hold(s3, k, v) for k, v in versions.items()} == {"OFF"}
    assert fresh.registry().resolve(P, "locked", "v0").protected is False
    reader = reftrack.Api(settings=remote_settings(fresh, tokens["reader"], tmp_path))
    with pytest.raises(ReftrackError):  # not a member of the private project: not found
        reader.artifact(f"{P}/locked:v0").protect()
    assert {hold(s3, k, v) for k, v in versions.items()} == {"OFF"}


def test_run_filters_are_applied_by_the_server(fresh: TeamServer, tokens: dict[str, str],
                                               tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from reftrack.registry.remote_http import Transport

    settings = remote_settings(fresh, tokens["alice"], tmp_path)
    for i, acc in enumerate((0.5, 0.9, 0.7)):
        with reftrack.init(project=P, id=f"r{i}", config={"lr": i / 10},
                           settings=settings) as run:
            run.log({"acc": acc})
    answers: list[tuple[str, Any, int]] = []
    real = Transport.call

    def spy(self: Transport, method: str, path: str, **kwargs: Any) -> Any:
        data = real(self, method, path, **kwargs)
        answers.append((path, kwargs.get("params"), len(data) if isinstance(data, list) else -1))
        return data

    monkeypatch.setattr(Transport, "call", spy)
    api = reftrack.Api(settings=settings)
    best = api.runs(P, {"summary.acc": {"$gte": 0.7}}, order="-summary.acc")
    assert [r.id for r in best] == ["r1", "r2"]
    [(_path, params, count)] = [a for a in answers if a[0].endswith("/runs")]
    assert params["order"] == "-summary.acc" and '"$gte": 0.7' in params["filters"]
    assert count == 2  # only the matches came back
    with pytest.raises(UsageError, match="JSON values"):
        api.runs(P, {"config.lr": {"$in": [object()]}})
    with pytest.raises(UsageError, match="order"):
        api.runs(P, order="sideways")
