"""S3 through s3fs (version-aware, listing cache off).

Requests go through ``S3FileSystem.call_s3`` so that s3fs owns credentials, endpoint
configuration and retries of throttling and network errors, while reftrack decides exactly
which S3 calls are made: one ``ListObjectVersions`` page per 1000 versions for a prefix, one
``HeadObject`` for one object, one ``GetObject`` per download. s3fs's listing cache is never
used (``use_listings_cache=False``, and no ``ls``/``info`` call), so a delete is seen at once.

Server-side checksums: every ``HeadObject`` asks for them (``ChecksumMode=ENABLED``, no extra
request), so ``stat`` reports the object's full-object checksums (``sha256``, ``crc32``,
``crc64nvme``...) and composite ones under their own keys (``s3-composite-crc32``: a checksum
of the parts' checksums, never of the content). Listings name the algorithm only:
``scan_with_checksums`` adds one ``HeadObject`` per current object for the values.
``part_sizes`` tells how a multipart object was cut (``GetObjectAttributes``, else
``HeadObject`` of part 1), so that its ETag can be recomputed from the bytes.

The one write, ``put`` (used only by the blob store for managed files), is one ``PutObject``
with ``Content-MD5``, or a multipart upload above 8 MiB, through the same ``call_s3``.

The bucket's own rules: ``lifecycle_rules`` (one ``GetBucketLifecycleConfiguration``),
``object_lock_enabled`` (one ``GetObjectLockConfiguration``) and the Object Lock legal hold of
one object version, ``set_legal_hold`` / ``legal_hold`` (one ``PutObjectLegalHold`` /
``GetObjectLegalHold`` each).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import fsspec.asyn
import s3fs
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from ..checksums import ALGORITHMS, b64_to_hex, multipart_parts
from ..errors import (
    BackendError,
    BucketAccessDenied,
    BucketNotFound,
    IntegrityError,
    ObjectNotFound,
    ReftrackError,
    UsageError,
)
from ..uri import RefURI
from .base import (
    LifecycleRule,
    ObjectReader,
    ObjectStat,
    ReaderBase,
    ScanLimitReached,
    Versioning,
)
from .writer import CheckedSource

__all__ = ["S3Backend"]

PAGE_SIZE = 1000  # S3's maximum page size for ListObjectVersions
DEFAULT_ATTEMPTS = 5  # per request: throttling, 5xx and connection errors are retried
MULTIPART_THRESHOLD = 8 * 1024 * 1024  # larger uploads go in parts (boto3's default too)
PART_SIZE = 8 * 1024 * 1024
MAX_PARTS = 10_000

_DENIED = {
    "403",
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AccountProblem",
}
_MISSING_OBJECT = {"404", "NoSuchKey", "NoSuchVersion"}
_UNAVAILABLE = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "503", "500"}
_LEGAL_HOLD_OPERATIONS = ("put_object_legal_hold", "get_object_legal_hold")
# S3's checksum fields (HeadObject/GetObject/PutObject headers, GetObjectAttributes "Checksum")
# and reftrack's algorithm names; unknown future ones are ignored.
_CHECKSUM_FIELDS = {f"Checksum{name.upper()}": name for name in ALGORITHMS}


def _client_error(exc: BaseException) -> ClientError | None:
    """The botocore ClientError behind ``exc`` (s3fs re-raises it as an OSError)."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return None
        if isinstance(seen, ClientError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _translate(exc: BaseException, uri: RefURI, operation: str) -> ReftrackError:
    """The one place S3 errors become reftrack errors, by error code."""
    where = str(uri) if uri.key or uri.version_id else uri.bucket_uri
    err = _client_error(exc)
    if err is None:
        if isinstance(exc, ReftrackError):
            return exc
        if isinstance(exc, NoCredentialsError):
            return BucketAccessDenied(
                f"{where}: no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY, or pass storage_options={'s3': {...}}",
                uri.bucket_uri,
            )
        if type(exc).__name__ == "FlexibleChecksumError":
            return IntegrityError(
                f"{where}: the bytes received do not match S3's stored checksum ({exc}); "
                "the transfer was corrupted, try again",
                uri=str(uri),
            )
        if isinstance(exc, BotoCoreError | OSError | TimeoutError):
            return BackendError(
                f"{where}: cannot reach S3 ({type(exc).__name__}: {exc}); check the network "
                "and the endpoint (AWS_ENDPOINT_URL_S3), then retry",
                uri.bucket_uri,
            )
        return BackendError(f"{where}: S3 {operation} failed: {exc!r}", uri.bucket_uri)

    error = err.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = error.get("Message") or code
    meta = err.response.get("ResponseMetadata", {})
    headers = meta.get("HTTPHeaders", {}) or {}
    delete_marker = str(headers.get("x-amz-delete-marker", "")).lower() == "true"

    if code == "NoSuchBucket" or (operation == "head_bucket" and code == "404"):
        return BucketNotFound(
            f"bucket {uri.bucket_uri} does not exist (or not at this endpoint/region); "
            "check the name and AWS_ENDPOINT_URL_S3",
            uri.bucket_uri,
        )
    if code in _DENIED:
        return BucketAccessDenied(
            f"access denied to {where} ({code}); check the credentials in use "
            "(AWS_PROFILE, AWS_ACCESS_KEY_ID) and the bucket policy allow "
            f"s3:{_action(operation)} on {uri.bucket_uri}",
            uri.bucket_uri,
        )
    if code in ("405", "MethodNotAllowed") and uri.version_id:
        return ObjectNotFound(
            f"{where}: this version is a delete marker, not an object", str(uri),
            delete_marker=True,
        )
    if code in _MISSING_OBJECT or (code in ("400", "InvalidArgument") and uri.version_id):
        if uri.version_id:
            text = f"{where}: version no longer exists (deleted permanently, or a lifecycle rule)"
        elif delete_marker:
            text = f"{where}: deleted (the current version is a delete marker)"
        else:
            text = f"{where}: no such object"
        return ObjectNotFound(text, str(uri), delete_marker=delete_marker)
    if code in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"):
        return IntegrityError(
            f"{where}: S3 refused the upload: the bytes it received do not match their "
            f"checksum ({code}); the transfer was corrupted, try again",
            uri=str(uri),
        )
    if code in ("PreconditionFailed", "412"):
        return IntegrityError(
            f"{where}: the object changed since it was recorded (ETag differs)", uri=str(uri)
        )
    if code == "NoSuchLifecycleConfiguration":
        return BackendError(f"{uri.bucket_uri}: the bucket has no lifecycle configuration",
                            uri.bucket_uri, code=code)
    if code in ("ObjectLockConfigurationNotFoundError", "NoSuchObjectLockConfiguration"):
        what = (f"{where}: this object version has no Object Lock settings (no legal hold)"
                if operation in _LEGAL_HOLD_OPERATIONS
                else f"{uri.bucket_uri}: Object Lock is not enabled on this bucket")
        return BackendError(what, uri.bucket_uri, code=code)
    if code == "InvalidRequest" and operation in _LEGAL_HOLD_OPERATIONS:
        return BackendError(
            f"{where}: S3 refused the legal hold ({message}): Object Lock is not enabled on "
            f"{uri.bucket_uri}; {OBJECT_LOCK_HOWTO}",
            uri.bucket_uri, code=code,
        )
    if code in _UNAVAILABLE:
        return BackendError(
            f"{where}: S3 is unavailable or throttling ({code}) even after retries; "
            "retry later or lower the concurrency (REFTRACK_CONCURRENCY)",
            uri.bucket_uri,
        )
    return BackendError(
        f"{where}: S3 {operation} failed: {code}: {message}", uri.bucket_uri, code=code
    )


def _action(operation: str) -> str:
    return {
        "head_object": "GetObject",
        "get_object": "GetObject",
        "get_object_attributes": "GetObjectVersionAttributes",
        "list_object_versions": "ListBucketVersions",
        "list_objects_v2": "ListBucket",
        "head_bucket": "ListBucket",
        "get_bucket_versioning": "GetBucketVersioning",
        "get_bucket_lifecycle_configuration": "GetLifecycleConfiguration",
        "get_object_lock_configuration": "GetBucketObjectLockConfiguration",
        "put_object_legal_hold": "PutObjectLegalHold",
        "delete_object": "DeleteObjectVersion",
        "get_object_legal_hold": "GetObjectLegalHold",
        "put_object": "PutObject",
        "create_multipart_upload": "PutObject",
        "upload_part": "PutObject",
        "complete_multipart_upload": "PutObject",
    }.get(operation, operation)


OBJECT_LOCK_HOWTO = (
    "Object Lock is switched on when the bucket is created (aws s3api create-bucket "
    "--object-lock-enabled-for-bucket), or later on a versioned bucket (aws s3api "
    "put-object-lock-configuration --object-lock-configuration ObjectLockEnabled=Enabled); "
    "it cannot be switched off again"
)


def lifecycle_rule(raw: Mapping[str, Any]) -> LifecycleRule | None:
    """One rule of a ``GetBucketLifecycleConfiguration`` answer, normalised; None for a rule
    that is disabled or cannot delete an object version (transitions, aborting multipart
    uploads, removing expired delete markers)."""
    if raw.get("Status") != "Enabled":
        return None
    noncurrent = raw.get("NoncurrentVersionExpiration") or {}
    expiration = raw.get("Expiration") or {}
    noncurrent_days = _int(noncurrent.get("NoncurrentDays"))
    expiration_days = _int(expiration.get("Days"))
    expiration_date = expiration.get("Date")
    if isinstance(expiration_date, str):
        expiration_date = datetime.fromisoformat(expiration_date.replace("Z", "+00:00"))
    if not isinstance(expiration_date, datetime):
        expiration_date = None
    elif expiration_date.tzinfo is None:
        expiration_date = expiration_date.replace(tzinfo=UTC)
    if noncurrent_days is None and expiration_days is None and expiration_date is None:
        return None
    if "Filter" in raw:
        where = raw.get("Filter") or {}
        both = where.get("And") or {}
        tags = [where["Tag"]] if where.get("Tag") else list(both.get("Tags") or ())
        prefix = str(where.get("Prefix", both.get("Prefix", "")) or "")
        greater = _int(where.get("ObjectSizeGreaterThan", both.get("ObjectSizeGreaterThan")))
        less = _int(where.get("ObjectSizeLessThan", both.get("ObjectSizeLessThan")))
    else:  # the legacy form: a top-level Prefix
        tags, prefix, greater, less = [], str(raw.get("Prefix") or ""), None, None
    return LifecycleRule(
        id=str(raw.get("ID") or ""),
        prefix=prefix,
        tags=tuple((str(t.get("Key", "")), str(t.get("Value", ""))) for t in tags),
        size_greater_than=greater,
        size_less_than=less,
        noncurrent_days=noncurrent_days,
        newer_noncurrent_versions=_int(noncurrent.get("NewerNoncurrentVersions")),
        expiration_days=expiration_days,
        expiration_date=expiration_date,
    )


def _int(value: Any) -> int | None:
    return None if value is None or isinstance(value, bool) else int(value)


def _etag(value: Any) -> str | None:
    if not value:
        return None
    return str(value).strip('"')


def _checksums(info: Mapping[str, Any], etag: str | None) -> dict[str, str]:
    """S3 checksum values (base64, ``...-N`` for composite ones) as lowercase hex, keyed by
    algorithm; composite checksums under ``s3-composite-<algorithm>``.

    A value is composite when S3 says so (``ChecksumType``), when it ends in ``-N``, or, with no
    type given (older S3, S3-compatible stores, moto's HeadObject), when the object is a
    multipart upload and the algorithm is not CRC64NVME (always full-object): before S3 offered
    full-object checksums for multipart uploads, every one was composite. Never the reverse: a
    composite checksum must not be taken for a hash of the content."""
    nested = info.get("Checksum")
    source: Mapping[str, Any] = nested if isinstance(nested, Mapping) else info
    kind = str(source.get("ChecksumType") or "").upper()
    multipart = multipart_parts(etag) is not None
    out: dict[str, str] = {}
    for field, name in _CHECKSUM_FIELDS.items():
        raw = source.get(field)
        if not raw:
            continue
        value, dash, _ = str(raw).partition("-")
        digest = b64_to_hex(value)
        if digest is None:
            continue
        composite = kind == "COMPOSITE" or (
            kind != "FULL_OBJECT" and (bool(dash) or (multipart and name != "crc64nvme"))
        )
        out[f"s3-composite-{name}" if composite else name] = digest
    return out


def _md5(data: bytes) -> str:
    """``Content-MD5``: the base64 MD5 of a request body."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _algorithms(item: Mapping[str, Any]) -> tuple[str, ...]:
    """The checksum algorithms a listing item names (``ChecksumAlgorithm``, a list)."""
    names = item.get("ChecksumAlgorithm") or ()
    if isinstance(names, str):
        names = (names,)
    return tuple(str(name).lower() for name in names)


def _ordered(page: list[tuple[ObjectStat, tuple[str, ...]]], start_after: str | None
             ) -> list[tuple[ObjectStat, tuple[str, ...]]]:
    """One listing page in key order (stable: a key's versions keep their newest-first
    order, its delete markers follow them), without keys at or before ``start_after``."""
    if start_after is not None:
        page = [item for item in page if item[0].uri.key > start_after]
    page.sort(key=lambda item: item[0].uri.key)
    return page


def _version(value: Any) -> str | None:
    if value in (None, "", "null"):
        return None
    return str(value)


class S3Backend:
    """The ``s3://`` backend."""

    scheme = "s3"
    keeps_versions = True
    can_scan = True
    hashes_content = False

    def __init__(
        self, storage_options: dict[str, Any] | None = None, *, concurrency: int = 32
    ) -> None:
        options = dict(storage_options or {})
        config = dict(options.pop("config_kwargs", None) or {})
        config.setdefault("max_pool_connections", max(10, concurrency))
        # One retry layer: botocore's "standard" mode (throttling, 5xx, connection errors;
        # exponential backoff with jitter, 5 attempts). s3fs's own retry loop is switched
        # off below, or the two would multiply (25 attempts on a persistent failure).
        config.setdefault("retries", {"mode": "standard", "total_max_attempts": DEFAULT_ATTEMPTS})
        options.pop("version_aware", None)
        options.pop("use_listings_cache", None)
        self._fs = s3fs.S3FileSystem(
            version_aware=True,
            use_listings_cache=False,
            skip_instance_cache=True,
            config_kwargs=config,
            **options,
        )
        self._fs.retries = 1
        self._versioning: dict[str, Versioning] = {}
        self._lock = threading.Lock()
        self._requests = 0
        self._concurrency = max(1, concurrency)

    @property
    def requests(self) -> int:
        """How many S3 requests this backend has sent (retries by s3fs not counted)."""
        return self._requests

    # -- plumbing -------------------------------------------------------------------------

    def _call(self, operation: str, uri: RefURI, **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            self._requests += 1
        try:
            result: dict[str, Any] = self._fs.call_s3(operation, **kwargs)
        except Exception as exc:
            raise _translate(exc, uri, operation) from (_client_error(exc) or exc)
        return result

    def _run(self, uri: RefURI, operation: str, func: Any, *args: Any) -> Any:
        try:
            return fsspec.asyn.sync(self._fs.loop, func, *args)
        except Exception as exc:
            raise _translate(exc, uri, operation) from exc

    @staticmethod
    def _from_info(bucket: str, key: str, info: dict[str, Any], **flags: Any) -> ObjectStat:
        """Normalise one listing item or HEAD/GET response (the only place that reads them)."""
        size = info.get("Size", info.get("ContentLength", info.get("ObjectSize")))
        modified = info.get("LastModified")
        etag = _etag(info.get("ETag"))
        return ObjectStat(
            uri=RefURI("s3", bucket, key, _version(info.get("VersionId"))),
            size=int(size) if size is not None else None,
            etag=etag,
            is_latest=bool(info.get("IsLatest", True)),
            last_modified=modified if isinstance(modified, datetime) else None,
            encryption=info.get("ServerSideEncryption")
            or (("SSE-C:" + info["SSECustomerAlgorithm"]) if info.get("SSECustomerAlgorithm")
                else None),
            checksums=_checksums(info, etag),
            **flags,
        )

    # -- the protocol ---------------------------------------------------------------------

    def stat(self, uri: RefURI) -> ObjectStat:
        """One ``HeadObject``, with ``ChecksumMode=ENABLED``: the object's server-side
        checksums come with it. Reading the checksum of an SSE-KMS object also needs
        ``kms:Decrypt``: when that HEAD is refused, it is sent once more without checksums."""
        kwargs: dict[str, Any] = {"Bucket": uri.bucket, "Key": uri.key}
        if uri.version_id:
            kwargs["VersionId"] = uri.version_id
        try:
            info = self._call("head_object", uri, **kwargs, ChecksumMode="ENABLED")
        except BucketAccessDenied:
            info = self._call("head_object", uri, **kwargs)
        return self._from_info(uri.bucket, uri.key, info)

    def scan(
        self,
        prefix: RefURI,
        *,
        all_versions: bool = False,
        recursive: bool = True,
        page_limit: int | None = None,
        start_after: str | None = None,
    ) -> Iterator[ObjectStat]:
        for page in self._pages(prefix, all_versions=all_versions, recursive=recursive,
                                page_limit=page_limit, start_after=start_after):
            for stat, _ in page:
                yield stat

    def scan_with_checksums(self, prefix: RefURI) -> Iterator[ObjectStat]:
        """``scan(prefix, all_versions=True)``, with the server-side checksum values of every
        current object whose listing names a checksum algorithm: one ``HeadObject``
        (``ChecksumMode=ENABLED``) each, concurrently, a page at a time. A page that names no
        algorithm at all (a store whose version listings do not report them, as moto's; or
        objects stored before S3 kept checksums) gets a HEAD for each of its current objects:
        at most one HEAD per object. A version deleted between the listing and its HEAD is
        yielded without checksums."""
        for page in self._pages(prefix, all_versions=True, recursive=True, page_limit=None):
            current = [i for i, (stat, _) in enumerate(page)
                       if stat.is_latest and not stat.is_delete_marker]
            named = [i for i in current if page[i][1]]
            wanted = named or current
            found: dict[int, ObjectStat] = {}
            if wanted:
                workers = min(self._concurrency, len(wanted))
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    heads = pool.map(self._head_checksums, [page[i][0] for i in wanted])
                    found = {i: stat for i, stat in zip(wanted, heads, strict=True)
                             if stat is not None}
            for index, (stat, _) in enumerate(page):
                head = found.get(index)
                yield replace(stat, checksums=head.checksums) if head is not None else stat

    def _head_checksums(self, stat: ObjectStat) -> ObjectStat | None:
        try:
            return self.stat(stat.uri)
        except ObjectNotFound:
            return None

    def _pages(
        self, prefix: RefURI, *, all_versions: bool, recursive: bool, page_limit: int | None,
        start_after: str | None = None,
    ) -> Iterator[list[tuple[ObjectStat, tuple[str, ...]]]]:
        """The listing, a page at a time: each object version normalised, with the checksum
        algorithms the listing names for it (names only: a listing carries no values).

        A page is in key order, a key's versions then its delete markers (S3 sends the
        versions and the delete markers of a page as two lists). ``start_after``: the
        listing starts after that key (``KeyMarker``; keys at or before it that a server
        sends anyway are dropped)."""
        kwargs: dict[str, Any] = {"Bucket": prefix.bucket, "Prefix": prefix.key,
                                  "MaxKeys": PAGE_SIZE}
        if not recursive:
            kwargs["Delimiter"] = "/"
        if start_after is not None:
            kwargs["KeyMarker"] = start_after
        pages = 0
        while True:
            try:
                page = self._call("list_object_versions", prefix, **kwargs)
            except BackendError as exc:
                if exc.code == "NotImplemented" and not all_versions and pages == 0:
                    # S3-compatible stores without versioning support (R2, old MinIO).
                    yield from self._pages_unversioned(prefix, kwargs, page_limit, start_after)
                    return
                raise
            pages += 1
            bucket = prefix.bucket
            out = [
                (self._from_info(bucket, item["Key"], item), _algorithms(item))
                for item in page.get("Versions", ())
                if all_versions or item.get("IsLatest")
            ]
            if all_versions:
                out.extend((self._from_info(bucket, item["Key"], item, is_delete_marker=True), ())
                           for item in page.get("DeleteMarkers", ()))
            yield _ordered(out, start_after)
            if not page.get("IsTruncated"):
                return
            if page_limit is not None and pages >= page_limit:
                raise ScanLimitReached(f"{prefix}: more than {page_limit} page(s)")
            kwargs["KeyMarker"] = page.get("NextKeyMarker", "")
            if page.get("NextVersionIdMarker"):
                kwargs["VersionIdMarker"] = page["NextVersionIdMarker"]
            else:
                kwargs.pop("VersionIdMarker", None)

    def _pages_unversioned(
        self, prefix: RefURI, kwargs: dict[str, Any], page_limit: int | None,
        start_after: str | None = None,
    ) -> Iterator[list[tuple[ObjectStat, tuple[str, ...]]]]:
        kwargs = {k: v for k, v in kwargs.items() if k not in ("KeyMarker", "VersionIdMarker")}
        if start_after is not None:
            kwargs["StartAfter"] = start_after
        pages = 0
        while True:
            page = self._call("list_objects_v2", prefix, **kwargs)
            pages += 1
            yield _ordered([(self._from_info(prefix.bucket, item["Key"], item),
                             _algorithms(item)) for item in page.get("Contents", ())],
                           start_after)
            if not page.get("IsTruncated"):
                return
            if page_limit is not None and pages >= page_limit:
                raise ScanLimitReached(f"{prefix}: more than {page_limit} page(s)")
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def open(self, uri: RefURI, *, if_match: str | None = None) -> S3Reader:
        kwargs: dict[str, Any] = {"Bucket": uri.bucket, "Key": uri.key}
        if uri.version_id:
            kwargs["VersionId"] = uri.version_id
        if if_match:
            kwargs["IfMatch"] = f'"{if_match}"'
        response = self._call("get_object", uri, **kwargs)
        return S3Reader(self, uri, response)

    def part_sizes(self, uri: RefURI) -> tuple[tuple[int, ...], str] | None:
        """How the multipart object ``uri`` (its exact version) was cut into parts: every
        part's size from ``GetObjectAttributes`` (``ObjectParts``, 1000 parts a request; S3
        lists parts only for objects uploaded with a checksum), else the first part's size from
        ``HeadObject`` with ``PartNumber=1`` (one request; equal parts are then assumed). None
        when the store tells neither."""
        target: dict[str, Any] = {"Bucket": uri.bucket, "Key": uri.key}
        if uri.version_id:
            target["VersionId"] = uri.version_id
        sizes: list[int] = []
        marker: Any = None
        try:
            while True:
                extra = {"PartNumberMarker": marker} if marker else {}
                answer = self._call("get_object_attributes", uri, **target, **extra,
                                    ObjectAttributes=["ObjectParts"], MaxParts=PAGE_SIZE)
                parts = answer.get("ObjectParts") or {}
                listed = [part.get("Size") for part in parts.get("Parts") or ()]
                if not listed or any(size is None for size in listed):
                    break
                sizes.extend(int(size) for size in listed)
                marker = parts.get("NextPartNumberMarker")
                if not parts.get("IsTruncated"):
                    return tuple(sizes), "GetObjectAttributes"
                if not marker:
                    break
        except ObjectNotFound:
            raise
        except BackendError:
            pass  # not offered (S3-compatible stores) or not allowed: ask for part 1 instead
        try:
            head = self._call("head_object", uri, **target, PartNumber=1)
        except ObjectNotFound:
            raise
        except BackendError:
            return None
        first = head.get("ContentLength")
        return ((int(first),), "HeadObject partNumber=1") if first else None

    def put(
        self, uri: RefURI, reader: ObjectReader, *, size: int, checksums: Mapping[str, str]
    ) -> ObjectStat:
        """Upload ``reader`` to ``uri``: one ``PutObject`` up to :data:`MULTIPART_THRESHOLD`
        bytes, else a multipart upload (one request per part, plus two). Every request carries
        the MD5 of its body (``Content-MD5``: S3 refuses corrupted bytes) and the source is
        checked against ``checksums`` before the object becomes visible (before the PUT, or
        before completing the multipart upload, which is aborted otherwise). Returns the
        stored version: its VersionId (None in unversioned buckets), ETag and size."""
        source = CheckedSource(reader, size=size, checksums=checksums)
        target = {"Bucket": uri.bucket, "Key": uri.key}
        if size <= MULTIPART_THRESHOLD:
            data = source.read_all(MULTIPART_THRESHOLD)
            source.verify()
            response = self._call("put_object", uri, **target, Body=data, ContentMD5=_md5(data))
        else:
            response = self._put_parts(uri, source, size)
        return self._from_info(uri.bucket, uri.key, {**response, "Size": size})

    def _put_parts(self, uri: RefURI, source: CheckedSource, size: int) -> dict[str, Any]:
        target = {"Bucket": uri.bucket, "Key": uri.key}
        mib = 1024 * 1024
        part_size = max(PART_SIZE, -(-size // (MAX_PARTS * mib)) * mib)
        upload = self._call("create_multipart_upload", uri, **target)["UploadId"]
        try:
            parts: list[dict[str, Any]] = []
            while data := source.read_exactly(part_size):
                number = len(parts) + 1
                answer = self._call("upload_part", uri, **target, UploadId=upload,
                                    PartNumber=number, Body=data, ContentMD5=_md5(data))
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
            source.verify()
            return self._call("complete_multipart_upload", uri, **target, UploadId=upload,
                              MultipartUpload={"Parts": parts})
        except BaseException:
            # Best effort: an upload left incomplete is cleaned up by a lifecycle rule.
            with contextlib.suppress(ReftrackError):
                self._call("abort_multipart_upload", uri, **target, UploadId=upload)
            raise

    def delete(self, uri: RefURI) -> None:
        """Delete one object for good: every version and delete marker of its key in a
        versioned bucket (what gc needs to free a blob), the object otherwise. A missing
        key is fine."""
        target = {"Bucket": uri.bucket, "Key": uri.key}
        if uri.version_id:
            self._call("delete_object", uri, **target, VersionId=uri.version_id)
            return
        versions = [s.version_id for s in self.scan(uri.with_version(None), all_versions=True)
                    if s.key == uri.key]
        for version in versions or [None]:
            extra = {"VersionId": version} if version else {}
            try:
                self._call("delete_object", uri, **target, **extra)
            except ObjectNotFound:
                continue

    def versioning(self, bucket: str) -> Versioning:
        if bucket not in self._versioning:
            uri = RefURI("s3", bucket, "")
            try:
                status = self._call("get_bucket_versioning", uri, Bucket=bucket).get("Status")
            except BucketAccessDenied:
                self._versioning[bucket] = "unknown"
            else:
                self._versioning[bucket] = (
                    "enabled" if status == "Enabled"
                    else "suspended" if status == "Suspended"
                    else "disabled"
                )
        return self._versioning[bucket]

    def check_bucket(self, bucket: str) -> None:
        self._call("head_bucket", RefURI("s3", bucket, ""), Bucket=bucket)

    # -- the bucket's own rules -----------------------------------------------------------

    def lifecycle_rules(self, bucket: str) -> list[LifecycleRule]:
        """The bucket's enabled lifecycle rules that can delete object versions (one
        ``GetBucketLifecycleConfiguration``); ``[]`` when it has no lifecycle configuration.
        Raises ``BucketAccessDenied`` when not allowed to read it (s3:GetLifecycleConfiguration):
        the caller says the rules are unknown rather than pretending there are none."""
        uri = RefURI("s3", bucket, "")
        try:
            answer = self._call("get_bucket_lifecycle_configuration", uri, Bucket=bucket)
        except BackendError as exc:
            if exc.code == "NoSuchLifecycleConfiguration":
                return []
            raise
        rules = (lifecycle_rule(raw) for raw in answer.get("Rules") or ())
        return [rule for rule in rules if rule is not None]

    def object_lock_enabled(self, bucket: str) -> bool:
        """Whether Object Lock is enabled on the bucket (one ``GetObjectLockConfiguration``)."""
        uri = RefURI("s3", bucket, "")
        try:
            answer = self._call("get_object_lock_configuration", uri, Bucket=bucket)
        except BackendError as exc:
            if exc.code == "ObjectLockConfigurationNotFoundError":
                return False
            raise
        config = answer.get("ObjectLockConfiguration") or {}
        return config.get("ObjectLockEnabled") == "Enabled"

    def set_legal_hold(self, uri: RefURI, on: bool) -> None:
        """Place (``on=True``) or remove an Object Lock legal hold on exactly
        ``uri.version_id`` (one ``PutObjectLegalHold``). While a hold is on, that version
        cannot be deleted, by anyone or any lifecycle rule."""
        if not uri.version_id:
            raise UsageError(f"{uri}: a legal hold protects one exact object version, and this "
                             "reference has no version id")
        self._call("put_object_legal_hold", uri, Bucket=uri.bucket, Key=uri.key,
                   VersionId=uri.version_id, LegalHold={"Status": "ON" if on else "OFF"})

    def legal_hold(self, uri: RefURI) -> bool:
        """Whether a legal hold is on ``uri`` (its exact version when pinned; one
        ``GetObjectLegalHold``). False when the version or its bucket has no Object Lock
        settings at all."""
        kwargs: dict[str, Any] = {"Bucket": uri.bucket, "Key": uri.key}
        if uri.version_id:
            kwargs["VersionId"] = uri.version_id
        try:
            answer = self._call("get_object_legal_hold", uri, **kwargs)
        except BackendError as exc:
            if exc.code in ("NoSuchObjectLockConfiguration", "InvalidRequest"):
                return False
            raise
        return (answer.get("LegalHold") or {}).get("Status") == "ON"


class S3Reader(ReaderBase):
    """The body of one ``GetObject``, read in chunks from any thread."""

    def __init__(self, backend: S3Backend, uri: RefURI, response: dict[str, Any]) -> None:
        self._backend = backend
        self._uri = uri
        self._body = response["Body"]
        self.stat = backend._from_info(uri.bucket, uri.key, response)

    def read(self, size: int) -> bytes:
        data: bytes = self._backend._run(self._uri, "get_object", self._body.read, size)
        return data

    def close(self) -> None:
        self._body.close()
