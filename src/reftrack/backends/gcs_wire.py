"""GCS wire formats, read in one place: response headers, RFC 3339 and HTTP dates, base64
checksums, and whether an endpoint is Google's or an emulator's."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from ..checksums import b64_to_hex

__all__ = ["emulator_endpoint", "header_map", "hex_checksum", "http_date", "rfc3339"]


def header_map(headers: Mapping[str, str]) -> dict[str, str]:
    """Lower-cased names; repeated headers (GCS sends ``x-goog-hash`` twice) comma-joined."""
    out: dict[str, str] = {}
    items = headers.items()
    for name, value in items:
        key = name.lower()
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


def hex_checksum(value: Any, nbytes: int) -> str | None:
    hexed = b64_to_hex(value if isinstance(value, str) else None)
    return hexed if hexed is not None and len(hexed) == 2 * nbytes else None


def rfc3339(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def http_date(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def emulator_endpoint(options: Mapping[str, Any]) -> str | None:
    """The endpoint when it is not Google's (an emulator or a test server), else None."""
    endpoint = options.get("endpoint_url") or os.environ.get("STORAGE_EMULATOR_HOST", "")
    if not endpoint or endpoint == "default":
        return None
    host = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}").hostname or ""
    universe = os.environ.get("GOOGLE_CLOUD_UNIVERSE_DOMAIN", "googleapis.com")
    return None if host == universe or host.endswith("." + universe) else str(endpoint)
