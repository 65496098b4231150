"""The team registry server: an HTTP JSON API (FastAPI) over the same registry layer the
Python API uses. It stores metadata and manifests only: it never reads a bucket, so it needs
no cloud credentials, and none ever pass through it.

Every route under ``/api/v1/projects/{project}`` checks the caller's access to the project
(:mod:`reftrack.server.access`) before it calls the registry. Errors are JSON:
``{"error": {"type": "NotFound", "status": 404, "message": "..."}}``, ``type`` naming the
:mod:`reftrack.errors` class a client should raise.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import BlobsBeingCollected, NotFound, ReftrackError
from ..registry import Registry
from ..registry.team import TeamStore
from . import routes_artifacts, routes_gc, routes_projects, routes_runs
from .deps import ApiError, Limits, ServerState, reftrack_status
from .limits import BodyLimit

__all__ = ["API_PREFIX", "create_app"]

API_PREFIX = "/api/v1"
log = logging.getLogger("reftrack.server")

_VERSION_POST = re.compile(r"^/api/v1/projects/[^/]+/artifacts/[^/]+/versions/?$")
_RESULTS_POST = re.compile(r"^/api/v1/projects/[^/]+/versions/[^/]+/verification/results/?$")
_STATUS_TYPES = {400: "UsageError", 401: "AccessDenied", 403: "AccessDenied",
                 404: "NotFound", 405: "UsageError", 409: "UsageError", 413: "UsageError",
                 415: "UsageError", 422: "UsageError"}


def create_app(registry_location: str | Registry, *, limits: Limits | None = None,
               clock: Callable[[], datetime] | None = None) -> FastAPI:
    """The server's ASGI app over the registry at ``registry_location`` (a path, an
    SQLAlchemy URL such as ``postgresql://...``, or an open :class:`Registry`)."""
    registry = registry_location if isinstance(registry_location, Registry) else \
        Registry(registry_location, clock=clock)
    state = ServerState(registry=registry, team=TeamStore(registry), limits=limits or Limits())
    app = FastAPI(
        title="reftrack registry server",
        version=__version__,
        description="Artifacts, versions, manifests, runs and lineage of a shared reftrack "
        "registry, with per-project access control. Authenticate with "
        "`Authorization: Bearer <token>` (`reftrack admin token create USER`); without it "
        "you are anonymous and may read public and open projects only.",
    )
    app.state.reftrack = state
    app.include_router(routes_projects.health_router)
    app.include_router(routes_projects.router)
    app.include_router(routes_artifacts.router)
    app.include_router(routes_runs.router)
    app.include_router(routes_gc.router)
    _handlers(app)
    app.add_middleware(BodyLimit, limit_for=_limit_for(state.limits))
    return app


def _limit_for(limits: Limits) -> Callable[[str, str], int]:
    def limit_for(method: str, path: str) -> int:
        if method == "POST" and _VERSION_POST.match(path):
            return limits.version_body_bytes
        if method == "POST" and _RESULTS_POST.match(path):
            return limits.results_bytes
        return limits.json_bytes

    return limit_for


def _error(status: int, type_: str, message: str, *,
           headers: Mapping[str, str] | None = None,
           **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"type": type_, "status": status, "message": message,
                                   **extra}}, status_code=status, headers=headers)


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.content(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(ReftrackError)
    def reftrack_error(request: Request, exc: ReftrackError) -> JSONResponse:
        status = reftrack_status(exc)
        message = str(exc)
        if isinstance(exc, NotFound) and "(projects: " in message:
            # the registry's message lists every project: never show it
            message = "project does not exist, or you have no access to it"
        state: ServerState = request.app.state.reftrack
        message = message.replace(state.registry.location, "the registry")  # no server paths
        if status >= 500:
            log.error("%s %s: %s: %s", request.method, request.url.path,
                      type(exc).__name__, message)
        if isinstance(exc, BlobsBeingCollected):
            return _error(status, type(exc).__name__, message, retry_after=exc.retry_after,
                          headers={"Retry-After": str(max(1, round(exc.retry_after)))})
        return _error(status, type(exc).__name__, message)

    @app.exception_handler(RequestValidationError)
    def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")),
                    "type": str(e.get("type", ""))} for e in exc.errors()[:20]]
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return _error(422, "UsageError", f"invalid request: {where}: {first['msg']}",
                      details=details)

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, _STATUS_TYPES.get(exc.status_code, "ReftrackError"),
                      str(exc.detail), headers=exc.headers)

    @app.exception_handler(sa.exc.DataError)
    def bad_value(request: Request, exc: sa.exc.DataError) -> JSONResponse:
        return _error(400, "UsageError", "a value was refused by the registry database "
                      "(too long, or not storable)")

    @app.exception_handler(sa.exc.IntegrityError)
    def conflict(request: Request, exc: sa.exc.IntegrityError) -> JSONResponse:
        return _error(409, "UsageError", "a concurrent change conflicted with this request; "
                      "retry it")

    @app.exception_handler(Exception)
    def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, "ReftrackError", "internal server error (see the server's log)")
