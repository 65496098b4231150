"""A manifest's entries: :class:`ManifestEntry` (the public, W&B-shaped object), its compact
form (:data:`Row`, a plain tuple: what a :class:`~reftrack.manifest.Manifest` holds, so that a
million entries cost a tuple each, not a pydantic model each) and the checks both share.

A row is ``(path, ref, version_id, etag, size, digest, last_modified, checksums)``, the
fields of :class:`ManifestEntry` in their declared order, holding the values an entry would
hold (``last_modified`` a datetime, ``checksums`` a sorted dict or None). Rows are only ever
built from values already checked: by :class:`ManifestEntry`, by :func:`row_for` from a
backend's listing (paths checked in batches with :func:`check_paths`), or by the stored-form
reader (:mod:`reftrack.manifest_store`), which checks every value it reads.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from .checksums import KNOWN
from .errors import UsageError
from .uri import check_entry_path, parse_uri

if TYPE_CHECKING:
    from .backends import ObjectStat

__all__ = [
    "FIELDS",
    "ManifestEntry",
    "ManifestSource",
    "Row",
    "check_paths",
    "entry_of",
    "row_for",
    "row_of",
    "same_reference",
]

_CANONICAL_FIELDS = ("path", "ref", "version_id", "etag", "size", "digest")

Row = tuple[str, str, str | None, str | None, int | None, str | None, datetime | None,
            dict[str, str] | None]
"""An entry's values: ``(path, ref, version_id, etag, size, digest, last_modified,
checksums)``."""

FIELDS = ("path", "ref", "version_id", "etag", "size", "digest", "last_modified", "checksums")


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
        and ``ensure_ascii=False``."""
        return canonical_text(_row_of(self))


_set_attribute = object.__setattr__
_TEXT_TYPES = (str, type(None))
_SIZE_TYPES = (int, type(None))
_FIELD_NAMES = frozenset(ManifestEntry.model_fields)
_NO_VALUES = dict.fromkeys(ManifestEntry.model_fields)
_new_object = object.__new__
_TIMESTAMP = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)", re.ASCII
)


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




# -- rows -----------------------------------------------------------------------------------

_row_of: Callable[[Any], Row] = operator.attrgetter(*FIELDS)
_given_by_mask: dict[tuple[bool, ...], set[str]] = {}


def row_of(entry: ManifestEntry) -> Row:
    """The row holding ``entry``'s values."""
    return _row_of(entry)


def entry_of(row: Row) -> ManifestEntry:
    """The :class:`ManifestEntry` of a row (its checks were made when the row was built):
    what pydantic would build from the row's non-None values."""
    mask = tuple(value is not None for value in row)
    given = _given_by_mask.get(mask)
    if given is None:
        names = {"path", "ref"} | {f for f, v in zip(FIELDS, mask, strict=True) if v}
        given = _given_by_mask.setdefault(mask, _shared_fields(names))
    entry = _new_object(ManifestEntry)
    _set_attribute(entry, "__dict__", dict(zip(FIELDS, row, strict=True)))
    _set_attribute(entry, "__pydantic_fields_set__", given)
    _set_attribute(entry, "__pydantic_extra__", None)
    _set_attribute(entry, "__pydantic_private__", None)
    return entry


def row_for(path: str, stat: ObjectStat, checksum: bool) -> Row:
    """The row for one listed object (``path`` must have passed :func:`check_paths`):
    what ``ManifestEntry(path=..., ref=..., ...)`` would hold, without building one."""
    if not checksum:
        return (path, stat.uri.base, None, None, None, None, None, None)
    checksums: dict[str, str] | None = None
    if stat.checksums:
        try:
            checksums = ManifestEntry._known_checksums(dict(stat.checksums))
        except ValueError as exc:
            raise UsageError(f"{stat.uri}: {exc}") from None
    etag = stat.etag
    digest = etag or (checksums or {}).get("sha256")
    return (path, stat.uri.base, stat.uri.version_id, etag, stat.size, digest,
            stat.last_modified, checksums)


def same_reference(a: Row, b: Row) -> bool:
    """True when two rows pin the same thing: every field the digest covers but the path
    (``last_modified`` is not one) is equal."""
    return a[1:6] == b[1:6] and a[7] == b[7]


_DRIVE = re.compile("\x00/.:", re.DOTALL)


def check_paths(paths: Sequence[str], what: Callable[[int], str] | None = None) -> None:
    """Check that every path is a safe entry path (:func:`~reftrack.uri.check_entry_path`),
    a batch at a time with C-speed string tests; a path they cannot clear is judged by
    ``check_entry_path`` itself, whose :class:`UsageError` names it (``what(i)`` says where
    the ``i``-th path came from)."""
    if _all_plainly_safe(paths):
        return
    for index, path in enumerate(paths):
        if not (type(path) is str and _plainly_safe(path)):
            check_entry_path(path, what=what(index) if what else "entry path")


def _all_plainly_safe(paths: Sequence[str]) -> bool:
    """:func:`_plainly_safe` of every path at once: printable (so none holds the ``\\x00``
    that separates them below), no backslash, and, with each path wrapped as ``/path/``, no
    ``//``, ``/./`` or ``/../`` and no drive letter."""
    if not paths:
        return True
    try:
        joined = "".join(paths)
    except TypeError:  # not all str
        return False
    if not joined.isprintable() or "\\" in joined or set(map(type, paths)) != {str}:
        return False
    wrapped = "\x00/" + "/\x00/".join(paths) + "/\x00"
    return ("//" not in wrapped and "/./" not in wrapped and "/../" not in wrapped
            and _DRIVE.search(wrapped) is None)


def canonical_text(row: Row) -> str:
    """A row's part of the digest: ``json.dumps`` (sorted keys, compact separators,
    ``ensure_ascii=False``) of path, ref, version_id, etag, size, digest, and checksums when
    recorded, built directly (it runs once per entry per digest)."""
    path, ref, version_id, etag, size, digest, _, checksums = row
    text = encode_basestring  # what json.dumps uses for a str (TypeError for others)
    try:
        if size is not None and type(size) is not int:  # model_construct'ed oddities
            raise TypeError(size)
        return (
            ("{" if not checksums else '{"checksums":' + json.dumps(
                checksums, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + ",")
            + '"digest":' + ("null" if digest is None else text(digest))
            + ',"etag":' + ("null" if etag is None else text(etag))
            + ',"path":' + text(path)
            + ',"ref":' + text(ref)
            + ',"size":' + ("null" if size is None else str(size))
            + ',"version_id":' + ("null" if version_id is None else text(version_id))
            + "}"
        )
    except TypeError:
        data: dict[str, Any] = dict(zip(_CANONICAL_FIELDS, row, strict=False))
        if checksums:
            data["checksums"] = checksums
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
