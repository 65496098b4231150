"""Runs, log_artifact/use_artifact, and Api().artifact(...) — the W&B-shaped surface."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import reftrack
from reftrack.errors import NotFound, UsageError


@pytest.fixture
def data(bucket: str, put: Any) -> str:
    put(bucket, "d/a.png", b"A")
    put(bucket, "d/b.png", b"BB")
    return f"s3://{bucket}/d/"


def test_wandb_workflow(data: str, bucket: str, put: Any) -> None:
    with reftrack.init(project="proj", job_type="ingest", config={"source": "s3"}) as run:
        assert run.state == "running" and run.config == {"source": "s3"}
        art = reftrack.Artifact("images", type="dataset", description="raw images",
                                metadata={"count": 2})
        art.add_reference(data)
        assert art.name == "images" and not art.is_logged and art.aliases == []
        logged = run.log_artifact(art, aliases=["raw"])
    assert logged is art and art.new_version is True
    assert art.name == "images:v0" and art.version == "v0"
    assert art.qualified_name == "proj/images:v0" and art.project == "proj"
    assert art.aliases == ["latest", "raw"] and run.state == "finished"

    fetched = reftrack.Api().artifact("proj/images:raw")
    assert fetched.version == "v0" and fetched.type == "dataset"
    assert fetched.description == "raw images" and fetched.metadata == {"count": 2}
    assert fetched.digest == art.digest and fetched.file_count == 2 and fetched.size == 3
    entry = fetched.manifest.entries["a.png"]
    assert entry.extra["versionID"] == art.manifest.entries["a.png"].version_id
    assert entry.ref == f"s3://{bucket}/d/a.png"
    assert fetched.get_entry("b.png").size == 2
    with pytest.raises(NotFound, match="no entry"):
        fetched.get_entry("c.png")

    with reftrack.init(project="proj", job_type="train") as trainer:
        used = trainer.use_artifact("images:latest", type="dataset")
        assert used.version == "v0"
        assert [a.qualified_name for a in trainer.used_artifacts()] == ["proj/images:v0"]
    producer = fetched.logged_by()
    assert producer is not None and producer.id == run.id and producer.job_type == "ingest"
    assert [r.id for r in fetched.used_by()] == [trainer.id]
    assert [a.qualified_name for a in run.logged_artifacts()] == ["proj/images:v0"]


def test_same_content_is_not_a_new_version(data: str) -> None:
    for aliases in (["first"], ["second"]):
        with reftrack.init(project="p") as run:
            art = reftrack.Artifact("ds", type="dataset")
            art.add_reference(data)
            run.log_artifact(art, aliases=aliases)
    assert art.new_version is False and art.version == "v0"
    assert art.aliases == ["latest", "first", "second"]
    assert [a.version for a in reftrack.Api().artifact_versions("p/ds")] == ["v0"]


def test_new_content_is_a_new_version_and_latest_moves(data: str, bucket: str,
                                                       put: Any) -> None:
    with reftrack.init(project="p") as run:
        a0 = reftrack.Artifact("ds", type="dataset")
        a0.add_reference(data)
        run.log_artifact(a0, aliases=["best"])
    put(bucket, "d/a.png", b"changed")
    with reftrack.init(project="p") as run:
        a1 = reftrack.Artifact("ds", type="dataset")
        a1.add_reference(data)
        run.log_artifact(a1, aliases=["best"])
    api = reftrack.Api()
    assert a1.version == "v1" and api.artifact("p/ds").version == "v1"
    assert api.artifact("p/ds:best").version == "v1"
    assert api.artifact("p/ds:v0").aliases == []
    summary = api.artifact_collections("p")[0]
    assert (summary.versions, summary.latest, summary.aliases) == (2, "v1", {"best": "v1"})
    assert api.projects() == ["p"]


def test_run_state_and_errors(data: str) -> None:
    with pytest.raises(RuntimeError), reftrack.init(project="p", job_type="boom") as run:
        raise RuntimeError("job failed")
    assert run.state == "crashed"
    assert reftrack.Api().run(f"p/{run.id}").state == "crashed"
    with pytest.raises(UsageError, match="is crashed"):
        run.log_artifact(reftrack.Artifact("x", type="t"))

    with reftrack.init(project="p") as run:
        with pytest.raises(UsageError, match="no entries"):
            run.log_artifact(reftrack.Artifact("empty", type="dataset"))
        art = reftrack.Artifact("ds", type="dataset")
        art.add_reference(data)
        with pytest.raises(UsageError, match="list of strings"):
            run.log_artifact(art, aliases="best")  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="alias"):
            run.log_artifact(art, aliases=["no/slash"])
        run.log_artifact(art)
        with pytest.raises(UsageError, match="already logged"):
            run.log_artifact(art)
        with pytest.raises(UsageError, match="immutable"):
            art.add_reference(data)
        with pytest.raises(UsageError, match="immutable"):
            art.metadata = {"x": 1}
        with pytest.raises(UsageError, match="lineage must not loop"):
            run.use_artifact("ds:v0")
        with pytest.raises(UsageError, match="not 'model'"):
            reftrack.Api().artifact("p/ds:v0", type="model")
        with pytest.raises(UsageError, match="not logged"):
            run.use_artifact(reftrack.Artifact("fresh", type="dataset"))
    with pytest.raises(UsageError, match="not logged yet"):
        _ = reftrack.Artifact("fresh", type="dataset").version


def test_not_found(data: str) -> None:
    api = reftrack.Api()
    with pytest.raises(NotFound, match="project 'nope' does not exist"):
        api.artifact("nope/ds:v0")
    with reftrack.init(project="p") as run:
        run.log_artifact(data, name="ds", type="dataset")
    with pytest.raises(NotFound, match="no version v5"):
        api.artifact("p/ds:v5")
    with pytest.raises(NotFound, match="no alias 'prod'"):
        api.artifact("p/ds:prod")
    with pytest.raises(UsageError, match="project/name"):
        api.artifact("justaname")
    assert reftrack.Api(project="p").artifact("ds:v0").version == "v0"


def test_log_artifact_from_a_uri(data: str) -> None:
    with reftrack.init(project="p") as run:
        art = run.log_artifact(data, name="quick", type="dataset", aliases=["a"])
        with pytest.raises(UsageError, match=r"name=\.\.\. and type="):
            run.log_artifact(data)
    assert art.qualified_name == "p/quick:v0" and art.file_count == 2


def test_registry_argument_overrides_the_environment(data: str, tmp_path: Path) -> None:
    other = str(tmp_path / "elsewhere.db")
    with reftrack.init(project="p", registry=other) as run:
        run.log_artifact(data, name="ds", type="dataset")
    assert reftrack.Api(registry=other).artifact("p/ds:v0").file_count == 2
    with pytest.raises(NotFound):
        reftrack.Api().artifact("p/ds:v0")
    settings = reftrack.Settings(registry=other)
    assert reftrack.Api(settings=settings).artifact("p/ds").version == "v0"


def test_init_validates(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="project name"):
        reftrack.init(project="bad/project")
    with pytest.raises(UsageError, match="config must be a dict"):
        reftrack.init(project="p", config=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="JSON"):
        reftrack.init(project="p", config={"f": open})
    run = reftrack.init(project="p", id="fixed-id", name="my run")
    assert run.id == "fixed-id" and run.path == "p/fixed-id" and run.name == "my run"
    run.finish()
    run.finish()  # idempotent
    with pytest.raises(UsageError, match="already exists"):
        reftrack.init(project="p", id="fixed-id")
