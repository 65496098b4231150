"""Reference URIs: parse, normalise, validate and format.

This is the only module that turns a version into URL text (``?versionId=`` for S3,
``#generation`` for GCS) and back. Keys are kept verbatim; only ``%``, ``?`` and ``#`` are
percent-encoded when formatting, so ``parse_uri(str(ref)) == ref`` for every key.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from urllib.parse import quote, unquote, urlsplit

from .errors import InvalidURIError, UsageError

__all__ = ["KNOWN_SCHEMES", "RefURI", "check_entry_path", "parse_uri"]

KNOWN_SCHEMES = ("s3", "gs", "file", "http", "https")
_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class RefURI:
    """A parsed reference: ``scheme://bucket/key`` plus an optional pinned version."""

    scheme: str
    bucket: str
    key: str
    version_id: str | None = None

    @property
    def base(self) -> str:
        """The URI without its version: what a manifest entry's ``ref`` holds."""
        if self.scheme == "file":
            return "file://" + _quote_key(self.key)
        if self.scheme in ("http", "https"):
            return f"{self.scheme}://{self.bucket}/{self.key}"  # the URL verbatim
        return f"{self.scheme}://{self.bucket}/{_quote_key(self.key)}"

    def __str__(self) -> str:
        if self.version_id is None:
            return self.base
        if self.scheme == "gs":
            return f"{self.base}#{self.version_id}"
        return f"{self.base}?versionId={quote(self.version_id, safe='')}"

    def with_version(self, version_id: str | None) -> RefURI:
        return replace(self, version_id=version_id)

    def child(self, key: str, version_id: str | None = None) -> RefURI:
        """The same bucket, another key."""
        return RefURI(self.scheme, self.bucket, key, version_id)

    @property
    def is_dir_like(self) -> bool:
        """True when the key is empty or ends with ``/``: it can only name a prefix."""
        return self.key == "" or self.key.endswith("/")

    @property
    def bucket_uri(self) -> str:
        return f"{self.scheme}://{self.bucket}"


def _quote_key(key: str) -> str:
    return key.replace("%", "%25").replace("?", "%3F").replace("#", "%23")


def _redact(text: str) -> str:
    """Hide anything that looks like userinfo so secrets never reach an error message.

    ``KEY:SECRET@`` is hidden even when the secret contains ``/`` (AWS secrets often do)."""
    text = re.sub(r"://[^/@]*:[^@]*@", "://***@", text)
    return re.sub(r"://[^/@]*@", "://***@", text)


def _has_credentials(raw: str, netloc: str) -> bool:
    """``user@host`` in the authority, or ``KEY:SECRET@`` whose secret holds a ``/``."""
    return "@" in netloc or (":" in netloc and "@" in raw)


def parse_uri(text: str) -> RefURI:
    """Parse a reference URI; raise :class:`InvalidURIError` naming what is wrong."""
    if not isinstance(text, str):
        raise InvalidURIError(f"a reference URI must be a string, not {type(text).__name__}")
    raw = text.strip()
    if not raw:
        raise InvalidURIError("empty reference URI: give s3://bucket/key or s3://bucket/prefix/")
    shown = _redact(raw)
    if _CONTROL_RE.search(raw):
        raise InvalidURIError(f"reference URI {shown!r} contains control characters; remove them")
    if "://" not in raw:
        if raw.startswith(("/", "./", "../", "~")) or raw in (".", ".."):
            return RefURI("file", "", os.path.abspath(os.path.expanduser(raw)))
        raise InvalidURIError(
            f"{raw!r} has no scheme: write s3://{raw} for an S3 object or prefix, "
            f"or ./{raw} for a local path"
        )
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in KNOWN_SCHEMES:
        raise InvalidURIError(
            f"unknown scheme {parts.scheme!r} in {shown!r}: reftrack understands "
            + ", ".join(f"{s}://" for s in KNOWN_SCHEMES)
        )
    if scheme in ("s3", "gs") and _has_credentials(raw, parts.netloc):
        raise InvalidURIError(
            f"{shown!r} embeds credentials in the URI; never put keys in a reference "
            "(they would be stored in the registry). Use AWS_PROFILE, AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY or an instance role instead"
        )
    if scheme not in ("s3", "gs") and "@" in parts.netloc:
        raise InvalidURIError(
            f"{shown!r} embeds credentials in the URI; never put them in a reference "
            "(they would be stored in the registry)"
        )
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidURIError(
                f"{shown!r}: file:// URIs name a local absolute path (file:///data/x), "
                f"not a host {parts.netloc!r}"
            )
        if parts.query or parts.fragment:
            raise InvalidURIError(f"{shown!r}: file:// URIs take no ?query or #fragment")
        return RefURI("file", "", unquote(parts.path) or "/")
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise InvalidURIError(f"{shown!r} has no host")
        if parts.fragment:
            raise InvalidURIError(
                f"{shown!r}: an HTTP reference takes no #fragment (it is never sent to the "
                "server); remove it"
            )
        key = parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
        return RefURI(scheme, parts.netloc, key)
    return _parse_bucket_uri(raw, scheme, parts.netloc, parts.path, parts.query, parts.fragment)


