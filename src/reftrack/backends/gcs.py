"""Google Cloud Storage through gcsfs's session (generations pin object versions).

gcsfs owns the credentials, the endpoint (``endpoint_url`` in the storage options, or the
``STORAGE_EMULATOR_HOST`` environment variable) and the aiohttp session and event loop.
reftrack sends the JSON-API requests itself, because gcsfs's own ``_call`` turns a 403 into a
bare ``OSError`` and a 404 into a bare ``FileNotFoundError`` and reads whole bodies into
memory. So every response's HTTP status and JSON error ``reason`` reach :func:`_translate`, and
downloads are streamed. The requests are exactly: one ``objects.get`` per :meth:`stat`, one
``objects.list`` page per 1000 objects for a prefix, one media ``GET`` per :meth:`open`, one
``buckets.get`` per bucket for :meth:`versioning`. Nothing is cached except the versioning
state, so a delete is seen at once.

Generations are checked, never trusted: when a pinned generation is asked for and the server
answers with another one (``gcp-storage-emulator`` keeps no old generations and serves the live
object for any generation), the answer is refused with :class:`ObjectNotFound`. A media response
that does not say which generation it carries (real GCS always sends ``x-goog-generation``; the
emulator does not) is tied to the pinned generation with one metadata request and the content
checksums of both answers.

The one write, ``put`` (used only by the blob store for managed files), is one media upload, or
a resumable upload in 8 MiB chunks above 8 MiB, with the same session, retries and translation.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import fsspec.asyn
from gcsfs.core import GCSFileSystem

from ..checksums import compare
from ..errors import (
    BackendError,
    BucketAccessDenied,
    IntegrityError,
    ObjectNotFound,
    ReftrackError,
    UsageError,
)
from ..uri import RefURI
from .base import ObjectReader, ObjectStat, ReaderBase, ScanLimitReached, Versioning
from .gcs_errors import GCSHTTPError, error_from, is_retryable, translate
from .gcs_wire import emulator_endpoint, header_map, hex_checksum, http_date, rfc3339
from .writer import CheckedSource

__all__ = ["GCSBackend", "GCSReader"]

PAGE_SIZE = 1000  # the most objects.list returns per page
DEFAULT_ATTEMPTS = 5  # per request, for 408/429/5xx and connection errors
BACKOFF_SECONDS = 0.5  # before the first retry; doubles each time, with jitter
BACKOFF_CAP_SECONDS = 16.0
CONNECT_TIMEOUT = 30.0  # seconds; storage option ``requests_timeout`` overrides both
READ_TIMEOUT = 120.0  # seconds without a byte from the server
SINGLE_UPLOAD_LIMIT = 8 * 1024 * 1024  # larger uploads are resumable, in chunks
UPLOAD_CHUNK = 8 * 1024 * 1024  # a multiple of 256 KiB, as resumable uploads require
_LIST_FIELDS = (
    "nextPageToken,items(name,generation,size,etag,updated,md5Hash,crc32c,timeDeleted,"
    "kmsKeyName,customerEncryption)"
)
_T = TypeVar("_T")


class GCSBackend:
    """The ``gs://`` backend.

    ``storage_options`` go to :class:`gcsfs.GCSFileSystem` (``token``, ``project``,
    ``endpoint_url``, ``requester_pays``, ``requests_timeout`` ...), except ``retries``:
    attempts per request for throttling, server and connection errors (default 5). When the
    endpoint is an emulator (``endpoint_url`` or ``STORAGE_EMULATOR_HOST`` not on
    googleapis.com) and no ``token`` is given, requests are anonymous: no Google credentials
    are looked up (that would query the GCE metadata server) or sent to it.

    ``concurrency`` is accepted like the other backends; callers bound their own thread pools
    and gcsfs's aiohttp session allows 100 connections, so nothing here needs sizing.
    """

    scheme = "gs"
    keeps_versions = True
    can_scan = True
    hashes_content = False

    def __init__(
        self, storage_options: dict[str, Any] | None = None, *, concurrency: int = 32
    ) -> None:
        options = dict(storage_options or {})
        attempts = options.pop("retries", DEFAULT_ATTEMPTS)
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
            raise UsageError(
                f"storage option gs.retries must be a whole number of at least 1, not {attempts!r}"
            )
        for name in ("version_aware", "use_listings_cache", "skip_instance_cache"):
            options.pop(name, None)
        if emulator_endpoint(options) and "token" not in options:
            options["token"] = "anon"
        self._attempts = attempts
        try:
            self._fs = GCSFileSystem(
                version_aware=True,
                use_listings_cache=False,
                skip_instance_cache=True,
                **options,
            )
        except Exception as exc:
            raise translate(exc, RefURI("gs", "", ""), "credentials", "GCS") from exc
        self._endpoint: str = str(self._fs._location)
        self._base = f"{self._endpoint}/storage/v1/"
        timeout = self._fs.requests_timeout
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=float(timeout) if timeout else CONNECT_TIMEOUT,
            sock_read=float(timeout) if timeout else READ_TIMEOUT,
        )
        self._versioning: dict[str, Versioning] = {}
        self._lock = threading.Lock()
        self._requests = 0

    @property
    def requests(self) -> int:
        """How many HTTP requests this backend has sent (each retry counts)."""
        return self._requests

    # -- plumbing -------------------------------------------------------------------------

    def _url(self, template: str, *parts: str) -> str:
        return self._base + template.format(*(quote(part, safe="") for part in parts))

    def _headers(self, uri: RefURI, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """gcsfs's headers (User-Agent, Authorization), built in the calling thread because
        refreshing a token is blocking I/O."""
        try:
            headers: dict[str, str] = self._fs._get_headers(dict(extra or {}))
        except Exception as exc:
            raise translate(exc, uri, "credentials", self._endpoint) from exc
        return headers

    def _run(self, uri: RefURI, operation: str, func: Callable[..., Awaitable[_T]],
             *args: Any) -> _T:
        """Run a coroutine on gcsfs's event loop; translate whatever it raises."""
        try:
            result: _T = fsspec.asyn.sync(self._fs.loop, func, *args)
        except ReftrackError:
            raise
        except Exception as exc:
            raise translate(exc, uri, operation, self._endpoint) from exc
        return result

    def _count(self) -> None:
        with self._lock:
            self._requests += 1

    async def _with_retries(self, attempt: Callable[[], Awaitable[_T]]) -> _T:
        for number in range(1, self._attempts + 1):
            try:
                return await attempt()
            except Exception as exc:
                if isinstance(exc, GCSHTTPError):
                    exc.attempts = number
                if number >= self._attempts or not is_retryable(exc):
                    raise
            delay = min(BACKOFF_SECONDS * 2 ** (number - 1), BACKOFF_CAP_SECONDS)
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
        raise RuntimeError("unreachable")  # pragma: no cover - the loop returns or raises

    async def _send(self, url: str, params: dict[str, str], headers: dict[str, str],
                    *, raw: bool = False, method: str = "GET",
                    data: bytes | None = None) -> aiohttp.ClientResponse:
        """One request (a GET unless told); a response with status >= 400 is read, released
        and raised."""
        session = await self._fs._set_session()
        self._count()
        response: aiohttp.ClientResponse = await session.request(
            method,
            url,
            params=self._fs._get_params(params),
            headers=headers,
            data=data,
            timeout=self._timeout,
            auto_decompress=not raw,
            allow_redirects=method == "GET",
        )
        if response.status >= 400:
            raise await error_from(response)
        return response

    def _get_json(self, uri: RefURI, operation: str, url: str,
                  params: dict[str, str]) -> dict[str, Any]:
        headers = self._headers(uri)

        async def attempt() -> dict[str, Any]:
            response = await self._send(url, params, headers)
            async with response:
                data = await response.json(content_type=None)
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, got {type(data).__name__}")
            return data

        async def call() -> dict[str, Any]:
            return await self._with_retries(attempt)

        return self._run(uri, operation, call)

    @staticmethod
    def _from_info(
        bucket: str,
        key: str,
        *,
        resource: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ObjectStat:
        """Normalise a JSON-API object resource, or the (lower-cased) headers of a media GET.

        The only place that reads either: generation -> ``version_id`` (str), ETag without
        quotes, ``updated``/``Last-Modified`` -> UTC datetime, a ``timeDeleted`` (noncurrent
        generation) -> ``is_latest=False``, base64 ``md5Hash``/``crc32c`` -> hex checksums
        (composite objects have no md5)."""
        encryption: str | None = None
        if resource is not None:
            key = str(resource.get("name") or key)
            generation = resource.get("generation")
            size = resource.get("size")
            etag = resource.get("etag")
            modified = rfc3339(resource.get("updated"))
            md5, crc = resource.get("md5Hash"), resource.get("crc32c")
            latest = not resource.get("timeDeleted")
            customer = resource.get("customerEncryption")
            if resource.get("kmsKeyName"):
                encryption = f"CMEK:{resource['kmsKeyName']}"
            elif isinstance(customer, Mapping) and customer.get("encryptionAlgorithm"):
                encryption = f"CSEK:{customer['encryptionAlgorithm']}"
        else:
            found = headers or {}
            generation = found.get("x-goog-generation")
            size = found.get("x-goog-stored-content-length") or found.get("content-length")
            etag = found.get("etag")
            modified = http_date(found.get("last-modified"))
            hashes: dict[str, str] = {}
            for part in found.get("x-goog-hash", "").split(","):
                name, _, value = part.strip().partition("=")
                hashes[name] = value
            md5, crc = hashes.get("md5"), hashes.get("crc32c")
            latest = True
            if found.get("x-goog-encryption-kms-key-name"):
                encryption = f"CMEK:{found['x-goog-encryption-kms-key-name']}"
        checksums = {
            name: value
            for name, value in (("md5", hex_checksum(md5, 16)), ("crc32c", hex_checksum(crc, 4)))
            if value is not None
        }
        try:
            size_value = int(size) if size is not None and size != "" else None
        except (TypeError, ValueError):
            size_value = None
        return ObjectStat(
            uri=RefURI("gs", bucket, key, str(generation) if generation else None),
            size=size_value,
            etag=(str(etag).removeprefix("W/").strip('"') or None) if etag else None,
            is_latest=latest,
            is_delete_marker=False,
            last_modified=modified,
            encryption=encryption,
            checksums=checksums,
        )

    @staticmethod
    def _check_generation(uri: RefURI, stat: ObjectStat) -> None:
        """Refuse an answer for another generation than the one pinned."""
        if uri.version_id and stat.version_id != uri.version_id:
            raise ObjectNotFound(
                f"{uri}: generation {uri.version_id} no longer exists; the server answered "
                f"with generation {stat.version_id or '(not stated)'} — refusing to fall back "
                "to the live object",
                str(uri),
            )

    @staticmethod
    def _require_object(uri: RefURI) -> None:
        if not uri.key:
            raise UsageError(f"{uri} names a bucket, not an object: give gs://bucket/key")

    # -- the protocol ---------------------------------------------------------------------

    def stat(self, uri: RefURI) -> ObjectStat:
        self._require_object(uri)
        params = {"generation": uri.version_id} if uri.version_id else {}
        resource = self._get_json(
            uri, "objects.get", self._url("b/{}/o/{}", uri.bucket, uri.key), params
        )
        stat = self._from_info(uri.bucket, uri.key, resource=resource)
        self._check_generation(uri, stat)
        return stat

    def scan(
        self,
        prefix: RefURI,
        *,
        all_versions: bool = False,
        recursive: bool = True,
        page_limit: int | None = None,
        start_after: str | None = None,
    ) -> Iterator[ObjectStat]:
        params = {"maxResults": str(PAGE_SIZE), "fields": _LIST_FIELDS}
        if prefix.key:
            params["prefix"] = prefix.key
        if all_versions:
            params["versions"] = "true"
        if not recursive:
            params["delimiter"] = "/"
        if start_after is not None:
            # inclusive: the key itself (and, from a server that ignores the parameter,
            # every key before it) is dropped below
            params["startOffset"] = start_after
        url = self._url("b/{}/o", prefix.bucket)
        pages = 0
        while True:
            page = self._get_json(prefix, "objects.list", url, params)
            pages += 1
            for item in page.get("items") or ():
                stat = self._from_info(prefix.bucket, "", resource=item)
                if start_after is None or stat.key > start_after:
                    yield stat
            token = page.get("nextPageToken")
            if not token:
                return
            if page_limit is not None and pages >= page_limit:
                raise ScanLimitReached(f"{prefix}: more than {page_limit} page(s)")
            params["pageToken"] = str(token)

    def open(self, uri: RefURI, *, if_match: str | None = None) -> GCSReader:
        self._require_object(uri)
        params = {"alt": "media"}
        if uri.version_id:
            params["generation"] = uri.version_id
        # Ask for the stored bytes as stored (no decompressive transcoding): those are the
        # bytes the md5/crc32c checksums describe.
        extra = {"Accept-Encoding": "gzip"}
        if if_match:
            extra["If-Match"] = if_match
        headers = self._headers(uri, extra)
        url = self._url("b/{}/o/{}", uri.bucket, uri.key)

        async def call() -> aiohttp.ClientResponse:
            return await self._with_retries(lambda: self._send(url, params, headers, raw=True))

        response = self._run(uri, "objects.download", call)
        try:
            served = self._from_info(uri.bucket, uri.key, headers=header_map(response.headers))
            stat = self._check_served(uri, served, if_match)
        except BaseException:
            self._run(uri, "objects.download", _finish, response, False)
            raise
        return GCSReader(self, uri, response, stat)

    def _check_served(self, uri: RefURI, served: ObjectStat, if_match: str | None) -> ObjectStat:
        """Make sure a media response is the pinned generation / the ETag expected.

        Real GCS states both in the response headers (``x-goog-generation``, ``ETag``). When a
        server leaves out what is needed, one metadata request fills it in, and the content
        checksums of the two answers (``x-goog-hash`` vs ``md5Hash``/``crc32c``) show that
        they describe the same bytes."""
        if served.version_id is not None:
            self._check_generation(uri, served)
        if if_match and served.etag is not None and served.etag != if_match:
            raise IntegrityError(
                f"{uri}: the object changed since it was recorded (ETag {served.etag}, "
                f"expected {if_match})",
                expected=if_match, actual=served.etag, uri=str(uri),
            )
        unconfirmed = (uri.version_id and served.version_id is None) or (
            if_match and served.etag is None
        )
        if not unconfirmed:
            return served
        meta = self.stat(uri)  # pinned: refuses another generation
        if compare(served.checksums, meta.checksums) is False:
            if uri.version_id:
                raise ObjectNotFound(
                    f"{uri}: the server sent bytes that are not generation {uri.version_id} "
                    "(their checksums differ from that generation's) — refusing them",
                    str(uri),
                )
            raise IntegrityError(
                f"{uri}: the object changed while it was being opened; try again",
                uri=str(uri),
            )
        if if_match and meta.etag != if_match:
            raise IntegrityError(
                f"{uri}: the object changed since it was recorded (ETag {meta.etag}, "
                f"expected {if_match})",
                expected=if_match, actual=meta.etag, uri=str(uri),
            )
        return replace(
            served,
            uri=meta.uri,
            etag=served.etag or meta.etag,
            size=served.size if served.size is not None else meta.size,
            last_modified=served.last_modified or meta.last_modified,
            encryption=served.encryption or meta.encryption,
            checksums=served.checksums or meta.checksums,
        )

    def put(
        self, uri: RefURI, reader: ObjectReader, *, size: int, checksums: Mapping[str, str]
    ) -> ObjectStat:
        """Upload ``reader`` to ``uri``: one media upload up to :data:`SINGLE_UPLOAD_LIMIT`
        bytes, else a resumable upload in :data:`UPLOAD_CHUNK` chunks (one request per chunk,
        plus one). The source is checked against ``checksums`` before the request that
        creates the object, and the md5 GCS computed is compared with the source's when both
        are known. Returns the new generation."""
        self._require_object(uri)
        source = CheckedSource(reader, size=size, checksums=checksums)
        url = f"{self._endpoint}/upload/storage/v1/b/{quote(uri.bucket, safe='')}/o"
        if size <= SINGLE_UPLOAD_LIMIT:
            data = source.read_all(SINGLE_UPLOAD_LIMIT)
            source.verify()
            resource = self._upload(uri, "POST", url, {"uploadType": "media", "name": uri.key},
                                    {"Content-Type": "application/octet-stream"}, data)
        else:
            resource = self._put_resumable(uri, url, source, size)
        stat = self._from_info(uri.bucket, uri.key, resource=resource)
        if compare(checksums, stat.checksums) is False:
            raise IntegrityError(
                f"{uri}: GCS stored other bytes than were sent (its checksums differ); the "
                "transfer was corrupted, try again",
                uri=str(stat.uri),
            )
        return stat

    def _upload(self, uri: RefURI, method: str, url: str, params: dict[str, str],
                extra: dict[str, str], data: bytes, *, expect: int | None = None
                ) -> dict[str, Any]:
        """One upload request (retried). Without ``expect``: a 200/201 answer's JSON object
        resource. With it: that status is required and the (lower-cased) response headers
        are returned (a resumable session's ``Location``; a chunk's 308)."""
        headers = self._headers(uri, extra)

        async def attempt() -> dict[str, Any]:
            response = await self._send(url, params, headers, method=method, data=data)
            async with response:
                if expect is None and response.status in (200, 201):
                    answer = await response.json(content_type=None)
                    if not isinstance(answer, dict):
                        raise ValueError(f"expected a JSON object, got {type(answer).__name__}")
                    return answer
                await response.read()
                if response.status != (expect or 200):
                    raise ValueError(f"expected HTTP {expect or 200}, got {response.status}")
                return dict(header_map(response.headers))

        async def call() -> dict[str, Any]:
            return await self._with_retries(attempt)

        return self._run(uri, "objects.insert", call)

    def _put_resumable(
        self, uri: RefURI, url: str, source: CheckedSource, size: int
    ) -> dict[str, Any]:
        started = self._upload(
            uri, "POST", url, {"uploadType": "resumable", "name": uri.key},
            {"X-Upload-Content-Type": "application/octet-stream",
             "X-Upload-Content-Length": str(size)}, b"", expect=200,
        )
        session = started.get("location")
        if not session:
            raise BackendError(f"{uri}: GCS started no resumable upload (no Location header)",
                               uri.bucket_uri)
        offset = 0
        try:
            chunk = source.read_exactly(UPLOAD_CHUNK)
            while True:
                following = source.read_exactly(UPLOAD_CHUNK) if chunk else b""
                end = offset + len(chunk) - 1
                if following:
                    self._upload(uri, "PUT", session, {},
                                 {"Content-Range": f"bytes {offset}-{end}/*"}, chunk, expect=308)
                    offset += len(chunk)
                    chunk = following
                    continue
                source.verify()  # the last request creates the object
                total = offset + len(chunk)
                span = f"{offset}-{end}" if chunk else "*"
                return self._upload(uri, "PUT", session, {},
                                    {"Content-Range": f"bytes {span}/{total}"}, chunk)
        except BaseException:
            self._cancel(uri, session)
            raise

    def _cancel(self, uri: RefURI, session: str) -> None:
        """Best effort: abandon a resumable upload (GCS would expire it after a week)."""

        async def call() -> None:
            http = await self._fs._set_session()
            self._count()
            async with http.request("DELETE", session, timeout=self._timeout) as answer:
                await answer.read()

        with contextlib.suppress(ReftrackError):
            self._run(uri, "objects.insert", call)

    def delete(self, uri: RefURI) -> None:
        """Delete one object (every generation of it when the bucket keeps them: what gc
        needs to free a blob). A missing object is fine."""
        self._require_object(uri)
        generations = [uri.version_id] if uri.version_id else [
            s.version_id for s in self.scan(uri, all_versions=True) if s.key == uri.key
        ] or [None]
        url = self._url("b/{}/o/{}", uri.bucket, uri.key)
        headers = self._headers(uri)
        for generation in generations:
            params = {"generation": generation} if generation else {}

            async def attempt(params: dict[str, str] = params) -> None:
                response = await self._send(url, params, headers, method="DELETE")
                async with response:
                    await response.read()

            async def call(attempt: Callable[[], Awaitable[None]] = attempt) -> None:
                await self._with_retries(attempt)

            try:
                self._run(uri, "objects.delete", call)
            except ObjectNotFound:
                continue

    def versioning(self, bucket: str) -> Versioning:
        with self._lock:
            known = self._versioning.get(bucket)
        if known is not None:
            return known
        uri = RefURI("gs", bucket, "")
        state: Versioning
        try:
            resource = self._get_json(
                uri, "buckets.get", self._url("b/{}", bucket), {"fields": "versioning"}
            )
        except BucketAccessDenied:
            state = "unknown"
        else:
            versioning = resource.get("versioning")
            enabled = isinstance(versioning, Mapping) and versioning.get("enabled") is True
            state = "enabled" if enabled else "disabled"
        with self._lock:
            self._versioning[bucket] = state
        return state

    def check_bucket(self, bucket: str) -> None:
        # objects.list, not buckets.get: reading a dataset needs storage.objects.list/get,
        # and roles such as Storage Object Viewer do not grant storage.buckets.get.
        self._get_json(
            RefURI("gs", bucket, ""),
            "objects.list",
            self._url("b/{}/o", bucket),
            {"maxResults": "1", "fields": "kind"},
        )


async def _finish(response: aiohttp.ClientResponse, complete: bool) -> None:
    """Give the connection back (body fully read) or drop it (body left unread)."""
    if complete:
        response.release()
    else:
        response.close()


class GCSReader(ReaderBase):
    """The body of one media GET, read in chunks from any thread."""

    def __init__(
        self,
        backend: GCSBackend,
        uri: RefURI,
        response: aiohttp.ClientResponse,
        stat: ObjectStat,
    ) -> None:
        self._backend = backend
        self._uri = uri
        self._response = response
        self._complete = False
        self._closed = False
        self.stat = stat

    def read(self, size: int) -> bytes:
        if self._closed:
            raise ValueError(f"{self._uri}: read from a closed reader")
        if self._complete:
            return b""
        data: bytes = self._backend._run(
            self._uri, "objects.download", self._response.content.read, size
        )
        if not data:
            self._complete = True
        return data

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._backend._run(self._uri, "objects.download", _finish, self._response,
                               self._complete)
