"""What an entry's recorded facts say about an object found later: the one rule the verifier
and the downloader share.

- Sizes that differ mean different content.
- Content checksums (sha256, md5, crc32c) decide when both sides have one in common.
- Otherwise an equal ETag, or else an equal Last-Modified (the mtime for local files), means
  unchanged. A differing ETag means changed when there is no recorded checksum (S3); with one
  (local, HTTP), a differing ETag or Last-Modified decides nothing: the bytes are re-hashed.
- A single-part S3 ETag is the MD5 of the content (not with SSE-KMS or SSE-C): deep checks and
  downloads hash the bytes against it.
"""

from __future__ import annotations

import re

from .backends import ObjectReader, ObjectStat
from .checksums import Hasher, compare
from .manifest import ManifestEntry
from .progress import NullProgress, Progress

__all__ = ["content_match", "expected_checksums", "hash_reader"]

CHUNK = 1024 * 1024
_MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")
_KMS = ("aws:kms", "aws:kms:dsse")


def _encrypted(encryption: str | None) -> bool:
    return encryption in _KMS or (encryption or "").startswith("SSE-C")


def expected_checksums(entry: ManifestEntry, encryption: str | None = None) -> dict[str, str]:
    """The content checksums the entry's bytes must have: the recorded ``checksums``, plus the
    MD5 that a single-part S3 ETag is (unless the object is KMS/SSE-C encrypted)."""
    out = dict(entry.checksums or {})
    if (
        "md5" not in out
        and entry.etag is not None
        and parse_scheme(entry.ref) == "s3"
        and _MD5_ETAG.match(entry.etag)
        and not _encrypted(encryption)
    ):
        out["md5"] = entry.etag
    return out


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
        return None if entry.checksums else False
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
    reader: ObjectReader, algorithms: list[str], progress: Progress | None = None
) -> tuple[dict[str, str], int]:
    """Stream ``reader`` to the end; return the hex digests and the byte count."""
    progress = progress or NullProgress()
    hasher = Hasher(algorithms)
    while chunk := reader.read(CHUNK):
        hasher.update(chunk)
        progress.advance(len(chunk))
    return hasher.hexdigests(), hasher.size
