"""Protection: S3 Object Lock legal holds on every object version a version pinned.

:func:`set_version_holds` places (or removes) the hold: one ``GetObjectLockConfiguration`` per
bucket first, refusing (before any hold is changed) buckets without Object Lock, entries outside
S3 and entries without a version id; then one ``PutObjectLegalHold`` per object version,
concurrently (bounded). While a hold is on, no one and no lifecycle rule can delete that
version. GCS (event-based / temporary holds), local files and HTTP resources cannot be
protected yet. The registry's ``protected`` flag is set only when every hold was placed.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, computed_field

from .backends import Backends
from .errors import BackendError, ObjectNotFound, ReftrackError, UsageError
from .manifest import Manifest
from .progress import NullProgress, Progress
from .registry import VersionRecord
from .uri import RefURI, parse_uri

__all__ = [
    "HoldFailure",
    "LegalHoldBackend",
    "ProtectReport",
    "ProtectionFailed",
    "set_version_holds",
]


@runtime_checkable
class LegalHoldBackend(Protocol):
    """A backend with Object Lock legal holds (S3)."""

    @property
    def requests(self) -> int: ...

    def object_lock_enabled(self, bucket: str) -> bool: ...

    def set_legal_hold(self, uri: RefURI, on: bool) -> None: ...

    def legal_hold(self, uri: RefURI) -> bool: ...


class HoldFailure(BaseModel):
    """One object version whose legal hold could not be changed."""

    model_config = ConfigDict(frozen=True)

    paths: list[str]
    uri: str
    error: str
    message: str


class ProtectReport(BaseModel):
    """The outcome of ``protect`` (``hold=True``) or ``unprotect`` for one version."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = 1
    artifact: str
    hold: bool
    buckets: list[str]
    objects: int
    succeeded: int
    failed: list[HoldFailure] = []
    requests: int = 0
    protected: bool = False
    """The version's flag afterwards: a hold is on every pinned object (set only when every
    hold was placed)."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def exit_code(self) -> int:
        """0 done; 1 some pinned versions no longer exist; 3 other failures."""
        if not self.failed:
            return 0
        return 1 if any(f.error == "ObjectNotFound" for f in self.failed) else 3


class ProtectionFailed(BackendError):
    """Some legal holds could not be placed or removed; ``report`` says which. The version's
    ``protected`` flag is only set when every hold was placed."""

    def __init__(self, report: ProtectReport) -> None:
        verb = "placed" if report.hold else "removed"
        names = ", ".join(f.uri for f in report.failed[:3])
        more = f" and {len(report.failed) - 3} more" if len(report.failed) > 3 else ""
        flag = "protected" if report.protected else "not protected"
        super().__init__(
            f"{report.artifact}: the legal hold could not be {verb} on {len(report.failed)} of "
            f"{report.objects} object versions ({names}{more}); the version stays marked "
            f"{flag}; fix the cause and run the command again (it is idempotent)"
        )
        self.report = report
        self.exit_code = report.exit_code


class _Registry(Protocol):
    def set_protected(self, version: VersionRecord, protected: bool) -> VersionRecord: ...


_WHY_NOT = {
    "gs": "GCS: protection needs S3 Object Lock (GCS event-based or temporary holds are not "
          "supported yet)",
    "file": "local files: protection needs S3 Object Lock",
    "http": "HTTP resources: protection needs S3 Object Lock",
    "https": "HTTP resources: protection needs S3 Object Lock",
}


def _targets(label: str, manifest: Manifest) -> dict[str, tuple[RefURI, list[str]]]:
    """Every pinned S3 object version (``uri -> (ref, paths)``); refuses anything else."""
    targets: dict[str, tuple[RefURI, list[str]]] = {}
    other: dict[str, list[str]] = defaultdict(list)
    unpinned: list[str] = []
    for entry in manifest.sorted_entries():
        ref = parse_uri(entry.ref)
        if ref.scheme != "s3":
            other[ref.scheme].append(entry.ref)
        elif entry.version_id is None:
            unpinned.append(entry.ref)
        else:
            pinned = ref.with_version(entry.version_id)
            targets.setdefault(str(pinned), (pinned, []))[1].append(entry.path)
    if other:
        scheme, refs = next(iter(sorted(other.items())))
        total = sum(len(v) for v in other.values())
        raise UsageError(
            f"{label} cannot be protected: {total} entries are not S3 objects (e.g. {refs[0]}; "
            f"{_WHY_NOT.get(scheme, 'protection needs S3 Object Lock')}). A legal hold is an "
            "S3 Object Lock feature"
        )
    if unpinned:
        raise UsageError(
            f"{label} cannot be protected: {len(unpinned)} entries have no version id (e.g. "
            f"{unpinned[0]}: recorded from an unversioned bucket or with checksum=False); a "
            "legal hold protects one exact object version. Log them again from a versioned "
            "bucket with Object Lock"
        )
    return targets


def set_version_holds(
    record: VersionRecord,
    manifest: Manifest,
    backends: Backends,
    registry: _Registry,
    *,
    on: bool,
    concurrency: int = 32,
    progress: Progress | None = None,
) -> tuple[ProtectReport, VersionRecord]:
    """Place (``on=True``) or remove the legal hold on every pinned object version of
    ``record``, then record the flag: set when every hold was placed; cleared when holds were
    removed. Refuses (:class:`~reftrack.errors.UsageError`, before any hold is changed)
    entries outside S3, entries without a version id and buckets without Object Lock.
    Returns the report and the updated record; failures are in ``report.failed``."""
    label = record.qualified_name
    targets = _targets(label, manifest)
    backend = backends.for_scheme("s3") if targets else None
    if backend is not None and not isinstance(backend, LegalHoldBackend):  # pragma: no cover
        raise UsageError(f"{label}: this S3 backend cannot place legal holds")
    before = backend.requests if backend is not None else 0
    buckets = sorted({ref.bucket for ref, _ in targets.values()})
    if backend is not None:
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(buckets)))) as pool:
            locked = dict(zip(buckets, pool.map(backend.object_lock_enabled, buckets),
                              strict=True))
        missing = [f"s3://{b}" for b in buckets if not locked[b]]
        if missing:
            verb = "protected" if on else "unprotected"
            raise UsageError(
                f"{label} cannot be {verb}: Object Lock is not enabled on "
                f"{', '.join(missing)}, so no legal hold can be placed there (none was "
                "changed). Object Lock must be enabled on the bucket: when it is created "
                "(aws s3api create-bucket --object-lock-enabled-for-bucket), or later on a "
                "versioned bucket (aws s3api put-object-lock-configuration "
                "--object-lock-configuration ObjectLockEnabled=Enabled)"
            )
    progress = progress or NullProgress()
    failed: list[HoldFailure] = []
    lock = threading.Lock()

    def one(target: tuple[RefURI, list[str]]) -> None:
        ref, paths = target
        try:
            if backend is not None:
                backend.set_legal_hold(ref, on)
        except ReftrackError as exc:
            error = "ObjectNotFound" if isinstance(exc, ObjectNotFound) else type(exc).__name__
            with lock:
                failed.append(HoldFailure(paths=paths, uri=str(ref), error=error,
                                          message=str(exc)))
        progress.advance(1)

    progress.start(f"{'placing' if on else 'removing'} legal holds", total=len(targets),
                   unit="objects")
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(targets) or 1))) as pool:
            list(pool.map(one, targets.values()))
    finally:
        progress.finish()
    failed.sort(key=lambda f: f.uri)
    succeeded = len(targets) - len(failed)
    if on and not failed:
        record = registry.set_protected(record, True)
    elif not on and (succeeded or not failed) and record.protected:
        record = registry.set_protected(record, False)
    report = ProtectReport(
        artifact=label, hold=on, buckets=[f"s3://{b}" for b in buckets],
        objects=len(targets), succeeded=succeeded, failed=failed,
        requests=(backend.requests - before) if backend is not None else 0,
        protected=record.protected,
    )
    return report, record
