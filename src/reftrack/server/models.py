"""The server's request and response bodies (pydantic), so that ``/openapi.json`` describes
every endpoint. Records the registry hands out (``VersionRecord``, ``RunRecord``,
``ArtifactSummary``, the team records) are returned as they are.

Names are checked with the registry's own rules (:mod:`reftrack.registry.names`): a bad
name is a 422 before anything else happens. Free text may not contain NUL characters.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from ..registry.names import LATEST, VERSION_RE, check_alias, check_name
from ..registry.records import RunRecord, VersionRecord
from ..registry.team import Role, Visibility

__all__ = [
    "Alias",
    "ArtifactName",
    "ProjectName",
    "RunId",
    "Selector",
    "UserName",
]


def _named(what: str) -> AfterValidator:
    return AfterValidator(lambda value: check_name(value, what))


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


def _selector(value: str) -> str:
    if value != LATEST and not VERSION_RE.match(value):
        check_alias(value)
    return value


ProjectName = Annotated[str, _named("project name")]
ArtifactName = Annotated[str, _named("artifact name")]
TypeName = Annotated[str, _named("artifact type")]
UserName = Annotated[str, _named("user name")]
RunId = Annotated[str, _named("run id")]
JobType = Annotated[str, _named("job type")]
GroupName = Annotated[str, _named("group")]
SweepId = Annotated[str, _named("sweep id")]
Alias = Annotated[str, AfterValidator(check_alias)]
Selector = Annotated[str, AfterValidator(_selector)]
"""``vN``, ``latest`` or an alias."""


_NO_NUL = AfterValidator(_no_nul)
CommitText = Annotated[str, StringConstraints(max_length=64), _NO_NUL]
ShortText = Annotated[str, StringConstraints(max_length=256), _NO_NUL]
PathText = Annotated[str, StringConstraints(max_length=4096), _NO_NUL]
LongText = Annotated[str, StringConstraints(max_length=65536), _NO_NUL]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
TtlSeconds = Annotated[int, Field(ge=1, le=100 * 365 * 86400)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- service ------------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class TokenInfo(BaseModel):
    id: int
    name: str


class WhoAmI(BaseModel):
    anonymous: bool
    user: str | None
    is_admin: bool
    token: TokenInfo | None


class Clock(BaseModel):
    now: datetime


# -- projects -----------------------------------------------------------------------------------


class ProjectCreate(_In):
    name: ProjectName
    visibility: Visibility = "private"


class ProjectOut(BaseModel):
    name: str
    visibility: Visibility
    created_at: datetime
    role: Role | None = Field(description="The caller's role in the project (None: none).")


class VisibilityIn(_In):
    visibility: Visibility


class MemberIn(_In):
    role: Role = "member"


class MemberRemoved(BaseModel):
    project: str
    user: str
    removed_role: Role


class TtlIn(_In):
    ttl_seconds: TtlSeconds | None = Field(
        description="Seconds a version lives after it was logged; null: forever.")


class ProjectTtl(BaseModel):
    project: str
    ttl_seconds: int | None
    versions_governed: int | None = None


# -- artifacts ----------------------------------------------------------------------------------


def _base64(value: object) -> object:
    if isinstance(value, str):
        try:
            return base64.b64decode(value.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
            raise ValueError(f"manifest must be base64 ({exc})") from None
    return value


class VersionIn(_In):
    """A version to log. ``manifest`` is the stored form of the manifest
    (``Manifest.to_bytes()``: gzip JSON Lines), base64-encoded (standard alphabet, padded)."""

    type: TypeName
    manifest: Annotated[bytes, BeforeValidator(_base64)] = Field(
        description="base64 of Manifest.to_bytes() (gzip JSON Lines).",
        json_schema_extra={"type": "string", "format": "byte"})
    description: LongText | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    aliases: list[Alias] = Field(default_factory=list, max_length=100)
    run_id: RunId | None = Field(
        default=None, description="The run (of this project) that logs the version.")
    ttl_seconds: TtlSeconds | None = Field(
        default=None, description="The version's own ttl; null: never expires; leave it out "
        "for the project's default.")


class LoggedVersion(BaseModel):
    version: VersionRecord
    created: bool = Field(description="False when a version with the same manifest existed.")


class ProtectedIn(_In):
    protected: bool


# -- runs ---------------------------------------------------------------------------------------


class RunCreate(_In):
    run_id: RunId | None = None
    name: ShortText | None = None
    job_type: JobType | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    group: GroupName | None = None
    sweep: SweepId | None = None
    resume: Literal["never", "allow", "must"] = "never"
    git_commit: CommitText | None = None
    git_remote: PathText | None = None
    program: PathText | None = None
    notes: LongText | None = None
    host: ShortText | None = Field(default=None, description="The client's host name.")


class RunCreated(BaseModel):
    run: RunRecord
    resumed: bool


class SummaryIn(_In):
    values: dict[str, Any]


class HistoryIn(_In):
    data: dict[str, Any]
    step: Annotated[int, Field(ge=0)] | None = None


class FinishIn(_In):
    state: Literal["finished", "crashed"]


class UseIn(_In):
    """The version a run used: its project (checked for read access) and id."""

    project: ProjectName
    version_id: int


class LeaseIn(_In):
    store: Annotated[str, StringConstraints(min_length=1, max_length=1024),
                     AfterValidator(_no_nul)]
    sha256s: list[Sha256] = Field(max_length=10_000)


# -- garbage collection -------------------------------------------------------------------------

Seconds = Annotated[int, Field(ge=0, le=100 * 365 * 86400)]
StoreUri = Annotated[str, StringConstraints(min_length=1, max_length=1024),
                     AfterValidator(_no_nul)]


class PurgeIn(_In):
    grace_seconds: Seconds
    lease_window_seconds: Seconds
    dry_run: bool = False


class PurgedOut(BaseModel):
    version: str
    reason: Literal["expired", "deleted"]


class PurgeOut(BaseModel):
    versions: list[PurgedOut]
    kept_protected: list[str]
    manifests: int
    stores: list[str]


class ClaimIn(_In):
    store: StoreUri
    sha256s: list[Sha256] = Field(max_length=10_000)
    lease_window_seconds: Seconds
    claim_seconds: Annotated[int, Field(ge=1, le=86400)] | None = None
    dry_run_grace_seconds: Seconds | None = None


class ReleaseIn(_In):
    store: StoreUri
    sha256s: list[Sha256] = Field(max_length=10_000)


class BlobsOut(BaseModel):
    sha256s: list[str]


# -- verification -------------------------------------------------------------------------------


class ResultIn(_In):
    path: PathText
    status: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,32}$")]
    detail: LongText
    checked_at: AwareDatetime
    deep: bool
    data: dict[str, Any] = Field(default_factory=dict)


class ResultsIn(_In):
    results: list[ResultIn] = Field(max_length=5000)


class Stored(BaseModel):
    stored: int


class ResultsQuery(_In):
    since: AwareDatetime | None = None
    deep: bool = False
    reusable: bool = False
    paths: list[PathText] | None = Field(default=None, max_length=5000)


class ResultOut(BaseModel):
    path: str
    status: str
    detail: str
    checked_at: datetime
    deep: bool
    data: dict[str, Any]


class VerificationRunOut(BaseModel):
    version_id: int
    started_at: datetime
    finished_at: datetime | None
    deep: bool
    sample: float | None
    seed: int | None
    entries: int


class VerificationStart(_In):
    deep: bool = False
    sample: Annotated[float, Field(gt=0, le=1)] | None = None
    seed: Annotated[int, Field(ge=0, lt=2**63)] | None = None
    entries: Annotated[int, Field(ge=0)]
    started_at: AwareDatetime | None = None


class VerificationFinish(_In):
    started_at: AwareDatetime
