"""What S3 answers, turned into reftrack's terms: botocore errors into typed reftrack errors
(:func:`_translate`), and the fields of HeadObject/ListObjectVersions/lifecycle responses into
values (ETags without quotes, checksums as hex, lifecycle rules, pages in key order). Pure
functions, no requests. Split from :mod:`reftrack.backends.s3`."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from ..checksums import ALGORITHMS, b64_to_hex, multipart_parts
from ..errors import (
    BackendError,
    BucketAccessDenied,
    BucketNotFound,
    IntegrityError,
    ObjectNotFound,
    ReftrackError,
)
from ..uri import RefURI
from .base import LifecycleRule, ObjectStat

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
