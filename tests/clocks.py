"""A registry clock the tests move by hand (``Settings(clock=...)``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    """Returns ``now`` (now, to the second, unless a start is given) until advanced."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)
