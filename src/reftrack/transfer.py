"""Downloads: every entry by its pinned version, concurrently, checked, atomically written.

For each entry: one ``GetObject`` of the pinned version (``If-Match`` on the recorded ETag for
objects recorded without a version id), streamed to a temporary file next to the target, then
checked (version id, ETag, size and, for single-part ETags, the MD5 of the bytes received) and
renamed into place. Files already present and correct are skipped without any request.
"""

from __future__ import annotations

import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, computed_field

from .backends import Backends, ObjectReader
from .checksums import (
    ALGORITHMS,
    Hasher,
    PartHasher,
    common_part_sizes,
    compare,
    local_algorithms,
    multipart_parts,
)
from .errors import (
    DownloadFailed,
    IntegrityError,
    ObjectNotFound,
    ReftrackError,
    UsageError,
)
from .integrity import etag_decides, expected_checksums
from .manifest import Manifest, ManifestEntry
from .progress import NullProgress, Progress
from .uri import RefURI, check_entry_path, parse_uri

__all__ = ["DownloadReport", "FileResult", "download_manifest", "multipart_etag_matches"]

CHUNK = 1024 * 1024
ATTEMPTS = 3


class FileResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: str
    uri: str
    action: Literal["downloaded", "skipped", "failed"]
    bytes: int = 0
    note: str | None = None
    error: str | None = None
    unreachable: bool = False
    """For failures: the store could not be asked (bucket missing, access denied, network),
    as opposed to the pinned data being lost or different."""


class DownloadReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    root: str
    files: list[FileResult]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def downloaded(self) -> int:
        return sum(f.action == "downloaded" for f in self.files)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def skipped(self) -> int:
        return sum(f.action == "skipped" for f in self.files)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failed(self) -> int:
        return sum(f.action == "failed" for f in self.files)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files if f.action == "downloaded")


def _targets(manifest: Manifest, root: Path) -> dict[str, Path]:
    """Map every entry to its file under ``root``; refuse anything that could escape it."""
    paths = sorted(manifest.entries)
    targets: dict[str, Path] = {}
    for path in paths:
        check_entry_path(path)
        target = (root / path).resolve()
        if not target.is_relative_to(root):
            raise UsageError(
                f"entry path {path!r} resolves to {target}, outside the download directory "
                f"{root} (a symlink in the way?); refusing to write there"
            )
        targets[path] = target
    as_set = set(paths)
    for path in paths:
        parent = path.rpartition("/")[0]
        while parent:
            if parent in as_set:
                raise UsageError(
                    f"entries {parent!r} and {path!r} cannot both be files; rename one of them"
                )
            parent = parent.rpartition("/")[0]
    return targets


def multipart_etag_matches(path: Path, etag: str, size: int) -> bool:
    """True when ``path``'s bytes give the multipart ETag ``etag`` for one of the part sizes
    common S3 clients use (one pass over the file, all candidates at once)."""
    parts = multipart_parts(etag)
    if not parts or size <= 0:
        return False
    hashers = [PartHasher(p) for p in common_part_sizes(size, parts)]
    if not hashers:
        return False
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            for hasher in hashers:
                hasher.update(chunk)
    return any(hasher.etag() == etag for hasher in hashers)


def _already_there(target: Path, entry: ManifestEntry) -> bool:
    """Is ``target`` already exactly the pinned bytes? Local reads only, no request."""
    if not target.is_file() or entry.size is None:
        return False
    if target.stat().st_size != entry.size:
        return False
    expected = expected_checksums(entry)
    algorithms = local_algorithms(expected)
    if algorithms:
        with target.open("rb") as f:
            hasher = Hasher(algorithms)
            while chunk := f.read(CHUNK):
                hasher.update(chunk)
        return compare(expected, hasher.hexdigests()) is True
    if entry.etag is None:
        return False
    return multipart_etag_matches(target, entry.etag, entry.size)


class _BodyInterrupted(Exception):
    """Reading a response body failed part-way (the request itself had succeeded)."""

    def __init__(self, error: ReftrackError) -> None:
        super().__init__(str(error))
        self.error = error


def _read(reader: ObjectReader) -> bytes:
    try:
        return reader.read(CHUNK)
    except (IntegrityError, UsageError):
        raise
    except ReftrackError as exc:
        raise _BodyInterrupted(exc) from exc


