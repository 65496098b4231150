"""Verification results in the registry: the latest result of every entry of a version, and
the last verification started on each version.

``reftrack verify --since 24h`` re-checks only the entries whose latest result is older than
24 hours; a verification that was interrupted (Ctrl-C, a crash) is resumed by the next one.
Results are written in batches, one transaction each, as the verifier decides them, so an
interrupted run keeps every batch it finished. Timestamps come from the registry clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from . import schema as t
from .dialects import utc as _utc

__all__ = ["RESUME_WITHIN", "StoredResult", "VerificationRun", "VerificationStore"]

RESULT_BATCH = 500
"""Results per write transaction (and per ``IN (...)`` list)."""

RESUME_WITHIN = timedelta(hours=24)
"""An interrupted verification is resumed by the next one when it started less than this
long ago; an older one is not (its results are too old to stand for a check now)."""

_T = TypeVar("_T")

NOT_VERIFIED = ("unreachable",)
"""Statuses that mean the entry could not be checked: stored, but never reused."""


@dataclass(frozen=True)
class StoredResult:
    """One entry's latest verification result, as the registry keeps it."""

    path: str
    status: str
    detail: str
    checked_at: datetime
    deep: bool
    data: dict[str, Any] = field(default_factory=dict)
    """The rest of the result (URI, recorded and current version id, ETag, size)."""


@dataclass(frozen=True)
class VerificationRun:
    """The last verification started on a version; ``finished_at`` is None while it runs,
    and for good when it was interrupted."""

    version_id: int
    started_at: datetime
    finished_at: datetime | None
    deep: bool
    sample: float | None
    seed: int | None
    entries: int


class VerificationStore:
    """The verification half of :class:`~reftrack.registry.Registry` (a mixin)."""

    engine: Engine

    def _write(self) -> AbstractContextManager[Connection]:  # pragma: no cover - provided
        raise NotImplementedError

    def _now(self) -> datetime:
        raise NotImplementedError  # pragma: no cover - provided by Registry (its clock)

    def now(self) -> datetime:
        """The registry clock (tz-aware UTC), for callers that stamp what they store."""
        return self._now()

    # -- results ------------------------------------------------------------------------------

    def record_results(self, version_id: int, results: Iterable[StoredResult]) -> int:
        """Store (replace) the latest result of each entry, :data:`RESULT_BATCH` per
        transaction; returns how many were stored."""
        stored = 0
        for batch in _batches(results, RESULT_BATCH):
            with self._write() as conn:
                conn.execute(t.verify_results.delete().where(
                    t.verify_results.c.version_id == version_id,
                    t.verify_results.c.path.in_([r.path for r in batch])))
                conn.execute(t.verify_results.insert(), [
                    {"version_id": version_id, "path": r.path, "status": r.status,
                     "detail": r.detail, "checked_at": r.checked_at, "deep": r.deep,
                     "data": r.data}
                    for r in batch
                ])
            stored += len(batch)
        return stored

    def results(self, version_id: int, *, since: datetime | None = None,
                deep: bool = False, reusable: bool = False,
                paths: Iterable[str] | None = None) -> dict[str, StoredResult]:
        """The latest result of each entry of a version (path -> result), checked at or after
        ``since`` when given. ``reusable``: only results that may stand for a new check
        (not ``unreachable``, and deep ones when ``deep``). ``paths``: only the results of
        these entries (asked :data:`RESULT_BATCH` paths at a time), so that a verification
        streaming a large version holds the results of one window of entries, not all."""
        query = sa.select(t.verify_results).where(t.verify_results.c.version_id == version_id)
        if since is not None:
            query = query.where(t.verify_results.c.checked_at >= since)
        if reusable:
            query = query.where(t.verify_results.c.status.not_in(NOT_VERIFIED))
            if deep:
                query = query.where(t.verify_results.c.deep.is_(True))
        queries = [query] if paths is None else [
            query.where(t.verify_results.c.path.in_(batch))
            for batch in _batches(paths, RESULT_BATCH)
        ]
        found: dict[str, StoredResult] = {}
        with self.engine.connect() as conn:
            for each in queries:
                for row in conn.execute(each.execution_options(yield_per=RESULT_BATCH)):
                    found[row.path] = StoredResult(
                        path=row.path, status=row.status, detail=row.detail,
                        checked_at=_utc(row.checked_at), deep=bool(row.deep),
                        data=dict(row.data or {}))
        return found

    # -- runs -------------------------------------------------------------------------------

    def last_verification(self, version_id: int) -> VerificationRun | None:
        """The last verification started on a version (None: never verified here)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.verify_runs).where(
                t.verify_runs.c.version_id == version_id)).first()
        if row is None:
            return None
        return VerificationRun(
            version_id=row.version_id, started_at=_utc(row.started_at),
            finished_at=_utc(row.finished_at) if row.finished_at else None,
            deep=bool(row.deep), sample=row.sample,
            seed=None if row.seed is None else int(row.seed), entries=int(row.entries),
        )

    def interrupted_verification(self, version_id: int, *, within: timedelta = RESUME_WITHIN
                                 ) -> VerificationRun | None:
        """The last verification of the version if it never finished (interrupted, or still
        running elsewhere) and started less than ``within`` ago: the one to resume."""
        last = self.last_verification(version_id)
        if last is None or last.finished_at is not None \
                or last.started_at < self._now() - within:
            return None
        return last

    def start_verification(self, version_id: int, *, deep: bool, sample: float | None,
                           seed: int | None, entries: int,
                           started_at: datetime | None = None) -> VerificationRun:
        """Mark a verification of the version as running (replacing the last one's mark).
        A resumed verification passes the interrupted one's ``started_at``: it continues it,
        so a second interruption still resumes from the first start."""
        run = VerificationRun(version_id=version_id, started_at=started_at or self._now(),
                              finished_at=None, deep=deep, sample=sample, seed=seed,
                              entries=entries)
        with self._write() as conn:
            conn.execute(t.verify_runs.delete().where(t.verify_runs.c.version_id == version_id))
            conn.execute(t.verify_runs.insert().values(
                version_id=version_id, started_at=run.started_at, finished_at=None,
                deep=deep, sample=sample, seed=seed, entries=entries))
        return run

    def finish_verification(self, run: VerificationRun) -> None:
        """Mark ``run`` finished (unless another verification replaced its mark since)."""
        with self._write() as conn:
            conn.execute(t.verify_runs.update().where(
                t.verify_runs.c.version_id == run.version_id,
                t.verify_runs.c.started_at == run.started_at,
            ).values(finished_at=self._now()))


def _batches(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    batch: list[_T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
