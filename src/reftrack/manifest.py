"""Manifests: the entries of one artifact version, their canonical digest, and their
streamed storage as gzip-compressed JSON Lines.

A :class:`Manifest` holds its entries compactly, a tuple of values each
(:mod:`reftrack.manifest_entry`), and hands out :class:`ManifestEntry` objects as they are
asked for (``manifest.entries[path]``, iteration); a million entries cost a few hundred
bytes each. The stored form is in :mod:`reftrack.manifest_store`, differences in
:mod:`reftrack.manifest_diff`.

The digest is the SHA-256 of the canonical form of the entries (path, ref, version_id, etag,
size, digest, and checksums when recorded: nothing else), so identical content gives an
identical digest whatever the order entries were added in, and a different pinned version
gives a different digest. Entries without checksums hash exactly as they did in schema 1, so
digests of older manifests are unchanged.
"""

from __future__ import annotations

import hashlib
import io
import operator
import re
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from typing import IO, Any, overload

from .errors import ManifestError, UsageError
from .manifest_diff import EntryChange, ManifestDiff, diff_entries, diff_rows
from .manifest_entry import (
    ManifestEntry,
    ManifestSource,
    Row,
    entry_of,
    row_of,
    same_reference,
)
from .manifest_store import (
    BATCH,
    DIGEST_PREFIX,
    FORMAT,
    GZIP_ERRORS,
    SCHEMA_VERSION,
    StoredReader,
    canonical_lines,
    collector_paused,
    open_gzip,
    write_stored,
)

__all__ = [
    "BLOB_LAYOUT",
    "SCHEMA_VERSION",
    "EntryChange",
    "EntryList",
    "Manifest",
    "ManifestDiff",
    "ManifestEntry",
    "ManifestSource",
    "diff_entries",
]

_path_of = operator.itemgetter(0)
_READ_ERRORS: tuple[type[BaseException], ...] = (*GZIP_ERRORS, UnicodeDecodeError)
BLOB_LAYOUT = re.compile(r"^(?P<store>.+)/sha256/(?P<two>[0-9a-f]{2})/(?P<hex>[0-9a-f]{64})$")
"""A managed file's reference: ``<store root>/sha256/<first 2 hex>/<64 hex>`` (blobs.py)."""


class Entries(MutableMapping[str, ManifestEntry]):
    """``manifest.entries``: path -> :class:`ManifestEntry`, built from the manifest's row
    when asked for (two lookups give equal entries, not the same object). Setting an entry
    replaces the path's reference; ``Manifest.add`` checks for conflicts, this does not."""

    __slots__ = ("_manifest",)

    def __init__(self, manifest: Manifest) -> None:
        self._manifest = manifest

    def __getitem__(self, path: str) -> ManifestEntry:
        return entry_of(self._manifest._rows[path])

    def get(self, path: str, default: Any = None) -> Any:
        row = self._manifest._rows.get(path)
        return default if row is None else entry_of(row)

    def __contains__(self, path: object) -> bool:
        return path in self._manifest._rows

    def __setitem__(self, path: str, entry: ManifestEntry) -> None:
        if not isinstance(entry, ManifestEntry) or entry.path != path:
            raise UsageError(f"manifest.entries[{path!r}] takes a ManifestEntry whose path is "
                             f"{path!r}, not {entry!r}")
        self._manifest._rows[path] = row_of(entry)
        self._manifest._changed()

    def __delitem__(self, path: str) -> None:
        del self._manifest._rows[path]
        self._manifest._changed()

    def __iter__(self) -> Iterator[str]:
        return (row[0] for row in self._manifest._all_rows())

    def __len__(self) -> int:
        return len(self._manifest)

    def __repr__(self) -> str:
        return f"<manifest entries: {len(self)}>"


class EntryList(Sequence[ManifestEntry]):
    """A list of entries held as rows (what ``add_reference`` returns: a prefix of a million
    objects does not become a million objects unless they are looked at)."""

    __slots__ = ("_rows",)

    def __init__(self, rows: list[Row]) -> None:
        self._rows = rows

    @overload
    def __getitem__(self, index: int) -> ManifestEntry: ...

    @overload
    def __getitem__(self, index: slice) -> list[ManifestEntry]: ...

    def __getitem__(self, index: int | slice) -> ManifestEntry | list[ManifestEntry]:
        if isinstance(index, slice):
            return list(map(entry_of, self._rows[index]))
        return entry_of(self._rows[index])

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[ManifestEntry]:
        return map(entry_of, self._rows)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EntryList):
            return self._rows == other._rows
        if isinstance(other, Sequence) and not isinstance(other, str):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<{len(self._rows)} manifest entries>"


