"""The public API end to end on each registry database (SQLite, then PostgreSQL: the
``each_registry`` fixture of pg_fixtures.py), against moto's S3 server: runs logging and using
versions, aliases, verification results kept and reused, ttl, delete, restore and gc (managed
blobs included), and lineage. Run with ``REFTRACK_TEST_REGISTRY=postgres`` to put every
test's registry on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clocks import Clock

import reftrack
from reftrack.errors import NotFound

pytestmark = pytest.mark.usefixtures("each_registry")

T0 = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)


def test_log_resolve_verify_lifecycle_and_lineage(bucket: str, put: Any, tmp_path: Path,
                                                  each_registry: str) -> None:
    clock = Clock(T0)
    settings = reftrack.Settings.from_env(clock=clock)
    assert settings.registry == each_registry
    api = reftrack.Api(settings=settings)
    first = {f"data/{i}.bin": f"first {i}".encode() for i in range(6)}
    pins = {key: put(bucket, key, data) for key, data in first.items()}

    # an ingest run logs v0 and v1 by reference, moving an alias
    with reftrack.init(project="flow", job_type="ingest", config={"src": "s3"},
                       settings=settings) as ingest:
        v0 = reftrack.Artifact("images", type="dataset", metadata={"n": 6}, settings=settings)
        v0.add_reference(f"s3://{bucket}/data/")
        ingest.log_artifact(v0, aliases=["best", "raw"])
        put(bucket, "data/6.bin", b"a seventh object")
        v1 = reftrack.Artifact("images", type="dataset", settings=settings)
        v1.add_reference(f"s3://{bucket}/data/")
        ingest.log_artifact(v1, aliases=["best"])
        ingest.log({"objects": 7})
    assert (v0.version, v1.version) == ("v0", "v1")
    assert api.artifact("flow/images:best").version == "v1"
    assert api.artifact("flow/images:raw").version == "v0"
    assert api.artifact("flow/images:latest").aliases == ["latest", "best"]
    stored = api.artifact("flow/images:v0")
    assert stored.file_count == 6 and stored.metadata == {"n": 6}
    assert stored.get_entry("3.bin").extra["versionID"] == pins["data/3.bin"]
    assert stored.manifest.digest == v0.digest

    # verification results are kept per entry, and reused by the next one
    assert api.artifact("flow/images:v1").verify().passed
    registry = api._ctx.registry
    version_id = registry.resolve("flow", "images", "v1").id
    results = registry.results(version_id)
    assert len(results) == 7 and {r.status for r in results.values()} == {"ok"}
    assert {r.checked_at for r in results.values()} == {T0}
    again = api.artifact("flow/images:v1").verify(since=timedelta(hours=1))
    assert again.passed and again.reused == 7
    put(bucket, "data/0.bin", b"overwritten")  # the pinned version still verifies
    assert api.artifact("flow/images:v0").verify().passed

    # a training run uses v1 and logs a model (with a managed file) in its turn
    (tmp_path / "weights.pt").write_bytes(b"weights")
    with reftrack.init(project="flow", job_type="train", settings=settings) as train:
        train.use_artifact("images:best")
        model = reftrack.Artifact("model", type="model", settings=settings)
        model.add_file(tmp_path / "weights.pt")
        train.log_artifact(model)
    model = api.artifact("flow/model:latest")
    assert model.logged_by().id == train.id
    assert [r.id for r in api.artifact("flow/images:v1").used_by()] == [train.id]
    assert api.artifact("flow/images:v0").logged_by().id == ingest.id
    assert api.run(f"flow/{ingest.id}").summary == {"objects": 7}
    assert [r.id for r in api.runs("flow", order="+started_at")] == [ingest.id, train.id]

    # ttl, delete, restore, gc
    api.artifact("flow/images:v0").ttl = timedelta(days=10)
    assert api.artifact("flow/images:v0").expires_at == T0 + timedelta(days=10)
    api.artifact("flow/images:v1").delete(delete_aliases=True)
    assert api.artifact("flow/images:latest").version == "v0"
    with pytest.raises(NotFound, match="was deleted on"):
        api.artifact("flow/images:v1")
    assert api.restore("flow/images:v1").version == "v1"
    assert api.artifact("flow/images:latest").version == "v1"
    with pytest.raises(NotFound, match="no alias 'best'"):  # deleted aliases stay deleted
        api.artifact("flow/images:best")
    (tmp_path / "weights.pt").write_bytes(b"weights, retrained")
    model = api.artifact("flow/model:v0")
    model.delete()
    clock.advance(days=11)  # v0 expired; the model's v0 deleted, past any grace below
    report = api.gc(grace=timedelta(days=1))
    assert sorted(v.version for v in report.versions) == ["flow/images:v0", "flow/model:v0"]
    assert report.manifests == 2 and len(report.blobs) == 1 and report.ok
    assert [v.version for v in api.artifact_versions("flow/images")] == ["v1"]
    assert api.artifact("flow/images:v1").verify().passed  # pinned, though overwritten since
    # version numbers are never given again, even after a purge
    with reftrack.init(project="flow", job_type="ingest", settings=settings) as rerun:
        v2 = reftrack.Artifact("images", type="dataset", settings=settings)
        v2.add_reference(f"s3://{bucket}/data/")
        rerun.log_artifact(v2)
    assert v2.version == "v2"
