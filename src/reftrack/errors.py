"""The one exception hierarchy of reftrack.

Every error a user can cause or meet is one of these, and each names the object, the cause
and the remedy. The command line catches only :class:`ReftrackError` and exits with the
class's ``exit_code``::

    ReftrackError                                           exit
    ├─ UsageError            bad arguments, bad config          2   (also ValueError)
    │  └─ ProjectExists      a project name is taken            2
    ├─ InvalidURIError       unparseable / unsafe URI           2   (also ValueError)
    ├─ NotFound              project, artifact, version, alias  4   (also LookupError)
    ├─ AccessDenied          project visibility / membership    5   (also PermissionError)
    │  └─ Forbidden          a registry server lets you read,    5
    │                        not do this (HTTP 403)
    ├─ BackendError(.uri)    cloud failure, cause kept           3
    │  ├─ ObjectNotFound     key or pinned version gone         4   (also FileNotFoundError)
    │  ├─ BucketNotFound     the bucket does not exist           3
    │  ├─ BucketAccessDenied credentials or policy refuse       3   (also PermissionError)
    │  └─ MissingBackend     scheme needs an optional extra     2
    ├─ ManifestError         unreadable / unsupported manifest  1
    ├─ BlobsBeingCollected   a gc is deleting these blobs now   1
    │                        (.retry_after seconds)
    └─ IntegrityError        digest, etag, size or version      1
       │                     drift (.expected, .actual)
       └─ DownloadFailed     some entries could not be fetched  1, or 3 when
                             exactly (.report lists them)       all were unreachable

Exit code 0 is success. ``reftrack verify`` exits 1 when any entry failed, else 3 when any
entry was unreachable (see README.md, "Exit codes").
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AccessDenied",
    "BackendError",
    "BlobsBeingCollected",
    "BucketAccessDenied",
    "BucketNotFound",
    "DownloadFailed",
    "Forbidden",
    "IntegrityError",
    "InvalidURIError",
    "ManifestError",
    "MissingBackend",
    "NotFound",
    "ObjectNotFound",
    "ProjectExists",
    "ReftrackError",
    "UsageError",
]


class ReftrackError(Exception):
    """Base of every error reftrack raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        # One positional argument only: OSError subclasses would otherwise treat a
        # second argument as (errno, strerror).
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(ReftrackError, ValueError):
    """The caller passed something reftrack cannot use (arguments, names, config)."""

    exit_code = 2


class ProjectExists(UsageError):
    """A project of that name exists already (whether or not the caller may see it)."""


class InvalidURIError(ReftrackError, ValueError):
    """A reference URI cannot be parsed, or is unsafe (embedded credentials, bad bucket)."""

    exit_code = 2


class NotFound(ReftrackError, LookupError):
    """A project, artifact, version, alias or run does not exist in the registry."""

    exit_code = 4


class AccessDenied(ReftrackError, PermissionError):
    """The registry refuses access to a project."""

    exit_code = 5


class Forbidden(AccessDenied):
    """A registry server lets the caller see the project but not do this (HTTP 403): a
    reader writing to a public project, a member changing its settings."""


class BackendError(ReftrackError):
    """A storage backend failed; ``uri`` names the object or bucket, ``__cause__`` the
    original library error."""

    exit_code = 3

    def __init__(self, message: str, uri: str | None = None, *, code: str | None = None) -> None:
        super().__init__(message)
        self.uri = uri
        self.code = code  # the backend's own error code, when it gave one


class ObjectNotFound(BackendError, FileNotFoundError):
    """The key, or the pinned version of it, does not exist.

    ``delete_marker`` is True when S3 says the key's current version is a delete marker
    (or the version asked for is one)."""

    exit_code = 4

    def __init__(self, message: str, uri: str | None = None, *, delete_marker: bool = False):
        super().__init__(message, uri)
        self.delete_marker = delete_marker


class BucketNotFound(BackendError):
    """The bucket does not exist (or is not visible at this endpoint)."""


class BucketAccessDenied(BackendError, PermissionError):
    """Credentials are missing or rejected, or a policy denies the request."""


class MissingBackend(BackendError):
    """The URI's scheme needs an optional dependency that is not installed."""

    exit_code = 2


class BlobsBeingCollected(ReftrackError):
    """A ``gc`` has claimed some of these managed blobs and is deleting them: they cannot be
    leased (and so reused) until it is done. ``add_file`` waits and retries by itself;
    ``retry_after`` is how many seconds the claim may still last."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(0.0, float(retry_after))


class ManifestError(ReftrackError):
    """A stored manifest cannot be read: corrupt, truncated or of an unknown schema."""

    exit_code = 1


class IntegrityError(ReftrackError):
    """Bytes or metadata differ from what a version pinned."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        expected: Any = None,
        actual: Any = None,
        path: str | None = None,
        uri: str | None = None,
    ) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual
        self.path = path
        self.uri = uri


class DownloadFailed(IntegrityError):
    """Some entries of a download could not be fetched exactly; ``report`` (a
    :class:`~reftrack.transfer.DownloadReport`) says which and why. Files that were fetched
    stay in place."""

    def __init__(self, message: str, *, report: Any, exit_code: int = 1) -> None:
        super().__init__(message)
        self.report = report
        self.exit_code = exit_code  # 3 when every failure was "unreachable", else 1
