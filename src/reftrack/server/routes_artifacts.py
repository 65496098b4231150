"""Artifact and version endpoints: listings, resolving ``name:alias`` / ``name:vN``, logging
a version (the manifest travels base64 in JSON), the stored manifest, aliases, ttl,
deletion, restore, protection, the runs that used a version, and verification results.

Versions are addressed by id under their project (``/projects/{p}/versions/{id}``), as the
records the registry hands out carry it; a version of another project is a 404."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import StreamingResponse

from ..registry import ArtifactSummary, RunRecord, VersionRecord, check_json
from ..registry.store import UNSET, Unset
from ..registry.verifications import StoredResult, VerificationRun
from .deps import ApiError, ProjectContext, project_access
from .models import (
    Alias,
    ArtifactName,
    LoggedVersion,
    ProtectedIn,
    ResultOut,
    ResultsIn,
    ResultsQuery,
    Selector,
    Stored,
    TtlIn,
    VerificationFinish,
    VerificationRunOut,
    VerificationStart,
    VersionIn,
)
from .uploads import read_manifest

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/projects/{project}")

Reader = Annotated[ProjectContext, Depends(project_access("read"))]
Writer = Annotated[ProjectContext, Depends(project_access("write"))]
Creator = Annotated[ProjectContext, Depends(project_access("write", create=True))]
Name = Annotated[ArtifactName, Path(description="The artifact's name.")]
VersionId = Annotated[int, Path(description="The version's id (VersionRecord.id).")]

MANIFEST_MEDIA_TYPE = "application/gzip"
_CHUNK = 1024 * 1024


def _version(ctx: ProjectContext, version_id: int) -> VersionRecord:
    record = ctx.team.version(version_id)
    if record is None or record.project != ctx.name:
        raise ApiError(404, "NotFound", f"version {version_id} does not exist in project "
                       f"{ctx.name!r}")
    return record


@router.get("/artifacts", response_model=list[ArtifactSummary], tags=["artifacts"])
def list_artifacts(ctx: Reader) -> list[ArtifactSummary]:
    return ctx.registry.artifacts(ctx.name)


@router.get("/artifacts/{name}/versions", response_model=list[VersionRecord],
            tags=["artifacts"])
def list_versions(name: Name, ctx: Reader) -> list[VersionRecord]:
    """Every visible version, oldest first."""
    return ctx.registry.versions(ctx.name, name)


@router.get("/artifacts/{name}/versions/{selector}", response_model=VersionRecord,
            tags=["artifacts"])
def resolve(name: Name, selector: Annotated[Selector, Path(description="vN, latest or an "
                                                                   "alias.")],
            ctx: Reader) -> VersionRecord:
    return ctx.registry.resolve(ctx.name, name, selector)


@router.post("/artifacts/{name}/versions", response_model=LoggedVersion, status_code=201,
             tags=["artifacts"],
             responses={200: {"description": "A version with this manifest existed: it is "
                              "returned (created is false) and the aliases moved onto it."},
                        413: {"description": "The manifest or the body is too large."}})
def log_version(name: Name, body: VersionIn, ctx: Creator, response: Response
                ) -> LoggedVersion:
    """Log the next version of ``project/name`` (the project is created, private, with the
    caller as admin, when this is its first write)."""
    manifest = read_manifest(body.manifest, ctx.state.limits)
    metadata = check_json(body.metadata, "metadata")
    ttl: timedelta | Unset | None = UNSET
    if "ttl_seconds" in body.model_fields_set:
        ttl = timedelta(seconds=body.ttl_seconds) if body.ttl_seconds is not None else None
    ctx.ensure()
    try:
        run_pk = ctx.registry.run(ctx.name, body.run_id).pk if body.run_id else None
        record, created = ctx.registry.log_version(
            project=ctx.name, name=name, type=body.type, manifest=manifest,
            description=body.description, metadata=metadata, aliases=body.aliases,
            run_pk=run_pk, ttl=ttl)
    except BaseException:
        ctx.undo()
        raise
    response.status_code = 201 if created else 200
    return LoggedVersion(version=record, created=created)


@router.post("/artifacts/{name}/versions/{index}/restore", response_model=VersionRecord,
             tags=["artifacts"])
def restore(name: Name, index: Annotated[str, Path(pattern=r"^v(0|[1-9][0-9]{0,17})$",
                                                   description="vN")],
            ctx: Writer) -> VersionRecord:
    """Undo the deletion of ``name:vN`` (until gc purged it)."""
    return ctx.registry.restore_version(ctx.name, name, int(index[1:]))


@router.get("/versions/{version_id}", response_model=VersionRecord, tags=["versions"])
def get_version(version_id: VersionId, ctx: Reader) -> VersionRecord:
    """A version by id (also a deleted or expired one, until gc purges it)."""
    return _version(ctx, version_id)


@router.get("/versions/{version_id}/manifest", tags=["versions"],
            response_class=StreamingResponse,
            responses={200: {"content": {MANIFEST_MEDIA_TYPE: {}},
                             "description": "The stored manifest (Manifest.from_bytes)."}})
def get_manifest(version_id: VersionId, ctx: Reader) -> StreamingResponse:
    """The version's manifest in its stored form (gzip JSON Lines), streamed."""
    record = _version(ctx, version_id)
    stack = ExitStack()
    spool = stack.enter_context(ctx.team.open_manifest(record.digest))

    def chunks() -> Iterator[bytes]:
        with stack:
            while block := spool.read(_CHUNK):
                yield block

    return StreamingResponse(chunks(), media_type=MANIFEST_MEDIA_TYPE,
                             headers={"X-Reftrack-Digest": record.digest})


