"""Version lifecycle in the registry: ttl and expiry, soft deletion and restore, and the
registry half of garbage collection (which versions, manifests and blobs may go).

A version is *visible* while it is not deleted and not expired (``expires_at`` is
``created_at`` + the ttl in force: its own, else its project's default). Hidden versions
disappear from every query; ``gc`` purges expired versions at once and deleted ones after the
grace period, then the manifests and managed blobs that no remaining version references.
Versions under an Object Lock legal hold (``protected``) are never deleted or purged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..errors import BlobsBeingCollected, NotFound, UsageError
from . import schema as t
from .dialects import utc as _utc
from .names import check_name
from .records import VersionRecord

__all__ = ["LifecycleStore", "PurgeResult"]


@dataclass
class PurgeResult:
    """What :meth:`LifecycleStore.gc_purge` removed from the registry (or would)."""

    versions: list[tuple[str, str]] = field(default_factory=list)
    """(``project/name:vN``, ``"expired"`` or ``"deleted"``), oldest first."""
    kept_protected: list[str] = field(default_factory=list)
    manifests: int = 0
    stores: list[str] = field(default_factory=list)
    """Every blob store a manifest or a lease named (where gc looks for blobs)."""


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
        :meth:`gc_claim_blobs`). Raises :class:`BlobsBeingCollected` (and leases nothing)
        while a gc holds a claim on any of them: it is deleting them."""
        if not sha256s:
            return
        now = self._now()
        with self._write() as conn:
            claims = [conn.execute(
                sa.select(sa.func.max(t.blob_claims.c.expires_at)).where(
                    t.blob_claims.c.store == store, t.blob_claims.c.sha256.in_(chunk),
                    t.blob_claims.c.expires_at > now)).scalar() for chunk in _chunks(sha256s)]
            until = max((_utc(c) for c in claims if c is not None), default=None)
            if until is not None:
                wait = (until - now).total_seconds()
                raise BlobsBeingCollected(
                    f"a gc is deleting some of these blobs of {store} (for at most "
                    f"{wait:.0f} s more); retry once it is done", retry_after=wait)
            for chunk in _chunks(sha256s):
                conn.execute(t.blob_leases.delete().where(
                    t.blob_leases.c.store == store, t.blob_leases.c.sha256.in_(chunk)))
            conn.execute(t.blob_leases.insert(), [
                {"store": store, "sha256": sha, "leased_at": now} for sha in sha256s
            ])

    # -- garbage collection -------------------------------------------------------------------
    #
    # gc runs in three steps, each a method here (and an endpoint of the registry server), so
    # that the one who holds the blob store's credentials deletes the blobs and the registry
    # only decides: gc_purge (versions and manifests, in one transaction), then, per batch of
    # blobs found in the stores, gc_claim_blobs (which of them nothing references or leases,
    # claimed in one transaction) and, once they are deleted, gc_release_blobs.

    def gc_purge(self, grace: timedelta, *, dry_run: bool = False,
                 lease_window: timedelta | None = None) -> PurgeResult:
        """Purge (with ``dry_run``: only report) the expired versions and the versions deleted
        more than ``grace`` ago, none under a legal hold, and the manifests no remaining
        version uses; drop leases older than ``lease_window`` (default: ``grace``) and
        expired claims. ``stores``: every blob store a manifest or lease names, or ever named
        when a gc ran (remembered), taken before the purge: where gc looks for blobs."""
        now = self._now()
        window = lease_window if lease_window is not None else grace
        with (self.engine.connect() if dry_run else self._write()) as conn:
            rows = conn.execute(
                sa.select(t.versions.c.id, t.versions.c.expires_at, t.versions.c.protected)
                .where(_purgeable(now, grace)).order_by(t.versions.c.id)
            ).all()
            result = PurgeResult()
            doomed: list[int] = []
            for row in rows:
                name = self._version_by_id(conn, int(row.id)).qualified_name
                if row.protected:
                    result.kept_protected.append(name)
                    continue
                doomed.append(int(row.id))
                expired = row.expires_at is not None and _utc(row.expires_at) <= now
                result.versions.append((name, "expired" if expired else "deleted"))
            remaining = set(conn.execute(sa.select(t.versions.c.manifest_digest).where(
                t.versions.c.id.not_in(doomed) if doomed else sa.true())).scalars())
            manifests = sorted({d for d in conn.execute(
                sa.select(t.versions.c.manifest_digest).where(t.versions.c.id.in_(doomed))
            ).scalars() if d not in remaining}) if doomed else []
            result.manifests = len(manifests)
            known = set(conn.execute(sa.select(t.blob_stores.c.store)).scalars())
            result.stores = sorted(
                known
                | set(conn.execute(sa.select(t.manifest_blobs.c.store).distinct()).scalars())
                | set(conn.execute(sa.select(t.blob_leases.c.store).distinct()).scalars()))
            if dry_run:
                return result
            new_stores = [{"store": store} for store in result.stores if store not in known]
            if new_stores:
                conn.execute(t.blob_stores.insert(), new_stores)
            if doomed:
                for table in (t.aliases, t.run_inputs, t.verify_results, t.verify_runs):
                    conn.execute(table.delete().where(table.c.version_id.in_(doomed)))
                conn.execute(t.versions.delete().where(t.versions.c.id.in_(doomed)))
            for digest in manifests:
                for table in (t.manifest_blobs, t.manifest_chunks, t.manifests):
                    conn.execute(table.delete().where(table.c.digest == digest))
            conn.execute(t.blob_leases.delete().where(t.blob_leases.c.leased_at <= now - window))
            conn.execute(t.blob_claims.delete().where(t.blob_claims.c.expires_at <= now))
        return result

    def gc_claim_blobs(self, store: str, sha256s: list[str], *, lease_window: timedelta,
                       claim_for: timedelta | None = None,
                       dry_run_grace: timedelta | None = None) -> list[str]:
        """Of these blobs found in ``store``, the ones no version references (deleted ones
        within their grace included) and no lease younger than ``lease_window`` holds, in
        the order given. With ``claim_for``: claimed for that long in the same transaction,
        so that no log can lease them until :meth:`gc_release_blobs` (or the claim expires);
        the caller must be done deleting them by then. With ``dry_run_grace`` instead
        (``gc --dry-run``): nothing is claimed, and the versions a gc with that grace would
        purge count as gone."""
        if (claim_for is None) == (dry_run_grace is None):
            raise UsageError("gc_claim_blobs takes claim_for or dry_run_grace (not both)")
        if claim_for is not None and claim_for <= timedelta(0):
            raise UsageError(f"claim_for must be positive, not {claim_for}")
        now = self._now()
        found: list[str] = []
        with (self.engine.connect() if claim_for is None else self._write()) as conn:
            users = sa.select(t.versions.c.manifest_digest)
            if dry_run_grace is not None:
                users = users.where(sa.or_(sa.not_(_purgeable(now, dry_run_grace)),
                                           t.versions.c.protected))
            for chunk in _chunks(sha256s):
                kept = set(conn.execute(sa.select(t.manifest_blobs.c.sha256).where(
                    t.manifest_blobs.c.store == store, t.manifest_blobs.c.sha256.in_(chunk),
                    t.manifest_blobs.c.digest.in_(users))).scalars())
                kept |= set(conn.execute(sa.select(t.blob_leases.c.sha256).where(
                    t.blob_leases.c.store == store, t.blob_leases.c.sha256.in_(chunk),
                    t.blob_leases.c.leased_at > now - lease_window)).scalars())
                found += [sha for sha in chunk if sha not in kept]
            if claim_for is not None and found:
                for chunk in _chunks(found):
                    conn.execute(t.blob_claims.delete().where(
                        t.blob_claims.c.store == store, t.blob_claims.c.sha256.in_(chunk)))
                conn.execute(t.blob_claims.insert(), [
                    {"store": store, "sha256": sha, "expires_at": now + claim_for}
                    for sha in found])
        return found

    def gc_release_blobs(self, store: str, sha256s: list[str]) -> None:
        """End gc's claim on these blobs (deleted, or given up): they may be leased again."""
        if not sha256s:
            return
        with self._write() as conn:
            for chunk in _chunks(sha256s):
                conn.execute(t.blob_claims.delete().where(
                    t.blob_claims.c.store == store, t.blob_claims.c.sha256.in_(chunk)))


def _purgeable(now: datetime, grace: timedelta) -> sa.ColumnElement[bool]:
    """Expired, or deleted more than ``grace`` ago (legal holds are checked apart); never
    NULL, so that its negation selects the others."""
    return sa.or_(
        sa.and_(t.versions.c.deleted_at.is_not(None), t.versions.c.deleted_at <= now - grace),
        sa.and_(t.versions.c.expires_at.is_not(None), t.versions.c.expires_at <= now),
    )


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    """Bounded IN lists (SQLite's limit on bound parameters)."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
