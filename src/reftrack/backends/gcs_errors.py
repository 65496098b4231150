"""How GCS JSON-API failures become reftrack errors: the one translating function of the GCS
backend (by HTTP status and the JSON error ``reason``, never by message text), the error
response type, and which failures are worth retrying."""

from __future__ import annotations

import json

import aiohttp
from gcsfs.retry import HttpError as GcsfsHttpError
from gcsfs.retry import NonRetryableError
from google.auth.exceptions import GoogleAuthError

from ..errors import (
    BackendError,
    BucketAccessDenied,
    BucketNotFound,
    IntegrityError,
    ObjectNotFound,
    ReftrackError,
)
from ..uri import RefURI

__all__ = ["GCSHTTPError", "error_from", "is_retryable", "translate"]

_ERROR_BODY_LIMIT = 64 * 1024
_RETRY_STATUSES = frozenset({408, 429})
_PERMISSIONS = {
    "objects.get": "storage.objects.get",
    "objects.download": "storage.objects.get",
    "objects.list": "storage.objects.list",
    "buckets.get": "storage.buckets.get",
    "objects.insert": "storage.objects.create",
    "objects.delete": "storage.objects.delete",
}


class GCSHTTPError(Exception):
    """A JSON-API error response: its status and the ``reason`` of its JSON error body."""

    def __init__(self, status: int, reason: str, message: str, attempts: int = 1) -> None:
        super().__init__(f"HTTP {status} {reason}: {message}" if reason else f"HTTP {status}")
        self.status = status
        self.reason = reason
        self.message = message
        self.attempts = attempts


def translate(exc: BaseException, uri: RefURI, operation: str, endpoint: str) -> ReftrackError:
    """The one place GCS failures become reftrack errors, by HTTP status (never by text)."""
    where = str(uri) if uri.key or uri.version_id else uri.bucket_uri if uri.bucket else "gs://"
    fix = (
        "set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file that has it, or pass "
        "storage_options={'gs': {'token': ...}}"
    )
    if isinstance(exc, ReftrackError):
        return exc
    if isinstance(exc, GCSHTTPError):
        status, reason = exc.status, exc.reason
        code = reason or str(status)
        if status in (401, 403):
            permission = _PERMISSIONS.get(operation, operation)
            return BucketAccessDenied(
                f"access denied to {where} (HTTP {status} {reason}): the credentials in use need "
                f"{permission} on bucket {uri.bucket_uri}; {fix}",
                uri.bucket_uri,
                code=code,
            )
        if status == 404 and operation in ("objects.list", "buckets.get"):
            return BucketNotFound(
                f"bucket {uri.bucket_uri} does not exist (or not at {endpoint}); check the name "
                "and the endpoint (STORAGE_EMULATOR_HOST / endpoint_url)",
                uri.bucket_uri,
                code=code,
            )
        if status == 404:
            if uri.version_id:
                text = (
                    f"{where}: version no longer exists (deleted permanently, or a lifecycle rule)"
                )
            else:
                text = f"{where}: no such object"
            return ObjectNotFound(text, str(uri))
        if status == 412:
            return IntegrityError(
                f"{where}: the object changed since it was recorded (its ETag differs)",
                uri=str(uri),
            )
        if status in _RETRY_STATUSES or status >= 500:
            return BackendError(
                f"{where}: GCS is unavailable or throttling (HTTP {status} {reason}) even after "
                f"{exc.attempts} attempt(s); retry later or lower the concurrency "
                "(REFTRACK_CONCURRENCY)",
                uri.bucket_uri,
                code=code,
            )
        return BackendError(
            f"{where}: GCS {operation} failed: HTTP {status} {reason}: {exc.message}",
            uri.bucket_uri,
            code=code,
        )
    if operation == "credentials" or isinstance(
        exc, GoogleAuthError | GcsfsHttpError | NonRetryableError
    ):  # gcsfs raises its HttpError(401) and NonRetryableError only when a token refresh fails
        return BucketAccessDenied(
            f"{where}: GCS credentials could not be loaded or refreshed ({type(exc).__name__}: "
            f"{exc}); {fix}",
            uri.bucket_uri,
        )
    if isinstance(exc, aiohttp.ClientError | OSError | TimeoutError):
        return BackendError(
            f"{where}: cannot reach GCS at {endpoint} ({type(exc).__name__}: {exc}); check the "
            "network and the endpoint (STORAGE_EMULATOR_HOST / endpoint_url), then retry",
            uri.bucket_uri,
        )
    if isinstance(exc, ValueError):  # a 2xx answer whose body is not the JSON expected
        return BackendError(
            f"{where}: GCS {operation} returned an unreadable answer ({exc}); is {endpoint} a "
            "GCS JSON API endpoint?",
            uri.bucket_uri,
        )
    return BackendError(f"{where}: GCS {operation} failed: {exc!r}", uri.bucket_uri)


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, GCSHTTPError):
        return exc.status in _RETRY_STATUSES or exc.status >= 500
    return isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError
                      | TimeoutError)


async def error_from(response: aiohttp.ClientResponse) -> GCSHTTPError:
    """Read (a bounded part of) an error response and release it."""
    reason = message = ""
    try:
        body = await response.content.read(_ERROR_BODY_LIMIT)
        error = json.loads(body.decode("utf-8", "replace")).get("error")
        if isinstance(error, dict):
            message = str(error.get("message", ""))
            errors = error.get("errors") or []
            if errors and isinstance(errors[0], dict):
                reason = str(errors[0].get("reason", ""))
        elif isinstance(error, str):
            message = error
    except (ValueError, AttributeError, aiohttp.ClientError, TimeoutError):
        pass  # an error without a JSON body (the emulator sends none): the status decides
    finally:
        response.release()
    return GCSHTTPError(response.status, reason, message or (response.reason or ""))


