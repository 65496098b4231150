"""Manifests: the entries of one artifact version, their canonical digest, and their
streamed storage as gzip-compressed JSON Lines.

Stored form (one JSON document per line, gzip)::

    {"format": "reftrack.manifest", "schema_version": 2, "digest": "...", "entries": N, ...}
    {"path": "a.png", "ref": "s3://bucket/data/a.png", "version_id": "...", "etag": "...", ...}
    ...

Entries are written sorted by path. The digest is the SHA-256 of the canonical form of the
entries (path, ref, version_id, etag, size, digest, and checksums when recorded: nothing else),
so identical content gives an identical digest whatever the order entries were added in, and a
different pinned version gives a different digest. Entries without checksums hash exactly as
they did in schema 1, so digests of older manifests are unchanged.

Schema history: 1 (S3 references); 2 adds ``checksums`` (sha256/md5/crc32c, hex) for GCS,
local and HTTP references. Version 1 manifests are read as they are.
"""

from __future__ import annotations

import gc
import gzip
import hashlib
import io
import json
import operator
import re
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from datetime import datetime
from json.encoder import encode_basestring
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, field_validator
from pydantic_core import from_json, to_json

from .checksums import KNOWN
from .errors import ManifestError, UsageError
from .uri import check_entry_path, parse_uri

__all__ = [
    "BLOB_LAYOUT",
    "SCHEMA_VERSION",
    "EntryChange",
    "Manifest",
    "ManifestDiff",
    "ManifestEntry",
    "ManifestSource",
    "diff_entries",
]

BLOB_LAYOUT = re.compile(r"^(?P<store>.+)/sha256/(?P<two>[0-9a-f]{2})/(?P<hex>[0-9a-f]{64})$")
"""A managed file's reference: ``<store root>/sha256/<first 2 hex>/<64 hex>`` (blobs.py)."""

FORMAT = "reftrack.manifest"
SCHEMA_VERSION = 2
_DIGEST_PREFIX = b"reftrack-manifest/1\n"
_CANONICAL_FIELDS = ("path", "ref", "version_id", "etag", "size", "digest")


