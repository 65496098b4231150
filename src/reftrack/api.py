"""The public query API: ``Api().artifact("project/name:alias")`` and friends."""

from __future__ import annotations

from .artifact import Artifact
from .context import Context
from .errors import UsageError
from .registry import ArtifactSummary, RunRecord, check_name, parse_artifact_path
from .settings import Settings

__all__ = ["Api"]


class Api:
    """Read access to the registry.

    ``registry`` (a path or SQLAlchemy URL) overrides ``REFTRACK_REGISTRY``; ``project`` lets
    names omit their project (``Api(project="demo").artifact("images:v0")``).
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

    def projects(self) -> list[str]:
        return self._ctx.registry.projects()

    def run(self, path: str) -> RunRecord:
        """The run ``project/run_id``."""
        project, sep, run_id = path.partition("/")
        if not sep:
            if self._project is None:
                raise UsageError(f"{path!r}: write project/run_id")
            project, run_id = self._project, path
        return self._ctx.registry.run(check_name(project, "project name"), run_id)