class Manifest:
    """The ordered set of entries of one artifact version (``manifest.entries[path]``)."""

    def __init__(
        self,
        entries: Iterable[ManifestEntry] = (),
        sources: Iterable[ManifestSource] = (),
    ) -> None:
        self._by_path: dict[str, Row] | None = {}
        self._in_order: list[Row] | None = None
        """The rows sorted by path, when known (a manifest read back has only these: the
        path index is built when first needed)."""
        self.sources: list[ManifestSource] = list(sources)
        self._digest: str | None = None
        self.add_all(entries)

    @property
    def _rows(self) -> dict[str, Row]:
        """path -> row; changes to it must be followed by :meth:`_changed`."""
        if self._by_path is None:
            order = self._in_order or []
            self._by_path = dict(zip([row[0] for row in order], order, strict=True))
        return self._by_path

    def _changed(self) -> None:
        self._in_order = None
        self._digest = None

    @property
    def entries(self) -> Entries:
        """path -> :class:`ManifestEntry` (W&B's ``manifest.entries[path]``)."""
        return Entries(self)

    def add(self, entry: ManifestEntry) -> None:
        """Add an entry; the same path twice must be the same reference."""
        self.add_rows([row_of(entry)])

    def add_all(self, entries: Iterable[ManifestEntry]) -> None:
        """Add entries all or nothing: every path is checked, against the manifest and the
        other given entries, before any is added."""
        self.add_rows([row_of(entry) for entry in entries])

    def add_rows(self, rows: list[Row]) -> None:
        """:meth:`add_all` for rows (:mod:`reftrack.manifest_entry`) already checked."""
        if not rows:
            return
        current = self._rows
        staged = dict(zip([row[0] for row in rows], rows, strict=True))
        if len(staged) < len(rows):  # a path twice in ``rows``: the same reference?
            for row in rows:
                if not same_reference(staged[row[0]], row):
                    raise _taken(staged[row[0]], row)
        if current:
            for path, row in staged.items():
                existing = current.get(path)
                if existing is not None and not same_reference(existing, row):
                    raise _taken(existing, row)
            current.update(staged)
        else:
            self._by_path = staged
        self._changed()

    def __len__(self) -> int:
        if self._by_path is not None:
            return len(self._by_path)
        return len(self._in_order or ())

    def _all_rows(self) -> Iterable[Row]:
        if self._by_path is not None:
            return self._by_path.values()
        return self._in_order or ()

    def __iter__(self) -> Iterator[ManifestEntry]:
        return map(entry_of, list(self._all_rows()))

    def sorted_rows(self) -> list[Row]:
        """The rows sorted by path (kept until the manifest changes)."""
        if self._in_order is None:
            self._in_order = sorted(self._rows.values(), key=_path_of)
        return self._in_order

    def sorted_entries(self) -> list[ManifestEntry]:
        return list(map(entry_of, self.sorted_rows()))

    def iter_sorted(self) -> Iterator[ManifestEntry]:
        """The entries in path order, built one at a time."""
        return map(entry_of, self.sorted_rows())

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the canonical form of the entries."""
        if self._digest is None:
            h = hashlib.sha256(DIGEST_PREFIX)
            with collector_paused():
                rows = self.sorted_rows()
                for start in range(0, len(rows), BATCH):
                    h.update(canonical_lines(rows[start:start + BATCH]))
            self._digest = h.hexdigest()
        return self._digest

    def diff(self, other: Manifest) -> ManifestDiff:
        """What changed from this manifest to ``other``: entries ``added`` (only in
        ``other``), ``removed`` (only in this one), ``changed`` (same path, another reference:
        see :class:`EntryChange`) and how many are ``unchanged``. Compares what the digest
        covers, so ``a.diff(b).identical`` exactly when ``a.digest == b.digest``.
        (:func:`diff_entries` does the same for two path-sorted streams.)"""
        with collector_paused():
            return diff_rows(self.sorted_rows(), other.sorted_rows())

    def managed_blobs(self) -> set[tuple[str, str]]:
        """``(store root, sha256)`` of every managed file (``add_file``/``add_dir``): entries
        of a manifest with a ``managed`` source whose reference has the blob layout and whose
        recorded sha256 names the blob."""
        if not any(source.kind == "managed" for source in self.sources):
            return set()
        found = set()
        for row in self._all_rows():
            match = BLOB_LAYOUT.match(row[1])
            if (match and match["hex"].startswith(match["two"])
                    and (row[7] or {}).get("sha256") == match["hex"]):
                found.add((match["store"], match["hex"]))
        return found

    @property
    def size(self) -> int:
        """Total recorded bytes (entries without a recorded size count as 0)."""
        return sum(row[4] or 0 for row in self._all_rows())

    # -- storage ----------------------------------------------------------------------------

    def header(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "digest": self.digest,
            "entries": len(self),
            "size": self.size,
            "sources": [s.model_dump(mode="json") for s in self.sources],
        }

    def write(self, fileobj: IO[bytes]) -> None:
        """Write as gzip JSON Lines (deterministic bytes), a batch of entries at a time: the
        whole manifest never becomes one string."""
        header = self.header()
        with collector_paused():
            write_stored(fileobj, header, self.sorted_rows())

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        self.write(buf)
        return buf.getvalue()

    @classmethod
    def read(cls, fileobj: IO[bytes], *, name: str = "manifest") -> Manifest:
        """Read what :meth:`write` wrote, a block of lines at a time; check the schema, every
        entry (types, safe paths), the count and the digest."""
        with _gzip(fileobj, name) as gz, collector_paused():
            reader = StoredReader(gz, name)
            manifest = cls(sources=reader.sources)
            rows: list[Row] = []
            for batch in reader.batches():
                rows += batch
            if reader.ascending:  # (as written: strictly ascending, so no path twice)
                manifest._by_path, manifest._in_order = None, rows
            else:
                manifest.add_rows(rows)  # (a path twice must then be the same reference)
            manifest._digest = reader.digest()  # None (out of order): computed anew
            reader.check(len(rows), manifest.digest)
            return manifest

    @classmethod
    def stream(cls, fileobj: IO[bytes], *, name: str = "manifest") -> Iterator[ManifestEntry]:
        """The entries of a stored manifest one by one, in path order, never all in memory:
        each is checked as :meth:`read` checks it, and the count and digest once the last was
        read. A wrong count or digest raises :class:`ManifestError` *at the end*: act on what
        was streamed only once the iteration finished (:func:`diff_entries` does)."""
        for batch in cls.stream_rows(fileobj, name=name):
            yield from map(entry_of, batch)

    @classmethod
    def stream_rows(cls, fileobj: IO[bytes], *, name: str = "manifest") -> Iterator[list[Row]]:
        """:meth:`stream`, a batch of rows at a time."""
        with _gzip(fileobj, name) as gz:
            reader = StoredReader(gz, name)
            for batch in reader.batches():
                if not reader.ascending:
                    raise ManifestError(
                        f"{name}: entries are not sorted by path (near entry "
                        f"{reader.count}); it was not written by reftrack"
                    )
                yield batch
            reader.check(reader.count, reader.digest())

    @classmethod
    def from_bytes(cls, data: bytes, *, name: str = "manifest") -> Manifest:
        return cls.read(io.BytesIO(data), name=name)


def _taken(existing: Row, row: Row) -> UsageError:
    old, new = entry_of(existing), entry_of(row)
    return UsageError(
        f"entry path {row[0]!r} is already taken by {old.uri}; cannot also point it at "
        f"{new.uri}. Give one of the references another name=..."
    )


@contextmanager
def _gzip(fileobj: IO[bytes], name: str) -> Iterator[IO[bytes]]:
    """The stored form opened for reading; a gzip or decoding failure becomes the
    :class:`ManifestError` naming the manifest."""
    try:
        with open_gzip(fileobj, "rb") as gz:
            yield gz
    except _READ_ERRORS as exc:
        raise ManifestError(f"{name} is unreadable ({exc}); it is corrupt or truncated") from exc
