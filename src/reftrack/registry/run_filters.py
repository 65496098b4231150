"""``Api().runs`` filters (MongoDB-style, as in W&B) and ordering, applied to run records:
by :meth:`Registry.runs <reftrack.registry.Registry.runs>` on a local registry and by the
registry server for its clients, so both answer alike."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import UsageError
from .records import RunRecord

__all__ = ["check_filters", "select_runs"]

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


def _check_order(order: str) -> None:
    if not isinstance(order, str) or not order.strip("+-"):
        raise UsageError(f"order must be a field name, optionally prefixed + or -, not {order!r}")
    _check_field(order.lstrip("+-"))


def _sort(records: list[RunRecord], order: str) -> list[RunRecord]:
    _check_order(order)
    descending = order.startswith("-")
    key = order.lstrip("+-")
    present = [r for r in records if _field(r, key) not in (_MISSING, None)]
    absent = [r for r in records if _field(r, key) in (_MISSING, None)]
    try:
        present.sort(key=lambda r: _field(r, key), reverse=descending)
    except TypeError as exc:
        raise UsageError(f"cannot order runs by {key!r}: its values are of mixed types") from exc
    return present + absent  # runs without the field last, whatever the direction


def check_filters(filters: Mapping[str, Any], order: str = "+started_at") -> None:
    """Check every field name and operator, and the order, even when no run exists yet."""
    _validate(filters)
    _check_order(order)


def select_runs(records: list[RunRecord], filters: Mapping[str, Any] | None,
                order: str | None) -> list[RunRecord]:
    """The records matching ``filters``, sorted by ``order`` (``-summary.acc``: best first;
    None: as given)."""
    check_filters(filters or {}, order or "+started_at")
    chosen = [r for r in records if _matches(r, filters or {})]
    return chosen if order is None else _sort(chosen, order)
