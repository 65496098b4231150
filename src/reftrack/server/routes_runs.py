"""Run endpoints: create or resume, get, list (with the W&B-style filters of
``Api().runs``), summary, history, finish, and the lineage edges (inputs, outputs)."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from ..errors import UsageError
from ..registry import RunRecord, VersionRecord, check_json
from .access import Decision, decide
from .deps import ApiError, ProjectContext, not_found, project_access
from .models import FinishIn, HistoryIn, RunCreate, RunCreated, RunId, SummaryIn, UseIn

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/projects/{project}/runs", tags=["runs"])

Reader = Annotated[ProjectContext, Depends(project_access("read"))]
Writer = Annotated[ProjectContext, Depends(project_access("write"))]
Creator = Annotated[ProjectContext, Depends(project_access("write", create=True))]
Id = Annotated[RunId, Path(description="The run's id.")]


def _run(ctx: ProjectContext, run_id: str) -> RunRecord:
    return ctx.registry.run(ctx.name, run_id)


@router.get("", response_model=list[RunRecord])
def list_runs(
    ctx: Reader,
    filters: Annotated[str | None, Query(
        max_length=64 * 1024, description="MongoDB-style filters as JSON, as Api().runs "
        'takes them: {"state": "finished", "summary.acc": {"$gt": 0.9}}')] = None,
    order: Annotated[str, Query(max_length=256)] = "+started_at",
) -> list[RunRecord]:
    """The runs of the project matching ``filters``, sorted by ``order``
    (``-summary.val_acc``: best first)."""
    wanted = {}
    if filters is not None:
        try:
            wanted = json.loads(filters)
        except (ValueError, RecursionError) as exc:
            raise UsageError(f"filters must be JSON ({exc})") from None
        if not isinstance(wanted, dict):
            raise UsageError("filters must be a JSON object")
    return ctx.registry.runs(ctx.name, wanted, order)


@router.post("", response_model=RunCreated, status_code=201,
             responses={200: {"description": "An existing run was resumed."}})
def create_run(body: RunCreate, ctx: Creator, response: Response) -> RunCreated:
    """Start a run, or resume one (``resume``: never, allow, must). The project is created
    (private, the caller its admin) when this is its first write. The run records the
    caller's user name and the ``host`` the client gives."""
    config = check_json(body.config, "config")
    ctx.ensure()
    try:
        record, resumed = ctx.registry.create_run(
            project=ctx.name, run_id=body.run_id, name=body.name, job_type=body.job_type,
            config=config, group=body.group, sweep=body.sweep, resume=body.resume,
            git_commit=body.git_commit, git_remote=body.git_remote, program=body.program,
            notes=body.notes, origin=(ctx.principal.name, body.host))
    except BaseException:
        ctx.undo()
        raise
    response.status_code = 200 if resumed else 201
    return RunCreated(run=record, resumed=resumed)


@router.get("/{run_id}", response_model=RunRecord)
def get_run(run_id: Id, ctx: Reader) -> RunRecord:
    return _run(ctx, run_id)


@router.patch("/{run_id}/summary", response_model=RunRecord)
def update_summary(run_id: Id, body: SummaryIn, ctx: Writer) -> RunRecord:
    """Merge ``values`` into the summary."""
    return ctx.registry.update_summary(_run(ctx, run_id).pk, body.values)


@router.post("/{run_id}/history", response_model=RunRecord)
def log_history(run_id: Id, body: HistoryIn, ctx: Writer) -> RunRecord:
    """Store one step of metrics (the next, or ``step``) and fold it into the summary."""
    return ctx.registry.log_history(_run(ctx, run_id).pk, body.data, body.step)


@router.get("/{run_id}/history", response_model=list[dict[str, object]])
def history(run_id: Id, ctx: Reader) -> list[dict[str, object]]:
    return ctx.registry.history(_run(ctx, run_id).pk)


@router.post("/{run_id}/finish", response_model=RunRecord)
def finish(run_id: Id, body: FinishIn, ctx: Writer) -> RunRecord:
    return ctx.registry.finish_run(_run(ctx, run_id).pk, body.state)


@router.post("/{run_id}/inputs", status_code=204)
def record_use(run_id: Id, body: UseIn, ctx: Writer) -> Response:
    """Record that the run used a version (of this or another project the caller may
    read)."""
    run = _run(ctx, run_id)
    found = ctx.team.project(body.project)
    role = None
    if found is not None and ctx.principal.user is not None:
        role = ctx.team.role(found.id, ctx.principal.user.id)
    if decide(ctx.principal, found, role, "read") is not Decision.ALLOW:
        raise not_found(body.project)
    version = ctx.team.version(body.version_id)
    if version is None or version.project != body.project:
        raise ApiError(404, "NotFound", f"version {body.version_id} does not exist in project "
                       f"{body.project!r}")
    ctx.registry.record_use(run.pk, version)
    return Response(status_code=204)


@router.get("/{run_id}/inputs", response_model=list[VersionRecord])
def run_inputs(run_id: Id, ctx: Reader) -> list[VersionRecord]:
    """The versions the run used (those of projects the caller may not read left out)."""
    return ctx.visible_versions(ctx.registry.run_inputs(_run(ctx, run_id).pk))


@router.get("/{run_id}/outputs", response_model=list[VersionRecord])
def run_outputs(run_id: Id, ctx: Reader) -> list[VersionRecord]:
    return ctx.visible_versions(ctx.registry.run_outputs(_run(ctx, run_id).pk))
