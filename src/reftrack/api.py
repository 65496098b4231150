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
from .registry import ArtifactSummary, RunRecord, check_name, parse_artifact_path
from .registry.names import VERSION_RE
from .registry.remote import RemoteRegistry
from .run import Run
from .settings import Settings

__all__ = ["Api", "Sweep"]

_RUN_FIELDS = ("id", "name", "state", "job_type", "group", "sweep", "user", "host",
               "git_commit", "program")
_OPS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists")
_MISSING = object()


def _check_field(key: str) -> None:
    head, _, rest = key.partition(".")
    nested = head in ("config", "summary", "summary_metrics") and bool(rest)
    plain = head in (*_RUN_FIELDS, "created_at", "started_at") and not rest
    if not (nested or plain):
        raise UsageError(
            f"unknown run field {key!r} in a filter or order; use one of "
            f"{', '.join(_RUN_FIELDS)}, started_at, config.<key> or summary.<key>"
        )


def _field(record: RunRecord, key: str) -> Any:
    """``state``, ``config.lr``, ``summary.val_acc`` (also W&B's ``summary_metrics.``)."""
    _check_field(key)
    head, _, rest = key.partition(".")
    if head in ("config", "summary", "summary_metrics") and rest:
        value: Any = record.config if head == "config" else record.summary
        for part in rest.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return _MISSING
            value = value[part]
        return value
    if head in ("created_at", "started_at"):
        return record.started_at
    return getattr(record, head)


def _test(value: Any, op: str, operand: Any) -> bool:
    if op == "$exists":
        return (value is not _MISSING) == bool(operand)
    if value is _MISSING:
        return op in ("$ne", "$nin")
    if op == "$eq":
        return bool(value == operand)
    if op == "$ne":
        return bool(value != operand)
    if op in ("$in", "$nin"):
        if not isinstance(operand, list | tuple | set):
            raise UsageError(f"{op} takes a list, not {operand!r}")
        return (value in operand) == (op == "$in")
    try:
        if op == "$gt":
            return bool(value > operand)
        if op == "$gte":
            return bool(value >= operand)
        if op == "$lt":
            return bool(value < operand)
        return bool(value <= operand)
    except TypeError:
        return False  # not comparable (a string against a number): no match


def _validate(filters: Mapping[str, Any]) -> None:
    """Every field name and operator is checked, even when no run exists yet."""
    for key, condition in filters.items():
        if key in ("$and", "$or"):
            if not isinstance(condition, list) or not all(
                isinstance(c, Mapping) for c in condition
            ):
                raise UsageError(f"{key} takes a list of filters, not {condition!r}")
            for sub in condition:
                _validate(sub)
            continue
        if not isinstance(key, str):
            raise UsageError(f"filter keys are field names, not {key!r}")
        _check_field(key)
        if isinstance(condition, Mapping):
            for op in condition:
                if isinstance(op, str) and op.startswith("$") and op not in _OPS:
                    raise UsageError(f"unknown filter operator {op!r}; use {', '.join(_OPS)}")


def _matches(record: RunRecord, filters: Mapping[str, Any]) -> bool:
    for key, condition in filters.items():
        if key in ("$and", "$or"):
            if not isinstance(condition, list):
                raise UsageError(f"{key} takes a list of filters, not {condition!r}")
            results = [_matches(record, sub) for sub in condition]
            if not (all(results) if key == "$and" else any(results)):
                return False
            continue
        value = _field(record, key)
        if isinstance(condition, Mapping) and condition and all(
            isinstance(k, str) and k.startswith("$") for k in condition
        ):
            for op, operand in condition.items():
                if op not in _OPS:
                    raise UsageError(f"unknown filter operator {op!r}; use {', '.join(_OPS)}")
                if not _test(value, op, operand):
                    return False
        elif not _test(value, "$eq", condition):
            return False
    return True


def _sort(records: list[RunRecord], order: str) -> list[RunRecord]:
    if not isinstance(order, str) or not order.strip("+-"):
        raise UsageError(f"order must be a field name, optionally prefixed + or -, not {order!r}")
    descending = order.startswith("-")
    key = order.lstrip("+-")
    _check_field(key)
    present = [r for r in records if _field(r, key) not in (_MISSING, None)]
    absent = [r for r in records if _field(r, key) in (_MISSING, None)]
    try:
        present.sort(key=lambda r: _field(r, key), reverse=descending)
    except TypeError as exc:
        raise UsageError(f"cannot order runs by {key!r}: its values are of mixed types") from exc
    return present + absent  # runs without the field last, whatever the direction


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
        _validate(filters or {})
        registry = self._ctx.registry
        if isinstance(registry, RemoteRegistry):  # the server filters and sorts (the same code)
            return [Run(self._ctx, r) for r in registry.runs(name, filters or None, order)]
        records = [r for r in registry.runs(name) if _matches(r, filters or {})]
        return [Run(self._ctx, r) for r in _sort(records, order)]

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
