"""The one settings object: where the registry lives and how backends are configured.

Nothing here is module-level mutable state: a :class:`Settings` is built from the
environment when asked (``Settings.from_env()``) and passed down through constructors.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import UsageError

__all__ = ["DEFAULT_MAX_OBJECTS", "Settings", "default_registry_path"]

DEFAULT_MAX_OBJECTS = 1_000_000
DEFAULT_GRACE = timedelta(days=7)


def default_registry_path() -> Path:
    """``<user data dir>/reftrack/registry.db`` (e.g. ``~/.local/share/reftrack/``)."""
    return Path(platformdirs.user_data_dir("reftrack", appauthor=False)) / "registry.db"


class Settings(BaseModel):
    """How reftrack is configured.

    ``registry`` is a filesystem path (SQLite), an SQLAlchemy URL, or the URL of a registry
    server (``https://...``), which ``token`` authenticates to. ``blob_store`` is where
    managed files (``Artifact.add_file``/``add_dir``) are stored: a local directory or a
    ``s3://bucket/prefix/`` / ``gs://bucket/prefix/`` URL; by default the ``blobs/`` directory
    next to an SQLite registry (a registry given by a server URL has no default).
    ``storage_options`` maps a scheme (``"s3"``) to keyword arguments for its fsspec
    filesystem, e.g. ``{"s3": {"endpoint_url": "http://127.0.0.1:9000"}}``. Without them the
    usual AWS environment applies (``AWS_PROFILE``, ``AWS_ENDPOINT_URL_S3``, ...).
    """

    model_config = ConfigDict(frozen=True)

    registry: str = Field(default_factory=lambda: str(default_registry_path()))
    blob_store: str | None = None
    storage_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    concurrency: int = 32
    max_objects: int = DEFAULT_MAX_OBJECTS
    grace: timedelta = DEFAULT_GRACE
    """How long a deleted version stays restorable before ``gc`` may purge it (and how long a
    blob stored for a version not logged yet is kept from ``gc``)."""
    token: str | None = Field(default=None, repr=False, exclude=True)
    """The API token for a registry server (``REFTRACK_TOKEN``); None: anonymous. Never
    shown in ``repr`` nor dumped."""
    clock: Callable[[], datetime] | None = Field(default=None, exclude=True)
    """The registry's clock (tz-aware); None: the system clock. For tests and simulations."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise UsageError(f"invalid reftrack settings: {problems}") from None
        if not self.registry.strip():
            raise UsageError(
                "the registry location is empty; give a path, an SQLAlchemy URL or a registry "
                "server URL (REFTRACK_REGISTRY, --registry)"
            )
        if self.blob_store is not None and not self.blob_store.strip():
            raise UsageError(
                "the blob store location is empty; give a directory or an s3:// or gs:// URL "
                "(REFTRACK_BLOB_STORE), or leave it unset for the blobs/ directory next to the "
                "registry"
            )
        for name in ("concurrency", "max_objects"):
            if getattr(self, name) < 1:
                raise UsageError(f"setting {name} must be at least 1, got {getattr(self, name)}")

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Settings from ``REFTRACK_*`` environment variables, then ``overrides``
        (``None`` values are ignored)."""
        values: dict[str, Any] = {}
        if os.environ.get("REFTRACK_REGISTRY"):
            values["registry"] = os.environ["REFTRACK_REGISTRY"]
        if os.environ.get("REFTRACK_TOKEN", "").strip():
            values["token"] = os.environ["REFTRACK_TOKEN"].strip()
        if os.environ.get("REFTRACK_BLOB_STORE"):
            values["blob_store"] = os.environ["REFTRACK_BLOB_STORE"]
        if os.environ.get("REFTRACK_CONCURRENCY"):
            try:
                values["concurrency"] = int(os.environ["REFTRACK_CONCURRENCY"])
            except ValueError as exc:
                raise UsageError(
                    "REFTRACK_CONCURRENCY must be a whole number, got "
                    f"{os.environ['REFTRACK_CONCURRENCY']!r}"
                ) from exc
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
