"""Lifecycle: ttl expiry, version deletion and garbage collection.

- A version expires at ``created_at`` + its ttl (its own, ``artifact.ttl``, else its project's
  default); expired and deleted versions disappear from every query at once.
- ``artifact.delete()`` soft-deletes a version: ``reftrack restore`` brings it back until
  ``gc`` purges it, once the grace period (``Settings.grace``, 7 days) has passed.
- :func:`collect_garbage` (``reftrack gc``) purges expired versions and deleted versions past
  their grace, then the manifests no remaining version uses, then the managed blobs
  (``add_file``/``add_dir``) that no remaining version, in any artifact, references. Objects
  that versions merely *reference* in buckets are never deleted: reftrack does not own them.
- GC runs inside one registry write transaction, which holds the write lock while it decides
  and deletes. ``add_file`` leases each blob in the registry *before* it looks for or uploads
  it, and a lease keeps the blob for the grace period or until the version is logged; so a gc
  running concurrently with a log never deletes a blob that version is about to commit.
"""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, computed_field

from .backends import Backends
from .context import Context
from .errors import ObjectNotFound, ReftrackError, UsageError
from .progress import NullProgress, Progress
from .uri import parse_uri

__all__ = ["GCReport", "PurgedVersion", "collect_garbage", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta | None:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` (or ``1d12h``) -> timedelta; ``none``/
    ``never`` -> None (keep forever)."""
    raw = text.strip().lower()
    if raw in ("none", "never", "forever"):
        return None
    parts = re.findall(r"(\d+)\s*([smhdw])", raw)
    if not parts or re.sub(r"(\d+)\s*([smhdw])", "", raw).strip():
        raise UsageError(
            f"{text!r} is not a duration: write e.g. 30d, 12h, 90m, 2w or 1d12h (s, m, h, d, w), "
            "or none"
        )
    seconds = sum(int(n) * _UNITS[unit] for n, unit in parts)
    if seconds < 1:
        raise UsageError(f"{text!r}: a duration must be at least one second")
    return timedelta(seconds=seconds)


class PurgedVersion(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: str  # project/name:vN
    reason: str  # "expired" or "deleted"


class GCReport(BaseModel):
    """What gc removed (or, with ``dry_run``, would remove)."""

    model_config = ConfigDict(frozen=True)

    dry_run: bool
    grace_seconds: int
    versions: list[PurgedVersion]
    kept_protected: list[str]
    manifests: int
    blobs: list[str]
    blob_bytes: int
    blob_errors: list[str]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return not self.blob_errors


def collect_garbage(
    ctx: Context,
    *,
    dry_run: bool = False,
    grace: timedelta | None = None,
    progress: Progress | None = None,
) -> GCReport:
    """Purge what has expired or was deleted more than ``grace`` ago (default
    ``Settings.grace``), and the manifests and managed blobs nothing else references."""
    grace = ctx.settings.grace if grace is None else grace
    if not isinstance(grace, timedelta) or grace < timedelta(0):
        raise UsageError(f"grace must be a timedelta of zero or more, not {grace!r}")
    progress = progress or NullProgress()
    registry = ctx.registry
    with registry.locked() as conn:
        plan = registry.purge_plan(conn, grace, lease_window=ctx.settings.grace)
        doomed, sizes, errors = _unreferenced_blobs(ctx.backends, plan.stores,
                                                    plan.referenced_blobs)
        if not dry_run:
            registry.apply_purge(conn, plan)
            progress.start("deleting blobs", total=len(doomed), unit="blobs")
            try:
                for uri in doomed:
                    ref = parse_uri(uri)
                    try:
                        backend = ctx.backends.for_uri(ref)
                        delete = getattr(backend, "delete", None)
                        if delete is None:
                            raise UsageError(f"{ref.scheme}:// cannot delete blobs")
                        delete(ref)
                    except ReftrackError as exc:
                        errors.append(f"{uri}: {exc}")
                    progress.advance(1)
            finally:
                progress.finish()
            registry.drop_old_leases(conn, ctx.settings.grace)
    return GCReport(
        dry_run=dry_run,
        grace_seconds=int(grace.total_seconds()),
        versions=[PurgedVersion(version=v.qualified_name, reason=plan.reasons[v.id])
                  for v in plan.versions],
        kept_protected=[v.qualified_name for v in plan.kept_protected],
        manifests=len(plan.manifests),
        blobs=doomed,
        blob_bytes=sum(sizes),
        blob_errors=errors,
    )


def _unreferenced_blobs(
    backends: Backends, stores: set[str], referenced: set[tuple[str, str]]
) -> tuple[list[str], list[int], list[str]]:
    """Every blob in ``stores`` that is not in ``referenced``: one listing per store."""
    doomed: list[str] = []
    sizes: list[int] = []
    errors: list[str] = []
    for store in sorted(stores):
        try:
            root = parse_uri(store + "/sha256/")
            backend = backends.for_uri(root)
            for stat in backend.scan(root, all_versions=False):
                name = stat.key.rpartition("/")[2]
                if len(name) == 64 and (store, name) not in referenced \
                        and not name.startswith("."):
                    doomed.append(str(stat.uri.with_version(None)))
                    sizes.append(stat.size or 0)
        except ObjectNotFound:
            continue  # the store's directory does not exist (any more): nothing to collect
        except ReftrackError as exc:
            errors.append(f"{store}: {exc}")
    return doomed, sizes, errors
