"""Lifecycle: ttl expiry, version deletion and garbage collection.

- A version expires at ``created_at`` + its ttl (its own, ``artifact.ttl``, else its project's
  default); expired and deleted versions disappear from every query at once.
- ``artifact.delete()`` soft-deletes a version: ``reftrack restore`` brings it back until
  ``gc`` purges it, once the grace period (``Settings.grace``, 7 days) has passed.
- :func:`collect_garbage` (``reftrack gc``) purges expired versions and deleted versions past
  their grace, then the manifests no remaining version uses, then the managed blobs
  (``add_file``/``add_dir``) that no remaining version, in any artifact, references. Objects
  that versions merely *reference* in buckets are never deleted: reftrack does not own them.
- The registry decides what goes, the caller deletes (with its own credentials, also over a
  registry server). ``add_file`` leases each blob in the registry *before* it looks for or
  uploads it, and a lease keeps the blob for the grace period or until the version is
  logged; gc claims each batch of blobs it is about to delete, in the same transaction that
  finds them unreferenced and unleased, and a claimed blob cannot be leased until gc
  released it (:func:`lease_blobs` waits for that). So a gc running concurrently with a log
  never deletes a blob that version is about to commit.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, computed_field

from .backends import Backends
from .context import Context
from .errors import BlobsBeingCollected, BucketNotFound, ObjectNotFound, ReftrackError, UsageError
from .progress import NullProgress, Progress
from .uri import parse_uri

if TYPE_CHECKING:
    from .registry.remote import AnyRegistry

__all__ = ["GCReport", "PurgedVersion", "collect_garbage", "lease_blobs", "parse_duration"]

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


CLAIM_SECONDS = 600.0
"""How long gc claims a batch of blobs it is about to delete: no log can lease them
meanwhile. gc deletes nothing of a batch once its claim is within :data:`CLAIM_MARGIN` of
expiring (the rest is left for the next gc), so a log never reuses a blob gc then deletes."""
CLAIM_MARGIN = 0.2
"""The fraction of the claim gc keeps in hand (network and clock slack)."""
CLAIM_BATCH = 1000
"""Blobs claimed, deleted and released together."""


def collect_garbage(
    ctx: Context,
    *,
    dry_run: bool = False,
    grace: timedelta | None = None,
    progress: Progress | None = None,
    claim_seconds: float = CLAIM_SECONDS,
    monotonic: Callable[[], float] = time.monotonic,
) -> GCReport:
    """Purge what has expired or was deleted more than ``grace`` ago (default
    ``Settings.grace``), and the manifests and managed blobs nothing else references.

    The registry decides and this process deletes, with its own credentials (over a registry
    server, the server never sees them): first the versions and manifests are purged in one
    registry transaction, then each blob store is listed, and each batch of blobs no version
    references and no log leased is claimed in the registry (so no log can lease them), deleted
    and released. A blob of a batch whose claim is running out is not deleted but reported in
    ``blob_errors`` (the next gc takes it)."""
    grace = ctx.settings.grace if grace is None else grace
    if not isinstance(grace, timedelta) or grace < timedelta(0):
        raise UsageError(f"grace must be a timedelta of zero or more, not {grace!r}")
    progress = progress or NullProgress()
    registry = ctx.registry
    window = ctx.settings.grace
    purged = registry.gc_purge(grace, dry_run=dry_run, lease_window=window)
    found, errors = _blobs_in_stores(ctx.backends, purged.stores)
    doomed: list[str] = []
    sizes: list[int] = []
    if found:
        progress.start("checking blobs" if dry_run else "deleting blobs", total=len(found),
                       unit="blobs")
    try:
        for store, batch in _batches(found):
            shas = [sha for sha, _, _ in batch]
            by_sha = {sha: (uri, size) for sha, uri, size in batch}
            if dry_run:
                free = registry.gc_claim_blobs(store, shas, lease_window=window,
                                               dry_run_grace=grace)
                doomed += [by_sha[sha][0] for sha in free]
                sizes += [by_sha[sha][1] for sha in free]
                progress.advance(len(batch))
                continue
            started = monotonic()
            free = registry.gc_claim_blobs(store, shas, lease_window=window,
                                           claim_for=timedelta(seconds=claim_seconds))
            deadline = started + claim_seconds * (1 - CLAIM_MARGIN)
            try:
                for sha in free:
                    uri, size = by_sha[sha]
                    if monotonic() >= deadline:
                        errors.append(f"{uri}: not deleted: gc's claim on it ran out before "
                                      "its turn; the next gc deletes it")
                        continue
                    if _delete(ctx.backends, uri, errors):
                        doomed.append(uri)
                        sizes.append(size)
            finally:
                registry.gc_release_blobs(store, free)
            progress.advance(len(batch))
    finally:
        if found:
            progress.finish()
    return GCReport(
        dry_run=dry_run,
        grace_seconds=int(grace.total_seconds()),
        versions=[PurgedVersion(version=name, reason=reason)
                  for name, reason in purged.versions],
        kept_protected=purged.kept_protected,
        manifests=purged.manifests,
        blobs=doomed,
        blob_bytes=sum(sizes),
        blob_errors=errors,
    )


_sleep = time.sleep  # what lease_blobs waits with (tests replace it)


def lease_blobs(
    registry: AnyRegistry,
    store: str,
    sha256s: list[str],
    *,
    max_wait: float = 2 * CLAIM_SECONDS,
    sleep: Callable[[float], None] | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> None:
    """``registry.lease_blobs``, waiting while a gc is deleting some of the blobs (it
    claimed them): once it is done they are gone, and the caller uploads them again. Gives
    up with :class:`BlobsBeingCollected` after ``max_wait`` seconds."""
    sleep = sleep or _sleep
    started = monotonic()
    pause = 0.2
    while True:
        try:
            registry.lease_blobs(store, sha256s)
            return
        except BlobsBeingCollected as exc:
            waited = monotonic() - started
            if waited >= max_wait:
                raise BlobsBeingCollected(
                    f"{exc} (waited {waited:.0f} s for a gc to finish; if no gc is running, "
                    "its claim expires by itself within "
                    f"{exc.retry_after:.0f} s: retry then)", retry_after=exc.retry_after,
                ) from None
            sleep(min(pause, exc.retry_after or pause, max_wait - waited))
            pause = min(pause * 2, 2.0)


_Found = tuple[str, str, int]  # sha256, URI, size


def _blobs_in_stores(backends: Backends, stores: list[str]
                     ) -> tuple[list[tuple[str, _Found]], list[str]]:
    """Every blob in ``stores`` (store, (sha256, URI, size)): one listing per store."""
    found: list[tuple[str, _Found]] = []
    errors: list[str] = []
    for store in sorted(stores):
        try:
            root = parse_uri(store + "/sha256/")
            backend = backends.for_uri(root)
            for stat in backend.scan(root, all_versions=False):
                name = stat.key.rpartition("/")[2]
                if len(name) == 64 and not name.startswith("."):
                    found.append((store, (name, str(stat.uri.with_version(None)),
                                          stat.size or 0)))
        except (ObjectNotFound, BucketNotFound):
            continue  # the store's directory or bucket is gone: nothing to collect there
        except ReftrackError as exc:
            errors.append(f"{store}: {exc}")
    return found, errors


def _batches(found: list[tuple[str, _Found]]) -> Iterator[tuple[str, list[_Found]]]:
    """Up to :data:`CLAIM_BATCH` blobs of one store at a time."""
    for store, group in itertools.groupby(found, key=lambda item: item[0]):
        blobs = [blob for _, blob in group]
        for start in range(0, len(blobs), CLAIM_BATCH):
            yield store, blobs[start:start + CLAIM_BATCH]


def _delete(backends: Backends, uri: str, errors: list[str]) -> bool:
    ref = parse_uri(uri)
    try:
        backend = backends.for_uri(ref)
        delete = getattr(backend, "delete", None)
        if delete is None:
            raise UsageError(f"{ref.scheme}:// cannot delete blobs")
        delete(ref)
    except ReftrackError as exc:
        errors.append(f"{uri}: {exc}")
        return False
    return True
