"""Runs: one execution of a job, the producer and consumer of artifact versions.

``reftrack.init()`` starts (or resumes) a run and makes it the *current run*, so that
``reftrack.log_artifact(...)``, ``reftrack.use_artifact(...)`` and ``reftrack.log(...)`` work
inside it as in W&B. The current run is process-wide (one slot, as ``wandb.run``): the one
piece of module-level mutable state in reftrack, which the W&B workflow requires. It is
cleared when that run finishes.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Literal

from .artifact import Artifact
from .context import Context
from .errors import UsageError
from .lineage import Direction, LineageGraph
from .registry import RunRecord, parse_artifact_path
from .settings import Settings

__all__ = ["Run", "Summary", "current_run", "init"]

Resume = Literal["allow", "must", "never"] | bool | None

_CURRENT: list[Run] = []  # at most one: the current run (see the module docstring)
_CURRENT_LOCK = threading.Lock()


def current_run() -> Run | None:
    """The run started by the last ``reftrack.init()`` that has not finished, if any."""
    with _CURRENT_LOCK:
        return _CURRENT[0] if _CURRENT else None


def _set_current(run: Run | None) -> None:
    with _CURRENT_LOCK:
        _CURRENT.clear()
        if run is not None:
            _CURRENT.append(run)


class Summary(Mapping[str, Any]):
    """A run's summary metrics, dict-like: ``run.summary["val_acc"] = 0.9``, ``.get()``,
    ``.update({...})``. Every change is stored at once (also after the run finished, as in
    W&B, to complete a summary); ``run.log`` folds logged values in (last value per key)."""

    def __init__(self, run: Run) -> None:
        self._run = run

    def _data(self) -> dict[str, Any]:
        return self._run._record.summary

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self._data()))

    def __len__(self) -> int:
        return len(self._data())

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def update(self, values: Mapping[str, Any] | None = None, **more: Any) -> None:
        merged = {**dict(values or {}), **more}
        _check_keys(merged, "summary")
        self._run._record = self._run._ctx.registry.update_summary(self._run._record.pk, merged)

    def __repr__(self) -> str:
        return f"Summary({self._data()!r})"


class Run:
    """One run. Use it as a context manager; it finishes (or is marked crashed) on exit."""

    def __init__(self, ctx: Context, record: RunRecord, *, resumed: bool = False) -> None:
        self._ctx = ctx
        self._record = record
        self._resumed = resumed

    # -- identity -----------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._record.id

    @property
    def name(self) -> str | None:
        return self._record.name

    @property
    def project(self) -> str:
        return self._record.project

    @property
    def job_type(self) -> str | None:
        return self._record.job_type

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._record.config)

    @property
    def state(self) -> str:
        return self._record.state

    @property
    def path(self) -> str:
        """``project/run_id``."""
        return f"{self.project}/{self.id}"

    @property
    def group(self) -> str | None:
        return self._record.group

    @property
    def sweep(self) -> str | None:
        return self._record.sweep

    @property
    def started_at(self) -> datetime:
        return self._record.started_at

    @property
    def finished_at(self) -> datetime | None:
        return self._record.finished_at

    @property
    def user(self) -> str | None:
        return self._record.user

    @property
    def host(self) -> str | None:
        return self._record.host

    @property
    def git_commit(self) -> str | None:
        return self._record.git_commit

    @property
    def git_remote(self) -> str | None:
        return self._record.git_remote

    @property
    def program(self) -> str | None:
        return self._record.program

    @property
    def resumed(self) -> bool:
        """True when ``init(resume=...)`` reopened an existing run."""
        return self._resumed

    @property
    def summary(self) -> Summary:
        return Summary(self)

    @property
    def record(self) -> RunRecord:
        """The registry's record of this run (a frozen value)."""
        return self._record

    def __repr__(self) -> str:
        return f"<Run {self.path} ({self.state})>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and other._record.pk == self._record.pk and (
            other._ctx.settings.registry == self._ctx.settings.registry
        )

    def __hash__(self) -> int:
        return hash((self._record.pk, self._ctx.settings.registry))

    # -- metrics ------------------------------------------------------------------------------

    def log(self, data: Mapping[str, Any], step: int | None = None) -> None:
        """Record metrics for one step (the next one unless ``step`` is given) and update
        the summary with their values (last value per key)."""
        self._require_running("log metrics")
        if not isinstance(data, Mapping):
            raise UsageError(f"run.log takes a dict of metrics, not {type(data).__name__}")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)
                                 or step < 0):
            raise UsageError(f"step must be a whole number >= 0, not {step!r}")
        values = dict(data)
        _check_keys(values, "metrics")
        self._record = self._ctx.registry.log_history(self._record.pk, values, step)

    def lineage(self, direction: Direction = "both", depth: int | None = None) -> LineageGraph:
        """The lineage graph around this run (``"upstream"``: the versions it used and what
        they were built on; ``"downstream"``: what it logged and who used that)."""
        from .lineage import walk

        return walk(self._ctx.registry, self._record, direction=direction, depth=depth)

    def history(self) -> list[dict[str, Any]]:
        """Every logged step, oldest first, as ``{"_step": n, **metrics}``."""
        return self._ctx.registry.history(self._record.pk)

    # -- artifacts ----------------------------------------------------------------------------

    def log_artifact(
        self,
        artifact: Artifact | str,
        name: str | None = None,
        type: str | None = None,
        aliases: list[str] | None = None,
    ) -> Artifact:
        """Log ``artifact`` as the next version of ``project/name``, output of this run.

        ``artifact`` may also be a URI, with ``name`` and ``type``. Logging a manifest
        identical to an existing version returns that version (``artifact.new_version`` is
        False) and moves ``aliases`` onto it. ``latest`` always points at the newest version.
        """
        self._require_running("log an artifact")
        if isinstance(artifact, str):
            if not name or not type:
                raise UsageError("log_artifact(uri) needs name=... and type=... too")
            uri = artifact
            artifact = Artifact(name, type, settings=self._ctx.settings)
            artifact.add_reference(uri)
        if not isinstance(artifact, Artifact):
            raise UsageError(f"log_artifact takes an Artifact or a URI, not {artifact!r}")
        if artifact.is_logged:
            raise UsageError(
                f"{artifact.qualified_name} is already logged; build a new Artifact to log "
                "another version"
            )
        if aliases is not None and (isinstance(aliases, str) or not isinstance(aliases, list)):
            raise UsageError(f"aliases must be a list of strings, e.g. ['best'], not {aliases!r}")
        manifest = artifact.manifest
        if not len(manifest):
            raise UsageError(
                f"artifact {artifact.base_name!r} has no entries; add_reference(...) first"
            )
        record, created = self._ctx.registry.log_version(
            project=self.project,
            name=artifact.base_name,
            type=artifact.type,
            manifest=manifest,
            description=artifact.description,
            metadata=artifact.metadata,
            aliases=aliases or [],
            run_pk=self._record.pk,
            ttl=artifact._ttl,
        )
        artifact._bind(self._ctx, record, created)
        return artifact

    def use_artifact(self, artifact: Artifact | str, type: str | None = None) -> Artifact:
        """Declare a logged version as an input of this run and return it.

        ``artifact`` is ``name:alias``/``name:vN`` (this run's project), ``project/name:...``,
        or a logged Artifact.
        """
        self._require_running("use an artifact")
        if isinstance(artifact, Artifact):
            if not artifact.is_logged:
                raise UsageError(
                    f"artifact {artifact.base_name!r} is not logged; log it before using it"
                )
            record = artifact._logged()
        elif isinstance(artifact, str):
            path = parse_artifact_path(artifact, default_project=self.project)
            record = self._ctx.registry.resolve(path.project, path.name, path.selector)
        else:
            raise UsageError(f"use_artifact takes an Artifact or 'name:alias', not {artifact!r}")
        if type is not None and record.type != type:
            raise UsageError(f"{record.qualified_name} is of type {record.type!r}, not {type!r}")
        self._ctx.registry.record_use(self._record.pk, record)
        return Artifact._from_record(self._ctx, record)

    def logged_artifacts(self) -> list[Artifact]:
        return [
            Artifact._from_record(self._ctx, r)
            for r in self._ctx.registry.run_outputs(self._record.pk)
        ]

    def used_artifacts(self) -> list[Artifact]:
        return [
            Artifact._from_record(self._ctx, r)
            for r in self._ctx.registry.run_inputs(self._record.pk)
        ]

    # -- lifecycle ----------------------------------------------------------------------------

    def _require_running(self, action: str) -> None:
        if self._record.state != "running":
            raise UsageError(
                f"cannot {action}: run {self.path} is {self._record.state}; reopen it with "
                f"reftrack.init(project={self.project!r}, id={self.id!r}, resume='allow')"
            )

    def finish(self, exit_code: int = 0) -> None:
        """Mark the run finished (``exit_code != 0``: crashed). Idempotent. It stops being
        the current run."""
        if self._record.state == "running":
            state = "finished" if exit_code == 0 else "crashed"
            self._record = self._ctx.registry.finish_run(self._record.pk, state)
        if current_run() is self:
            _set_current(None)

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.finish(0 if exc_type is None else 1)