class ManifestEntry(BaseModel):
    """One file of an artifact: its logical ``path`` and the reference that pins it.

    W&B-compatible: ``entry.ref``, ``entry.digest`` (the ETag for S3 and GCS references,
    the ETag or else the sha256 for HTTP, the sha256 for local files), ``entry.size`` and
    ``entry.extra["versionID"]`` / ``entry.extra["etag"]``. ``checksums`` holds content
    checksums as lowercase hex (``sha256`` for local and HTTP, ``md5``/``crc32c`` for GCS).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    ref: str
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None
    digest: str | None = None
    last_modified: datetime | None = None
    checksums: dict[str, str] | None = None

    @field_validator("checksums")
    @classmethod
    def _known_checksums(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        for name, digest in value.items():
            if name not in KNOWN:
                raise ValueError(f"unknown checksum {name!r}; known: {', '.join(KNOWN)}")
            if not digest or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"checksum {name} must be lowercase hex, got {digest!r}")
        return dict(sorted(value.items())) or None

    @field_validator("path")
    @classmethod
    def _safe_path(cls, value: str) -> str:
        if _plainly_safe(value):
            return value
        try:
            return check_entry_path(value)
        except UsageError as exc:
            raise ValueError(str(exc)) from None

    @property
    def extra(self) -> dict[str, str]:
        """W&B's ``extra``: ``versionID`` and ``etag`` when recorded."""
        out: dict[str, str] = {}
        if self.etag is not None:
            out["etag"] = self.etag
        if self.version_id is not None:
            out["versionID"] = self.version_id
        return out

    @property
    def uri(self) -> str:
        """The reference with its pinned version (``s3://b/k?versionId=...``)."""
        return str(parse_uri(self.ref).with_version(self.version_id))

    @property
    def pinned(self) -> bool:
        """True when an exact object version is recorded."""
        return self.version_id is not None

    @property
    def checksummed(self) -> bool:
        """False for ``checksum=False`` references: only the URI was recorded."""
        return self.etag is not None or self.digest is not None or self.size is not None

    def __init__(self, /, **data: Any) -> None:
        # The fast path for the millions of entries a listing gives: values that already
        # have their final types, after the checks the validators make, skip pydantic's
        # validation pass (it would return them as they are, ~3x slower); anything else goes
        # through it, for its coercions and its errors.
        values = _checked_values(data)
        if values is None:
            super().__init__(**data)
        else:
            _fill(self, values, data.keys())

    def model_post_init(self, context: Any, /) -> None:
        # Memory, for manifests of millions of entries: pydantic gives every instance its own
        # set of the field names it was given (~700 bytes, as much as the rest of an entry);
        # entries given the same fields share one (pydantic copies it before changing it, in
        # model_copy; a frozen model never changes it). A digest equal to the ETag is kept once.
        _set_attribute(self, "__pydantic_fields_set__",
                       _shared_fields(self.__pydantic_fields_set__))
        values = self.__dict__
        etag = values["etag"]
        if etag is not None and values["digest"] == etag:
            values["digest"] = etag

    def canonical(self) -> str:
        """The entry's part of the manifest digest: ``json.dumps`` of path, ref, version_id,
        etag, size, digest (and checksums when recorded) with sorted keys, compact separators
        and ``ensure_ascii=False``, built directly (it runs once per entry per digest)."""
        values = self.__dict__
        digest, etag, size, version_id, checksums = (
            values["digest"], values["etag"], values["size"], values["version_id"],
            values["checksums"],
        )
        text = encode_basestring  # what json.dumps uses for a str (TypeError for others)
        try:
            if size is not None and type(size) is not int:  # model_construct'ed oddities
                raise TypeError(size)
            return (
                ("{" if not checksums else '{"checksums":' + json.dumps(
                    checksums, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + ",")
                + '"digest":' + ("null" if digest is None else text(digest))
                + ',"etag":' + ("null" if etag is None else text(etag))
                + ',"path":' + text(values["path"])
                + ',"ref":' + text(values["ref"])
                + ',"size":' + ("null" if size is None else str(size))
                + ',"version_id":' + ("null" if version_id is None else text(version_id))
                + "}"
            )
        except TypeError:
            data: dict[str, Any] = {name: values[name] for name in _CANONICAL_FIELDS}
            if checksums:
                data["checksums"] = checksums
            return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_set_attribute = object.__setattr__
_TEXT_TYPES = (str, type(None))
_SIZE_TYPES = (int, type(None))
_FIELD_NAMES = frozenset(ManifestEntry.model_fields)
_NO_VALUES = dict.fromkeys(ManifestEntry.model_fields)
_new_object = object.__new__
_ENTRY_LIST = TypeAdapter(list[ManifestEntry])
_TIMESTAMP = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)", re.ASCII
)
_BATCH = 4096
"""Entries serialised, parsed and hashed per call."""
_BLOCK = 1 << 20
"""Bytes of decompressed JSON Lines read at a time."""
_GZIP_LEVEL = 1
"""zlib level 1: ~3x faster than 6 on manifests, ~10% larger (hex ids barely compress)."""
_NEXT_ENTRY = b'},{"path":'


class _FieldSets:
    """Hands out one ``__pydantic_fields_set__`` per combination of given fields (at most
    2^8), the same set object to every entry given those fields."""

    def __init__(self) -> None:
        self._last: set[str] = set()
        self._known: dict[frozenset[str], set[str]] = {}

    def __call__(self, names: AbstractSet[str]) -> set[str]:
        last = self._last
        if names == last:  # nearly always: the entries of a manifest have the same fields
            return last
        shared = self._known.setdefault(frozenset(names), set(names))
        self._last = shared
        return shared


_shared_fields = _FieldSets()


def _plainly_safe(path: str) -> bool:
    """True when ``path`` is obviously what :func:`~reftrack.uri.check_entry_path` accepts
    (printable, relative, no backslash, no drive letter, no empty, ``.`` or ``..`` segment),
    with C-speed string tests; False sends it to ``check_entry_path`` for the verdict."""
    wrapped = f"/{path}/"
    return (path.isprintable() and "\\" not in path and path[1:2] != ":"
            and "//" not in wrapped and "/./" not in wrapped and "/../" not in wrapped)


def _reference(entry: ManifestEntry) -> tuple[Any, ...]:
    """What the digest covers besides the path (equal exactly when ``canonical()`` is)."""
    return (entry.ref, entry.version_id, entry.etag, entry.size, entry.digest, entry.checksums)


