"""Differences between two manifests: :class:`ManifestDiff` (entries added, removed,
changed, and how many are unchanged), from two in-memory manifests (:func:`diff_rows`, what
``Manifest.diff`` uses) or from two path-sorted streams (:func:`diff_entries`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pydantic import BaseModel, ConfigDict

from .errors import UsageError
from .manifest_entry import ManifestEntry, Row, entry_of

__all__ = ["EntryChange", "ManifestDiff", "diff_entries", "diff_rows"]

_COMPARED = ("ref", "version_id", "etag", "size", "digest", "checksums")
"""What the digest covers besides the path: the fields a change is reported in."""


class EntryChange(BaseModel):
    """One path in both manifests whose reference differs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    fields: tuple[str, ...]
    """What differs, in this order: ``ref``, ``version_id``, ``etag``, ``size``, ``digest``,
    ``checksums`` (``last_modified`` is not compared: it is not part of the digest)."""
    old: ManifestEntry
    new: ManifestEntry


class ManifestDiff(BaseModel):
    """The differences between two manifests (old -> new), each list sorted by path."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    added: tuple[ManifestEntry, ...] = ()
    removed: tuple[ManifestEntry, ...] = ()
    changed: tuple[EntryChange, ...] = ()
    unchanged: int = 0

    @property
    def identical(self) -> bool:
        """True when nothing was added, removed or changed (the digests are equal)."""
        return not (self.added or self.removed or self.changed)

    @property
    def summary(self) -> dict[str, int]:
        return {"added": len(self.added), "removed": len(self.removed),
                "changed": len(self.changed), "unchanged": self.unchanged}


def _ascending(entries: Iterable[ManifestEntry], side: str) -> Iterator[ManifestEntry]:
    previous: str | None = None
    for entry in entries:
        if previous is not None and not previous < entry.path:
            raise UsageError(
                f"the {side} entries are not sorted by path ({previous!r} then {entry.path!r}); "
                "diff_entries merges two path-sorted streams (Manifest.sorted_entries(), or a "
                "stored manifest read in order)"
            )
        previous = entry.path
        yield entry


def diff_entries(old: Iterable[ManifestEntry], new: Iterable[ManifestEntry]) -> ManifestDiff:
    """:meth:`Manifest.diff` over two streams of entries, each sorted by path with no path
    twice (a :class:`UsageError` otherwise): one sorted merge, so only the differences are
    held, never either side whole."""
    return _merge(_ascending(old, "old"), _ascending(new, "new"))


def _change(old: ManifestEntry, new: ManifestEntry) -> EntryChange:
    fields = tuple(f for f in _COMPARED if getattr(old, f) != getattr(new, f))
    return EntryChange(path=old.path, fields=fields, old=old, new=new)


def _merge(old: Iterator[ManifestEntry], new: Iterator[ManifestEntry]) -> ManifestDiff:
    added: list[ManifestEntry] = []
    removed: list[ManifestEntry] = []
    changed: list[EntryChange] = []
    unchanged = 0
    a = next(old, None)
    b = next(new, None)
    while a is not None and b is not None:
        if a.path == b.path:
            if (a.ref, a.version_id, a.etag, a.size, a.digest, a.checksums) == (
                b.ref, b.version_id, b.etag, b.size, b.digest, b.checksums
            ):
                unchanged += 1
            else:
                changed.append(_change(a, b))
            a = next(old, None)
            b = next(new, None)
        elif a.path < b.path:
            removed.append(a)
            a = next(old, None)
        else:
            added.append(b)
            b = next(new, None)
    while a is not None:
        removed.append(a)
        a = next(old, None)
    while b is not None:
        added.append(b)
        b = next(new, None)
    return ManifestDiff(added=tuple(added), removed=tuple(removed), changed=tuple(changed),
                        unchanged=unchanged)


def diff_rows(mine: list[Row], theirs: list[Row]) -> ManifestDiff:
    """What changed from the rows ``mine`` to ``theirs``, each sorted by path with no path
    twice (what ``Manifest.sorted_rows`` gives): one merge; only the differences become
    entries."""
    added: list[Row] = []
    removed: list[Row] = []
    changed: list[EntryChange] = []
    unchanged = 0
    i = j = 0
    n, m = len(mine), len(theirs)
    while i < n and j < m:
        a, b = mine[i], theirs[j]
        if a is b:
            unchanged += 1
            i += 1
            j += 1
            continue
        pa, pb = a[0], b[0]
        if pa == pb:
            if a[1:6] == b[1:6] and a[7] == b[7]:
                unchanged += 1
            else:
                changed.append(_change(entry_of(a), entry_of(b)))
            i += 1
            j += 1
        elif pa < pb:
            removed.append(a)
            i += 1
        else:
            added.append(b)
            j += 1
    removed += mine[i:]
    added += theirs[j:]
    return ManifestDiff(added=tuple(map(entry_of, added)), removed=tuple(map(entry_of, removed)),
                        changed=tuple(changed), unchanged=unchanged)