def init(
    project: str,
    job_type: str | None = None,
    config: dict[str, Any] | None = None,
    name: str | None = None,
    id: str | None = None,
    *,
    group: str | None = None,
    sweep: str | None = None,
    resume: Resume = None,
    save_code: bool = False,
    notes: str | None = None,
    settings: Settings | None = None,
    registry: str | None = None,
) -> Run:
    """Start a run in ``project`` (created on first use) and make it the current run.

    - ``resume``: ``None``/``"never"`` starts a new run (an existing ``id`` is an error);
      ``"allow"`` (or ``True``) reopens run ``id`` if it exists, else starts it; ``"must"``
      reopens it or raises :class:`~reftrack.errors.NotFound`. A reopened run is running
      again, keeps its summary and history, and merges ``config`` into its config.
    - ``group`` and ``sweep`` put the run in a group / a sweep (``Api().sweep(...)``).
    - ``save_code=True`` logs the main script (``sys.argv[0]``) as a ``code`` artifact
      and records it as an input of the run.
    - The user, host, program and git commit (when run inside a git work tree) are recorded.
    - ``registry`` (a path, SQLAlchemy URL or server URL) overrides ``REFTRACK_REGISTRY`` and
      the default ``<user data dir>/reftrack/registry.db``.
    """
    if config is not None and not isinstance(config, dict):
        raise UsageError(f"config must be a dict, not {type(config).__name__}")
    if not isinstance(save_code, bool):
        raise UsageError(f"save_code must be True or False, not {save_code!r}")
    if notes is not None and not isinstance(notes, str):
        raise UsageError(f"notes must be a string, not {type(notes).__name__}")
    mode = _resume_mode(resume)
    ctx = Context(settings, registry=registry)
    program = _program()
    if save_code and program is None:
        raise UsageError(
            "save_code=True needs a main script, but this process was not started from a "
            "file (interactive, -c, or the script is gone); log code by hand: "
            "Artifact(name, type='code').add_file('train.py')"
        )
    commit, remote = _git(os.path.dirname(program) if program else os.getcwd())
    record, resumed = ctx.registry.create_run(
        project=project, run_id=id, name=name, job_type=job_type, config=config,
        group=group, sweep=sweep, resume=mode, git_commit=commit, git_remote=remote,
        program=program, notes=notes,
    )
    run = Run(ctx, record, resumed=resumed)
    if save_code and program is not None:
        try:
            _save_code(run, program)
        except BaseException:
            run.finish(1)  # never leave a run 'running' that its caller never received
            raise
    _set_current(run)
    return run


