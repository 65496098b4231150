"""Validation of names: projects, artifacts, types, aliases, and ``project/name:version``."""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import UsageError

__all__ = ["ArtifactPath", "check_alias", "check_json", "check_name", "parse_artifact_path"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ALIAS_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
VERSION_RE = re.compile(r"^v(0|[1-9][0-9]*)$")
LATEST = "latest"


def check_name(value: object, what: str) -> str:
    """A project, artifact or type name: letters, digits, ``.``, ``_``, ``-``; up to 128."""
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise UsageError(
            f"invalid {what} {value!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (no '/' or ':')"
        )
    return value


def check_json(value: dict[str, Any], what: str) -> dict[str, Any]:
    """A JSON-safe copy of ``value`` (metadata, config), or a UsageError saying why not."""
    try:
        return dict(json.loads(json.dumps(value, allow_nan=False)))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{what} must be JSON-serialisable: {exc}") from exc


def check_alias(value: object) -> str:
    """A user alias: no ``/`` or ``:``, not a version name like ``v3``."""
    if not isinstance(value, str) or not _ALIAS_RE.match(value):
        raise UsageError(
            f"invalid alias {value!r}: use 1-128 letters, digits, '.', '_' or '-' "
            "(no '/' or ':')"
        )
    if VERSION_RE.match(value):
        raise UsageError(
            f"invalid alias {value!r}: names like v0, v1 are version numbers, "
            "reserved by reftrack; pick another alias"
        )
    return value


class ArtifactPath:
    """``project/name:selector`` parsed; ``selector`` is ``vN``, an alias or ``latest``."""

    __slots__ = ("name", "project", "selector")

    def __init__(self, project: str, name: str, selector: str) -> None:
        self.project = project
        self.name = name
        self.selector = selector

    def __str__(self) -> str:
        return f"{self.project}/{self.name}:{self.selector}"


def parse_artifact_path(text: str, *, default_project: str | None = None) -> ArtifactPath:
    """Parse ``project/name[:version_or_alias]`` (``name[:...]`` with a default project)."""
    if not isinstance(text, str) or not text.strip():
        raise UsageError("empty artifact name: write project/name:version, e.g. demo/images:v0")
    raw = text.strip()
    body, sep, selector = raw.partition(":")
    if sep and not selector:
        raise UsageError(f"{raw!r}: nothing after ':'; write {body}:latest, {body}:v0 or an alias")
    selector = selector or LATEST
    parts = body.split("/")
    if len(parts) == 2:
        project, name = parts
    elif len(parts) == 1 and default_project is not None:
        project, name = default_project, parts[0]
    else:
        raise UsageError(
            f"{raw!r} is not an artifact name: write project/name:version_or_alias, "
            "e.g. demo/images:v0 or demo/images:latest"
        )
    check_name(project, "project name")
    check_name(name, "artifact name")
    if selector != LATEST and not VERSION_RE.match(selector):
        check_alias(selector)
    return ArtifactPath(project, name, selector)
