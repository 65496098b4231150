"""Content checksums: streaming hashers and the one comparison rule.

Every checksum reftrack stores or compares is lowercase hex, keyed by algorithm name
(``"sha256"``, ``"md5"``, ``"crc32c"``). Stores that report base64 (GCS ``md5Hash`` and
``crc32c``) are converted by their backend with :func:`b64_to_hex`.

CRC32C uses ``google-crc32c`` (installed with ``reftrack[gcs]``) when present, else a
table-driven pure-Python fallback that is correct but slow (about 10 MB/s).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

__all__ = [
    "ALGORITHMS",
    "Hasher",
    "b64_to_hex",
    "compare",
    "crc32c_hex",
]

ALGORITHMS = ("sha256", "md5", "crc32c")
"""Strongest first: when two records share several algorithms, the first decides."""


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


def _new(algorithm: str) -> _Hash:
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "md5":
        return hashlib.md5(usedforsecurity=False)
    if algorithm == "crc32c":
        try:
            return _FastCRC32C()
        except ImportError:
            return _PyCRC32C()
    raise ValueError(f"unknown checksum algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")


class Hasher:
    """Feeds one stream to several hashes at once: ``update`` chunks, then ``hexdigests``."""

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


def compare(recorded: Mapping[str, str] | None, actual: Mapping[str, str] | None) -> bool | None:
    """True/False when ``recorded`` and ``actual`` share an algorithm (the strongest shared
    one decides), None when they share none (nothing can be concluded)."""
    if not recorded or not actual:
        return None
    for name in ALGORITHMS:
        if name in recorded and name in actual:
            return recorded[name].lower() == actual[name].lower()
    return None
