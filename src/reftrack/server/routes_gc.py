"""Garbage collection over the server, for server admins (gc spans every project).

The server only decides, in the registry's transactions; the client lists the blob stores and
deletes the blobs with its own credentials, which never reach the server (see
:func:`reftrack.lifecycle.collect_garbage`): ``purge`` removes expired and deleted versions
and their manifests, ``claims`` answers which of the blobs the client found no version
references and claims them (no log may lease them meanwhile), and ``release`` ends the claim
once they are deleted.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Response

from .deps import ApiError, State, Who
from .models import BlobsOut, ClaimIn, PurgedOut, PurgeIn, PurgeOut, ReleaseIn

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/gc", tags=["gc"])


def _admin_only(who: Who) -> None:
    if who.anonymous:
        raise ApiError(401, "AccessDenied", "gc needs a server admin's token",
                       headers={"WWW-Authenticate": "Bearer"})
    if not who.is_admin:
        raise ApiError(403, "AccessDenied",
                       f"gc spans every project: only a server admin may run it, and "
                       f"{who.name} is not one (`reftrack admin user add NAME --admin`)")


@router.post("/purge", response_model=PurgeOut)
def purge(body: PurgeIn, state: State, who: Who) -> PurgeOut:
    """Purge expired versions, versions deleted more than ``grace_seconds`` ago (none
    under a legal hold) and the manifests no remaining version uses; with ``dry_run``, only
    say what would go. ``stores``: where the client should look for unreferenced blobs."""
    _admin_only(who)
    result = state.registry.gc_purge(
        timedelta(seconds=body.grace_seconds), dry_run=body.dry_run,
        lease_window=timedelta(seconds=body.lease_window_seconds))
    return PurgeOut(
        versions=[PurgedOut(version=name, reason=reason)  # type: ignore[arg-type]
                  for name, reason in result.versions],
        kept_protected=result.kept_protected, manifests=result.manifests,
        stores=result.stores)


@router.post("/claims", response_model=BlobsOut)
def claim(body: ClaimIn, state: State, who: Who) -> BlobsOut:
    """Which of these blobs of ``store`` no version references and no recent lease holds;
    claimed for ``claim_seconds`` (no log may lease them until released), or with
    ``dry_run_grace_seconds`` only reported, as if a gc with that grace had run."""
    _admin_only(who)
    found = state.registry.gc_claim_blobs(
        body.store, list(body.sha256s),
        lease_window=timedelta(seconds=body.lease_window_seconds),
        claim_for=None if body.claim_seconds is None else timedelta(seconds=body.claim_seconds),
        dry_run_grace=None if body.dry_run_grace_seconds is None
        else timedelta(seconds=body.dry_run_grace_seconds))
    return BlobsOut(sha256s=found)


@router.post("/release", status_code=204)
def release(body: ReleaseIn, state: State, who: Who) -> Response:
    """End the claim on these blobs (deleted, or given up)."""
    _admin_only(who)
    state.registry.gc_release_blobs(body.store, list(body.sha256s))
    return Response(status_code=204)
