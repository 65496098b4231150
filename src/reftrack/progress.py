"""Progress reporting without a UI dependency.

Long operations (listing, verifying, downloading) take an optional ``progress`` object
and tell it what they are doing; the command line draws Rich progress bars from it. The
library itself never prints.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["NullProgress", "Progress"]


class Progress(Protocol):
    def start(self, description: str, total: int | None = None, unit: str = "objects") -> None:
        """A new phase begins; ``total`` is None when unknown (a listing)."""

    def advance(self, amount: int = 1) -> None:
        """``amount`` more units of the current phase are done."""

    def finish(self) -> None:
        """The current phase is over."""


class NullProgress:
    """Reports nothing."""

    def start(self, description: str, total: int | None = None, unit: str = "objects") -> None:
        pass

    def advance(self, amount: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass
