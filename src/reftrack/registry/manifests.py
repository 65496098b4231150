"""Reading stored manifests back: whole (:meth:`ManifestReader.load_manifest`) or streamed
entry by entry (:meth:`ManifestReader.stream_manifest`), which is what lets ``verify`` run
in memory that does not grow with the number of entries.

A stored manifest is gzip JSON Lines in chunks (``manifest_chunks``); reading copies the
chunks into a spooled temporary file (in memory up to :data:`SPOOL_BYTES`, on disk beyond),
then parses it from there.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from ..errors import ManifestError
from ..manifest import Manifest, ManifestEntry, ManifestSource
from ..manifest_store import FORMAT, GZIP_ERRORS, open_gzip
from . import schema as t

__all__ = ["SPOOL_BYTES", "ManifestReader", "StoredManifest"]

SPOOL_BYTES = 4 * 1024 * 1024
"""A stored manifest larger than this goes through a temporary file, not memory (a
1,000,000-entry manifest is ~70 MB of gzip: it would add that to the peak RSS)."""

_UNREADABLE: tuple[type[BaseException], ...] = (*GZIP_ERRORS, ValueError)
"""A gzip stream that does not decompress; ValueError: a header that is not JSON (or not
UTF-8)."""
_HEADER_BYTES = 64 * 1024 * 1024
"""The longest header line read (sources included): a sanity bound, not a limit in use."""


class StoredManifest:
    """A stored manifest open for streaming: what its header says (``digest``, ``total``
    entries, ``sources``) at once, the entries one by one from :meth:`entries`.

    The entries come in path order, each checked as :meth:`Manifest.read` checks it; a
    manifest whose entries do not hash to its digest, or are fewer or more than its header
    says, raises :class:`~reftrack.errors.ManifestError` when the iteration ends (a chunk
    that does not decompress, as soon as it is reached): act on what was streamed only once
    the iteration finished. :meth:`entries` may be called again (each call reads from the
    start), but not while an earlier iteration is still going."""

    def __init__(self, spool: IO[bytes], *, digest: str, total: int,
                 sources: list[ManifestSource], name: str) -> None:
        self._spool = spool
        self.digest = digest
        self.total = total
        self.sources = sources
        self.name = name

    def entries(self) -> Iterator[ManifestEntry]:
        self._spool.seek(0)
        return Manifest.stream(self._spool, name=self.name)

    def __iter__(self) -> Iterator[ManifestEntry]:
        return self.entries()

    def __len__(self) -> int:
        return self.total

    def __repr__(self) -> str:
        return f"StoredManifest({self.digest[:12]}, {self.total} entries)"


class ManifestReader:
    """The manifest-reading half of :class:`~reftrack.registry.Registry` (a mixin)."""

    engine: Engine
    location: str

    @contextmanager
    def _spooled(self, digest: str) -> Iterator[IO[bytes]]:
        """The stored bytes of manifest ``digest`` in a spooled temporary file, at 0."""
        with self.engine.connect() as conn, tempfile.SpooledTemporaryFile(
            max_size=SPOOL_BYTES
        ) as spool:
            rows = conn.execute(
                sa.select(t.manifest_chunks.c.data)
                .where(t.manifest_chunks.c.digest == digest)
                .order_by(t.manifest_chunks.c.seq)
                .execution_options(yield_per=4)
            )
            found = False
            for (data,) in rows:
                spool.write(data)
                found = True
            if not found:
                raise ManifestError(f"manifest {digest} is missing from {self.location}")
            spool.seek(0)
            conn.close()  # not needed while the caller reads the spool
            yield spool

    def load_manifest(self, digest: str) -> Manifest:
        """Stream a stored manifest back (chunk by chunk through a spooled file)."""
        with self._spooled(digest) as spool:
            manifest = Manifest.read(spool, name=f"manifest {digest[:12]}")
        if manifest.digest != digest:
            raise ManifestError(
                f"manifest {digest} in {self.location} is corrupt: it hashes to {manifest.digest}"
            )
        return manifest

    @contextmanager
    def stream_manifest(self, digest: str) -> Iterator[StoredManifest]:
        """A stored manifest, open for streaming its entries (see :class:`StoredManifest`):
        its header is read and checked now (format, this digest, entry count, sources), its
        entries only as they are iterated, never all in memory. The spooled copy is removed
        when the block ends."""
        name = f"manifest {digest[:12]}"
        with self._spooled(digest) as spool:
            header = _read_header(spool, name)
            spool.seek(0)
            if header.get("digest") != digest:
                raise ManifestError(
                    f"manifest {digest} in {self.location} is corrupt: its header names "
                    f"digest {header.get('digest')}"
                )
            total = header.get("entries")
            if isinstance(total, bool) or not isinstance(total, int) or total < 0:
                raise ManifestError(f"{name}: its header gives no entry count ({total!r})")
            try:
                sources = [ManifestSource.model_validate(s) for s in header.get("sources", [])]
            except (ValidationError, TypeError) as exc:
                raise ManifestError(f"{name}: invalid sources in header ({exc})") from exc
            yield StoredManifest(spool, digest=digest, total=total, sources=sources, name=name)


def _read_header(spool: IO[bytes], name: str) -> dict[str, Any]:
    """The first line of the stored form, parsed (the entries are not read)."""
    try:
        with open_gzip(spool, "rb") as gz:
            line = gz.readline(_HEADER_BYTES)
        header = json.loads(line)
    except _UNREADABLE as exc:
        raise ManifestError(f"{name} is unreadable ({exc}); it is corrupt or truncated") \
            from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ManifestError(f"{name} is not a reftrack manifest (no {FORMAT!r} header)")
    return header
