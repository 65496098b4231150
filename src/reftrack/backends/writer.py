"""Writing objects: the optional capability a backend has when it can store managed files.

Backends are read-only except for one call, ``put``, used by the blob store
(:mod:`reftrack.blobs`) to store content-addressed copies of local files. A backend that can
be a blob store (local files, S3, GCS) implements :class:`Writable`; HTTP does not.

``put`` is written against the same rule everywhere: the bytes it stores are exactly the
bytes that were hashed. The caller hashed the source once already (to find the blob's name);
the backend reads it again through a :class:`CheckedSource`, which hashes what passes
through, and calls :meth:`CheckedSource.verify` *before* anything becomes visible under the
final name (local: before the rename; S3: before the PUT, or before completing a multipart
upload; GCS: before the request that finalises the object). A source that changed in
between is an :class:`~reftrack.errors.IntegrityError` and nothing is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from ..checksums import ALGORITHMS, Hasher, compare
from ..errors import IntegrityError
from ..uri import RefURI
from .base import ObjectReader, ObjectStat

__all__ = ["CheckedSource", "Writable"]


@runtime_checkable
class Writable(Protocol):
    """A backend that can store an object."""

    def put(
        self, uri: RefURI, reader: ObjectReader, *, size: int, checksums: Mapping[str, str]
    ) -> ObjectStat:
        """Store the ``size`` bytes of ``reader`` at ``uri`` (an object key, no version) and
        return the stored object version (its version id when the store keeps versions).

        The bytes must hash to ``checksums`` (lowercase hex, as :class:`~reftrack.checksums.
        Hasher` gives them); otherwise :class:`~reftrack.errors.IntegrityError` and nothing
        is stored under ``uri``. Uploads are atomic per object: readers see the old object or
        the whole new one, never a part."""


class CheckedSource:
    """Reads a source while hashing it; :meth:`verify` says whether it was what was promised."""

    def __init__(self, reader: ObjectReader, *, size: int, checksums: Mapping[str, str]) -> None:
        if not checksums:
            raise ValueError("a checked source needs at least one expected checksum")
        self._reader = reader
        self.size = size
        self._expected = dict(checksums)
        self._hasher = Hasher(self._expected)
        self._eof = False

    @property
    def uri(self) -> RefURI:
        return self._reader.stat.uri

    @property
    def received(self) -> int:
        """Bytes read so far."""
        return self._hasher.size

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end."""
        if self._eof:
            return b""
        data = self._reader.read(size)
        if not data:
            self._eof = True
        self._hasher.update(data)
        return data

    def read_exactly(self, size: int) -> bytes:
        """``size`` bytes, fewer only at the end of the source."""
        parts: list[bytes] = []
        wanted = size
        while wanted > 0:
            chunk = self.read(wanted)
            if not chunk:
                break
            parts.append(chunk)
            wanted -= len(chunk)
        return b"".join(parts)

    def read_all(self, limit: int) -> bytes:
        """Everything, refusing a source longer than ``limit`` bytes (it changed)."""
        data = self.read_exactly(limit + 1)
        if len(data) > limit:
            self._changed(f"it has grown past {limit} bytes")
        return data

    def verify(self) -> None:
        """Raise :class:`IntegrityError` unless the whole source was read and it had the
        promised size and checksums. Call it before making the upload visible."""
        if not self._eof and self.read(1):
            self._changed(f"it is longer than the {self.size} bytes recorded")
        if self.received != self.size:
            self._changed(f"{self.received} bytes read, {self.size} expected")
        actual = self._hasher.hexdigests()
        if compare(self._expected, actual) is not True:
            name = next(n for n in ALGORITHMS if n in self._expected)
            self._changed(
                f"{name} {actual[name][:16]}... instead of {self._expected[name][:16]}..."
            )

    def _changed(self, why: str) -> None:
        raise IntegrityError(
            f"{self.uri}: it changed while being stored ({why}); nothing was stored. Add it "
            "again once it is stable",
            expected=self.size, actual=self.received, uri=str(self.uri),
        )
