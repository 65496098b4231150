"""How ``add_reference`` turns what a backend reports into manifest entries: one object, a
prefix from a bulk listing, and the sha256 of stores whose metadata does not identify content
(local files, HTTP). Split from :mod:`reftrack.artifact` to keep modules small.

Server-side checksums are recorded as the store reports them: GCS md5/crc32c come with every
listing; S3 checksums come with the HEAD of a single-object reference (no extra request), and
for a prefix only with ``server_checksums=True`` (S3 listings name the algorithm, not the value:
one HEAD per object, see :meth:`~reftrack.backends.s3.S3Backend.scan_with_checksums`)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Protocol, runtime_checkable

from .backends import Backend, ObjectStat
from .errors import IntegrityError, ObjectNotFound, UsageError
from .integrity import hash_reader
from .manifest_entry import ManifestSource, Row, check_paths, row_for
from .progress import Progress
from .uri import RefURI, check_entry_path, parse_uri

__all__ = ["hash_rows", "reference_object", "reference_prefix", "row_for"]

_PROGRESS_EVERY = 500


@runtime_checkable
class _ChecksumScanner(Protocol):
    """A backend whose listings carry no checksum values but can fetch them (S3)."""

    def scan_with_checksums(self, prefix: RefURI) -> Iterator[ObjectStat]: ...


def hash_rows(
    backend: Backend, rows: list[Row], progress: Progress, concurrency: int
) -> list[Row]:
    """Stream each object once and record its sha256 (local files, HTTP), concurrently."""

    def one(row: Row) -> Row:
        path, ref_text, _, etag, _, _, last_modified, _ = row
        ref = parse_uri(ref_text)
        with backend.open(ref) as reader:
            checksums, received = hash_reader(reader, ["sha256"], progress)
            opened = reader.stat
        if opened.size is not None and received != opened.size:
            raise IntegrityError(
                f"{ref}: read {received} bytes but it has {opened.size}: it changed while "
                "being hashed; reference it again once it is stable",
                expected=opened.size, actual=received, uri=str(ref),
            )
        stat = replace(opened, size=received, etag=opened.etag or etag,
                       last_modified=opened.last_modified or last_modified,
                       checksums=checksums)
        return row_for(path, stat, True)

    total = sum(row[4] or 0 for row in rows)
    progress.start(f"hashing {len(rows)} file(s)", total=total or None, unit="bytes")
    try:
        workers = max(1, min(concurrency, len(rows)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, rows))
    finally:
        progress.finish()

def reference_object(
    backend: Backend, stat: ObjectStat, name: str | None, checksum: bool
) -> tuple[list[Row], ManifestSource]:
    ref = stat.uri
    key = ref.key.partition("?")[0] if ref.scheme in ("http", "https") else ref.key
    path = name if name is not None else check_entry_path(
        key.rpartition("/")[2], what=f"the file name of {ref}"
    )
    source = ManifestSource(
        uri=str(ref), kind="object", name=name, entries=1, listed=1,
        versioning=backend.versioning(ref.bucket), checksum=checksum,
    )
    return [row_for(path, stat, checksum)], source

def reference_prefix(
    backend: Backend,
    prefix: RefURI,
    name: str | None,
    checksum: bool,
    limit: int,
    progress: Progress,
    *,
    original: RefURI,
    hint: str,
    server_checksums: bool = False,
) -> tuple[list[Row], ManifestSource]:
    """Every current object under ``prefix``, from one bulk listing; with
    ``server_checksums=True`` and a store whose listings carry no checksum values (S3), plus
    one HEAD per object for them."""
    versioning = backend.versioning(prefix.bucket)
    entries: list[Row] = []
    listed = 0
    markers = 0
    stats = (backend.scan_with_checksums(prefix)
             if server_checksums and checksum and isinstance(backend, _ChecksumScanner)
             else backend.scan(prefix, all_versions=True))
    # The loop runs once per object (millions): the common row (a bucket object without
    # checksum values, a key needing no quoting) is built inline, what row_for would build.
    cut = len(prefix.key)
    head = (f"{prefix.scheme}://{prefix.bucket}/" if prefix.scheme in ("s3", "gs") else None)
    name_slash = f"{name}/" if name else ""
    add = entries.append
    progress.start(f"listing {prefix}", total=None, unit="objects")
    try:
        for stat in stats:
            listed += 1
            if listed % _PROGRESS_EVERY == 0:
                progress.advance(_PROGRESS_EVERY)
            if not stat.is_latest or stat.is_delete_marker:
                continue
            uri = stat.uri
            key = uri.key
            rel = key[cut:]
            if rel == "" or rel.endswith("/"):
                markers += 1  # a zero-byte "directory marker", not a file
                continue
            if len(entries) >= limit:
                raise UsageError(
                    f"{prefix} holds more than max_objects={limit} objects (listing stopped "
                    f"at {len(entries) + 1}); raise the limit with max_objects=... "
                    "(--max-objects) or reference a narrower prefix"
                )
            if (checksum and head is not None and not stat.checksums
                    and "%" not in key and "?" not in key and "#" not in key):
                etag = stat.etag
                add((name_slash + rel, head + key, uri.version_id, etag, stat.size,
                     etag or None, stat.last_modified, None))
            else:
                add(row_for(name_slash + rel, stat, checksum))
    finally:
        progress.finish()
    skip = len(name) + 1 if name else 0
    check_paths([row[0] for row in entries],  # all at once: C-speed tests
                lambda i: f"key {prefix.key + entries[i][0][skip:]!r} gives entry path")
    if not entries:
        where = f"{original} is not an object, and there are no objects under {prefix}"
        if original == prefix:
            where = f"there are no objects under {prefix}"
        raise ObjectNotFound(
            f"{where}{hint}; check the bucket and key (an empty prefix cannot be referenced)",
            str(prefix),
        )
    source = ManifestSource(
        uri=str(prefix), kind="prefix", name=name, entries=len(entries), listed=listed,
        versioning=versioning, checksum=checksum, skipped_markers=markers,
    )
    return entries, source
