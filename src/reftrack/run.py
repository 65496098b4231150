"""Runs: one execution of a job, the producer and consumer of artifact versions."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from .artifact import Artifact
from .context import Context
from .errors import UsageError
from .registry import RunRecord, parse_artifact_path
from .settings import Settings

__all__ = ["Run", "init"]


class Run:
    """One run. Use it as a context manager; it finishes (or is marked crashed) on exit."""

    def __init__(self, ctx: Context, record: RunRecord) -> None:
        self._ctx = ctx
        self._record = record

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

    def __repr__(self) -> str:
        return f"<Run {self.path} ({self.state})>"

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
            raise UsageError(f"cannot {action}: run {self.path} is {self._record.state}")

    def finish(self, exit_code: int = 0) -> None:
        """Mark the run finished (``exit_code != 0``: crashed). Idempotent."""
        if self._record.state == "running":
            state = "finished" if exit_code == 0 else "crashed"
            self._record = self._ctx.registry.finish_run(self._record.pk, state)

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
    settings: Settings | None = None,
    registry: str | None = None,
) -> Run:
    """Start a run in ``project`` (created on first use).

    ``registry`` (a path or SQLAlchemy URL) overrides ``REFTRACK_REGISTRY`` and the default
    ``<user data dir>/reftrack/registry.db``.
    """
    if config is not None and not isinstance(config, dict):
        raise UsageError(f"config must be a dict, not {type(config).__name__}")
    ctx = Context(settings, registry=registry)
    record = ctx.registry.create_run(
        project=project, run_id=id, name=name, job_type=job_type, config=config
    )
    return Run(ctx, record)
