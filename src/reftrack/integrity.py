"""What an entry's recorded facts say about an object found later: the one rule the verifier
and the downloader share.

- Sizes that differ mean different content.
- Content checksums (sha256, md5, crc32c, and the full-object checksums S3 keeps) decide when
  both sides have one in common; S3 composite checksums only against the server's own.
- Otherwise an equal ETag, or else an equal Last-Modified (the mtime for local files), means
  unchanged. A differing ETag means changed for S3 and whenever no checksum was recorded; with
  one (local, HTTP, GCS), a differing ETag or Last-Modified decides nothing: the bytes are
  re-hashed.
- A single-part S3 ETag is the MD5 of the content (not with SSE-KMS or SSE-C): deep checks and
  downloads hash the bytes against it. A multipart ETag (``...-N``) is the MD5 of the parts'
  MD5s: never compared with an MD5 of the content, but recomputed from the bytes when the part
  sizes are known (:class:`MultipartCheck`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .backends import ObjectReader, ObjectStat
from .checksums import (
    ALGORITHMS,
    Hasher,
    PartHasher,
    common_part_sizes,
    compare,
    multipart_parts,
)
from .manifest import ManifestEntry
from .progress import NullProgress, Progress
from .uri import RefURI

__all__ = [
    "MultipartCheck",
    "PartLayout",
    "content_match",
    "etag_decides",
    "expected_checksums",
    "hash_reader",
    "multipart_etag",
    "server_checksums",
]

CHUNK = 1024 * 1024
_MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")
_KMS = ("aws:kms", "aws:kms:dsse")


def _encrypted(encryption: str | None) -> bool:
    return encryption in _KMS or (encryption or "").startswith("SSE-C")


def expected_checksums(entry: ManifestEntry, encryption: str | None = None) -> dict[str, str]:
    """The content checksums the entry's bytes must have: the recorded full-object
    ``checksums`` (never composite ones), plus the MD5 that a single-part S3 ETag is (unless
    the object is KMS/SSE-C encrypted). Some may not be computable here
    (:func:`~reftrack.checksums.local_algorithms` picks what to hash)."""
    out = {k: v for k, v in (entry.checksums or {}).items() if k in ALGORITHMS}
    if (
        "md5" not in out
        and entry.etag is not None
        and parse_scheme(entry.ref) == "s3"
        and _MD5_ETAG.match(entry.etag)
        and not _encrypted(encryption)
    ):
        out["md5"] = entry.etag
    return out


def server_checksums(entry: ManifestEntry) -> dict[str, str]:
    """The recorded checksums the store can be asked for again without reading any byte:
    those of S3 entries (one ``HeadObject`` with ``ChecksumMode=ENABLED``). GCS reports its
    md5/crc32c in every listing, so every verify compares them already; local and HTTP
    checksums are reftrack's own hashes of the bytes."""
    if parse_scheme(entry.ref) != "s3":
        return {}
    return dict(entry.checksums or {})


def multipart_etag(entry: ManifestEntry, encryption: str | None = None) -> int | None:
    """The part count when the entry's ETag is an S3 multipart ETag that the bytes determine
    (not SSE-KMS/SSE-C encrypted), else None."""
    if parse_scheme(entry.ref) != "s3" or _encrypted(encryption):
        return None
    return multipart_parts(entry.etag)


def etag_decides(entry: ManifestEntry) -> bool:
    """Whether an ETag other than the recorded one means other content: always for S3 (its
    ETags are derived from the bytes at upload), and for entries without content checksums.
    Local files and HTTP servers re-derive ETags from mtimes, GCS changes them with metadata:
    with a recorded checksum, the bytes decide."""
    return not entry.checksums or parse_scheme(entry.ref) == "s3"


def parse_scheme(ref: str) -> str:
    return ref.partition("://")[0].lower()


