"""Runs in the registry, and the lineage edges between runs and versions."""

from __future__ import annotations

import getpass
import os
import secrets
import socket
import string
from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..errors import NotFound, UsageError
from . import schema as t
from .dialects import utc as _utc
from .names import check_json, check_name
from .records import RunRecord, VersionRecord
from .run_filters import select_runs

__all__ = ["RunStore"]


def _now() -> datetime:
    return datetime.now(UTC)


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

    def _now(self) -> datetime:
        raise NotImplementedError  # pragma: no cover - provided by Registry (its clock)

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
        group: str | None = None,
        sweep: str | None = None,
        resume: str = "never",
        git_commit: str | None = None,
        git_remote: str | None = None,
        program: str | None = None,
        notes: str | None = None,
        origin: tuple[str | None, str | None] | None = None,
    ) -> tuple[RunRecord, bool]:
        """Start a run, or reopen ``run_id`` (``resume``: ``"never"`` fails if it exists,
        ``"allow"`` reopens it if it exists, ``"must"`` fails unless it exists). Returns the
        record and whether it was resumed. One transaction: two processes resuming the same
        id queue, and the second sees the first's run. ``origin``: the (user, host) a new
        run records when it is started on someone's behalf (the registry server); None:
        this process's user and host."""
        check_name(project, "project name")
        if job_type is not None:
            check_name(job_type, "job type")
        for value, what in ((group, "group"), (sweep, "sweep id")):
            if value is not None:
                check_name(value, what)
        if resume not in ("never", "allow", "must"):
            raise UsageError(f"resume must be 'allow', 'must' or 'never', not {resume!r}")
        if resume == "must" and run_id is None:
            raise UsageError("resume='must' needs the id of the run to resume (id=...)")
        run_id = run_id or _new_run_id()
        check_name(run_id, "run id")
        cfg = check_json(config or {}, "config")
        with self._write() as conn:
            project_id = self._project_id(conn, project, create=resume != "must")
            taken = conn.execute(
                sa.select(t.runs.c.pk, t.runs.c.config).where(
                    t.runs.c.project_id == project_id, t.runs.c.id == run_id
                )
            ).first()
            if taken is not None:
                if resume == "never":
                    raise UsageError(
                        f"run {project}/{run_id} already exists; pick another id, or pass "
                        "resume='allow' to continue it"
                    )
                merged = {**(taken.config or {}), **cfg}
                conn.execute(
                    t.runs.update().where(t.runs.c.pk == taken.pk).values(
                        state="running", finished_at=None, config=merged,
                        **{k: v for k, v in (("name", name), ("job_type", job_type),
                                             ("group_name", group), ("sweep", sweep))
                           if v is not None},
                    )
                )
                return self._run_by_pk(conn, int(taken.pk)), True
            if resume == "must":
                raise NotFound(
                    f"run {project}/{run_id} does not exist, so it cannot be resumed "
                    "(resume='must'); use resume='allow' to start it if missing"
                )
            pk = _pk(conn.execute(
                t.runs.insert().values(
                    id=run_id,
                    project_id=project_id,
                    name=name,
                    job_type=job_type,
                    config=cfg,
                    state="running",
                    started_at=self._now(),
                    host=socket.gethostname() if origin is None else origin[1],
                    user=_user() if origin is None else origin[0],
                    group_name=group,
                    sweep=sweep,
                    summary={},
                    git_commit=git_commit,
                    git_remote=git_remote,
                    program=program,
                    notes=notes,
                )
            ))
            return self._run_by_pk(conn, pk), False

    def update_summary(self, run_pk: int, values: dict[str, Any]) -> RunRecord:
        """Merge ``values`` into the run's summary (one transaction)."""
        values = check_json(values, "summary")
        with self._write() as conn:
            current = conn.execute(
                sa.select(t.runs.c.summary).where(t.runs.c.pk == run_pk)
            ).scalar()
            conn.execute(
                t.runs.update().where(t.runs.c.pk == run_pk)
                .values(summary={**(current or {}), **values})
            )
            return self._run_by_pk(conn, run_pk)

    def log_history(self, run_pk: int, data: dict[str, Any], step: int | None) -> RunRecord:
        """Store one step of metrics and fold it into the summary (last value per key)."""
        data = check_json(data, "logged metrics")
        with self._write() as conn:
            last = conn.execute(
                sa.select(sa.func.max(t.run_history.c.step))
                .where(t.run_history.c.run_pk == run_pk)
            ).scalar()
            if step is None:
                step = 0 if last is None else int(last) + 1
            elif last is not None and step < int(last):
                raise UsageError(
                    f"step {step} is before the last logged step {last}; steps only go forward"
                )
            existing = conn.execute(
                sa.select(t.run_history.c.data).where(
                    t.run_history.c.run_pk == run_pk, t.run_history.c.step == step
                )
            ).scalar()
            if existing is None:
                conn.execute(t.run_history.insert().values(
                    run_pk=run_pk, step=step, data=data, logged_at=self._now()
                ))
            else:
                conn.execute(
                    t.run_history.update().where(
                        t.run_history.c.run_pk == run_pk, t.run_history.c.step == step
                    ).values(data={**existing, **data})
                )
            current = conn.execute(
                sa.select(t.runs.c.summary).where(t.runs.c.pk == run_pk)
            ).scalar()
            conn.execute(
                t.runs.update().where(t.runs.c.pk == run_pk)
                .values(summary={**(current or {}), **data})
            )
            return self._run_by_pk(conn, run_pk)

    def history(self, run_pk: int) -> list[dict[str, Any]]:
        """Every logged step, oldest first: ``{"_step": n, **metrics}``."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.run_history.c.step, t.run_history.c.data)
                .where(t.run_history.c.run_pk == run_pk)
                .order_by(t.run_history.c.step)
            ).all()
        return [{"_step": int(r.step), **(r.data or {})} for r in rows]

    def runs(self, project: str, filters: Mapping[str, Any] | None = None,
             order: str | None = None) -> list[RunRecord]:
        """Every run of ``project``, oldest first; with ``filters``/``order`` (as
        ``Api().runs`` takes them, see :mod:`.run_filters`), the matching ones in that
        order."""
        check_name(project, "project name")
        with self.engine.connect() as conn:
            project_id = self._project_id(conn, project, create=False)
            pks = conn.execute(
                sa.select(t.runs.c.pk).where(t.runs.c.project_id == project_id)
                .order_by(t.runs.c.started_at, t.runs.c.pk)
            ).scalars().all()
            records = [self._run_by_pk(conn, int(pk)) for pk in pks]
        return select_runs(records, filters, order) if filters or order else records

    def finish_run(self, run_pk: int, state: str) -> RunRecord:
        with self._write() as conn:
            conn.execute(
                t.runs.update()
                .where(t.runs.c.pk == run_pk)
                .values(state=state, finished_at=self._now())
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
            group=row.group_name,
            sweep=row.sweep,
            summary=row.summary or {},
            git_commit=row.git_commit,
            git_remote=row.git_remote,
            program=row.program,
            notes=row.notes,
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
            if run_pk in self._runs_upstream(conn, version.id):
                raise UsageError(
                    f"a run cannot use {version.qualified_name}: that version is built on "
                    "this run's own output (lineage must not loop)"
                )
            known = conn.execute(
                sa.select(t.run_inputs.c.run_pk).where(
                    t.run_inputs.c.run_pk == run_pk, t.run_inputs.c.version_id == version.id
                )
            ).first()
            if known is None:
                conn.execute(
                    t.run_inputs.insert().values(
                        run_pk=run_pk, version_id=version.id, used_at=self._now()
                    )
                )

    def _runs_upstream(self, conn: Connection, version_id: int) -> set[int]:
        """Every run a version is built on, transitively (one query per hop): a run among
        them using the version would close a loop."""
        runs: set[int] = set()
        seen = {version_id}
        frontier = {version_id}
        while frontier:
            producers = set(conn.execute(
                sa.select(t.versions.c.run_pk).where(
                    t.versions.c.id.in_(frontier), t.versions.c.run_pk.is_not(None)
                )
            ).scalars()) - runs
            runs |= producers
            inputs = set(conn.execute(
                sa.select(t.run_inputs.c.version_id).where(t.run_inputs.c.run_pk.in_(producers))
            ).scalars()) if producers else set()
            frontier = inputs - seen
            seen |= frontier
        return runs

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
