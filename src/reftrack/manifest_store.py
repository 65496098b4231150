"""A manifest's stored form: gzip-compressed JSON Lines, written and read a batch of rows at a
time, compression and decompression on a second thread (zlib releases the GIL, so it runs
alongside the serialising and parsing).

Stored form (one JSON document per line, gzip)::

    {"format": "reftrack.manifest", "schema_version": 3, "digest": "...", "entries": N,
     "fields": ["path", "ref", "version_id", "etag", "size", "digest", "last_modified",
                "checksums"], ...}
    ["a.png", "s3://bucket/data/a.png", "3HL4kqtJ...", "9b2cf535f27731c9", 1024, ...]
    ...

Entries are written sorted by path, one JSON array per entry holding the values of
``fields`` in that order (null for a value not recorded; ``last_modified`` as pydantic writes a
datetime). The digest is the SHA-256 of ``reftrack-manifest/1\\n`` and the canonical line of
every entry (:func:`~reftrack.manifest_entry.canonical_text`) in path order: it does not
depend on the stored form.

Schema history: 1 (S3 references, an object per line); 2 adds ``checksums``
(sha256/md5/crc32c, hex) for GCS, local and HTTP references; 3 writes each entry as an array
of the header's ``fields`` (a third smaller, and parsed and written several times faster than
an object per line). Versions 1 and 2 are read as they are.
"""

from __future__ import annotations

import gc
import gzip
import hashlib
import importlib
import json
import operator
import re
import zlib
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from datetime import datetime
from itertools import repeat
from json.encoder import encode_basestring
from types import ModuleType
from typing import IO, Any

from pydantic import ValidationError
from pydantic_core import to_json

from .errors import ManifestError
from .manifest_entry import (
    FIELDS,
    ManifestEntry,
    ManifestSource,
    Row,
    _stored_entry,
    canonical_text,
    check_paths,
    row_of,
)

__all__ = ["DIGEST_PREFIX", "FORMAT", "GZIP_ERRORS", "SCHEMA_VERSION", "StoredReader",
           "canonical_lines", "collector_paused", "entry_lines", "open_gzip", "write_stored"]

FORMAT = "reftrack.manifest"
SCHEMA_VERSION = 3
DIGEST_PREFIX = b"reftrack-manifest/1\n"
BATCH = 4096
"""Rows serialised and hashed per call."""
_BLOCK = 4 << 20
"""Bytes of decompressed JSON Lines read (and parsed) at a time."""

_GZIP_LEVEL = 1
"""ISA-L level 1 (of 0-3), or zlib level 1 (~3x faster than 6 on manifests, ~10% larger)."""


def _gzip_module() -> tuple[ModuleType, tuple[type[BaseException], ...]]:
    """ISA-L's gzip (``isal.igzip``: its deflate is ~4x faster than zlib both ways here, the
    same format) and what it raises for a corrupt stream; ``gzip`` where isal cannot be
    imported (it is a dependency; a platform without a wheel)."""
    try:
        module = importlib.import_module("isal.igzip")
        error: type[BaseException] = importlib.import_module("isal.isal_zlib").error
    except ImportError:  # pragma: no cover
        return gzip, (OSError, EOFError, zlib.error)
    return module, (OSError, EOFError, zlib.error, error)


_gzip, GZIP_ERRORS = _gzip_module()
"""The gzip module used, and what a corrupt or truncated gzip stream raises."""


def open_gzip(fileobj: IO[bytes], mode: str) -> Any:
    """A gzip stream over ``fileobj`` (``mode`` ``"rb"`` or ``"wb"``; written with mtime 0,
    so the same rows give the same bytes)."""
    if mode == "wb":
        return _gzip.GzipFile(fileobj=fileobj, mode="wb", compresslevel=_GZIP_LEVEL, mtime=0)
    return _gzip.GzipFile(fileobj=fileobj, mode="rb")
_TIMESTAMPS = re.compile(
    r"(?:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)\n)*", re.ASCII
)
_TEXT_TYPES = {str, type(None)}
_SIZE_TYPES = {int, type(None)}
_NO_VALUES = dict.fromkeys(FIELDS)
_from_iso = datetime.fromisoformat