def _checked_values(data: dict[str, Any]) -> dict[str, Any] | None:
    """Every field's value for ``data`` (None for fields not given), when each given value
    already has its final type (a str; an int; a datetime, or a timestamp as
    ``model_dump_json`` writes it; a dict of checksums) and passes the checks the validators
    make (safe path, known lowercase-hex checksums): then pydantic's validation would return
    these very values. None whenever anything needs its judgement (a coercion, an error)."""
    if not data.keys() <= _FIELD_NAMES:
        return None
    values = {**_NO_VALUES, **data}  # every field, in the order pydantic keeps them
    path, ref, version_id, etag, size, digest, when, checksums = values.values()
    if not (type(path) is str and type(ref) is str and type(version_id) in _TEXT_TYPES
            and type(etag) in _TEXT_TYPES and type(digest) in _TEXT_TYPES
            and type(size) in _SIZE_TYPES and _plainly_safe(path)):
        return None
    if when is not None and type(when) is not datetime:
        if type(when) is not str or not _TIMESTAMP.fullmatch(when):
            return None
        try:
            values["last_modified"] = datetime.fromisoformat(when)
        except ValueError:
            return None
    if checksums is not None:
        if type(checksums) is not dict or not all(
            type(k) is str and type(v) is str for k, v in checksums.items()
        ):
            return None
        try:
            values["checksums"] = ManifestEntry._known_checksums(checksums)
        except ValueError:
            return None
    if etag is not None and digest == etag:
        values["digest"] = etag
    return values


def _fill(entry: ManifestEntry, values: dict[str, Any], given: AbstractSet[str]) -> None:
    """Set up ``entry`` as pydantic does (and as its own ``model_copy`` does)."""
    _set_attribute(entry, "__dict__", values)
    _set_attribute(entry, "__pydantic_fields_set__", _shared_fields(given))
    _set_attribute(entry, "__pydantic_extra__", None)
    _set_attribute(entry, "__pydantic_private__", None)


def _stored_entry(data: Any) -> ManifestEntry | None:
    """The entry one parsed stored line describes, without a pydantic pass when
    :func:`_checked_values` allows; None when pydantic must judge the line."""
    if type(data) is not dict:
        return None
    values = _checked_values(data)
    if values is None:
        return None
    entry = _new_object(ManifestEntry)
    _fill(entry, values, data.keys())
    return entry


