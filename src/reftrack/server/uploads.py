"""Reading an uploaded manifest safely: bounded before it is parsed.

A client sends the stored form of a manifest (``Manifest.to_bytes()``: gzip JSON Lines).
Its compressed size is bounded by the body limit; before :meth:`Manifest.from_bytes` builds
it in memory, one streaming pass bounds what it decompresses to (total bytes, the longest
line, the number of entries), so that a small "gzip bomb" cannot exhaust the server.
"""

from __future__ import annotations

import io

from ..errors import ManifestError, UsageError
from ..manifest import Manifest
from ..manifest_store import GZIP_ERRORS, open_gzip
from .deps import ApiError, Limits

__all__ = ["read_manifest"]

MAX_LINE_BYTES = 16 * 1024 * 1024
NAME = "the uploaded manifest"


def read_manifest(data: bytes, limits: Limits) -> Manifest:
    """The manifest ``data`` holds, checked as the registry checks a stored one (schema,
    entries, safe paths, count, digest); 413 past a limit, 422 when it is not a manifest."""
    if len(data) > limits.manifest_bytes:
        raise ApiError(413, "UsageError", f"{NAME} is {len(data):,} bytes; this server takes "
                       f"manifests of at most {limits.manifest_bytes:,} bytes")
    try:
        _bound(data, limits)
        return Manifest.from_bytes(data, name=NAME)
    except (ManifestError, UsageError) as exc:
        raise ApiError(422, type(exc).__name__, str(exc)) from None


def _bound(data: bytes, limits: Limits) -> None:
    unpacked = lines = run = 0
    try:
        with open_gzip(io.BytesIO(data), "rb") as gz:
            while True:
                block = gz.read(1024 * 1024)
                if not block:
                    break
                unpacked += len(block)
                if unpacked > limits.manifest_unpacked_bytes:
                    raise _too_big(f"decompresses to more than "
                                   f"{limits.manifest_unpacked_bytes:,} bytes")
                parts = block.split(b"\n")
                run += len(parts[0])
                if len(parts) > 1:
                    longest = max(run, *(len(p) for p in parts[1:-1]))
                    run = longest if longest > MAX_LINE_BYTES else len(parts[-1])
                    lines += len(parts) - 1
                if run > MAX_LINE_BYTES:
                    raise _too_big(f"has a line longer than {MAX_LINE_BYTES:,} bytes")
                if lines > limits.manifest_entries + 1:
                    raise _too_big(f"has more than {limits.manifest_entries:,} entries (this "
                                   "server's limit)")
    except GZIP_ERRORS as exc:
        raise ManifestError(f"{NAME} is not gzip ({exc})") from None


def _too_big(what: str) -> ApiError:
    return ApiError(413, "UsageError", f"{NAME} {what}")
