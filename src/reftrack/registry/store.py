"""The registry: projects, artifacts, versions, aliases, manifests and runs.

SQLite by default (a file under the user's data dir), PostgreSQL by URL; what differs between
the two (URLs, the write lock, errors) is in :mod:`.dialects`. Every write is one transaction:
an error or a crash part-way leaves the registry as it was.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..errors import NotFound, UsageError
from ..manifest import Manifest
from . import dialects
from . import schema as t
from .dialects import redact as _redact
from .dialects import registry_url as _registry_url
from .dialects import utc as _utc
from .lifecycle import LifecycleStore, visible
from .manifests import SPOOL_BYTES, ManifestReader, StoredManifest
from .names import LATEST, VERSION_RE, check_alias, check_json, check_name
from .records import ArtifactSummary, RunRecord, VersionRecord
from .runs import RunStore, _now, _pk
from .verifications import VerificationStore

__all__ = ["SPOOL_BYTES", "ArtifactSummary", "Registry", "RunRecord", "StoredManifest",
           "VersionRecord"]

CHUNK_BYTES = 4 * 1024 * 1024


class Unset:
    """The type of :data:`UNSET`: an argument that was not given (None means something)."""


UNSET = Unset()
_WRITE_ATTEMPTS = 5


class Registry(RunStore, LifecycleStore, VerificationStore, ManifestReader):
    """Where all the metadata lives. Open with a path or SQLAlchemy URL."""

    def __init__(self, location: str, *, clock: Callable[[], datetime] | None = None) -> None:
        self.location = _redact(location)  # what messages show: never a password
        self._clock = clock or _now
        self.url = _registry_url(location)
        self.engine: Engine = dialects.make_engine(self.url, self.location)
        self.dialect = self.engine.dialect.name  # "sqlite" or "postgresql"
        errors = dialects.watch_errors(self.engine, self.url, self.location)
        self._init_schema()
        if errors is not None:
            errors.opened = True

    def close(self) -> None:
        self.engine.dispose()

    def _now(self) -> datetime:
        """The registry's clock (tz-aware UTC): every timestamp it writes, and what "expired"
        means, come from it, so tests can move time (``Settings(clock=...)``)."""
        now = self._clock()
        if now.tzinfo is None:
            raise UsageError("the registry clock must return timezone-aware datetimes")
        return now.astimezone(UTC)

    def __repr__(self) -> str:
        return f"Registry({self.location!r})"

    # -- schema -----------------------------------------------------------------------------

    def _init_schema(self) -> None:
        try:
            # One write transaction, under the write lock: on SQLite a deferred one that reads
            # the schema and then creates tables would fail at once ("database is locked")
            # while another process writes, instead of queueing behind it; on PostgreSQL,
            # processes opening a fresh registry at once would race to create the same tables.
            with self._write() as conn:
                t.metadata.create_all(conn)
                row = conn.execute(
                    sa.select(t.meta.c.value).where(t.meta.c.key == "schema_version")
                ).first()
                if row is None:
                    conn.execute(
                        t.meta.insert().values(key="schema_version", value=str(t.SCHEMA_VERSION))
                    )
                elif int(row[0]) > t.SCHEMA_VERSION:
                    raise UsageError(
                        f"registry {self.location} has schema version {row[0]}, newer than this "
                        f"reftrack supports ({t.SCHEMA_VERSION}); upgrade reftrack"
                    )
                elif int(row[0]) < t.SCHEMA_VERSION:
                    self._migrate(conn, int(row[0]))
        except sa.exc.OperationalError as exc:
            raise UsageError(
                f"cannot open registry {self.location}: {self._detail(exc)}; check the path or "
                "URL (REFTRACK_REGISTRY, --registry)"
            ) from exc
        except sa.exc.DatabaseError as exc:
            if self.dialect == "postgresql":  # e.g. no permission to create the tables
                raise UsageError(
                    f"cannot set up registry {self.location}: {self._detail(exc)}; the "
                    "database user must be allowed to create tables in it on first use"
                ) from exc
            raise UsageError(
                f"{self.location} is not a reftrack registry ({exc.orig}); point "
                "REFTRACK_REGISTRY or --registry at a registry file or database"
            ) from exc

    def _detail(self, exc: sa.exc.DBAPIError) -> str:
        """The driver's message, on one line and without the URL's password."""
        return dialects.scrub(" ".join(str(exc.orig).split()), self.url)

    def _migrate(self, conn: Connection, found: int) -> None:
        """Upgrade an older registry in place, in the caller's transaction (all or nothing):
        add the columns later schemas added (new tables were made by ``create_all``)."""
        inspector = sa.inspect(conn)
        for table_name, names in t.ADDED_COLUMNS.items():
            present = {c["name"] for c in inspector.get_columns(table_name)}
            table = t.metadata.tables[table_name]
            for name in names:
                if name not in present:
                    quote = conn.dialect.identifier_preparer
                    kind = table.c[name].type.compile(dialect=conn.dialect)
                    conn.execute(sa.text(f"ALTER TABLE {quote.format_table(table)} "
                                         f"ADD COLUMN {quote.quote(name)} {kind}"))
        conn.execute(
            t.meta.update()
            .where(t.meta.c.key == "schema_version")
            .values(value=str(t.SCHEMA_VERSION))
        )

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction, holding the registry's write lock from its first statement
        (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL: see
        :mod:`.dialects`), so concurrent writers queue instead of racing. A writer that
        waited longer than the lock timeout (30 s) gets a clear error, not a traceback."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**dialects.write_options(self.engine))
                with conn.begin():
                    dialects.begin_write(conn)
                    yield conn
        except sa.exc.DBAPIError as exc:
            mapped = dialects.write_error(exc, self.location)
            if mapped is None:
                raise
            raise mapped from exc

    # -- projects and artifacts -------------------------------------------------------------

    def _project_id(self, conn: Connection, project: str, *, create: bool) -> int:
        row = conn.execute(sa.select(t.projects.c.id).where(t.projects.c.name == project)).first()
        if row is not None:
            return int(row[0])
        if not create:
            raise NotFound(self._missing_project_message(conn, project))
        return _pk(conn.execute(t.projects.insert().values(name=project, created_at=self._now())))

    def _missing_project_message(self, conn: Connection, project: str) -> str:
        names = conn.execute(sa.select(t.projects.c.name).order_by(t.projects.c.name)).scalars()
        known = ", ".join(names) or "none yet"
        return f"project {project!r} does not exist in {self.location} (projects: {known})"

    def _artifact_row(self, conn: Connection, project: str, name: str) -> sa.Row[Any]:
        project_id = self._project_id(conn, project, create=False)
        row = conn.execute(
            sa.select(t.artifacts).where(
                t.artifacts.c.project_id == project_id, t.artifacts.c.name == name
            )
        ).first()
        if row is None:
            names = conn.execute(
                sa.select(t.artifacts.c.name)
                .where(t.artifacts.c.project_id == project_id)
                .order_by(t.artifacts.c.name)
            ).scalars()
            known = ", ".join(names) or "none yet"
            raise NotFound(
                f"artifact {project}/{name} does not exist (artifacts in {project}: {known})"
            )
        return row

    # -- logging a version --------------------------------------------------------------------

    def log_version(
        self,
        *,
        project: str,
        name: str,
        type: str,
        manifest: Manifest,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        aliases: Sequence[str] = (),
        run_pk: int | None = None,
        ttl: timedelta | Unset | None = UNSET,
    ) -> tuple[VersionRecord, bool]:
        """Record ``manifest`` as the next version of ``project/name``, in one transaction.

        ``ttl``: the version's own ttl (None: never expires); unset: the project default.

        Returns ``(version, created)``. When a version of this artifact already has the same
        manifest digest, no version is created: that version is returned (``created=False``)
        and the aliases are moved onto it.
        """
        check_name(project, "project name")
        check_name(name, "artifact name")
        check_name(type, "artifact type")
        user_aliases = [check_alias(a) for a in aliases if a != LATEST]
        meta = check_json(metadata or {}, "metadata")
        digest = manifest.digest
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            manifest.write(spool)
            stored_bytes = spool.tell()
            last_error: Exception | None = None
            for _ in range(_WRITE_ATTEMPTS):
                spool.seek(0)
                try:
                    with self._write() as conn:
                        record, created = self._log_in(
                            conn, project, name, type, manifest, spool, stored_bytes,
                            description, meta, user_aliases, run_pk, digest,
                        )
                        if not isinstance(ttl, Unset):
                            self._set_ttl_in(conn, record.id, ttl)
                            record = self._version_by_id(conn, record.id)
                        for store, sha256 in manifest.managed_blobs():  # committed: referenced
                            conn.execute(t.blob_leases.delete().where(
                                t.blob_leases.c.store == store,
                                t.blob_leases.c.sha256 == sha256))
                        return record, created
                except sa.exc.IntegrityError as exc:  # a concurrent writer won a race
                    last_error = exc
        raise UsageError(
            f"could not log {project}/{name}: the registry kept changing under concurrent "
            f"writers ({last_error}); retry"
        )

    def _log_in(
        self,
        conn: Connection,
        project: str,
        name: str,
        type: str,
        manifest: Manifest,
        spool: Any,
        stored_bytes: int,
        description: str | None,
        meta: dict[str, Any],
        user_aliases: list[str],
        run_pk: int | None,
        digest: str,
    ) -> tuple[VersionRecord, bool]:
        now = self._now()
        project_id = self._project_id(conn, project, create=True)
        art = conn.execute(
            sa.select(t.artifacts).where(
                t.artifacts.c.project_id == project_id, t.artifacts.c.name == name
            )
        ).first()
        if art is None:
            artifact_id = _pk(
                conn.execute(
                    t.artifacts.insert().values(
                        project_id=project_id, name=name, type=type, created_at=now
                    )
                )
            )
        else:
            artifact_id = int(art.id)
            if art.type != type:
                raise UsageError(
                    f"artifact {project}/{name} is of type {art.type!r}, not {type!r}; "
                    "use the same type or another name"
                )
        existing = conn.execute(
            sa.select(t.versions.c.id).where(
                t.versions.c.artifact_id == artifact_id,
                t.versions.c.manifest_digest == digest,
            )
        ).first()
        created = existing is None
        if existing is not None:
            version_id = int(existing[0])
            self._revive(conn, version_id, now)
        else:
            self._store_manifest(conn, manifest, spool, stored_bytes, now)
            top = conn.execute(
                sa.select(sa.func.max(t.versions.c.idx)).where(
                    t.versions.c.artifact_id == artifact_id
                )
            ).scalar()
            given = conn.execute(
                sa.select(t.artifacts.c.last_index).where(t.artifacts.c.id == artifact_id)
            ).scalar()
            index = max(-1 if top is None else int(top), -1 if given is None else int(given)) + 1
            conn.execute(t.artifacts.update().where(t.artifacts.c.id == artifact_id)
                         .values(last_index=index))
            version_id = _pk(
                conn.execute(
                    t.versions.insert().values(
                        artifact_id=artifact_id,
                        idx=index,
                        manifest_digest=digest,
                        description=description,
                        metadata=meta,
                        run_pk=run_pk,
                        created_at=now,
                        expires_at=self._default_expiry(conn, project_id, now),
                    )
                )
            )
        for alias in user_aliases:
            self._set_alias(conn, artifact_id, alias, version_id)
        return self._version_by_id(conn, version_id), created

    def _store_manifest(
        self, conn: Connection, manifest: Manifest, spool: Any, stored_bytes: int, now: datetime
    ) -> None:
        digest = manifest.digest
        known = conn.execute(
            sa.select(t.manifests.c.digest).where(t.manifests.c.digest == digest)
        ).first()
        if known is not None:
            return
        conn.execute(
            t.manifests.insert().values(
                digest=digest,
                schema_version=1,
                entry_count=len(manifest),
                size=manifest.size,
                stored_bytes=stored_bytes,
                created_at=now,
            )
        )
        for store, sha256 in sorted(manifest.managed_blobs()):
            conn.execute(t.manifest_blobs.insert().values(digest=digest, store=store,
                                                          sha256=sha256))
        seq = 0
        while True:
            chunk = spool.read(CHUNK_BYTES)
            if not chunk:
                break
            conn.execute(t.manifest_chunks.insert().values(digest=digest, seq=seq, data=chunk))
            seq += 1

    def _set_alias(self, conn: Connection, artifact_id: int, alias: str, version_id: int) -> None:
        conn.execute(
            t.aliases.delete().where(
                t.aliases.c.artifact_id == artifact_id, t.aliases.c.alias == alias
            )
        )
        conn.execute(
            t.aliases.insert().values(artifact_id=artifact_id, alias=alias, version_id=version_id)
        )

    def set_alias(self, version: VersionRecord, alias: str) -> VersionRecord:
        """Point ``alias`` at ``version`` (moving it from another version if needed)."""
        check_alias(alias)
        with self._write() as conn:
            artifact_id = conn.execute(
                sa.select(t.versions.c.artifact_id).where(t.versions.c.id == version.id)
            ).scalar_one()
            self._set_alias(conn, int(artifact_id), alias, version.id)
            return self._version_by_id(conn, version.id)

    def set_protected(self, version: VersionRecord, protected: bool) -> VersionRecord:
        """Record that an Object Lock legal hold is on (or off) every pinned object of
        ``version`` (the holds themselves are placed by the backend, not here)."""
        with self._write() as conn:
            conn.execute(
                t.versions.update().where(t.versions.c.id == version.id)
                .values(protected=bool(protected))
            )
            return self._version_by_id(conn, version.id)

    # -- reading ----------------------------------------------------------------------------

    def _version_query(self, *, hidden: bool = False) -> sa.Select[Any]:
        """Versions with everything a record shows; only visible ones (not deleted, not
        expired) unless ``hidden``."""
        query = (
            sa.select(
                t.versions.c.id,
                t.versions.c.idx,
                t.versions.c.artifact_id,
                t.versions.c.manifest_digest,
                t.versions.c.description,
                t.versions.c.metadata,
                t.versions.c.created_at,
                t.artifacts.c.name,
                t.artifacts.c.type,
                t.projects.c.name.label("project"),
                t.manifests.c.entry_count,
                t.manifests.c.size,
                t.runs.c.id.label("run_id"),
                t.versions.c.ttl_seconds,
                t.versions.c.ttl_set,
                t.versions.c.expires_at,
                t.versions.c.deleted_at,
                t.versions.c.protected,
                t.projects.c.default_ttl_seconds,
            )
            .join(t.artifacts, t.artifacts.c.id == t.versions.c.artifact_id)
            .join(t.projects, t.projects.c.id == t.artifacts.c.project_id)
            .join(t.manifests, t.manifests.c.digest == t.versions.c.manifest_digest)
            .outerjoin(t.runs, t.runs.c.pk == t.versions.c.run_pk)
        )
        return query if hidden else query.where(visible(self._now()))

    def _record(self, conn: Connection, row: sa.Row[Any]) -> VersionRecord:
        names = list(
            conn.execute(
                sa.select(t.aliases.c.alias)
                .where(t.aliases.c.version_id == row.id)
                .order_by(t.aliases.c.alias)
            ).scalars()
        )
        top = conn.execute(
            sa.select(sa.func.max(t.versions.c.idx)).where(
                t.versions.c.artifact_id == row.artifact_id, visible(self._now())
            )
        ).scalar()
        if top == row.idx:
            names.insert(0, LATEST)  # the newest *visible* version
        return VersionRecord(
            id=row.id,
            project=row.project,
            name=row.name,
            type=row.type,
            index=row.idx,
            digest=row.manifest_digest,
            description=row.description,
            metadata=row.metadata or {},
            aliases=names,
            created_at=_utc(row.created_at),
            run_id=row.run_id,
            entry_count=row.entry_count,
            size=row.size,
            ttl=_ttl(row),
            expires_at=_utc(row.expires_at) if row.expires_at else None,
            deleted_at=_utc(row.deleted_at) if row.deleted_at else None,
            protected=bool(row.protected),
        )

    def _version_by_id(self, conn: Connection, version_id: int) -> VersionRecord:
        row = conn.execute(
            self._version_query(hidden=True).where(t.versions.c.id == version_id)
        ).one()
        return self._record(conn, row)

    def resolve(self, project: str, name: str, selector: str = LATEST) -> VersionRecord:
        """The version ``selector`` (``vN``, ``latest`` or an alias) of ``project/name``."""
        with self.engine.connect() as conn:
            art = self._artifact_row(conn, project, name)
            query = self._version_query().where(t.versions.c.artifact_id == art.id)
            if selector == LATEST:
                row = conn.execute(query.order_by(t.versions.c.idx.desc()).limit(1)).first()
            elif VERSION_RE.match(selector):
                row = conn.execute(query.where(t.versions.c.idx == int(selector[1:]))).first()
            else:
                row = conn.execute(
                    query.join(t.aliases, t.aliases.c.version_id == t.versions.c.id).where(
                        t.aliases.c.alias == selector, t.aliases.c.artifact_id == art.id
                    )
                ).first()
            if row is None:
                raise NotFound(self._missing_version_message(conn, project, name, art.id, selector))
            return self._record(conn, row)

    def _missing_version_message(
        self, conn: Connection, project: str, name: str, artifact_id: int, selector: str
    ) -> str:
        top = conn.execute(
            sa.select(sa.func.max(t.versions.c.idx)).where(t.versions.c.artifact_id == artifact_id)
        ).scalar()
        if top is None:
            return f"artifact {project}/{name} has no versions"
        if VERSION_RE.match(selector):
            hidden = conn.execute(
                sa.select(t.versions.c.deleted_at, t.versions.c.expires_at).where(
                    t.versions.c.artifact_id == artifact_id,
                    t.versions.c.idx == int(selector[1:]),
                )
            ).first()
            label = f"{project}/{name}:{selector}"
            if hidden is not None and hidden.deleted_at is not None:
                return (f"{label} was deleted on {_utc(hidden.deleted_at):%Y-%m-%d %H:%M} UTC; "
                        f"restore it with `reftrack restore {label}` until gc purges it")
            if hidden is not None:
                return (f"{label} expired on {_utc(hidden.expires_at):%Y-%m-%d %H:%M} UTC "
                        "(its ttl); gc will remove it")
            return f"{project}/{name} has no version {selector} (versions are v0..v{top})"
        known = ", ".join(
            conn.execute(
                sa.select(t.aliases.c.alias)
                .where(t.aliases.c.artifact_id == artifact_id)
                .order_by(t.aliases.c.alias)
            ).scalars()
        )
        return (
            f"{project}/{name} has no alias {selector!r} "
            f"(aliases: latest{', ' + known if known else ''}; versions v0..v{top})"
        )

    def versions(self, project: str, name: str) -> list[VersionRecord]:
        """Every version of ``project/name``, oldest first."""
        with self.engine.connect() as conn:
            art = self._artifact_row(conn, project, name)
            rows = conn.execute(
                self._version_query()
                .where(t.versions.c.artifact_id == art.id)
                .order_by(t.versions.c.idx)
            ).all()
            return [self._record(conn, r) for r in rows]

    def projects(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(sa.select(t.projects.c.name).order_by(t.projects.c.name)).scalars()
            )

    def artifacts(self, project: str | None = None) -> list[ArtifactSummary]:
        """A summary of every artifact (of ``project``, when given)."""
        with self.engine.connect() as conn:
            query = (
                sa.select(
                    t.artifacts.c.id,
                    t.artifacts.c.name,
                    t.artifacts.c.type,
                    t.projects.c.name.label("project"),
                )
                .join(t.projects, t.projects.c.id == t.artifacts.c.project_id)
                .order_by(t.projects.c.name, t.artifacts.c.name)
            )
            if project is not None:
                self._project_id(conn, project, create=False)
                query = query.where(t.projects.c.name == project)
            out = []
            for art in conn.execute(query).all():
                latest = conn.execute(
                    self._version_query()
                    .where(t.versions.c.artifact_id == art.id)
                    .order_by(t.versions.c.idx.desc())
                    .limit(1)
                ).first()
                if latest is None:
                    continue
                now = self._now()
                count = conn.execute(
                    sa.select(sa.func.count()).where(t.versions.c.artifact_id == art.id,
                                                     visible(now))
                ).scalar_one()
                alias_rows = conn.execute(
                    sa.select(t.aliases.c.alias, t.versions.c.idx)
                    .join(t.versions, t.versions.c.id == t.aliases.c.version_id)
                    .where(t.aliases.c.artifact_id == art.id, visible(now))
                    .order_by(t.aliases.c.alias)
                ).all()
                out.append(
                    ArtifactSummary(
                        project=art.project,
                        name=art.name,
                        type=art.type,
                        versions=int(count),
                        latest=f"v{latest.idx}",
                        aliases={a.alias: f"v{a.idx}" for a in alias_rows},
                        size=latest.size,
                        updated_at=_utc(latest.created_at),
                    )
                )
            return out


def _ttl(row: sa.Row[Any]) -> timedelta | None:
    """The ttl in force: the version's own when set (None there means "never"), else the
    project's default."""
    seconds = row.ttl_seconds if row.ttl_set else row.default_ttl_seconds
    return timedelta(seconds=int(seconds)) if seconds is not None else None
