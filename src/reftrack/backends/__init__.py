"""Storage backends, one module per scheme, behind one protocol (:mod:`.base`)."""

from __future__ import annotations

import threading

from ..errors import MissingBackend, UsageError
from ..settings import Settings
from ..uri import RefURI
from .base import (
    CHECKSUM_ALGORITHMS,
    Backend,
    ObjectReader,
    ObjectStat,
    ScanLimitReached,
    Versioning,
)

__all__ = [
    "CHECKSUM_ALGORITHMS",
    "Backend",
    "Backends",
    "ObjectReader",
    "ObjectStat",
    "ScanLimitReached",
    "Versioning",
]

SUPPORTED_SCHEMES = ("s3", "gs", "file", "http", "https")


class Backends:
    """Creates each scheme's backend once, configured from :class:`Settings`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._made: dict[str, Backend] = {}
        self._lock = threading.Lock()

    def made(self) -> list[Backend]:
        """The backends created so far."""
        return list(self._made.values())

    def for_uri(self, uri: RefURI) -> Backend:
        return self.for_scheme(uri.scheme)

    def for_scheme(self, scheme: str) -> Backend:
        with self._lock:
            if scheme not in self._made:
                self._made[scheme] = self._create(scheme)
            return self._made[scheme]

    def _create(self, scheme: str) -> Backend:
        options = self._settings.storage_options.get(scheme, {})
        if scheme == "s3":
            from .s3 import S3Backend

            return S3Backend(options, concurrency=self._settings.concurrency)
        if scheme == "gs":
            try:
                from .gcs import GCSBackend
            except ImportError as exc:
                if not (exc.name or "").startswith(("gcsfs", "google")):
                    raise
                raise MissingBackend(
                    f"gs:// references need gcsfs, which is not installed ({exc}); "
                    "install it with: pip install 'reftrack[gcs]'",
                    "gs://",
                ) from exc
            return GCSBackend(options, concurrency=self._settings.concurrency)
        if scheme == "file":
            from .local import LocalBackend

            return LocalBackend(options)
        if scheme in ("http", "https"):
            from .http import HTTPBackend

            return HTTPBackend(options, scheme=scheme, concurrency=self._settings.concurrency)
        raise UsageError(
            f"{scheme}:// references are not supported by this version of reftrack yet; "
            f"supported: {', '.join(s + '://' for s in SUPPORTED_SCHEMES)}"
        )
