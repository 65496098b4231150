"""The public query API: ``Api().artifact("project/name:alias")`` and friends."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .artifact import Artifact
from .context import Context
from .errors import NotFound, UsageError
from .lifecycle import GCReport, collect_garbage
from .progress import Progress
from .registry import ArtifactSummary, check_name, parse_artifact_path
from .registry.names import VERSION_RE
from .registry.run_filters import check_filters
from .run import Run
from .settings import Settings

__all__ = ["Api", "Sweep"]

@dataclass(frozen=True)
class Sweep:
    """The runs of one sweep (``init(sweep=...)``): ``sweep.runs``, ``sweep.best_run()``."""

    project: str
    id: str
    runs: list[Run]

    def best_run(self, metric: str, *, goal: str = "maximize") -> Run:
        """The run with the best ``summary[metric]`` (``goal``: maximize or minimize); runs
        without the metric are ignored."""
        if goal not in ("maximize", "minimize"):
            raise UsageError(f"goal must be 'maximize' or 'minimize', not {goal!r}")
        scored = [r for r in self.runs if isinstance(r.summary.get(metric), int | float)]
        if not scored:
            raise NotFound(
                f"no run of sweep {self.project}/{self.id} has a numeric summary[{metric!r}]"
            )
        pick = max if goal == "maximize" else min
        return pick(scored, key=lambda r: r.summary[metric])


class Api:
    """Read access to the registry.

    ``registry`` (a path, SQLAlchemy URL or server URL) overrides ``REFTRACK_REGISTRY``;
    ``project`` lets names omit their project (``Api(project="demo").artifact("images:v0")``).
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        registry: str | None = None,
        project: str | None = None,
    ) -> None:
        self._ctx = Context(settings, registry=registry)
        self._project = check_name(project, "project name") if project is not None else None

    @property
    def settings(self) -> Settings:
        return self._ctx.settings

    def artifact(self, name: str, type: str | None = None) -> Artifact:
        """The version ``project/name:version_or_alias`` (``:latest`` when omitted)."""
        path = parse_artifact_path(name, default_project=self._project)
        record = self._ctx.registry.resolve(path.project, path.name, path.selector)
        if type is not None and record.type != type:
            raise UsageError(f"{record.qualified_name} is of type {record.type!r}, not {type!r}")
        return Artifact._from_record(self._ctx, record)

    def artifact_versions(self, name: str) -> list[Artifact]:
        """Every version of ``project/name``, oldest first."""
        path = parse_artifact_path(name, default_project=self._project)
        if ":" in name:
            raise UsageError(f"artifact_versions takes project/name without a version: {name!r}")
        return [
            Artifact._from_record(self._ctx, r)
            for r in self._ctx.registry.versions(path.project, path.name)
        ]

    def artifact_collections(self, project: str | None = None) -> list[ArtifactSummary]:
        """One summary per artifact, of ``project`` or of every project."""
        if project is not None:
            check_name(project, "project name")
        return self._ctx.registry.artifacts(project or self._project)

    def restore(self, name: str) -> Artifact:
        """Undo ``artifact.delete()`` for ``project/name:vN`` (until gc purged it)."""
        path = parse_artifact_path(name, default_project=self._project)
        if not VERSION_RE.match(path.selector):
            raise UsageError(
                f"restore takes a version number (project/name:vN), not {path.selector!r}: "
                "aliases of a deleted version were removed with it"
            )
        record = self._ctx.registry.restore_version(path.project, path.name,
                                                    int(path.selector[1:]))
        return Artifact._from_record(self._ctx, record)

    def set_project_ttl(self, project: str, ttl: timedelta | None) -> int:
        """The default ttl of ``project``'s versions that set none (None: keep forever);
        returns how many versions it now governs (already logged ones included)."""
        return self._ctx.registry.set_project_ttl(project, ttl)

    def project_ttl(self, project: str) -> timedelta | None:
        return self._ctx.registry.project_ttl(check_name(project, "project name"))

    def gc(self, *, dry_run: bool = False, grace: timedelta | None = None,
           progress: Progress | None = None) -> GCReport:
        """Purge expired versions, deleted versions past the grace period, and the
        manifests and managed blobs nothing references any more (see
        :mod:`reftrack.lifecycle`). Through a registry server: a server admin only; the
        blobs are deleted by this process, with its own credentials."""
        return collect_garbage(self._ctx, dry_run=dry_run, grace=grace, progress=progress)

    def projects(self) -> list[str]:
        return self._ctx.registry.projects()

    def run(self, path: str) -> Run:
        """The run ``project/run_id``."""
        project, sep, run_id = path.partition("/")
        if not sep:
            if self._project is None:
                raise UsageError(f"{path!r}: write project/run_id")
            project, run_id = self._project, path
        record = self._ctx.registry.run(check_name(project, "project name"), run_id)
        return Run(self._ctx, record)

    def runs(
        self,
        project: str | None = None,
        filters: Mapping[str, Any] | None = None,
        order: str = "+started_at",
    ) -> list[Run]:
        """The runs of ``project`` matching ``filters`` (MongoDB-style, as in W&B:
        ``{"state": "finished", "config.lr": 0.1, "summary.val_acc": {"$gt": 0.9}}``;
        operators ``$eq $ne $gt $gte $lt $lte $in $nin $exists``, ``$and``/``$or`` lists),
        sorted by ``order`` (``"-summary.val_acc"``: best first). Every match is returned."""
        name = project or self._project
        if name is None:
            raise UsageError("Api().runs needs a project (or Api(project=...))")
        if filters is not None and not isinstance(filters, Mapping):
            raise UsageError(f"filters must be a dict, not {type(filters).__name__}")
        check_filters(filters or {}, order)
        # Over a registry server, the server filters and sorts (with the same code).
        return [Run(self._ctx, r) for r in self._ctx.registry.runs(name, filters or None, order)]

    def sweep(self, path: str) -> Sweep:
        """The sweep ``project/sweep_id``: its runs (``init(sweep=...)``), oldest first."""
        project, sep, sweep_id = path.partition("/")
        if not sep:
            if self._project is None:
                raise UsageError(f"{path!r}: write project/sweep_id")
            project, sweep_id = self._project, path
        check_name(sweep_id, "sweep id")
        runs = self.runs(project, {"sweep": sweep_id})
        if not runs:
            raise NotFound(f"sweep {project}/{sweep_id} has no runs")
        return Sweep(project, sweep_id, runs)

    def artifacts(self, type_name: str, name: str) -> list[Artifact]:
        """Every version of ``project/name`` (W&B's ``Api().artifacts(type, name)``), oldest
        first; an artifact of another type is an error."""
        versions = self.artifact_versions(name)
        if versions and versions[0].type != type_name:
            raise UsageError(
                f"{name} is of type {versions[0].type!r}, not {type_name!r}"
            )
        return versions
