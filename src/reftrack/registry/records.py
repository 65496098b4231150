"""What the registry hands out: frozen records of versions, artifacts and runs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["ArtifactSummary", "RunRecord", "VersionRecord"]


class VersionRecord(BaseModel):
    """One artifact version as the registry knows it."""

    model_config = ConfigDict(frozen=True)

    id: int
    project: str
    name: str
    type: str
    index: int
    digest: str
    description: str | None
    metadata: dict[str, Any]
    aliases: list[str]
    created_at: datetime
    run_id: str | None
    entry_count: int
    size: int
    ttl: timedelta | None = None
    """The version's own ttl when one was set, else the project default in force."""
    expires_at: datetime | None = None
    deleted_at: datetime | None = None
    protected: bool = False
    """An S3 Object Lock legal hold was placed on every pinned object (``reftrack protect``)."""

    @property
    def version(self) -> str:
        return f"v{self.index}"

    @property
    def qualified_name(self) -> str:
        return f"{self.project}/{self.name}:{self.version}"


class ArtifactSummary(BaseModel):
    """One artifact (all its versions) for listings."""

    model_config = ConfigDict(frozen=True)

    project: str
    name: str
    type: str
    versions: int
    latest: str
    aliases: dict[str, str]
    size: int
    updated_at: datetime


class RunRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    pk: int
    id: str
    project: str
    name: str | None
    job_type: str | None
    config: dict[str, Any]
    state: str
    started_at: datetime
    finished_at: datetime | None
    host: str | None
    user: str | None
    group: str | None = None
    sweep: str | None = None
    summary: dict[str, Any] = {}
    git_commit: str | None = None
    git_remote: str | None = None
    program: str | None = None
    notes: str | None = None

    @property
    def path(self) -> str:
        """``project/run_id``."""
        return f"{self.project}/{self.id}"
