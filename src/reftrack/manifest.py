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

import gzip
import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from .checksums import ALGORITHMS
from .errors import ManifestError, UsageError
from .uri import check_entry_path, parse_uri

__all__ = ["BLOB_LAYOUT", "SCHEMA_VERSION", "Manifest", "ManifestEntry", "ManifestSource"]

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
            if name not in ALGORITHMS:
                raise ValueError(f"unknown checksum {name!r}; known: {', '.join(ALGORITHMS)}")
            if not digest or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"checksum {name} must be lowercase hex, got {digest!r}")
        return dict(sorted(value.items())) or None

    @field_validator("path")
    @classmethod
    def _safe_path(cls, value: str) -> str:
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

    def canonical(self) -> str:
        data: dict[str, Any] = {name: getattr(self, name) for name in _CANONICAL_FIELDS}
        if self.checksums:
            data["checksums"] = self.checksums
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


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
        for entry in entries:
            self.add(entry)

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
        """Add entries all or nothing: every path is checked before any is added."""
        entries = list(entries)
        for entry in entries:
            self._check(entry)
        for entry in entries:
            self.add(entry)

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
            for entry in self.sorted_entries():
                h.update(entry.canonical().encode())
                h.update(b"\n")
            self._digest = h.hexdigest()
        return self._digest

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
        """Write as gzip JSON Lines, one entry at a time (deterministic bytes)."""
        with gzip.GzipFile(fileobj=fileobj, mode="wb", mtime=0, compresslevel=6) as gz:
            gz.write(json.dumps(self.header(), separators=(",", ":")).encode() + b"\n")
            for entry in self.sorted_entries():
                gz.write(entry.model_dump_json(exclude_none=True).encode() + b"\n")

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        self.write(buf)
        return buf.getvalue()

    @classmethod
    def read(cls, fileobj: IO[bytes], *, name: str = "manifest") -> Manifest:
        """Read what :meth:`write` wrote, line by line; check schema, count and digest."""
        try:
            with gzip.GzipFile(fileobj=fileobj, mode="rb") as gz:
                return cls._read_lines(gz, name)
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise ManifestError(
                f"{name} is unreadable ({exc}); it is corrupt or truncated"
            ) from exc

    @classmethod
    def _read_lines(cls, lines: Iterable[bytes], name: str) -> Manifest:
        it = iter(lines)
        try:
            header = json.loads(next(it))
        except StopIteration:
            raise ManifestError(f"{name} is empty") from None
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
            sources = [ManifestSource.model_validate(s) for s in header.get("sources", [])]
        except ValidationError as exc:
            raise ManifestError(f"{name}: invalid sources in header ({exc})") from exc
        manifest = cls(sources=sources)
        for number, line in enumerate(it, start=2):
            if not line.strip():
                continue
            try:
                entry = ManifestEntry.model_validate_json(line)
            except ValidationError as exc:
                raise ManifestError(f"{name}, line {number}: invalid entry ({exc})") from exc
            manifest.entries[entry.path] = entry
        if len(manifest.entries) != header.get("entries"):
            raise ManifestError(
                f"{name} is truncated: header says {header.get('entries')} entries, "
                f"found {len(manifest.entries)}"
            )
        if manifest.digest != header.get("digest"):
            raise ManifestError(
                f"{name} is corrupt: its entries hash to {manifest.digest}, "
                f"the header says {header.get('digest')}"
            )
        return manifest

    @classmethod
    def from_bytes(cls, data: bytes, *, name: str = "manifest") -> Manifest:
        return cls.read(io.BytesIO(data), name=name)