class ManifestSource(BaseModel):
    """How entries got into the manifest: one ``add_reference`` call.

    The verifier uses it to list the same prefix again instead of one request per entry.
    Not part of the digest.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    uri: str
    kind: Literal["prefix", "object", "managed"]
    """``prefix``/``object``: an ``add_reference`` call; ``managed``: an ``add_file``/``add_dir``
    call (``uri`` is the local file or directory that was copied into the blob store)."""
    name: str | None = None
    entries: int = 0
    listed: int = 0
    versioning: Literal["enabled", "suspended", "disabled", "unknown"] = "unknown"
    checksum: bool = True
    skipped_markers: int = 0


class Manifest:
    """The ordered set of entries of one artifact version (``manifest.entries[path]``)."""

    def __init__(
        self,
        entries: Iterable[ManifestEntry] = (),
        sources: Iterable[ManifestSource] = (),
    ) -> None:
        self.entries: dict[str, ManifestEntry] = {}
        self.sources: list[ManifestSource] = list(sources)
        self._digest: str | None = None
        self.add_all(entries)

    def _check(self, entry: ManifestEntry) -> None:
        existing = self.entries.get(entry.path)
        if existing is not None and existing.canonical() != entry.canonical():
            raise UsageError(
                f"entry path {entry.path!r} is already taken by {existing.uri}; cannot also "
                f"point it at {entry.uri}. Give one of the references another name=..."
            )

    def add(self, entry: ManifestEntry) -> None:
        """Add an entry; the same path twice must be the same reference."""
        self._check(entry)
        self.entries[entry.path] = entry
        self._digest = None

    def add_all(self, entries: Iterable[ManifestEntry]) -> None:
        """Add entries all or nothing: every path is checked, against the manifest and the
        other given entries, before any is added."""
        current = self.entries
        # Into an empty manifest, straight in (undone by clearing it); else staged first.
        staged: dict[str, ManifestEntry] = {} if current else current
        try:
            for entry in entries:
                path = entry.path
                existing = staged.get(path)
                if existing is None and staged is not current:
                    existing = current.get(path)
                if existing is not None and existing is not entry and (
                    _reference(existing) != _reference(entry)
                ):
                    raise UsageError(
                        f"entry path {path!r} is already taken by {existing.uri}; cannot also "
                        f"point it at {entry.uri}. Give one of the references another name=..."
                    )
                staged[path] = entry
        except BaseException:
            if staged is current:
                current.clear()
            raise
        if staged is not current:
            current.update(staged)
        self._digest = None

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[ManifestEntry]:
        return iter(self.entries.values())

    def sorted_entries(self) -> list[ManifestEntry]:
        return [self.entries[p] for p in sorted(self.entries)]

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the canonical form of the entries."""
        if self._digest is None:
            h = hashlib.sha256(_DIGEST_PREFIX)
            entries = self.sorted_entries()
            for start in range(0, len(entries), _BATCH):
                h.update(_canonical_lines(entries[start:start + _BATCH]))
            self._digest = h.hexdigest()
        return self._digest

    def diff(self, other: Manifest) -> ManifestDiff:
        """What changed from this manifest to ``other``: entries ``added`` (only in
        ``other``), ``removed`` (only in this one), ``changed`` (same path, another reference:
        see :class:`EntryChange`) and how many are ``unchanged``. Compares what the digest
        covers, so ``a.diff(b).identical`` exactly when ``a.digest == b.digest``.
        (:func:`diff_entries` does the same for two path-sorted streams.)"""
        mine, theirs = self.entries, other.entries
        removed = [entry for path, entry in mine.items() if path not in theirs]
        added = [entry for path, entry in theirs.items() if path not in mine]
        changed: list[EntryChange] = []
        unchanged = 0
        for path, a in mine.items():
            b = theirs.get(path)
            if b is None:
                continue
            if (a.ref, a.version_id, a.etag, a.size, a.digest, a.checksums) == (
                b.ref, b.version_id, b.etag, b.size, b.digest, b.checksums
            ):
                unchanged += 1
            else:
                changed.append(_change(a, b))
        by_path = operator.attrgetter("path")
        return ManifestDiff(added=tuple(sorted(added, key=by_path)),
                            removed=tuple(sorted(removed, key=by_path)),
                            changed=tuple(sorted(changed, key=by_path)), unchanged=unchanged)

    def managed_blobs(self) -> set[tuple[str, str]]:
        """``(store root, sha256)`` of every managed file (``add_file``/``add_dir``): entries
        of a manifest with a ``managed`` source whose reference has the blob layout and whose
        recorded sha256 names the blob."""
        if not any(source.kind == "managed" for source in self.sources):
            return set()
        found = set()
        for entry in self.entries.values():
            match = BLOB_LAYOUT.match(entry.ref)
            if (match and match["hex"].startswith(match["two"])
                    and (entry.checksums or {}).get("sha256") == match["hex"]):
                found.add((match["store"], match["hex"]))
        return found

    @property
    def size(self) -> int:
        """Total recorded bytes (entries without a recorded size count as 0)."""
        return sum(e.size or 0 for e in self.entries.values())

    # -- storage ----------------------------------------------------------------------------

    def header(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "digest": self.digest,
            "entries": len(self.entries),
            "size": self.size,
            "sources": [s.model_dump(mode="json") for s in self.sources],
        }

    def write(self, fileobj: IO[bytes]) -> None:
        """Write as gzip JSON Lines (deterministic bytes), a batch of entries at a time: the
        whole manifest never becomes one string."""
        header = json.dumps(self.header(), separators=(",", ":")).encode() + b"\n"
        entries = self.sorted_entries()
        with gzip.GzipFile(fileobj=fileobj, mode="wb", mtime=0,
                           compresslevel=_GZIP_LEVEL) as gz:
            gz.write(header)
            for start in range(0, len(entries), _BATCH):
                gz.write(_entry_lines(entries[start:start + _BATCH]))

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        self.write(buf)
        return buf.getvalue()

    @classmethod
    def read(cls, fileobj: IO[bytes], *, name: str = "manifest") -> Manifest:
        """Read what :meth:`write` wrote, a block of lines at a time; check the schema, every
        entry (types, safe paths), the count and the digest."""
        try:
            with gzip.GzipFile(fileobj=fileobj, mode="rb") as gz, _collector_paused():
                reader = _StoredReader(_line_blocks(gz), name)
                manifest = cls(sources=reader.sources)
                entries = manifest.entries
                for batch in reader.batches():
                    for entry in batch:
                        entries[entry.path] = entry
                manifest._digest = reader.digest()  # None (out of order): computed anew
                reader.check(len(entries), manifest.digest)
                return manifest
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise ManifestError(
                f"{name} is unreadable ({exc}); it is corrupt or truncated"
            ) from exc

    @classmethod
    def stream(cls, fileobj: IO[bytes], *, name: str = "manifest") -> Iterator[ManifestEntry]:
        """The entries of a stored manifest one by one, in path order, never all in memory:
        each is checked as :meth:`read` checks it, and the count and digest once the last was
        read. A wrong count or digest raises :class:`ManifestError` *at the end*: act on what
        was streamed only once the iteration finished (:func:`diff_entries` does)."""
        try:
            with gzip.GzipFile(fileobj=fileobj, mode="rb") as gz:
                reader = _StoredReader(_line_blocks(gz), name)
                for batch in reader.batches():
                    if not reader.ascending:
                        raise ManifestError(
                            f"{name}: entries are not sorted by path (near line "
                            f"{reader.count + 1}); it was not written by reftrack"
                        )
                    yield from batch
                reader.check(reader.count, reader.digest())
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise ManifestError(
                f"{name} is unreadable ({exc}); it is corrupt or truncated"
            ) from exc

    @classmethod
    def from_bytes(cls, data: bytes, *, name: str = "manifest") -> Manifest:
        return cls.read(io.BytesIO(data), name=name)