def content_match(entry: ManifestEntry, stat: ObjectStat) -> bool | None:
    """True/False when the recorded facts and ``stat`` decide it, None when only the bytes
    can tell (the caller re-hashes when the entry has a checksum)."""
    if entry.size is not None and stat.size is not None and entry.size != stat.size:
        return False
    decided = compare(entry.checksums, stat.checksums)
    if decided is not None:
        return decided
    if entry.etag is not None and stat.etag is not None:
        if entry.etag == stat.etag:
            return True
        # Another ETag: different bytes, unless a recorded checksum says otherwise (servers
        # re-derive ETags from mtimes on re-deploys): hash when there is one to hash against.
        return False if etag_decides(entry) else None
    if (
        entry.last_modified is not None
        and stat.last_modified is not None
        and entry.last_modified == stat.last_modified
        and entry.size is not None
    ):
        return True
    if entry.checksums:
        return None  # metadata moved (mtime, Last-Modified) or is missing: hash to know
    if entry.etag is None and entry.size is not None and stat.size is not None:
        return True  # nothing but the size was recorded, and it matches
    return None


def hash_reader(
    reader: ObjectReader,
    algorithms: list[str],
    progress: Progress | None = None,
    *,
    parts: Sequence[PartHasher] = (),
) -> tuple[dict[str, str], int]:
    """Stream ``reader`` to the end in 1 MiB chunks (memory stays bounded whatever the
    object's size), feeding the hashes and the multipart-ETag ``parts`` hashers; return the
    hex digests and the byte count."""
    progress = progress or NullProgress()
    hasher = Hasher(algorithms)
    while chunk := reader.read(CHUNK):
        hasher.update(chunk)
        for part in parts:
            part.update(chunk)
        progress.advance(len(chunk))
    return hasher.hexdigests(), hasher.size


# -- multipart ETags ----------------------------------------------------------------------


PartSizes = tuple[tuple[int, ...], str]
"""A multipart object's part sizes and where they came from: every part's size (exact), or
one size (the first part's; equal parts assumed), and the request that told."""


@runtime_checkable
class PartLayout(Protocol):
    """A backend that can tell how a multipart object was cut into parts (S3)."""

    def part_sizes(self, uri: RefURI) -> PartSizes | None:
        """The part sizes of ``uri`` (its exact version), None when the store cannot tell."""


class MultipartCheck:
    """Recompute a multipart ETag from the bytes, with the part sizes the store reported when
    it can tell (:class:`PartLayout`), else with the part sizes common clients use.

    Feed :attr:`hashers` the bytes (``hash_reader(..., parts=check.hashers)``), then read
    :meth:`verdict`: True/False with known part sizes; with guessed ones True when one
    reproduces the ETag, None (undecided) when none does: an unusual part size and other bytes
    look alike.
    """

    def __init__(self, etag: str, size: int, layout: PartSizes | None) -> None:
        self.etag = etag
        self.size = size
        self.parts = multipart_parts(etag) or 0
        self.known = False
        self.how = "part size unknown; tried the part sizes common clients use"
        hashers: list[PartHasher] = []
        if layout is not None:
            sizes, source = layout
            if len(sizes) == self.parts and sum(sizes) == size and all(s > 0 for s in sizes):
                hashers = [PartHasher(sizes)]
                self.known = True
                self.how = f"{self.parts} part sizes from {source}"
            elif len(sizes) == 1 and sizes[0] > 0 and -(-size // sizes[0]) == self.parts:
                hashers = [PartHasher(sizes[0])]
                self.known = True
                self.how = f"parts of {_bytes(sizes[0])} from {source}, equal parts assumed"
            else:
                self.how = (f"the part sizes {source} reported do not add up to {self.parts} "
                            "parts; tried the part sizes common clients use")
        if not hashers:
            hashers = [PartHasher(p) for p in common_part_sizes(size, self.parts)]
        self.hashers = hashers

    def verdict(self) -> tuple[bool | None, str]:
        """Whether the bytes fed reproduce the ETag, and a note saying how it was decided."""
        for hasher in self.hashers:
            if hasher.etag() == self.etag:
                how = self.how if self.known else (
                    f"part size {_bytes(hasher.part_size)}, guessed from the part sizes common "
                    "clients use")
                return True, f"bytes re-hashed: multipart ETag recomputed ({how}) matches"
        if self.known:
            got = self.hashers[0].etag()
            return False, (f"bytes re-hashed: multipart ETag recomputed ({self.how}) is {got}, "
                           f"not the recorded {self.etag}")
        return None, ("deep check inconclusive: the multipart ETag's part size is unknown and "
                      "none of the part sizes common clients use reproduces it; checked by "
                      "metadata")


def _bytes(n: int) -> str:
    mib = 1024 * 1024
    return f"{n // mib} MiB" if n % mib == 0 else f"{n} bytes"