class _Downloader:
    def __init__(self, backends: Backends, progress: Progress) -> None:
        self.backends = backends
        self.progress = progress
        self._lock = threading.Lock()

    def fetch(self, entry: ManifestEntry, target: Path) -> FileResult:
        ref = parse_uri(entry.ref).with_version(entry.version_id)
        uri = str(ref)
        try:
            if _already_there(target, entry):
                self.progress.advance(entry.size or 0)
                return FileResult(path=entry.path, uri=uri, action="skipped", bytes=entry.size or 0,
                                  note="already present with the pinned content")
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    return self._fetch_once(entry, target, ref)
                except _BodyInterrupted as exc:
                    # The backend retries each request itself (throttling, 5xx, resets); a
                    # body cut off mid-stream cannot be resumed there: fetch it again here.
                    if attempt == ATTEMPTS:
                        raise exc.error from exc
            raise AssertionError("unreachable")  # pragma: no cover
        except ObjectNotFound as exc:
            message = (
                f"{exc}; the data pinned for this entry is lost" if entry.pinned else str(exc)
            )
            return FileResult(path=entry.path, uri=uri, action="failed", error=message)
        except (IntegrityError, UsageError) as exc:
            return FileResult(path=entry.path, uri=uri, action="failed", error=str(exc))
        except ReftrackError as exc:  # BucketNotFound, BucketAccessDenied, network
            return FileResult(path=entry.path, uri=uri, action="failed", error=str(exc),
                              unreachable=True)
        except OSError as exc:
            return FileResult(path=entry.path, uri=uri, action="failed",
                              error=f"cannot write {target}: {exc.strerror or exc}")

    def _fetch_once(self, entry: ManifestEntry, target: Path, ref: RefURI) -> FileResult:
        backend = self.backends.for_uri(ref)
        # Nothing pinned: the ETag refuses a changed object, where it identifies content.
        if_match = entry.etag if (not entry.pinned and entry.etag and etag_decides(entry)) \
            else None
        notes: list[str] = []
        with backend.open(ref, if_match=if_match) as reader:
            stat = reader.stat
            expected = expected_checksums(entry, stat.encryption) if entry.checksummed else {}
            if entry.pinned and stat.version_id != entry.version_id and (
                stat.version_id is not None or not expected
            ):
                raise IntegrityError(
                    f"{ref}: the store answered with version {stat.version_id}, not the pinned "
                    f"{entry.version_id}", expected=entry.version_id, actual=stat.version_id,
                    path=entry.path, uri=str(ref),
                )
            if (entry.etag is not None and etag_decides(entry) and stat.etag is not None
                    and stat.etag != entry.etag):
                raise IntegrityError(
                    f"{ref}: ETag is {stat.etag}, recorded {entry.etag}",
                    expected=entry.etag, actual=stat.etag, path=entry.path, uri=str(ref),
                )
            if not entry.checksummed:
                notes.append("not pinned (checksum=False): fetched the current object")
            elif not entry.pinned and ref.scheme == "s3":
                notes.append("no version id recorded: fetched the current object (ETag matched)")
            algorithms = local_algorithms(expected)
            if entry.checksummed and not expected:
                notes.append(
                    "multipart or encrypted ETag is not an MD5 of the content: "
                    "checked by ETag header and size"
                )
            elif entry.checksummed and not algorithms:
                notes.append(
                    f"its {'/'.join(sorted(expected))} cannot be computed here (crc64nvme needs "
                    "awscrt): checked by ETag header and size"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.reftrack-part"
            try:
                hasher = Hasher(algorithms)
                with tmp.open("wb") as out:
                    while chunk := _read(reader):
                        out.write(chunk)
                        hasher.update(chunk)
                        self.progress.advance(len(chunk))
                received = hasher.size
                expected_size = entry.size if entry.size is not None else stat.size
                if expected_size is not None and received != expected_size:
                    raise IntegrityError(
                        f"{ref}: received {received} bytes, expected {expected_size} "
                        "(truncated transfer, or the object changed)", expected=expected_size,
                        actual=received, path=entry.path, uri=str(ref),
                    )
                actual = hasher.hexdigests()
                if compare(expected, actual) is False:
                    name = next(n for n in ALGORITHMS if n in expected and n in actual)
                    raise IntegrityError(
                        f"{ref}: the bytes received hash to {name} {actual[name]}, but the "
                        f"recorded {name} is {expected[name]} (corrupt transfer, or the store "
                        "served other bytes than the pinned ones); refused",
                        expected=expected[name], actual=actual[name], path=entry.path,
                        uri=str(ref),
                    )
                os.replace(tmp, target)
            finally:
                if tmp.exists():
                    tmp.unlink()
        return FileResult(path=entry.path, uri=str(ref), action="downloaded", bytes=received,
                          note="; ".join(notes) or None)


def download_manifest(
    manifest: Manifest,
    root: str | os.PathLike[str],
    backends: Backends,
    *,
    concurrency: int = 32,
    progress: Progress | None = None,
    label: str = "artifact",
) -> DownloadReport:
    """Download every entry of ``manifest`` under ``root``.

    Raises :class:`DownloadFailed` (an ``IntegrityError``) naming the entries that could not
    be fetched exactly (files that were fetched stay in place); :class:`UsageError` before
    any transfer when an entry path would escape ``root``.
    """
    progress = progress or NullProgress()
    root_path = Path(root).expanduser().resolve()
    targets = _targets(manifest, root_path)
    try:
        root_path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create download directory {root_path}: {exc.strerror}") from exc
    downloader = _Downloader(backends, progress)
    entries = manifest.sorted_entries()
    progress.start("downloading", total=manifest.size or None, unit="bytes")
    try:
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            results = list(pool.map(lambda e: downloader.fetch(e, targets[e.path]), entries))
    finally:
        progress.finish()
    report = DownloadReport(root=str(root_path), files=results)
    failed = [f for f in results if f.action == "failed"]
    if failed:
        lines = "\n".join(f"  {f.path}: {f.error}" for f in failed[:20])
        more = f"\n  ... and {len(failed) - 20} more" if len(failed) > 20 else ""
        unreachable_only = all(f.unreachable for f in failed)
        raise DownloadFailed(
            f"{len(failed)} of {len(results)} entries of {label} could not be "
            f"{'fetched (store unreachable)' if unreachable_only else 'downloaded exactly'}:"
            f"\n{lines}{more}",
            report=report,
            exit_code=3 if unreachable_only else 1,
        )
    return report