def _parse_bucket_uri(
    raw: str, scheme: str, bucket: str, path: str, query: str, fragment: str
) -> RefURI:
    shown = _redact(raw)
    example = f"{scheme}://my-bucket/path/to/key"
    if not bucket:
        raise InvalidURIError(f"{shown!r} has no bucket: write {example}")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise InvalidURIError(
            f"{_redact(bucket)!r} in {shown!r} is not a valid bucket name: 3-63 "
            "letters, digits, dots, hyphens or underscores, starting and ending with a letter "
            "or digit"
        )
    key = unquote(path[1:] if path.startswith("/") else path)
    version_id: str | None = None
    if scheme == "s3":
        if fragment:
            raise InvalidURIError(
                f"{shown!r}: S3 URIs pin a version with ?versionId=..., not #{fragment}"
            )
        if query:
            # Not parse_qsl: it would turn '+' (common in S3 version ids) into a space.
            pairs = [(n, unquote(v)) for n, _, v in (p.partition("=") for p in query.split("&"))]
            names = [name for name, _ in pairs]
            if names != ["versionId"]:
                raise InvalidURIError(
                    f"{shown!r}: the only query an S3 reference takes is one ?versionId=...; "
                    f"got {', '.join(names) or query!r}"
                )
            version_id = pairs[0][1]
            if not version_id:
                raise InvalidURIError(f"{shown!r}: ?versionId= is empty")
    else:  # gs
        if query:
            raise InvalidURIError(
                f"{shown!r}: GCS URIs pin a generation with #generation, not ?{query}"
            )
        if fragment:
            if not fragment.isdigit():
                raise InvalidURIError(f"{shown!r}: a GCS generation is a number, not {fragment!r}")
            version_id = fragment
    if version_id is not None and (key == "" or key.endswith("/")):
        raise InvalidURIError(f"{shown!r}: a version pins one object, but this names a prefix")
    return RefURI(scheme, bucket, key, version_id)


def check_entry_path(path: str, *, what: str = "entry path") -> str:
    """Return ``path`` if it is a safe relative path inside an artifact, else raise.

    Safe means: relative, ``/``-separated, no empty, ``.`` or ``..`` segments, no
    backslashes, drive letters or control characters. Such a path can never escape the
    download root.
    """
    problem = None
    if not path:
        problem = "it is empty"
    elif _CONTROL_RE.search(path):
        problem = "it contains control characters"
    elif path.startswith("/"):
        problem = "it is absolute"
    elif "\\" in path:
        problem = "it contains a backslash"
    elif re.match(r"^[A-Za-z]:", path):
        problem = "it starts with a drive letter"
    else:
        segments = path.split("/")
        if any(s in ("", ".", "..") for s in segments):
            problem = "it has an empty, '.' or '..' segment"
    if problem:
        raise UsageError(
            f"{what} {path!r} is not a safe relative path ({problem}); it could escape the "
            "download directory. Give the reference an explicit name=..."
        )
    return path
