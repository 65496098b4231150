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

import contextlib
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import Any

import fsspec.asyn
import s3fs

from ..errors import (
    BackendError,
    BucketAccessDenied,
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
from .s3_wire import (  # (lifecycle_rule and _checksums are also imported from here)
    _algorithms,
    _checksums,
    _client_error,
    _etag,
    _md5,
    _ordered,
    _translate,
    _version,
    lifecycle_rule,
)
from .writer import CheckedSource

__all__ = ["S3Backend"]

PAGE_SIZE = 1000  # S3's maximum page size for ListObjectVersions
DEFAULT_ATTEMPTS = 5  # per request: throttling, 5xx and connection errors are retried
MULTIPART_THRESHOLD = 8 * 1024 * 1024  # larger uploads go in parts (boto3's default too)
PART_SIZE = 8 * 1024 * 1024
MAX_PARTS = 10_000



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
