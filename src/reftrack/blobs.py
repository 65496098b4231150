"""The blob store: where managed files (``Artifact.add_file`` / ``add_dir``) are kept, by
content.

A blob store is a local directory or an object-store prefix (``s3://bucket/prefix/``,
``gs://bucket/prefix/``). Each file is stored once under the SHA-256 of its bytes::

    <root>/sha256/<first 2 hex digits>/<all 64 hex digits>

so identical files, in one artifact version or across versions and artifacts, are stored
once. Storing a file costs one read to hash it, one existence check of its blob (a ``stat``
locally, one HEAD / ``objects.get`` in a bucket) and, only when the blob is missing, one more
read to upload it. Writes are atomic (a local temporary file renamed into place; one object
PUT, or a multipart upload completed only after its bytes were checked) and the bytes stored
are checked against the hash that names them (:mod:`reftrack.backends.writer`).

A managed entry is then an ordinary reference to its blob: ``ref`` the blob's URI, its
``sha256`` in ``checksums`` (and ``digest``), its size, and the stored version id when the
bucket keeps versions. So ``verify`` and ``download`` treat it like any other reference, and
the file can be fetched after the original was changed or deleted.

Where: ``Settings.blob_store`` / ``REFTRACK_BLOB_STORE``, else the ``blobs/`` directory next to
an SQLite registry (``/x/registry.db`` -> ``/x/blobs/``). A registry on a database server has
no default: its users do not share a local directory, so the store must be named.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .backends import Backends, ObjectStat, Versioning
from .backends.writer import Writable
from .checksums import compare
from .errors import IntegrityError, ObjectNotFound, UsageError
from .integrity import expected_checksums, hash_reader
from .manifest import BLOB_LAYOUT, ManifestEntry
from .progress import NullProgress, Progress
from .settings import Settings
from .uri import RefURI, parse_uri

__all__ = ["BLOB_ALGORITHM", "Blob", "BlobStore", "absolute_local_path", "default_blob_store"]

BLOB_ALGORITHM = "sha256"
"""The hash that names blobs; the first directory level of the layout."""

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_STORE_SCHEMES = ("file", "s3", "gs")
_HASHES = ["sha256", "md5"]  # md5 too: object stores report it, so a blob found is confirmed


@dataclass(frozen=True, slots=True)
class Blob:
    """One file in the blob store."""

    stat: ObjectStat
    """The stored object: its URI (with the version id when the store keeps versions), ETag,
    size and mtime / Last-Modified as the store reports them."""
    sha256: str
    size: int
    stored: bool
    """True when this call uploaded it; False when the store already held these bytes."""

    def entry(self, path: str) -> ManifestEntry:
        """The manifest entry that pins this blob under the logical ``path``."""
        return ManifestEntry(
            path=path,
            ref=self.stat.uri.base,
            version_id=self.stat.version_id,
            etag=self.stat.etag,
            size=self.size,
            digest=self.sha256,
            last_modified=self.stat.last_modified,
            checksums={**self.stat.checksums, BLOB_ALGORITHM: self.sha256},
        )


def default_blob_store(registry: str) -> str | None:
    """The ``blobs/`` directory next to an SQLite registry (a path or an ``sqlite:///`` URL);
    None for any other registry (a database server) or an in-memory one."""
    if "://" not in registry:
        path = Path(registry).expanduser()
        base = path if path.is_dir() else path.parent
        return str((base / "blobs").resolve())
    scheme, _, rest = registry.partition("://")
    if scheme.lower().split("+")[0] != "sqlite" or not rest.startswith("/"):
        return None
    database = rest[1:].partition("?")[0]
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return str((Path(database).expanduser().parent / "blobs").resolve())


def _scheme_of(location: str) -> str:
    """``postgresql`` for ``postgresql+psycopg://user:secret@host/db``: never the rest, which
    may hold a password."""
    return location.partition("://")[0].split("+")[0] if "://" in location else "file"


class BlobStore:
    """Content-addressed storage for managed files at ``url`` (see the module docstring)."""

    def __init__(
        self,
        url: str,
        backends: Backends,
        *,
        concurrency: int = 32,
        lease: Callable[[str, list[str]], None] | None = None,
    ) -> None:
        """``lease(store, sha256s)`` is called for the blobs after hashing and *before* they
        are looked for or uploaded: the registry then keeps that blob from ``gc`` until the
        version using it is logged (see :mod:`reftrack.lifecycle`)."""
        self._lease = lease
        self.root = _parse_root(url)
        backend = backends.for_uri(self.root)
        if not isinstance(backend, Writable):  # pragma: no cover - every store scheme writes
            raise UsageError(f"{self.root}: {self.root.scheme}:// cannot hold a blob store")
        self._backend = backend
        self._writer: Writable = backend
        self._local = backends.for_scheme("file")
        self._concurrency = max(1, concurrency)
        self._prefix = self.root.key if self.root.key.endswith("/") or not self.root.key \
            else self.root.key + "/"

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        backends: Backends,
        lease: Callable[[str, list[str]], None] | None = None,
    ) -> BlobStore:
        """``settings.blob_store``, else the default next to the registry; a
        :class:`UsageError` when there is neither."""
        url = settings.blob_store or default_blob_store(settings.registry)
        if url is None:
            raise UsageError(
                "managed files (add_file, add_dir) need a blob store, and this registry "
                f"({_scheme_of(settings.registry)}://...) is not a local SQLite file, so there "
                "is no default location next to it. Set REFTRACK_BLOB_STORE (or "
                "Settings(blob_store=...)) to a directory or an s3://bucket/prefix/ or "
                "gs://bucket/prefix/ URL that everyone using this registry can read"
            )
        return cls(url, backends, concurrency=settings.concurrency, lease=lease)

    def __repr__(self) -> str:
        return f"BlobStore({str(self.root)!r})"

    @property
    def url(self) -> str:
        return str(self.root)

    @property
    def store_id(self) -> str:
        """The store as manifests name it: the part of a blob reference before
        ``/sha256/`` (what gc and leases key blobs by)."""
        match = BLOB_LAYOUT.match(self.uri_for("0" * 64).base)
        if match is None:  # pragma: no cover - uri_for always has the layout
            raise UsageError(f"{self.root}: cannot name blobs in this store")
        return match["store"]

    def uri_for(self, sha256: str) -> RefURI:
        """Where the blob with this (lowercase hex) SHA-256 lives."""
        if not _HEX64.match(sha256):
            raise UsageError(f"{sha256!r} is not a SHA-256 in lowercase hex")
        return self.root.child(f"{self._prefix}{BLOB_ALGORITHM}/{sha256[:2]}/{sha256}")

    def versioning(self) -> Versioning:
        """The store's versioning state (local directories: ``disabled``)."""
        return self._backend.versioning(self.root.bucket)

    # -- storing ------------------------------------------------------------------------------

    def put(self, path: str | os.PathLike[str], progress: Progress | None = None) -> Blob:
        """Store the local file ``path`` (unless the store already holds its bytes)."""
        return self.put_many([os.fspath(path)], progress, _bar=False)[0]

    def put_many(
        self, paths: Iterable[str], progress: Progress | None = None, *, _bar: bool = True
    ) -> list[Blob]:
        """Store each path, concurrently; the blobs in the same order. Every file is hashed
        first, then all their blobs are leased in one registry transaction (not one per
        file), then each is looked for and uploaded only when missing."""
        paths = list(paths)
        progress = progress or NullProgress()
        if _bar:
            total = sum(_size(p) for p in paths)
            progress.start(f"storing {len(paths)} file(s)", total=total or None, unit="bytes")
        try:
            workers = max(1, min(self._concurrency, len(paths)))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                hashed = list(pool.map(lambda p: self._hash(p, progress), paths))
                if self._lease is not None:
                    self._lease(self.store_id, sorted({h.sha256 for h in hashed}))
                return list(pool.map(self._store, hashed))
        finally:
            if _bar:
                progress.finish()

    def _hash(self, path: str, progress: Progress) -> _Hashed:
        source = RefURI("file", "", os.path.abspath(os.path.expanduser(path)))
        self._local.stat(source)  # a regular file: refuses directories, FIFOs and devices
        with self._local.open(source) as reader:
            digests, size = hash_reader(reader, _HASHES, progress)
            opened = reader.stat
        if opened.size is not None and size != opened.size:
            raise IntegrityError(
                f"{source}: read {size} bytes but it has {opened.size}: it changed while being "
                "hashed; add it again once it is stable",
                expected=opened.size, actual=size, uri=str(source),
            )
        return _Hashed(source, digests, size, digests[BLOB_ALGORITHM])

    def _store(self, hashed: _Hashed) -> Blob:
        target = self.uri_for(hashed.sha256)
        try:
            found: ObjectStat | None = self._backend.stat(target)
        except ObjectNotFound:
            found = None  # missing, or its current version is a delete marker
        if found is not None and _holds(found, hashed.size, hashed.digests):
            return Blob(found, hashed.sha256, hashed.size, stored=False)
        # Missing, or other bytes under the name (a damaged blob): store it (again).
        with self._local.open(hashed.source) as reader:
            stored = self._writer.put(target, reader, size=hashed.size, checksums=hashed.digests)
        return Blob(stored, hashed.sha256, hashed.size, stored=True)


@dataclass(frozen=True, slots=True)
class _Hashed:
    """A local file read once: its digests, before the blob store is asked about it."""

    source: RefURI
    digests: dict[str, str]
    size: int
    sha256: str


def absolute_local_path(local_path: str | os.PathLike[str], method: str) -> str:
    """The absolute local path ``local_path`` names (a plain path, ``./x``, ``~/x`` or
    ``file:///x``); a bucket or HTTP URI is refused with the call to use instead."""
    if not isinstance(local_path, str | os.PathLike):
        raise UsageError(f"{method} takes a local path, not {type(local_path).__name__}")
    text = os.fspath(local_path)
    if "://" in text:
        ref = parse_uri(text)
        if ref.scheme != "file":
            raise UsageError(
                f"{method} copies local files into the blob store; to track {ref.base} in "
                "place, use add_reference(...)"
            )
        text = ref.key
    if not text:
        raise UsageError(f"{method} needs a path")
    return os.path.abspath(os.path.expanduser(text))


def _parse_root(url: str) -> RefURI:
    if not isinstance(url, str) or not url.strip():
        raise UsageError("the blob store location is empty; give a directory or an s3:// or "
                         "gs:// URL (REFTRACK_BLOB_STORE)")
    text = url.strip()
    if "://" not in text:
        return RefURI("file", "", os.path.abspath(os.path.expanduser(text)))
    root = parse_uri(text)
    if root.scheme not in _STORE_SCHEMES:
        raise UsageError(
            f"a blob store cannot live at {root.scheme}:// ({root.base}); give a directory or "
            "an s3://bucket/prefix/ or gs://bucket/prefix/ URL"
        )
    if root.version_id is not None:
        raise UsageError(f"the blob store {root}: give a prefix, not an object version")
    if root.scheme == "file":
        return RefURI("file", "", root.key.rstrip("/") or "/")
    return root


def _holds(found: ObjectStat, size: int, digests: dict[str, str]) -> bool:
    """Does the object found under a blob's name hold those bytes, as far as its metadata
    tells (size; the md5 GCS reports, or a single-part S3 ETag)? Without a checksum to
    compare, an equal size is trusted: the name is the content's hash, and ``verify`` and
    ``download`` check the bytes against it."""
    if found.size != size:
        return False
    recorded = ManifestEntry(path="blob", ref=found.uri.base, etag=found.etag, size=found.size,
                             checksums=dict(found.checksums) or None)
    return compare(digests, expected_checksums(recorded, found.encryption)) is not False


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0  # put() reports it properly
