"""FastAPI dependencies: the server's state, who is asking (the bearer token), and the
access check every project route runs before it touches the registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Path, Request

from ..errors import ReftrackError
from ..registry import Registry, RunRecord, VersionRecord
from ..registry.team import ProjectAccess, Role, TeamStore
from .access import ANONYMOUS, Action, Decision, Principal, decide, forbidden_message
from .models import ProjectName

__all__ = ["ApiError", "Limits", "ProjectContext", "ServerState", "get_principal", "get_state",
           "project_access"]


@dataclass(frozen=True)
class Limits:
    """Request limits: bodies (bytes) and manifests (stored bytes, entries)."""

    json_bytes: int = 1024 * 1024
    manifest_bytes: int = 64 * 1024 * 1024
    manifest_entries: int = 1_000_000
    manifest_unpacked_bytes: int = 1024 * 1024 * 1024
    results_bytes: int = 16 * 1024 * 1024

    @property
    def version_body_bytes(self) -> int:
        """A version's JSON body: the base64 manifest (4/3 of its bytes) plus the rest."""
        return -(-self.manifest_bytes // 3) * 4 + self.json_bytes


@dataclass
class ServerState:
    registry: Registry
    team: TeamStore
    limits: Limits = field(default_factory=Limits)


class ApiError(Exception):
    """An error answered as ``{"error": {"type", "status", "message"}}`` with ``status``."""

    def __init__(self, status: int, type_: str, message: str, *,
                 headers: dict[str, str] | None = None, body: dict[str, Any] | None = None
                 ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.headers = headers
        self.body = body

    def content(self) -> dict[str, Any]:
        return self.body or {"error": {"type": self.type, "status": self.status,
                                       "message": self.message}}


def not_found(project: str) -> ApiError:
    from .access import not_found_body

    return ApiError(404, "NotFound", "", body=not_found_body(project))


def get_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.reftrack
    return state


State = Annotated[ServerState, Depends(get_state)]

UNAUTHORIZED = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


def get_principal(request: Request, state: State) -> Principal:
    """Anonymous without an ``Authorization`` header; the token's user with a valid
    ``Bearer`` token; 401 for anything else (never silently anonymous)."""
    headers = request.headers.getlist("authorization")
    if not headers:
        return ANONYMOUS
    if len(headers) > 1:
        raise ApiError(401, "AccessDenied", "give one Authorization header", headers=UNAUTHORIZED)
    scheme, _, token = headers[0].strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "AccessDenied", "the Authorization header must be 'Bearer <token>'",
                       headers=UNAUTHORIZED)
    found = state.team.authenticate(token)
    if found is None:
        raise ApiError(401, "AccessDenied", state.team.refusal(token), headers=UNAUTHORIZED)
    user, record = found
    return Principal(user=user, token=record)


Who = Annotated[Principal, Depends(get_principal)]


@dataclass
class ProjectContext:
    """A project route's checked context: the project (None only for a write that may
    create it), who asks and their role. ``created`` is True once :meth:`ensure` made it."""

    name: str
    principal: Principal
    state: ServerState
    access: ProjectAccess | None
    role: Role | None
    created: bool = False
    _readable: dict[str, bool] = field(default_factory=dict)

    @property
    def registry(self) -> Registry:
        return self.state.registry

    @property
    def team(self) -> TeamStore:
        return self.state.team

    def ensure(self) -> ProjectAccess:
        """The project, created now when this write is the first to it (the caller becomes
        its admin). Call it only once the request was validated; undo with :meth:`undo`."""
        if self.access is not None:
            return self.access
        if self.principal.user is None:  # pragma: no cover - the access check refused it
            raise not_found(self.name)
        self.access, self.created = self.team.ensure_project(self.name,
                                                             owner=self.principal.user.name)
        if not self.created:  # another request created it meanwhile: check again
            role = self.team.role(self.access.id, self.principal.user.id)
            if decide(self.principal, self.access, role, "write") is not Decision.ALLOW:
                raise not_found(self.name)
        return self.access

    def undo(self) -> None:
        """Remove the project :meth:`ensure` created, when the write it was for failed."""
        if self.created:
            self.team.drop_empty_project(self.name)
            self.created = False

    def readable(self, project: str) -> bool:
        """May the caller read ``project``? For records from other projects (lineage edges
        cross projects): what they may not read is left out."""
        if project not in self._readable:
            found = self.team.project(project)
            role = None
            if found is not None and self.principal.user is not None:
                role = self.team.role(found.id, self.principal.user.id)
            self._readable[project] = decide(self.principal, found, role, "read") \
                is Decision.ALLOW
        return self._readable[project]

    def visible_runs(self, records: list[RunRecord]) -> list[RunRecord]:
        return [r for r in records if self.readable(r.project)]

    def visible_versions(self, records: list[VersionRecord]) -> list[VersionRecord]:
        return [r for r in records if self.readable(r.project)]


def project_access(action: Action, *, create: bool = False) -> Callable[..., ProjectContext]:
    """The dependency checking ``action`` on the ``{project}`` of the path. With ``create``,
    an authenticated caller may write to a project that does not exist yet (the route
    creates it with :meth:`ProjectContext.ensure` once the request was validated)."""

    def dependency(
        project: Annotated[ProjectName, Path(description="The project's name.")],
        principal: Who,
        state: State,
    ) -> ProjectContext:
        found = state.team.project(project)
        role = None
        if found is not None and principal.user is not None:
            role = state.team.role(found.id, principal.user.id)
        decision = decide(principal, found, role, action)
        if decision is Decision.ALLOW:
            return ProjectContext(project, principal, state, found, role)
        if decision is Decision.NOT_FOUND and found is None and create \
                and not principal.anonymous:
            return ProjectContext(project, principal, state, None, None)
        if decision is Decision.NOT_FOUND:
            raise not_found(project)
        raise ApiError(int(decision), "AccessDenied",
                       forbidden_message(principal, project, action))

    return dependency


def reftrack_status(exc: ReftrackError) -> int:
    """The HTTP status a registry error is answered with."""
    from ..errors import (
        AccessDenied,
        BackendError,
        BlobsBeingCollected,
        ManifestError,
        NotFound,
        UsageError,
    )
    from ..registry.team import ProjectExists

    if isinstance(exc, ProjectExists | BlobsBeingCollected):
        return 409
    if isinstance(exc, UsageError):
        return 400
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, AccessDenied):
        return 403
    if isinstance(exc, BackendError):
        return 503
    if isinstance(exc, ManifestError):
        return 500
    return 500
