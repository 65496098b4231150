"""Service and project endpoints: health, whoami, the registry clock, projects (list,
create, get, visibility, default ttl), members, the audit log, artifact listings across
projects, and blob leases."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from ..registry import ArtifactSummary
from ..registry.team import AuditRecord, MemberRecord, ProjectAccess, Role
from .access import Decision, decide, decide_create
from .deps import ApiError, ProjectContext, State, Who, project_access
from .models import (
    Clock,
    Health,
    LeaseIn,
    MemberIn,
    MemberRemoved,
    ProjectCreate,
    ProjectOut,
    ProjectTtl,
    TokenInfo,
    TtlIn,
    UserName,
    VisibilityIn,
    WhoAmI,
)

__all__ = ["health_router", "router"]

health_router = APIRouter()
router = APIRouter(prefix="/api/v1")

Reader = Annotated[ProjectContext, Depends(project_access("read"))]
Members = Annotated[ProjectContext, Depends(project_access("members"))]
Manager = Annotated[ProjectContext, Depends(project_access("manage"))]
Member = Annotated[UserName, Path(description="A user name.")]


@health_router.get("/healthz", response_model=Health, tags=["service"])
def healthz() -> Health:
    """The server is up (no authentication, no registry access)."""
    return Health()


@router.get("/whoami", response_model=WhoAmI, tags=["service"])
def whoami(who: Who) -> WhoAmI:
    """Who the token belongs to (anonymous without one; 401 for a bad token)."""
    token = who.token
    return WhoAmI(anonymous=who.anonymous, user=who.name, is_admin=who.is_admin,
                  token=TokenInfo(id=token.id, name=token.name) if token else None)


@router.get("/clock", response_model=Clock, tags=["service"])
def clock(state: State, who: Who) -> Clock:
    """The registry's clock: what stored timestamps are taken from."""
    return Clock(now=state.registry.now())


def _out(access: ProjectAccess, role: Role | None) -> ProjectOut:
    return ProjectOut(name=access.name, visibility=access.visibility,
                      created_at=access.created_at, role=role)


@router.get("/projects", response_model=list[ProjectOut], tags=["projects"])
def list_projects(state: State, who: Who) -> list[ProjectOut]:
    """The projects the caller may read (never a private project they are not a member of)."""
    roles = state.team.roles_of(who.user.id) if who.user is not None else {}
    return [_out(p, roles.get(p.id)) for p in state.team.projects()
            if decide(who, p, roles.get(p.id), "read") is Decision.ALLOW]


@router.post("/projects", response_model=ProjectOut, status_code=201, tags=["projects"],
             responses={409: {"description": "The name is taken."}})
def create_project(body: ProjectCreate, state: State, who: Who) -> ProjectOut:
    """Create a project (any authenticated user); the caller becomes its admin."""
    if decide_create(who) is not Decision.ALLOW or who.user is None:
        raise ApiError(401, "AccessDenied", "creating a project needs a token "
                       "(Authorization: Bearer ...)",
                       headers={"WWW-Authenticate": "Bearer"})
    access = state.team.create_project(body.name, owner=who.user.name,
                                       visibility=body.visibility)
    return _out(access, "admin")


@router.get("/projects/{project}", response_model=ProjectOut, tags=["projects"])
def get_project(ctx: Reader) -> ProjectOut:
    if ctx.access is None:  # pragma: no cover - the access check guarantees it
        raise ApiError(404, "NotFound", "")
    return _out(ctx.access, ctx.role)


@router.put("/projects/{project}/visibility", response_model=ProjectOut, tags=["projects"])
def set_visibility(body: VisibilityIn, ctx: Manager) -> ProjectOut:
    """Change the visibility (project admins, server admins); audited."""
    access = ctx.team.set_visibility(ctx.name, body.visibility, by=_actor(ctx))
    return _out(access, ctx.role)


@router.get("/projects/{project}/members", response_model=list[MemberRecord],
            tags=["projects"])
def list_members(ctx: Members) -> list[MemberRecord]:
    """The members and their roles (shown to members only)."""
    return ctx.team.members(ctx.name)


@router.put("/projects/{project}/members/{user}", response_model=MemberRecord,
            tags=["projects"])
def set_member(user: Member, body: MemberIn, ctx: Manager) -> MemberRecord:
    """Add a member, or change their role (project admins, server admins); audited."""
    return ctx.team.set_member(ctx.name, user, body.role, by=_actor(ctx))


@router.delete("/projects/{project}/members/{user}", response_model=MemberRemoved,
               tags=["projects"])
def remove_member(user: Member, ctx: Manager) -> MemberRemoved:
    """Remove a member (the last admin cannot be removed); audited. Answers the role they
    had."""
    role = ctx.team.remove_member(ctx.name, user, by=_actor(ctx))
    return MemberRemoved(project=ctx.name, user=user, removed_role=role)


@router.get("/projects/{project}/audit", response_model=list[AuditRecord], tags=["projects"])
def audit(ctx: Manager) -> list[AuditRecord]:
    """Who changed the project's visibility and membership, and when (project admins)."""
    return ctx.team.audit(ctx.name)


@router.get("/projects/{project}/ttl", response_model=ProjectTtl, tags=["projects"])
def get_project_ttl(ctx: Reader) -> ProjectTtl:
    ttl = ctx.registry.project_ttl(ctx.name)
    return ProjectTtl(project=ctx.name, ttl_seconds=_seconds(ttl))


@router.put("/projects/{project}/ttl", response_model=ProjectTtl, tags=["projects"])
def set_project_ttl(body: TtlIn, ctx: Manager) -> ProjectTtl:
    """The default ttl of versions that set none (project admins: it can expire every
    version of the project)."""
    ttl = timedelta(seconds=body.ttl_seconds) if body.ttl_seconds is not None else None
    governed = ctx.registry.set_project_ttl(ctx.name, ttl)
    return ProjectTtl(project=ctx.name, ttl_seconds=body.ttl_seconds,
                      versions_governed=governed)


@router.get("/artifacts", response_model=list[ArtifactSummary], tags=["artifacts"])
def all_artifacts(state: State, who: Who) -> list[ArtifactSummary]:
    """Every artifact of every project the caller may read."""
    roles = state.team.roles_of(who.user.id) if who.user is not None else {}
    readable = {p.name for p in state.team.projects()
                if decide(who, p, roles.get(p.id), "read") is Decision.ALLOW}
    return [a for a in state.registry.artifacts() if a.project in readable]


@router.post("/blob-leases", status_code=204, tags=["artifacts"])
def lease_blobs(body: LeaseIn, state: State, who: Who) -> Response:
    """Keep managed blobs from gc while a version that uses them is being built
    (``add_file``): any authenticated user (a lease only defers gc)."""
    if who.anonymous:
        raise ApiError(401, "AccessDenied", "leasing blobs needs a token",
                       headers={"WWW-Authenticate": "Bearer"})
    state.registry.lease_blobs(body.store, list(body.sha256s))
    return Response(status_code=204)


def _actor(ctx: ProjectContext) -> str:
    if ctx.principal.user is None:  # pragma: no cover - managing needs a user
        raise ApiError(401, "AccessDenied", "managing a project needs a token")
    return ctx.principal.user.name


def _seconds(ttl: timedelta | None) -> int | None:
    return int(ttl.total_seconds()) if ttl is not None else None
