"""Content checksums: streaming hashers, the one comparison rule, and multipart ETags.

Every checksum reftrack stores or compares is lowercase hex, keyed by algorithm name
(:data:`ALGORITHMS`: ``"sha256"``, ``"md5"``, ``"crc32c"``, and the full-object checksums S3
keeps: ``"sha512"``, ``"sha1"``, ``"crc64nvme"``, ``"crc32"``, ``"xxhash128"``...). Stores that
report base64 (GCS ``md5Hash`` and ``crc32c``, S3 ``x-amz-checksum-*``) are converted by their
backend with :func:`b64_to_hex`.

S3 *composite* checksums (multipart uploads: a checksum of the parts' checksums, ``...-N``) are
no checksum of the content. They are kept under their own keys (:data:`COMPOSITE`:
``"s3-composite-sha256"``...), which no local hash ever produces, so they are only ever compared
with what the server reports again, never with bytes hashed here.

CRC32C uses ``google-crc32c`` (installed with ``reftrack[gcs]``) when present, else a
table-driven pure-Python fallback that is correct but slow (about 10 MB/s). CRC64NVME needs
``awscrt`` (``pip install awscrt``, also part of ``botocore[crt]``); without it, and always for
the xxHash family, such a checksum is compared server-side only (:func:`computable`).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

__all__ = [
    "ALGORITHMS",
    "COMPOSITE",
    "KNOWN",
    "Hasher",
    "PartHasher",
    "b64_to_hex",
    "common_part_sizes",
    "compare",
    "computable",
    "crc32c_hex",
    "deciding",
    "local_algorithms",
    "multipart_parts",
]

ALGORITHMS = (
    "sha512", "sha256", "sha1", "md5", "xxhash128", "crc64nvme", "xxhash64", "xxhash3",
    "crc32c", "crc32",
)
"""Checksums of the whole content, strongest first: when two records share several
algorithms, the first decides."""

COMPOSITE = tuple(f"s3-composite-{name}" for name in ALGORITHMS)
"""S3 composite checksums of multipart uploads (a checksum of the parts' checksums): only
comparable with what the server reports, never with a hash of the bytes."""

KNOWN = ALGORITHMS + COMPOSITE
"""Every checksum key a manifest entry may hold, in the order :func:`compare` tries them."""

_MULTIPART_ETAG = re.compile(r"^([0-9a-f]{32})-([0-9]+)$")
# Part sizes used by common S3 clients (boto3/awscli 8 MiB, s3fs 50 MiB, minimum 5 MiB, ...).
_PART_SIZES_MIB = (5, 8, 10, 15, 16, 25, 32, 50, 64, 100, 128, 256, 512, 1024)
_MIB = 1024 * 1024


class _Hash(Protocol):
    def update(self, data: bytes, /) -> Any: ...
    def hexdigest(self) -> str: ...


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


class _PyCRC32C:
    """Pure-Python CRC32C (Castagnoli), used only without google-crc32c."""

    _table: list[int] | None = None

    def __init__(self) -> None:
        if _PyCRC32C._table is None:
            _PyCRC32C._table = _crc32c_table()
        self._crc = 0xFFFFFFFF

    def update(self, data: bytes) -> None:
        table = self._table or _crc32c_table()
        crc = self._crc
        for byte in bytes(data):
            crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        self._crc = crc

    def hexdigest(self) -> str:
        return f"{self._crc ^ 0xFFFFFFFF:08x}"


class _FastCRC32C:
    def __init__(self) -> None:
        import google_crc32c

        self._checksum = google_crc32c.Checksum()  # type: ignore[no-untyped-call]

    def update(self, data: bytes) -> None:
        self._checksum.update(bytes(data))  # type: ignore[no-untyped-call]

    def hexdigest(self) -> str:
        return bytes(self._checksum.digest()).hex()  # type: ignore[no-untyped-call]


class _CRC32:
    def __init__(self) -> None:
        self._crc = 0

    def update(self, data: bytes) -> None:
        self._crc = zlib.crc32(data, self._crc)

    def hexdigest(self) -> str:
        return f"{self._crc:08x}"


class _CRC64NVME:
    """CRC64NVME through awscrt (raises ImportError without it)."""

    def __init__(self) -> None:
        from awscrt import checksums as crt

        self._crc64 = crt.crc64nvme
        self._crc = 0

    def update(self, data: bytes) -> None:
        self._crc = int(self._crc64(bytes(data), self._crc))

    def hexdigest(self) -> str:
        return f"{self._crc:016x}"


def _new(algorithm: str) -> _Hash:
    if algorithm in ("sha512", "sha256", "sha1"):
        return hashlib.new(algorithm, usedforsecurity=False)
    if algorithm == "md5":
        return hashlib.md5(usedforsecurity=False)
    if algorithm == "crc32c":
        try:
            return _FastCRC32C()
        except ImportError:
            return _PyCRC32C()
    if algorithm == "crc32":
        return _CRC32()
    if algorithm == "crc64nvme":
        try:
            return _CRC64NVME()
        except ImportError:
            raise ValueError("crc64nvme cannot be computed here: it needs awscrt "
                             "(pip install awscrt); it can only be compared server-side") from None
    if algorithm in ALGORITHMS:
        raise ValueError(f"{algorithm} cannot be computed here; it can only be compared "
                         "server-side")
    raise ValueError(f"unknown checksum algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")


@functools.cache
def computable(algorithm: str) -> bool:
    """Whether this process can hash bytes with ``algorithm`` (crc64nvme needs awscrt; the
    xxHash family and composite checksums never)."""
    try:
        _new(algorithm)
    except ValueError:
        return False
    return True


def local_algorithms(expected: Mapping[str, str]) -> list[str]:
    """What to hash the bytes with to check them against ``expected``: its strongest
    algorithm that can be computed here (the one :func:`compare` decides by), or nothing."""
    for name in ALGORITHMS:
        if name in expected and computable(name):
            return [name]
    return []


class Hasher:
    """Feeds one stream to several hashes at once: ``update`` chunks, then ``hexdigests``.
    Raises ``ValueError`` for an algorithm that cannot be computed here (:func:`computable`)."""

    def __init__(self, algorithms: Iterable[str] = ("sha256",)) -> None:
        self._hashes = {name: _new(name) for name in dict.fromkeys(algorithms)}
        self.size = 0

    def update(self, data: bytes) -> None:
        for h in self._hashes.values():
            h.update(data)
        self.size += len(data)

    def hexdigests(self) -> dict[str, str]:
        return {name: h.hexdigest() for name, h in self._hashes.items()}


def crc32c_hex(data: bytes) -> str:
    h = _new("crc32c")
    h.update(data)
    return h.hexdigest()


def b64_to_hex(value: str | None) -> str | None:
    """``"boCcvaBzKsSEWRalkBb5VA=="`` -> ``"6e809cbd..."``; None for a missing or bad value."""
    if not value:
        return None
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        return None


def deciding(recorded: Mapping[str, str] | None, actual: Mapping[str, str] | None) -> str | None:
    """The algorithm :func:`compare` decides by: the strongest both sides hold, or None."""
    if not recorded or not actual:
        return None
    return next((name for name in KNOWN if name in recorded and name in actual), None)


def compare(recorded: Mapping[str, str] | None, actual: Mapping[str, str] | None) -> bool | None:
    """True/False when ``recorded`` and ``actual`` share an algorithm (the strongest shared
    one decides: full-object checksums before composite ones), None when they share none
    (nothing can be concluded). A composite checksum only ever meets another composite one of
    the same algorithm: bytes hashed here never produce one."""
    name = deciding(recorded, actual)
    if name is None or recorded is None or actual is None:
        return None
    return recorded[name].lower() == actual[name].lower()


# -- multipart ETags ----------------------------------------------------------------------


def multipart_parts(etag: str | None) -> int | None:
    """The part count of a multipart ETag (``<32 hex>-N``), None for any other ETag."""
    match = _MULTIPART_ETAG.match(etag or "")
    return int(match.group(2)) if match else None


class PartHasher:
    """Computes the multipart ETag of a stream (MD5 of the parts' MD5s, ``-N``) for given part
    sizes: ``part_sizes`` lists each part's size in order, the last one repeating (``[P]``:
    every part P bytes, the last one shorter)."""

    def __init__(self, part_sizes: int | Sequence[int]) -> None:
        sizes = [part_sizes] if isinstance(part_sizes, int) else list(part_sizes)
        if not sizes or any(size <= 0 for size in sizes):
            raise ValueError(f"part sizes must be positive, got {part_sizes!r}")
        self.part_sizes = sizes
        self.digests: list[bytes] = []
        self._h = hashlib.md5(usedforsecurity=False)
        self._n = 0

    @property
    def part_size(self) -> int:
        """The first part's size."""
        return self.part_sizes[0]

    def _current(self) -> int:
        return self.part_sizes[min(len(self.digests), len(self.part_sizes) - 1)]

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            take = min(len(view), self._current() - self._n)
            self._h.update(view[:take])
            self._n += take
            view = view[take:]
            if self._n == self._current():
                self.digests.append(self._h.digest())
                self._h = hashlib.md5(usedforsecurity=False)
                self._n = 0

    def etag(self) -> str:
        digests = self.digests + ([self._h.digest()] if self._n else [])
        combined = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
        return f"{combined}-{len(digests)}"


def common_part_sizes(size: int, parts: int) -> list[int]:
    """The part sizes common S3 clients use (and an even split) that give ``parts`` parts
    for ``size`` bytes, smallest first."""
    if size <= 0 or parts <= 0:
        return []
    even = -(-size // parts)
    candidates = {m * _MIB for m in _PART_SIZES_MIB} | {even, -(-even // _MIB) * _MIB}
    return [p for p in sorted(candidates) if p > 0 and -(-size // p) == parts]
