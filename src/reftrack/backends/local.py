"""Local files (``/abs/path``, ``./rel``, ``file:///abs/path``).

Local files keep no versions and no ETag: a reference records size, mtime and (computed by
``add_reference``, since ``hashes_content`` is True) the sha256 of the bytes. ``stat`` is one
``os.stat``; ``scan`` walks a directory in sorted order. Symlinks are recorded as their
target's content, but only when the target stays inside the referenced directory: a link that
points outside it (or dangles, or loops) is refused with an error naming it, never followed
and never skipped silently. Special files (FIFOs, sockets, devices) are refused the same way.

``put`` (the blob store's writer, :mod:`.writer`) writes a file atomically: a temporary file
in the target's directory, flushed, checked against the expected checksums, made read-only and
renamed into place.
"""

from __future__ import annotations

import os
import secrets
import stat as stat_mod
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import IO, Any

from ..errors import (
    BackendError,
    BucketAccessDenied,
    ObjectNotFound,
    ReftrackError,
    UsageError,
)
from ..uri import RefURI
from .base import ObjectReader, ObjectStat, ReaderBase, Versioning
from .writer import CheckedSource

__all__ = ["LocalBackend"]

CHUNK = 1024 * 1024
STORED_MODE = 0o444
"""Files written by :meth:`LocalBackend.put` (managed blobs) are read-only, as git objects
are: their name is their content."""


def _translate(exc: OSError, uri: RefURI, action: str = "read") -> ReftrackError:
    """The one place OS errors become reftrack errors (by errno class, not message)."""
    path = uri.key
    if isinstance(exc, FileNotFoundError | NotADirectoryError) and action == "read":
        return ObjectNotFound(f"{uri}: no such file", str(uri))
    if isinstance(exc, PermissionError):
        return BucketAccessDenied(
            f"{uri}: permission denied; check the file's owner and mode (ls -l {path!r}) "
            f"or run as a user that may {action} it",
            str(uri),
        )
    if isinstance(exc, IsADirectoryError):
        return ObjectNotFound(f"{uri}: is a directory, not a file", str(uri))
    return BackendError(f"{uri}: cannot {action} ({exc.strerror or exc})", str(uri))


