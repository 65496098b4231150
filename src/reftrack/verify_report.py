"""What the verifier answers: statuses and the report (frozen pydantic models). Split from
:mod:`reftrack.verify`, which re-exports them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, computed_field

from .bucketrules import BucketWarning

__all__ = ["DRIFT", "FAILING", "PASSING", "EntryResult", "Status", "VerifyReport"]


class Status(StrEnum):
    OK = "ok"
    MOVED = "moved"
    DELETED = "deleted"
    VERSION_MISSING = "version_missing"
    CHANGED = "changed"
    CORRUPT = "corrupt"
    UNREACHABLE = "unreachable"


PASSING = frozenset({Status.OK, Status.MOVED, Status.DELETED})
DRIFT = frozenset({Status.MOVED, Status.DELETED})
FAILING = frozenset({Status.VERSION_MISSING, Status.CHANGED, Status.CORRUPT})


class EntryResult(BaseModel):
    """What the verifier found for one entry."""

    model_config = ConfigDict(frozen=True)

    path: str
    uri: str
    status: Status
    detail: str
    recorded_etag: str | None = None
    recorded_size: int | None = None
    current_version_id: str | None = None
    current_etag: str | None = None
    current_size: int | None = None
    checked_at: datetime | None = None
    """When this entry was checked (the registry clock for logged versions)."""
    reused: bool = False
    """True when this result was not checked now but taken from an earlier verification
    (``since``, or resuming an interrupted one): ``checked_at`` says when."""


class VerifyReport(BaseModel):
    """The verifier's answer for one manifest."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = 1
    artifact: str | None
    digest: str
    checked_at: datetime
    requests: int
    deep: bool = False
    entries: list[EntryResult]
    warnings: list[BucketWarning] = []
    """What the buckets' own rules will do to the pinned data (lifecycle expiration,
    suspended or absent versioning); never part of the exit code."""
    total: int | None = None
    """Entries in the manifest (``entries`` holds fewer for a sample, or when ``ok``
    results were omitted)."""
    sampled: float | None = None
    """The fraction of the entries checked when this was a random sample (never a full
    verification), else None; ``seed`` reproduces the sample."""
    seed: int | None = None
    reused_since: datetime | None = None
    """Results checked at or after this time were reused instead of checked again."""
    resumed_from: datetime | None = None
    """The start of the interrupted verification this one resumed, if any."""
    omitted_ok: int = 0
    """``ok`` results checked now but not listed in ``entries``: a verification of more
    than ``reftrack.verify.KEEP_ALL`` entries lists only those that are not ``ok`` (so that
    the report stays small); every result is in the registry for a logged version."""
    omitted_reused_ok: int = 0
    """``ok`` results reused from an earlier verification and not listed, likewise."""
    results_stored: bool | None = None
    """For a logged version: True when each entry's result was kept in the registry (for
    ``since`` and resuming); False when the registry server let this user read the project
    but not write to it, so nothing was stored. None for an artifact not logged."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def checked(self) -> int:
        """Entries checked by this verification (the others were reused)."""
        return sum(1 for e in self.entries if not e.reused) + self.omitted_ok

    @computed_field  # type: ignore[prop-decorator]
    @property
    def reused(self) -> int:
        """Entries whose result was taken from an earlier verification."""
        return sum(1 for e in self.entries if e.reused) + self.omitted_reused_ok

    @property
    def omitted(self) -> int:
        """``ok`` results not listed in ``entries`` (checked now or reused)."""
        return self.omitted_ok + self.omitted_reused_ok

    @computed_field  # type: ignore[prop-decorator]
    @property
    def summary(self) -> dict[str, int]:
        """Entries per status, the ``ok`` ones not listed included."""
        counts = dict.fromkeys((s.value for s in Status), 0)
        for entry in self.entries:
            counts[entry.status.value] += 1
        counts[Status.OK.value] += self.omitted
        return counts

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        """True when every entry is ``ok``, ``moved`` or ``deleted`` (the ones not listed
        are ``ok``)."""
        return all(e.status in PASSING for e in self.entries)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def exit_code(self) -> int:
        """0 intact (drift allowed), 1 integrity failure, 3 unreachable."""
        statuses = {e.status for e in self.entries}
        if statuses & FAILING:
            return 1
        if Status.UNREACHABLE in statuses:
            return 3
        return 0

    def by_status(self, *statuses: Status) -> list[EntryResult]:
        """The listed entries with these statuses (``ok`` ones not listed are only counted:
        :attr:`omitted_ok`)."""
        return [e for e in self.entries if e.status in statuses]

    @property
    def drift(self) -> list[EntryResult]:
        return self.by_status(*DRIFT)
