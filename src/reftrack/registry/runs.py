"""Runs in the registry, and the lineage edges between runs and versions."""

from __future__ import annotations

import getpass
import os
import secrets
import socket
import string
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..errors import NotFound, UsageError
from . import schema as t
from .names import check_json, check_name
from .records import RunRecord, VersionRecord

__all__ = ["RunStore"]


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes: they were stored in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _pk(result: sa.CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None:  # pragma: no cover - every table here has a primary key
        raise RuntimeError("the database returned no primary key")
    return int(key[0])


class RunStore:
    """The run half of :class:`~reftrack.registry.Registry` (a mixin: it relies on the
    registry's engine, write transactions and version queries)."""

    engine: Engine

    def _write(self) -> AbstractContextManager[Connection]:  # pragma: no cover - provided
        raise NotImplementedError

    def _project_id(self, conn: Connection, project: str, *, create: bool) -> int:
        raise NotImplementedError  # pragma: no cover - provided by Registry

    def _version_query(self) -> sa.Select[Any]:
        raise NotImplementedError  # pragma: no cover - provided by Registry

    def _record(self, conn: Connection, row: sa.Row[Any]) -> VersionRecord:
        raise NotImplementedError  # pragma: no cover - provided by Registry

    def create_run(
        self,
        *,
        project: str,
        run_id: str | None = None,
        name: str | None = None,
        job_type: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> RunRecord:
        check_name(project, "project name")
        if job_type is not None:
            check_name(job_type, "job type")
        run_id = run_id or _new_run_id()
        check_name(run_id, "run id")
        cfg = check_json(config or {}, "config")
        with self._write() as conn:
            project_id = self._project_id(conn, project, create=True)
            taken = conn.execute(
                sa.select(t.runs.c.pk).where(
                    t.runs.c.project_id == project_id, t.runs.c.id == run_id
                )
            ).first()
            if taken is not None:
                raise UsageError(f"run {project}/{run_id} already exists; pick another id")
            pk = _pk(conn.execute(
                t.runs.insert().values(
                    id=run_id,
                    project_id=project_id,
                    name=name,
                    job_type=job_type,
                    config=cfg,
                    state="running",
                    started_at=_now(),
                    host=socket.gethostname(),
                    user=_user(),
                )
            ))
            return self._run_by_pk(conn, pk)

    def finish_run(self, run_pk: int, state: str) -> RunRecord:
        with self._write() as conn:
            conn.execute(
                t.runs.update()
                .where(t.runs.c.pk == run_pk)
                .values(state=state, finished_at=_now())
            )
            return self._run_by_pk(conn, run_pk)

    def _run_by_pk(self, conn: Connection, pk: int) -> RunRecord:
        row = conn.execute(
            sa.select(t.runs, t.projects.c.name.label("project"))
            .join(t.projects, t.projects.c.id == t.runs.c.project_id)
            .where(t.runs.c.pk == pk)
        ).one()
        return RunRecord(
            pk=row.pk,
            id=row.id,
            project=row.project,
            name=row.name,
            job_type=row.job_type,
            config=row.config or {},
            state=row.state,
            started_at=_utc(row.started_at),
            finished_at=_utc(row.finished_at) if row.finished_at else None,
            host=row.host,
            user=row.user,
        )

    def run(self, project: str, run_id: str) -> RunRecord:
        with self.engine.connect() as conn:
            project_id = self._project_id(conn, project, create=False)
            pk = conn.execute(
                sa.select(t.runs.c.pk).where(
                    t.runs.c.project_id == project_id, t.runs.c.id == run_id
                )
            ).scalar()
            if pk is None:
                raise NotFound(f"run {project}/{run_id} does not exist")
            return self._run_by_pk(conn, int(pk))

    def record_use(self, run_pk: int, version: VersionRecord) -> None:
        """Store the input edge ``run used version`` (idempotent)."""
        with self._write() as conn:
            logged_by = conn.execute(
                sa.select(t.versions.c.run_pk).where(t.versions.c.id == version.id)
            ).scalar()
            if logged_by == run_pk:
                raise UsageError(
                    f"a run cannot use {version.qualified_name}: it logged that version itself "
                    "(lineage must not loop)"
                )
            known = conn.execute(
                sa.select(t.run_inputs.c.run_pk).where(
                    t.run_inputs.c.run_pk == run_pk, t.run_inputs.c.version_id == version.id
                )
            ).first()
            if known is None:
                conn.execute(
                    t.run_inputs.insert().values(
                        run_pk=run_pk, version_id=version.id, used_at=_now()
                    )
                )

    def run_inputs(self, run_pk: int) -> list[VersionRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                self._version_query()
                .join(t.run_inputs, t.run_inputs.c.version_id == t.versions.c.id)
                .where(t.run_inputs.c.run_pk == run_pk)
                .order_by(t.run_inputs.c.used_at)
            ).all()
            return [self._record(conn, r) for r in rows]

    def run_outputs(self, run_pk: int) -> list[VersionRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                self._version_query()
                .where(t.versions.c.run_pk == run_pk)
                .order_by(t.versions.c.created_at, t.versions.c.id)
            ).all()
            return [self._record(conn, r) for r in rows]

    def version_users(self, version_id: int) -> list[RunRecord]:
        with self.engine.connect() as conn:
            pks = conn.execute(
                sa.select(t.run_inputs.c.run_pk)
                .where(t.run_inputs.c.version_id == version_id)
                .order_by(t.run_inputs.c.used_at)
            ).scalars()
            return [self._run_by_pk(conn, int(pk)) for pk in pks]


def _new_run_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER")