def _mtime(st: os.stat_result) -> datetime:
    """The mtime, tz-aware, to the microsecond (what a manifest stores)."""
    return datetime.fromtimestamp(st.st_mtime_ns // 1000 / 1_000_000, UTC)


class LocalBackend:
    """The ``file://`` backend."""

    scheme = "file"
    keeps_versions = False
    can_scan = True
    hashes_content = True

    def __init__(self, storage_options: dict[str, Any] | None = None) -> None:
        if storage_options:
            raise UsageError(
                f"local files take no storage options, got {sorted(storage_options)}"
            )

    @property
    def requests(self) -> int:
        """Local reads make no network requests."""
        return 0

    @staticmethod
    def _from_stat(uri: RefURI, st: os.stat_result) -> ObjectStat:
        """Normalise one ``os.stat`` result (the only place that reads them)."""
        return ObjectStat(uri=uri.with_version(None), size=st.st_size, etag=None,
                          last_modified=_mtime(st))

    @staticmethod
    def _no_version(uri: RefURI) -> None:
        if uri.version_id is not None:
            raise UsageError(
                f"{uri.base}: local files have no versions; reference the path without one"
            )

    def stat(self, uri: RefURI) -> ObjectStat:
        self._no_version(uri)
        try:
            st = os.stat(uri.key)
        except OSError as exc:
            raise _translate(exc, uri) from exc
        if stat_mod.S_ISDIR(st.st_mode):
            raise ObjectNotFound(f"{uri}: is a directory, not a file", str(uri))
        if not stat_mod.S_ISREG(st.st_mode):
            raise UsageError(f"{uri}: not a regular file (FIFO, socket or device); "
                             "reftrack references regular files only")
        return self._from_stat(uri, st)

    def scan(
        self,
        prefix: RefURI,
        *,
        all_versions: bool = False,
        recursive: bool = True,
        page_limit: int | None = None,
        start_after: str | None = None,
    ) -> Iterator[ObjectStat]:
        """Every regular file under the directory ``prefix.key``, sorted by path (each
        directory's entries by name); ``start_after``: only paths greater than it.

        Local files keep one version, so ``all_versions`` changes nothing; there are no pages,
        so ``page_limit`` never stops the walk. A missing directory is ``ObjectNotFound``.
        """
        self._no_version(prefix)
        top = prefix.key.rstrip("/") or "/"
        try:
            root_real = os.path.realpath(top)
            if not os.path.isdir(root_real):
                os.stat(top)  # raises FileNotFoundError / PermissionError with the right type
                raise NotADirectoryError(top)
        except OSError as exc:
            raise _translate(exc, prefix) from exc
        walk = self._walk(prefix, top, root_real, recursive, {root_real})
        if start_after is None:
            yield from walk
        else:
            yield from (stat for stat in walk if stat.key > start_after)

    def _walk(
        self, prefix: RefURI, directory: str, root_real: str, recursive: bool, seen: set[str]
    ) -> Iterator[ObjectStat]:
        try:
            with os.scandir(directory) as it:
                children = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise _translate(exc, prefix.child(directory + "/")) from exc
        base = prefix.key if prefix.key.endswith("/") else prefix.key + "/"
        rel_dir = directory[len(base.rstrip("/")):].lstrip("/")
        for child in children:
            rel = f"{rel_dir}/{child.name}" if rel_dir else child.name
            uri = prefix.child(base + rel)
            try:
                if child.is_symlink():
                    target = os.path.realpath(child.path)
                    inside = target == root_real or target.startswith(root_real + os.sep)
                    if not os.path.exists(target):
                        raise UsageError(f"{uri}: dangling symlink (to {os.readlink(child.path)}"
                                         "); remove it or reference the files explicitly")
                    if not inside:
                        raise UsageError(
                            f"{uri}: symlink points outside the referenced directory (to "
                            f"{target}); reftrack never follows links out of it. Reference "
                            "the target separately (add_reference(path, name=...)) or remove "
                            "the link"
                        )
                st = os.stat(child.path)
            except OSError as exc:
                raise _translate(exc, uri) from exc
            if stat_mod.S_ISDIR(st.st_mode):
                if not recursive:
                    continue
                real = os.path.realpath(child.path)
                if real in seen:
                    raise UsageError(f"{uri}: symlink loop (back to {real}); remove the link")
                yield from self._walk(prefix, child.path, root_real, recursive, seen | {real})
            elif stat_mod.S_ISREG(st.st_mode):
                yield self._from_stat(uri, st)
            else:
                raise UsageError(f"{uri}: not a regular file (FIFO, socket or device); "
                                 "remove it or reference the other files one by one")

    def open(self, uri: RefURI, *, if_match: str | None = None) -> LocalReader:
        self._no_version(uri)
        if if_match is not None:
            raise UsageError(f"{uri}: local files have no ETag to match")
        try:
            handle = open(uri.key, "rb")  # noqa: SIM115 - closed by the reader
        except OSError as exc:
            raise _translate(exc, uri) from exc
        try:
            st = os.fstat(handle.fileno())
            if not stat_mod.S_ISREG(st.st_mode):
                raise ObjectNotFound(f"{uri}: not a regular file", str(uri))
        except BaseException:
            handle.close()
            raise
        return LocalReader(uri, handle, self._from_stat(uri, st))

    def put(
        self, uri: RefURI, reader: ObjectReader, *, size: int, checksums: Mapping[str, str]
    ) -> ObjectStat:
        """Write ``reader`` to the file ``uri.key``: into a temporary file in the same
        directory, flushed to disk and checked, then renamed over the target (atomic).
        The file is made read-only (:data:`STORED_MODE`)."""
        self._no_version(uri)
        source = CheckedSource(reader, size=size, checksums=checksums)
        directory, _, name = uri.key.rpartition("/")
        tmp = f"{directory}/.{name}.{secrets.token_hex(4)}.reftrack-part"
        try:
            os.makedirs(directory or "/", exist_ok=True)
            try:
                with open(tmp, "xb") as out:
                    while chunk := source.read(CHUNK):
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                source.verify()
                os.chmod(tmp, STORED_MODE)
                os.replace(tmp, uri.key)
            finally:
                if os.path.lexists(tmp):
                    os.unlink(tmp)
            st = os.stat(uri.key)
        except OSError as exc:
            raise _translate(exc, uri, "write") from exc
        return self._from_stat(uri, st)

    def delete(self, uri: RefURI) -> None:
        """Remove one file (blob store garbage collection); a missing file is fine."""
        self._no_version(uri)
        try:
            os.remove(uri.key)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _translate(exc, uri) from exc

    def versioning(self, bucket: str) -> Versioning:
        return "disabled"

    def check_bucket(self, bucket: str) -> None:
        """Local files have no buckets: nothing to check."""


class LocalReader(ReaderBase):
    def __init__(self, uri: RefURI, handle: IO[bytes], stat: ObjectStat) -> None:
        self._uri = uri
        self._handle = handle
        self.stat = stat

    def read(self, size: int) -> bytes:
        try:
            return self._handle.read(size)
        except OSError as exc:
            raise _translate(exc, self._uri) from exc

    def close(self) -> None:
        self._handle.close()