@contextmanager
def collector_paused() -> Iterator[None]:
    """CPython's cyclic garbage collector off while rows are created by the million: it
    would scan the growing heap again and again. Rows hold no reference cycles, so nothing
    is left for it; it is on again afterwards (unless it was off already)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# -- writing ----------------------------------------------------------------------------------


def canonical_lines(rows: list[Row]) -> bytes:
    """``canonical_text(row) + "\\n"`` of each row, UTF-8: the digest's input for a batch.

    The common batch (no checksums; each field str in every row or None in every row, size
    int or None likewise; every string ASCII with nothing ``json.dumps`` would escape) is
    laid out a column at a time, the text between the values fixed: the same characters
    ``json.dumps`` writes. Any other batch is formatted a row at a time."""
    if not rows:
        return b""
    fast = _canonical_columns(rows)
    if fast is not None:
        return fast
    text = encode_basestring
    out: list[str] = []
    add = out.append
    try:
        for path, ref, version_id, etag, size, digest, _, checksums in rows:
            if checksums or (size is not None and type(size) is not int):
                add(canonical_text((path, ref, version_id, etag, size, digest, None,
                                    checksums)))
                continue
            add('{{"digest":{},"etag":{},"path":{},"ref":{},"size":{},"version_id":{}}}'.format(
                "null" if digest is None else text(digest),
                "null" if etag is None else text(etag),
                text(path), text(ref), "null" if size is None else size,
                "null" if version_id is None else text(version_id)))
    except TypeError:  # a value of another type (model_construct): the per-row way
        out = [canonical_text(row) for row in rows]
    out.append("")
    return "\n".join(out).encode()


_PLAIN_BYTES = b'"\\' + bytes(range(32))
"""What ``json.dumps`` escapes in an ASCII string (``ensure_ascii=False``)."""
_CANONICAL_ORDER = ((5, "digest"), (3, "etag"), (0, "path"), (1, "ref"), (4, "size"),
                    (2, "version_id"))


def _canonical_columns(rows: list[Row]) -> bytes | None:
    """:func:`canonical_lines` for the common batch, a column at a time; None for others."""
    columns = list(zip(*rows, strict=True))
    if columns[7].count(None) != len(rows):  # checksums
        return None
    strings: list[tuple[str, ...]] = []
    pieces: list[Any] = []  # the text before each value, then the values' column
    before = "{"
    count = len(rows)
    for index, name in _CANONICAL_ORDER:
        column = columns[index]
        kinds = set(map(type, column))
        before += f'"{name}":'
        if kinds == {type(None)}:
            before += "null,"
            continue
        if index == 4:
            if kinds != {int}:
                return None
            values: Any = list(map(str, column))
            quote = ""
        else:
            if kinds != {str}:
                return None
            strings.append(column)
            values, quote = column, '"'
        pieces += [before + quote, values]
        before = quote + ","
    text = "".join("".join(column) for column in strings)
    if not text.isascii():
        return None
    plain = text.encode("ascii")
    if len(plain.translate(None, _PLAIN_BYTES)) != len(plain):
        return None
    parts: list[Any] = [None] * (len(pieces) + 1) * count
    stride = len(pieces) + 1
    for offset, piece in enumerate(pieces):
        parts[offset::stride] = piece if offset % 2 else repeat(piece, count)
    parts[len(pieces)::stride] = repeat(before.rstrip(",") + "}\n", count)
    return "".join(parts).encode()


def entry_lines(rows: list[Row]) -> bytes:
    """The stored lines of ``rows``: a JSON array of each row's values, serialised in one
    call. Each row starts with its path, a string, so ``],["`` separates two rows, unless a
    string holds it just before its closing quote: the line count then says so, and the
    rows are written one at a time."""
    if not rows:
        return b""
    data = to_json(rows)[1:-1].replace(b'],["', b']\n["') + b"\n"
    if data.count(b"\n") != len(rows):
        return b"".join(to_json(row) + b"\n" for row in rows)
    return data


def write_stored(fileobj: IO[bytes], header: dict[str, Any], rows: list[Row]) -> None:
    """Write the stored form (deterministic bytes for a given compressor) of ``rows``,
    sorted by path, a batch at a time: the whole manifest never becomes one string."""
    with open_gzip(fileobj, "wb") as gz:
        header = {**header, "fields": list(FIELDS)}
        gz.write(json.dumps(header, separators=(",", ":")).encode() + b"\n")
        for start in range(0, len(rows), BATCH):
            gz.write(entry_lines(rows[start:start + BATCH]))


# -- reading ----------------------------------------------------------------------------------


def _decompressed(gz: IO[bytes]) -> Generator[bytes, None, None]:
    """The decompressed stream in blocks that end at a line boundary."""
    rest = b""
    while block := gz.read(_BLOCK):
        end = block.rfind(b"\n") + 1
        if end:
            yield rest + block[:end]
            rest = block[end:]
        else:
            rest += block
    if rest:
        yield rest + b"\n"


class StoredReader:
    """Reads the stored form a block of lines at a time: the header first, then every entry
    checked (schema, types, safe path) and counted and, while the paths ascend as
    :func:`write_stored` writes them, hashed into the digest on the way."""

    def __init__(self, gz: IO[bytes], name: str) -> None:
        self.name = name
        self._blocks = _decompressed(gz)
        first = next(self._blocks, b"")
        if not first.strip():
            self._blocks.close()
            raise ManifestError(f"{name} is empty")
        line, _, self._first = first.partition(b"\n")
        try:
            header = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self._blocks.close()
            raise ManifestError(f"{name}: header line is not JSON ({exc})") from exc
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            self._blocks.close()
            raise ManifestError(f"{name} is not a reftrack manifest (no {FORMAT!r} header)")
        version = header.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            self._blocks.close()
            raise ManifestError(
                f"{name} has schema version {version!r}, newer than this reftrack reads "
                f"({SCHEMA_VERSION}); upgrade reftrack"
            )
        try:
            self.sources = [ManifestSource.model_validate(s) for s in header.get("sources", [])]
        except ValidationError as exc:
            self._blocks.close()
            raise ManifestError(f"{name}: invalid sources in header ({exc})") from exc
        self._arrays = version >= 3  # (1 and 2: an object per line)
        if self._arrays and header.get("fields") != list(FIELDS):
            self._blocks.close()
            raise ManifestError(
                f"{name}: header fields {header.get('fields')!r} are not the fields this "
                f"reftrack writes ({', '.join(FIELDS)}); it was not written by reftrack"
            )
        self.header = header
        self.count = 0
        self.ascending = True
        self._lines_read = 1
        self._last: str | None = None
        self._hash = hashlib.sha256(DIGEST_PREFIX)

    def close(self) -> None:
        self._blocks.close()

    def batches(self) -> Iterator[list[Row]]:
        """The rows, a block at a time (empty lines skipped)."""
        chunk = self._first
        try:
            while True:
                if chunk:
                    with collector_paused():
                        rows = self._rows(chunk)
                    if rows:
                        yield rows
                next_chunk = next(self._blocks, None)
                if next_chunk is None:
                    return
                chunk = next_chunk
        finally:
            self._blocks.close()

    def _rows(self, chunk: bytes) -> list[Row]:
        lines = chunk.count(b"\n")
        first = self._lines_read + 1
        self._lines_read += lines
        try:  # one parse for the block (pydantic's parser); an oddity: line by line
            parsed = json.loads(b"[" + chunk[:-1].replace(b"\n", b",") + b"]")
        except ValueError:
            parsed = None
        rows = None
        if type(parsed) is list and len(parsed) == lines:
            rows = _checked_rows(_arrays(parsed) if self._arrays else _objects(parsed))
        if rows is None:
            rows = [self._row(line, first + index)
                    for index, line in enumerate(chunk[:-1].split(b"\n")) if line.strip()]
        if rows:
            paths = [row[0] for row in rows]  # (checked, by _checked_rows or pydantic)
            if self.ascending and (
                (self._last is not None and not self._last < paths[0])
                or not all(map(operator.lt, paths, paths[1:]))
            ):
                self.ascending = False
            if self.ascending:
                self._hash.update(canonical_lines(rows))
            self._last = paths[-1]
            self.count += len(rows)
        return rows

    def _row(self, line: bytes, number: int) -> Row:
        """One line on its own: the entry's row, or the error naming the line."""
        try:
            data = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = None
        if self._arrays:
            if type(data) is not list or len(data) != len(FIELDS):
                raise ManifestError(
                    f"{self.name}, line {number}: invalid entry (not an array of the "
                    f"{len(FIELDS)} header fields: {line[:200]!r})")
            data = dict(zip(FIELDS, data, strict=True))
            line = json.dumps(data).encode()
        entry = _stored_entry(data)
        if entry is None:
            try:
                entry = ManifestEntry.model_validate_json(line)
            except ValidationError as exc:
                raise ManifestError(
                    f"{self.name}, line {number}: invalid entry ({exc})") from exc
        return row_of(entry)

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


_REFUSED: Any = object()


def _checksums(value: Any) -> Any:
    """Stored checksums as ``ManifestEntry`` keeps them (known names, lowercase hex,
    sorted); ``_REFUSED`` when pydantic must judge them."""
    if value is None:
        return None
    if type(value) is not dict or not all(
        type(k) is str and type(v) is str for k, v in value.items()
    ):
        return _REFUSED
    try:
        return ManifestEntry._known_checksums(value)
    except ValueError:
        return _REFUSED


def _objects(parsed: list[Any]) -> list[tuple[Any, ...]] | None:
    """Schema 1 and 2 lines (an object each) as tuples of the fields' values; None unless
    every line is an object of known fields."""
    if set(map(type, parsed)) != {dict}:
        return None
    merged = [tuple({**_NO_VALUES, **data}.values()) for data in parsed]
    return merged if set(map(len, merged)) == {len(FIELDS)} else None  # (unknown fields)


def _arrays(parsed: list[Any]) -> list[tuple[Any, ...]] | None:
    """Schema 3 lines (an array of the fields' values each) as tuples; None unless every
    line is an array of as many values as there are fields."""
    if set(map(type, parsed)) != {list}:
        return None
    merged = list(map(tuple, parsed))
    return merged if set(map(len, merged)) == {len(FIELDS)} else None


def _checked_rows(merged: list[tuple[Any, ...]] | None) -> list[Row] | None:
    """The rows of a block of lines when every line is plainly right: values of their
    final types (str; int; a timestamp as ``model_dump_json`` writes it; no checksums) and
    a plainly safe path: checked a column at a time. None whenever anything needs a closer
    look (the caller then takes the lines one by one)."""
    if not merged:
        return None
    paths, refs, versions, etags, sizes, digests, times, sums = zip(*merged, strict=True)
    if not (set(map(type, refs)) == {str}
            and set(map(type, versions)) <= _TEXT_TYPES
            and set(map(type, etags)) <= _TEXT_TYPES
            and set(map(type, digests)) <= _TEXT_TYPES
            and set(map(type, sizes)) <= _SIZE_TYPES):
        return None
    if sums.count(None) != len(sums):
        sums = tuple(map(_checksums, sums))
        if _REFUSED in sums:
            return None
    try:
        check_paths(paths)
    except Exception:
        return None
    kinds = set(map(type, times))
    if kinds == {type(None)}:
        return merged
    if not kinds <= _TEXT_TYPES:
        return None
    given = [t for t in times if t is not None]
    if not _TIMESTAMPS.fullmatch("\n".join(given) + "\n"):
        return None
    try:
        stamps = (list(map(_from_iso, times)) if len(given) == len(times)
                  else [None if t is None else _from_iso(t) for t in times])
    except ValueError:  # (a day that does not exist)
        return None
    return list(zip(paths, refs, versions, etags, sizes, digests, stamps, sums, strict=True))
