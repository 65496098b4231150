"""Verification of a logged version: its results kept in the registry as they are decided,
earlier results reused (``since``, resuming an interrupted run), and its manifest streamed
from the registry unless it is already in memory. Split from :mod:`reftrack.artifact`."""

from __future__ import annotations

import secrets
from datetime import timedelta

from pydantic import ValidationError

from .backends import Backends
from .errors import Forbidden
from .manifest import Manifest
from .progress import Progress
from .registry.manifests import StoredManifest
from .registry.remote import AnyRegistry
from .registry.verifications import StoredResult
from .verify import EntryResult, VerifyReport, verify_manifest

__all__ = ["verify_logged"]


def verify_logged(
    registry: AnyRegistry,
    version_id: int,
    backends: Backends,
    *,
    manifest: Manifest | None,
    digest: str,
    label: str,
    protected: bool,
    concurrency: int,
    progress: Progress | None,
    deep: bool,
    since: timedelta | None,
    sample: float | None,
    seed: int | None,
    resume: bool,
) -> VerifyReport:
    """``Artifact.verify`` of a logged version (arguments checked by the caller).

    On a registry server, storing results needs write access to the project. A reader (a
    public project they are no member of) still verifies: the server's 403 on the first
    write (marking the verification started, before any bucket is asked) switches storing
    off, the stored results of others are still reused, and the report says
    ``results_stored=False``."""
    resumed = registry.interrupted_verification(version_id) if resume else None
    if resumed is not None and deep and not resumed.deep:
        resumed = None  # its results are not deep: nothing to reuse
    if resumed is not None and sample is not None and seed is None \
            and resumed.sample == sample:
        seed = resumed.seed  # the same sample, so that it resumes where it stopped
    if sample is not None and seed is None:
        seed = secrets.randbelow(2**31)
    cutoffs = [registry.now() - since] if since is not None else []
    cutoffs += [resumed.started_at] if resumed is not None else []
    cutoff = min(cutoffs) if cutoffs else None

    def previous(paths: list[str]) -> dict[str, EntryResult]:
        """The reusable results of one window of entries (never all at once)."""
        found: dict[str, EntryResult] = {}
        for path, stored in registry.results(version_id, since=cutoff, deep=deep,
                                             reusable=True, paths=paths).items():
            try:
                found[path] = EntryResult.model_validate({
                    **stored.data, "path": path, "status": stored.status,
                    "detail": stored.detail, "checked_at": stored.checked_at})
            except ValidationError:
                continue  # written by another reftrack: check the entry again
        return found

    storing = True

    def store(batch: list[EntryResult]) -> None:
        nonlocal storing
        if not storing:
            return
        try:
            registry.record_results(version_id, [
                StoredResult(path=r.path, status=r.status.value, detail=r.detail,
                             checked_at=r.checked_at or registry.now(), deep=deep,
                             data=r.model_dump(mode="json", exclude={
                                 "path", "status", "detail", "checked_at", "reused"}))
                for r in batch
            ])
        except Forbidden:  # write access taken away meanwhile: go on without storing
            storing = False

    def run(manifest: Manifest | StoredManifest) -> VerifyReport:
        nonlocal storing
        try:
            mark = registry.start_verification(
                version_id, deep=deep, sample=sample, seed=seed, entries=len(manifest),
                started_at=resumed.started_at if resumed is not None else None)
        except Forbidden:  # read-only access to the project (a registry server's 403)
            mark, storing = None, False
        report = verify_manifest(
            manifest,
            backends,
            artifact=label,
            concurrency=concurrency,
            progress=progress,
            deep=deep,
            protected=protected,
            previous=previous if cutoff is not None else None,
            sample=sample,
            seed=seed,
            on_results=store,
            clock=registry.now,
        )
        if mark is not None and storing:
            registry.finish_verification(mark)
        return report

    if manifest is not None:  # already in memory
        report = run(manifest)
    else:  # streamed from the registry, a window of entries at a time
        with registry.stream_manifest(digest) as stored_manifest:
            report = run(stored_manifest)
    return report.model_copy(update={
        "reused_since": cutoff,
        "resumed_from": resumed.started_at if resumed is not None else None,
        "results_stored": storing,
    })