def _resume_mode(resume: Resume) -> Literal["allow", "must", "never"]:
    if resume is None or resume is False:
        return "never"
    if resume is True:
        return "allow"
    if resume in ("allow", "must", "never"):
        return resume
    raise UsageError(f"resume must be 'allow', 'must', 'never', True or None, not {resume!r}")


def _check_keys(values: Mapping[str, Any], what: str) -> None:
    for key, value in values.items():
        if not isinstance(key, str) or not key:
            raise UsageError(f"{what} keys must be non-empty strings, got {key!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"{what} {key!r} is {value}: only finite numbers can be stored")


def _program() -> str | None:
    """The main script's absolute path, when the process was started from a file."""
    main = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if main and main not in ("-c", "-m") and os.path.isfile(main):
        return os.path.abspath(main)
    return None


def _git(where: str) -> tuple[str | None, str | None]:
    """The HEAD commit and ``origin`` URL (credentials removed) of the work tree at
    ``where``; (None, None) outside git or without the git command."""
    def ask(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", where, *args], capture_output=True, text=True,
                                  timeout=5, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        out = done.stdout.strip()
        return out if done.returncode == 0 and out else None

    commit = ask("rev-parse", "HEAD")
    if commit is None:
        return None, None
    remote = ask("config", "--get", "remote.origin.url")
    if remote:
        remote = re.sub(r"://[^/@]*@", "://", remote)  # never store a token from the URL
    return commit, remote


def _save_code(run: Run, program: str) -> None:
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", os.path.basename(program)).strip("-.") or "main"
    code = Artifact(f"source-{stem}"[:128], "code", settings=run._ctx.settings)
    add_file = getattr(code, "add_file", None)
    if add_file is None:  # pragma: no cover - managed files are part of the same release
        raise UsageError("save_code needs managed files (Artifact.add_file)")
    add_file(program)
    logged = run._ctx.registry.log_version(
        project=run.project, name=code.base_name, type="code", manifest=code.manifest,
        description=f"source of {run.path}", metadata={"program": program},
        aliases=[], run_pk=None,
    )[0]
    run.use_artifact(Artifact._from_record(run._ctx, logged))


def _require_current(action: str) -> Run:
    run = current_run()
    if run is None:
        raise UsageError(f"cannot {action}: there is no current run; call reftrack.init() first")
    return run


def log_artifact(
    artifact: Artifact | str,
    name: str | None = None,
    type: str | None = None,
    aliases: list[str] | None = None,
) -> Artifact:
    """``current run.log_artifact(...)`` (W&B's ``wandb.log_artifact``)."""
    return _require_current("log an artifact").log_artifact(artifact, name, type, aliases)


def use_artifact(artifact: Artifact | str, type: str | None = None) -> Artifact:
    """``current run.use_artifact(...)`` (W&B's ``wandb.use_artifact``)."""
    return _require_current("use an artifact").use_artifact(artifact, type)


def log(data: Mapping[str, Any], step: int | None = None) -> None:
    """``current run.log(...)`` (W&B's ``wandb.log``)."""
    _require_current("log metrics").log(data, step)


def finish(exit_code: int = 0) -> None:
    """Finish the current run, if any (W&B's ``wandb.finish``)."""
    run = current_run()
    if run is not None:
        run.finish(exit_code)