@router.put("/versions/{version_id}/aliases/{alias}", response_model=VersionRecord,
            tags=["versions"])
def set_alias(version_id: VersionId, alias: Annotated[Alias, Path()], ctx: Writer
              ) -> VersionRecord:
    """Point ``alias`` at the version (moving it from another version of the artifact)."""
    return ctx.registry.set_alias(_version(ctx, version_id), alias)


@router.put("/versions/{version_id}/ttl", response_model=VersionRecord, tags=["versions"])
def set_ttl(version_id: VersionId, body: TtlIn, ctx: Writer) -> VersionRecord:
    ttl = timedelta(seconds=body.ttl_seconds) if body.ttl_seconds is not None else None
    return ctx.registry.set_ttl(_version(ctx, version_id), ttl)


@router.delete("/versions/{version_id}", response_model=VersionRecord, tags=["versions"])
def delete_version(version_id: VersionId, ctx: Writer,
                   delete_aliases: Annotated[bool, Query()] = False) -> VersionRecord:
    """Soft-delete the version (restorable until gc purges it)."""
    return ctx.registry.delete_version(_version(ctx, version_id),
                                       delete_aliases=delete_aliases)


@router.put("/versions/{version_id}/protected", response_model=VersionRecord,
            tags=["versions"])
def set_protected(version_id: VersionId, body: ProtectedIn, ctx: Writer) -> VersionRecord:
    """Record that legal holds are on (or off) every pinned object: the client places
    them with its own cloud credentials; the server only keeps the mark."""
    return ctx.registry.set_protected(_version(ctx, version_id), body.protected)


@router.get("/versions/{version_id}/users", response_model=list[RunRecord],
            tags=["versions"])
def version_users(version_id: VersionId, ctx: Reader) -> list[RunRecord]:
    """The runs that used the version, oldest first (runs of projects the caller may not
    read are left out)."""
    return ctx.visible_runs(ctx.registry.version_users(_version(ctx, version_id).id))


# -- verification results ---------------------------------------------------------------------


def _run_out(run: VerificationRun | None) -> VerificationRunOut | None:
    if run is None:
        return None
    return VerificationRunOut(version_id=run.version_id, started_at=run.started_at,
                              finished_at=run.finished_at, deep=run.deep, sample=run.sample,
                              seed=run.seed, entries=run.entries)


@router.post("/versions/{version_id}/verification/results", response_model=Stored,
             tags=["verification"])
def record_results(version_id: VersionId, body: ResultsIn, ctx: Writer) -> Stored:
    """Store (replace) the latest result of each entry (writers only: results are reused
    by later verifications)."""
    record = _version(ctx, version_id)
    results = [StoredResult(path=r.path, status=r.status, detail=r.detail,
                            checked_at=r.checked_at, deep=r.deep,
                            data=check_json(r.data, "result data"))
               for r in body.results]
    return Stored(stored=ctx.registry.record_results(record.id, results))


@router.post("/versions/{version_id}/verification/results/search",
             response_model=list[ResultOut], tags=["verification"])
def search_results(version_id: VersionId, body: ResultsQuery, ctx: Reader
                   ) -> list[ResultOut]:
    """The latest stored results (of ``paths``, checked at or after ``since``)."""
    record = _version(ctx, version_id)
    found = ctx.registry.results(record.id, since=body.since, deep=body.deep,
                                 reusable=body.reusable, paths=body.paths)
    return [ResultOut(path=r.path, status=r.status, detail=r.detail, checked_at=r.checked_at,
                      deep=r.deep, data=r.data) for r in found.values()]


@router.get("/versions/{version_id}/verification/last",
            response_model=VerificationRunOut | None, tags=["verification"])
def last_verification(version_id: VersionId, ctx: Reader) -> VerificationRunOut | None:
    return _run_out(ctx.registry.last_verification(_version(ctx, version_id).id))


@router.get("/versions/{version_id}/verification/interrupted",
            response_model=VerificationRunOut | None, tags=["verification"])
def interrupted_verification(
    version_id: VersionId, ctx: Reader,
    within_seconds: Annotated[int, Query(ge=1, le=10 * 365 * 86400)] = 86400,
) -> VerificationRunOut | None:
    """The last verification if it never finished and started within ``within_seconds``."""
    return _run_out(ctx.registry.interrupted_verification(
        _version(ctx, version_id).id, within=timedelta(seconds=within_seconds)))


@router.post("/versions/{version_id}/verification/start", response_model=VerificationRunOut,
             tags=["verification"])
def start_verification(version_id: VersionId, body: VerificationStart, ctx: Writer
                       ) -> VerificationRunOut:
    run = ctx.registry.start_verification(
        _version(ctx, version_id).id, deep=body.deep, sample=body.sample, seed=body.seed,
        entries=body.entries, started_at=body.started_at)
    out = _run_out(run)
    if out is None:  # pragma: no cover - start always returns a run
        raise ApiError(500, "ReftrackError", "no verification started")
    return out


@router.post("/versions/{version_id}/verification/finish", status_code=204,
             tags=["verification"])
def finish_verification(version_id: VersionId, body: VerificationFinish, ctx: Writer
                        ) -> Response:
    record = _version(ctx, version_id)
    ctx.registry.finish_verification(VerificationRun(
        version_id=record.id, started_at=body.started_at, finished_at=None, deep=False,
        sample=None, seed=None, entries=0))
    return Response(status_code=204)