# -- the stored form ------------------------------------------------------------------------


@contextmanager
def _collector_paused() -> Iterator[None]:
    """CPython's cyclic garbage collector off while entries are created by the million: it
    would scan the growing heap again and again (a fifth of the time of a read). Entries hold
    no reference cycles, so nothing is left for it; it is on again afterwards (unless it was
    off already)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _entry_lines(entries: list[ManifestEntry]) -> bytes:
    """JSON Lines of ``entries``, each line what ``model_dump_json(exclude_none=True)``
    gives, serialised in one call: pydantic writes the list as ``[{"path":...},{"path":...}]``
    (``path`` first, as declared), and ``},{"path":`` cannot occur inside a JSON string (its
    quote would be escaped), so each occurrence is a boundary between two entries."""
    if not entries:
        return b""
    data = _ENTRY_LIST.dump_json(entries, exclude_none=True)[1:-1]
    data = data.replace(_NEXT_ENTRY, b'}\n{"path":') + b"\n"
    if data.count(b"\n") != len(entries):  # not expected: fall back to one at a time
        return b"".join(e.model_dump_json(exclude_none=True).encode() + b"\n" for e in entries)
    return data


def _canonical_lines(entries: list[ManifestEntry]) -> bytes:
    """``canonical() + "\\n"`` of each entry, UTF-8: the digest's input for a batch, made
    by one ``to_json`` call over plain dicts (keys in sorted order), whose text for str, int
    and None values is ``json.dumps``'s character for character. Entries holding anything
    else (``model_construct``) take the per-entry way."""
    rows: list[dict[str, Any]] = []
    for entry in entries:
        values = entry.__dict__
        digest, etag, path, ref, size, version_id, checksums = (
            values["digest"], values["etag"], values["path"], values["ref"], values["size"],
            values["version_id"], values["checksums"],
        )
        if not (type(path) is str and type(ref) is str and type(size) in _SIZE_TYPES
                and type(digest) in _TEXT_TYPES and type(etag) in _TEXT_TYPES
                and type(version_id) in _TEXT_TYPES):
            return "".join([e.canonical() + "\n" for e in entries]).encode()
        row = {"digest": digest, "etag": etag, "path": path, "ref": ref, "size": size,
               "version_id": version_id}
        if checksums:
            if type(checksums) is not dict or not all(
                type(k) is str and type(v) is str for k, v in checksums.items()
            ):
                return "".join([e.canonical() + "\n" for e in entries]).encode()
            row = {"checksums": dict(sorted(checksums.items())), **row}
        rows.append(row)
    try:
        data = to_json(rows)[1:-1]
    except ValueError:  # (a lone surrogate): per entry, which raises as it always did
        return "".join([e.canonical() + "\n" for e in entries]).encode()
    data = data.replace(b'},{"digest":', b'}\n{"digest":')
    data = data.replace(b'},{"checksums":', b'}\n{"checksums":') + b"\n"
    if data.count(b"\n") != len(entries):  # (no entries)
        return "".join([e.canonical() + "\n" for e in entries]).encode()
    return data


def _line_blocks(stream: io.BufferedIOBase) -> Iterator[list[bytes]]:
    """The lines of ``stream`` (without their newlines), a block of ``_BLOCK`` bytes at a
    time."""
    rest = b""
    while block := stream.read(_BLOCK):
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        if lines:
            yield lines
    if rest:
        yield [rest]


class _StoredReader:
    """Reads the stored form a block of lines at a time: the header first, then every entry
    checked (schema, safe path) and counted and, while the paths ascend as :meth:`Manifest.write`
    writes them, hashed into the digest on the way."""

    def __init__(self, blocks: Iterator[list[bytes]], name: str) -> None:
        self.name = name
        self._blocks = blocks
        self._first = next(blocks, [])
        if not self._first:
            raise ManifestError(f"{name} is empty")
        try:
            header = json.loads(self._first.pop(0))
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{name}: header line is not JSON ({exc})") from exc
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ManifestError(f"{name} is not a reftrack manifest (no {FORMAT!r} header)")
        version = header.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ManifestError(
                f"{name} has schema version {version!r}, newer than this reftrack reads "
                f"({SCHEMA_VERSION}); upgrade reftrack"
            )
        try:
            self.sources = [ManifestSource.model_validate(s) for s in header.get("sources", [])]
        except ValidationError as exc:
            raise ManifestError(f"{name}: invalid sources in header ({exc})") from exc
        self.header = header
        self.count = 0
        self.ascending = True
        self._lines_read = 1
        self._last: str | None = None
        self._hash = hashlib.sha256(_DIGEST_PREFIX)

    def batches(self) -> Iterator[list[ManifestEntry]]:
        block = self._first
        while True:
            for start in range(0, len(block), _BATCH):
                with _collector_paused():
                    batch = self._entries(block[start:start + _BATCH])
                if batch:
                    yield batch
            block = next(self._blocks, [])
            if not block:
                return

    def _entries(self, lines: list[bytes]) -> list[ManifestEntry]:
        first = self._lines_read + 1
        self._lines_read += len(lines)
        try:  # one parse for the batch (pydantic's parser); an oddity: line by line
            parsed = from_json(b"[" + b",".join(lines) + b"]", cache_strings="keys")
        except ValueError:
            parsed = None
        entries: list[ManifestEntry] = []
        if type(parsed) is list and len(parsed) == len(lines):
            for index, data in enumerate(parsed):
                entry = _stored_entry(data)
                entries.append(entry or self._validated(lines[index], first + index))
        else:
            for index, line in enumerate(lines):
                if line.strip():
                    entries.append(self._validated(line, first + index))
        if entries:
            paths = [entry.path for entry in entries]
            if self.ascending and (
                (self._last is not None and not self._last < paths[0])
                or not all(map(operator.lt, paths, paths[1:]))
            ):
                self.ascending = False
            if self.ascending:
                self._hash.update(_canonical_lines(entries))
            self._last = paths[-1]
            self.count += len(entries)
        return entries

    def _validated(self, line: bytes, number: int) -> ManifestEntry:
        """One line through pydantic: the entry, or the error naming the line."""
        try:
            return ManifestEntry.model_validate_json(line)
        except ValidationError as exc:
            raise ManifestError(f"{self.name}, line {number}: invalid entry ({exc})") from exc

    def digest(self) -> str | None:
        """The digest of what was read, if it was in path order (else the caller sorts)."""
        return self._hash.hexdigest() if self.ascending else None

    def check(self, count: int, digest: str | None) -> None:
        if count != self.header.get("entries"):
            raise ManifestError(
                f"{self.name} is truncated: header says {self.header.get('entries')} entries, "
                f"found {count}"
            )
        if digest != self.header.get("digest"):
            raise ManifestError(
                f"{self.name} is corrupt: its entries hash to {digest}, "
                f"the header says {self.header.get('digest')}"
            )


# -- differences ------------------------------------------------------------------------------

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
