"""The backend protocol every storage scheme implements, and its value types.

Nothing above ``backends/`` sees a raw fsspec, boto or gcs dict: backends hand out
:class:`ObjectStat` values and :class:`ObjectReader` streams only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Literal, Protocol, Self, runtime_checkable

from ..checksums import KNOWN
from ..uri import RefURI

__all__ = [
    "CHECKSUM_ALGORITHMS",
    "Backend",
    "LifecycleRule",
    "ObjectReader",
    "ObjectStat",
    "ScanLimitReached",
    "Versioning",
]

CHECKSUM_ALGORITHMS = KNOWN
"""Content checksums reftrack knows (:data:`reftrack.checksums.KNOWN`), strongest first;
values are lowercase hex."""

Versioning = Literal["enabled", "suspended", "disabled", "unknown"]


@dataclass(frozen=True, slots=True)
class LifecycleRule:
    """One *enabled* bucket lifecycle rule that can delete data, normalised (S3
    ``GetBucketLifecycleConfiguration``; disabled rules and transition-only rules are dropped).

    The filter: ``prefix`` (``""``: every key), ``tags`` (the rule only applies to objects
    carrying all of them: reftrack does not read object tags, so such a rule *may* apply),
    object size bounds in bytes. The actions: ``noncurrent_days`` (NoncurrentVersionExpiration:
    days after a version became noncurrent), ``newer_noncurrent_versions`` (only versions with
    at least this many newer noncurrent versions expire), ``expiration_days`` /
    ``expiration_date`` (Expiration of the current object: permanent on an unversioned bucket, a
    delete marker on a versioned one).
    """

    id: str
    prefix: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    size_greater_than: int | None = None
    size_less_than: int | None = None
    noncurrent_days: int | None = None
    newer_noncurrent_versions: int | None = None
    expiration_days: int | None = None
    expiration_date: datetime | None = None

    def applies_to(self, key: str, size: int | None) -> Literal["yes", "maybe", "no"]:
        """Whether the rule covers ``key`` (of ``size`` bytes, None when unknown): ``"maybe"``
        when it depends on what reftrack does not know (object tags, an unknown size)."""
        if not key.startswith(self.prefix):
            return "no"
        unsure = bool(self.tags)
        if self.size_greater_than is not None or self.size_less_than is not None:
            if size is None:
                unsure = True
            elif (self.size_greater_than is not None and size <= self.size_greater_than) or (
                self.size_less_than is not None and size >= self.size_less_than
            ):
                return "no"
        return "maybe" if unsure else "yes"


class ScanLimitReached(Exception):
    """A scan with ``page_limit=N`` needed more than N pages; no further page was fetched."""


@dataclass(frozen=True, slots=True)
class ObjectStat:
    """One object version as the backend reports it, normalised.

    ``uri.version_id`` is None for objects in unversioned buckets (S3 ``"null"``), local
    files and HTTP resources; ``etag`` has no quotes; ``encryption`` is only known from a
    HEAD or GET. ``last_modified`` is timezone-aware (UTC); for local files it is the mtime.
    ``checksums`` maps an algorithm (:data:`CHECKSUM_ALGORITHMS`: ``"sha256"``, ``"md5"``,
    ``"crc32c"``, S3's ``"crc64nvme"`` ...) to the lowercase hex digest of the content (S3
    composite checksums under ``"s3-composite-*"``), when the store reports one
    (GCS ``md5Hash``/``crc32c``, converted from base64) or reftrack computed it.
    """

    uri: RefURI
    size: int | None
    etag: str | None
    is_latest: bool = True
    is_delete_marker: bool = False
    last_modified: datetime | None = None
    encryption: str | None = None
    checksums: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.uri.key

    @property
    def version_id(self) -> str | None:
        return self.uri.version_id


@runtime_checkable
class ObjectReader(Protocol):
    """A stream over one exact object version, opened with a single request."""

    stat: ObjectStat

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end."""

    def close(self) -> None: ...

    def __enter__(self) -> ObjectReader: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Backend(Protocol):
    """What reftrack needs from a storage scheme.

    Errors are raised as :mod:`reftrack.errors` types only (``ObjectNotFound``,
    ``BucketNotFound``, ``BucketAccessDenied``, ``BackendError``).
    """

    scheme: str
    keeps_versions: bool
    """True when the scheme can pin and read exact object versions (S3 version ids, GCS
    generations). False (local files, HTTP): ``stat``/``open`` of a URI with a version raise
    :class:`~reftrack.errors.UsageError`, and ``scan(all_versions=True)`` yields current
    objects only."""
    can_scan: bool
    """True when prefixes can be listed in bulk. False (HTTP): ``scan`` raises
    :class:`~reftrack.errors.UsageError` naming the URI."""
    hashes_content: bool
    """True when the store reports no trustworthy content identity of its own (local files:
    only size and mtime; HTTP: an optional ETag), so ``add_reference`` streams each object
    once and records its sha256 (``checksum=True``)."""

    @property
    def requests(self) -> int:
        """Requests sent so far (for reports and benchmarks)."""

    def stat(self, uri: RefURI) -> ObjectStat:
        """One object: the current version, or ``uri.version_id`` exactly (one request; two
        for an HTTP server that refuses HEAD). A pinned version that the store cannot serve
        exactly is ``ObjectNotFound``, never the live object."""

    def scan(
        self,
        prefix: RefURI,
        *,
        all_versions: bool = False,
        recursive: bool = True,
        page_limit: int | None = None,
        start_after: str | None = None,
    ) -> Iterator[ObjectStat]:
        """Every object under ``prefix.key`` from a paginated bulk listing.

        With ``all_versions=False`` only current versions that are not delete markers;
        with ``all_versions=True`` every version and delete marker, ``is_latest`` set.
        ``recursive=False`` lists direct children only (keys with no further ``/``).
        ``page_limit``: after that many pages, raise :class:`ScanLimitReached` instead of
        fetching another (never raised when the listing was complete).
        ``start_after``: only keys strictly greater than it (a full key, not relative to the
        prefix), and the listing starts there: S3 ``KeyMarker`` / ``StartAfter``, GCS
        ``startOffset``, so the keys before it cost no pages.

        Bucket stores (S3, GCS) yield keys in ascending order (code point order, which is
        the stores' UTF-8 byte order), every version and delete marker of a key together:
        a caller may stop iterating once it has passed the keys it wants, and close the
        generator, and no further page is requested. Local files come sorted per directory.
        """

    def open(self, uri: RefURI, *, if_match: str | None = None) -> ObjectReader:
        """Stream ``uri`` (its exact version when pinned). ``if_match`` refuses the read
        with :class:`~reftrack.errors.IntegrityError` when the ETag differs."""

    def versioning(self, bucket: str) -> Versioning:
        """The bucket's versioning state; ``"unknown"`` when not allowed to ask."""

    def check_bucket(self, bucket: str) -> None:
        """Raise ``BucketNotFound`` / ``BucketAccessDenied`` unless the bucket is usable
        (HTTP: ``BackendError`` when the host cannot be reached; local files: nothing)."""


class ReaderBase:
    """Context-manager plumbing shared by readers."""

    def close(self) -> None:  # pragma: no cover - overridden
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
