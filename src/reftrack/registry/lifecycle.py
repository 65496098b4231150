"""Version lifecycle in the registry: ttl and expiry, soft deletion and restore, and the
registry half of garbage collection (which versions, manifests and blobs may go).

A version is *visible* while it is not deleted and not expired (``expires_at`` is
``created_at`` + the ttl in force: its own, else its project's default). Hidden versions
disappear from every query; ``gc`` purges expired versions at once and deleted ones after the
grace period, then the manifests and managed blobs that no remaining version references.
Versions under an Object Lock legal hold (``protected``) are never deleted or purged.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..errors import NotFound, UsageError
from . import schema as t
from .dialects import utc as _utc
from .names import check_name
from .records import VersionRecord

__all__ = ["LifecycleStore", "PurgePlan"]


@dataclass
class PurgePlan:
    """What ``gc`` removes from the registry (or would, with ``dry_run``)."""

    versions: list[VersionRecord] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)  # version id -> "expired"/"deleted"
    kept_protected: list[VersionRecord] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)
    referenced_blobs: set[tuple[str, str]] = field(default_factory=set)
    """(store, sha256) still referenced by a remaining version (including soft-deleted ones
    within grace), or leased by a version being logged: never deleted."""
    stores: set[str] = field(default_factory=set)
    """Every blob store a manifest ever referenced (where to look for unreferenced blobs)."""


def visible(now: datetime) -> sa.ColumnElement[bool]:
    """Not deleted and not expired at ``now``."""
    return sa.and_(
        t.versions.c.deleted_at.is_(None),
        sa.or_(t.versions.c.expires_at.is_(None), t.versions.c.expires_at > now),
    )


def _seconds(ttl: timedelta | None, what: str) -> int | None:
    if ttl is None:
        return None
    if not isinstance(ttl, timedelta):
        raise UsageError(f"{what} must be a datetime.timedelta or None, not {ttl!r}")
    seconds = int(ttl.total_seconds())
    if seconds < 1:
        raise UsageError(f"{what} must be at least one second, not {ttl}")
    return seconds


class LifecycleStore:
    """The lifecycle half of :class:`~reftrack.registry.Registry` (a mixin)."""

    engine: Engine

    def _write(self) -> AbstractContextManager[Connection]:  # pragma: no cover - provided
        raise NotImplementedError

    def _now(self) -> datetime:
        raise NotImplementedError  # pragma: no cover - provided by Registry

    def _project_id(self, conn: Connection, project: str, *, create: bool) -> int:
        raise NotImplementedError  # pragma: no cover - provided by Registry

    def _version_by_id(self, conn: Connection, version_id: int) -> VersionRecord:
        raise NotImplementedError  # pragma: no cover - provided by Registry

    def _artifact_row(self, conn: Connection, project: str, name: str) -> sa.Row[Any]:
        raise NotImplementedError  # pragma: no cover - provided by Registry

    # -- ttl ----------------------------------------------------------------------------------

    def _default_expiry(self, conn: Connection, project_id: int, created: datetime
                        ) -> datetime | None:
        seconds = conn.execute(
            sa.select(t.projects.c.default_ttl_seconds).where(t.projects.c.id == project_id)
        ).scalar()
        return created + timedelta(seconds=int(seconds)) if seconds is not None else None

    def _revive(self, conn: Connection, version_id: int, now: datetime) -> None:
        """Logging content identical to a deleted or expired version brings that version
        back: undeleted, and an expired one's ttl counted again from now."""
        row = conn.execute(
            sa.select(t.versions.c.deleted_at, t.versions.c.expires_at, t.versions.c.created_at)
            .where(t.versions.c.id == version_id)
        ).one()
        values: dict[str, Any] = {}
        if row.deleted_at is not None:
            values["deleted_at"] = None
        if row.expires_at is not None and _utc(row.expires_at) <= now:
            values["expires_at"] = now + (_utc(row.expires_at) - _utc(row.created_at))
        if values:
            conn.execute(t.versions.update().where(t.versions.c.id == version_id).values(values))

    def _set_ttl_in(self, conn: Connection, version_id: int, ttl: timedelta | None) -> None:
        seconds = None if ttl is None else int(ttl.total_seconds())
        if seconds is not None and seconds < 1:
            raise UsageError(f"ttl must be at least one second, not {ttl}")
        created = conn.execute(
            sa.select(t.versions.c.created_at).where(t.versions.c.id == version_id)
        ).scalar_one()
        conn.execute(t.versions.update().where(t.versions.c.id == version_id).values(
            ttl_seconds=seconds, ttl_set=True,
            expires_at=created + timedelta(seconds=seconds) if seconds is not None else None,
        ))


    def set_ttl(self, version: VersionRecord, ttl: timedelta | None) -> VersionRecord:
        """Give ``version`` its own ttl (None: never expires, whatever the project default)."""
        seconds = _seconds(ttl, "ttl")
        with self._write() as conn:
            created = conn.execute(
                sa.select(t.versions.c.created_at).where(t.versions.c.id == version.id)
            ).scalar_one()
            expires = created + timedelta(seconds=seconds) if seconds is not None else None
            conn.execute(
                t.versions.update().where(t.versions.c.id == version.id).values(
                    ttl_seconds=seconds, ttl_set=True, expires_at=expires
                )
            )
            return self._version_by_id(conn, version.id)

    def set_project_ttl(self, project: str, ttl: timedelta | None) -> int:
        """Set ``project``'s default ttl, which applies to every version that set none
        (already logged ones included). Returns how many versions it now governs."""
        check_name(project, "project name")
        seconds = _seconds(ttl, "default ttl")
        with self._write() as conn:
            project_id = self._project_id(conn, project, create=False)
            conn.execute(
                t.projects.update().where(t.projects.c.id == project_id)
                .values(default_ttl_seconds=seconds)
            )
            rows = conn.execute(
                sa.select(t.versions.c.id, t.versions.c.created_at)
                .join(t.artifacts, t.artifacts.c.id == t.versions.c.artifact_id)
                .where(t.artifacts.c.project_id == project_id,
                       sa.or_(t.versions.c.ttl_set.is_(None), t.versions.c.ttl_set.is_(False)))
            ).all()
            for row in rows:
                expires = (row.created_at + timedelta(seconds=seconds)
                           if seconds is not None else None)
                conn.execute(t.versions.update().where(t.versions.c.id == row.id)
                             .values(expires_at=expires))
            return len(rows)

    def project_ttl(self, project: str) -> timedelta | None:
        with self.engine.connect() as conn:
            project_id = self._project_id(conn, project, create=False)
            seconds = conn.execute(
                sa.select(t.projects.c.default_ttl_seconds).where(t.projects.c.id == project_id)
            ).scalar()
        return timedelta(seconds=int(seconds)) if seconds is not None else None

    # -- deletion -----------------------------------------------------------------------------

    def delete_version(self, version: VersionRecord, *, delete_aliases: bool = False
                       ) -> VersionRecord:
        """Soft-delete ``version`` (restorable until ``gc`` purges it after the grace)."""
        with self._write() as conn:
            row = conn.execute(
                sa.select(t.versions.c.artifact_id, t.versions.c.deleted_at,
                          t.versions.c.protected)
                .where(t.versions.c.id == version.id)
            ).one()
            if row.deleted_at is not None:
                raise UsageError(f"{version.qualified_name} is already deleted")
            if row.protected:
                raise UsageError(
                    f"{version.qualified_name} is protected by an Object Lock legal hold; "
                    f"run `reftrack unprotect {version.qualified_name}` first"
                )
            user = [a for a in conn.execute(
                sa.select(t.aliases.c.alias).where(t.aliases.c.version_id == version.id)
                .order_by(t.aliases.c.alias)
            ).scalars()]
            if user and not delete_aliases:
                raise UsageError(
                    f"{version.qualified_name} has aliases {', '.join(user)}; move them to "
                    "another version first, or delete them with it (delete_aliases=True, "
                    "--delete-aliases)"
                )
            conn.execute(t.aliases.delete().where(t.aliases.c.version_id == version.id))
            conn.execute(t.versions.update().where(t.versions.c.id == version.id)
                         .values(deleted_at=self._now()))
            return self._version_by_id(conn, version.id)

    def restore_version(self, project: str, name: str, index: int) -> VersionRecord:
        """Undo a soft deletion (possible until ``gc`` purged the version)."""
        with self._write() as conn:
            art = self._artifact_row(conn, project, name)
            row = conn.execute(
                sa.select(t.versions.c.id, t.versions.c.deleted_at).where(
                    t.versions.c.artifact_id == art.id, t.versions.c.idx == index
                )
            ).first()
            label = f"{project}/{name}:v{index}"
            if row is None:
                raise NotFound(f"{label} does not exist (never logged, or purged by gc)")
            if row.deleted_at is None:
                raise UsageError(f"{label} is not deleted; nothing to restore")
            conn.execute(t.versions.update().where(t.versions.c.id == row.id)
                         .values(deleted_at=None))
            return self._version_by_id(conn, int(row.id))

    def hidden_version(self, project: str, name: str, index: int) -> VersionRecord | None:
        """A deleted or expired (not yet purged) version, by index; None if visible or gone."""
        with self.engine.connect() as conn:
            art = self._artifact_row(conn, project, name)
            version_id = conn.execute(
                sa.select(t.versions.c.id).where(
                    t.versions.c.artifact_id == art.id, t.versions.c.idx == index,
                    sa.not_(visible(self._now())),
                )
            ).scalar()
            return self._version_by_id(conn, int(version_id)) if version_id else None

    # -- blob leases --------------------------------------------------------------------------

    def lease_blobs(self, store: str, sha256s: list[str]) -> None:
        """Keep these blobs of ``store`` from gc for the grace period, in one transaction:
        taken by ``add_file``/``add_dir`` *before* they look for or upload the blobs (see
        :meth:`purge_plan`)."""
        if not sha256s:
            return
        now = self._now()
        with self._write() as conn:
            for start in range(0, len(sha256s), 500):  # bounded IN lists (SQLite's limit)
                conn.execute(t.blob_leases.delete().where(
                    t.blob_leases.c.store == store,
                    t.blob_leases.c.sha256.in_(sha256s[start:start + 500])))
            conn.execute(t.blob_leases.insert(), [
                {"store": store, "sha256": sha, "leased_at": now} for sha in sha256s
            ])

    # -- garbage collection -------------------------------------------------------------------

    def purge_plan(self, conn: Connection, grace: timedelta,
                   lease_window: timedelta | None = None) -> PurgePlan:
        """What gc may remove, decided inside the caller's write transaction (which holds
        the registry's write lock, so no version or lease can appear meanwhile)."""
        now = self._now()
        plan = PurgePlan()
        rows = conn.execute(
            sa.select(t.versions.c.id, t.versions.c.deleted_at, t.versions.c.expires_at,
                      t.versions.c.protected)
            .where(sa.or_(
                t.versions.c.deleted_at <= now - grace,
                sa.and_(t.versions.c.expires_at.is_not(None), t.versions.c.expires_at <= now),
            ))
            .order_by(t.versions.c.id)
        ).all()
        doomed: set[int] = set()
        for row in rows:
            record = self._version_by_id(conn, int(row.id))
            if row.protected:
                plan.kept_protected.append(record)
                continue
            doomed.add(int(row.id))
            plan.versions.append(record)
            expired = row.expires_at is not None and _utc(row.expires_at) <= now
            plan.reasons[int(row.id)] = "expired" if expired else "deleted"
        remaining = sa.select(t.versions.c.manifest_digest).where(
            t.versions.c.id.not_in(doomed) if doomed else sa.true()
        )
        plan.manifests = sorted(
            d for d in conn.execute(
                sa.select(t.versions.c.manifest_digest).where(t.versions.c.id.in_(doomed))
            ).scalars()
            if d not in set(conn.execute(remaining).scalars())
        ) if doomed else []
        plan.referenced_blobs = {
            (r.store, r.sha256) for r in conn.execute(
                sa.select(t.manifest_blobs.c.store, t.manifest_blobs.c.sha256)
                .where(t.manifest_blobs.c.digest.in_(remaining))
            ).all()
        } | {
            (r.store, r.sha256) for r in conn.execute(
                sa.select(t.blob_leases.c.store, t.blob_leases.c.sha256)
                .where(t.blob_leases.c.leased_at > now - (lease_window or grace))
            ).all()
        }
        plan.stores = set(conn.execute(sa.select(t.manifest_blobs.c.store).distinct()).scalars())
        plan.stores |= set(conn.execute(sa.select(t.blob_leases.c.store).distinct()).scalars())
        return plan

    def apply_purge(self, conn: Connection, plan: PurgePlan) -> None:
        """Remove the plan's versions (their aliases and input edges) and manifests, and
        leases older than the grace, in the caller's transaction."""
        ids = [v.id for v in plan.versions]
        if ids:
            conn.execute(t.aliases.delete().where(t.aliases.c.version_id.in_(ids)))
            conn.execute(t.run_inputs.delete().where(t.run_inputs.c.version_id.in_(ids)))
            conn.execute(t.verify_results.delete().where(t.verify_results.c.version_id.in_(ids)))
            conn.execute(t.verify_runs.delete().where(t.verify_runs.c.version_id.in_(ids)))
            conn.execute(t.versions.delete().where(t.versions.c.id.in_(ids)))
        for digest in plan.manifests:
            conn.execute(t.manifest_blobs.delete().where(t.manifest_blobs.c.digest == digest))
            conn.execute(t.manifest_chunks.delete().where(t.manifest_chunks.c.digest == digest))
            conn.execute(t.manifests.delete().where(t.manifests.c.digest == digest))

    def drop_old_leases(self, conn: Connection, window: timedelta) -> None:
        conn.execute(t.blob_leases.delete().where(
            t.blob_leases.c.leased_at <= self._now() - window))

