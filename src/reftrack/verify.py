"""The verifier: re-check every reference of a manifest against its bucket.

Plan: entries that came from a prefix listing (the manifest records its sources) are checked
by listing that prefix again, every version, in pages of 1000: ``ceil(V/1000)`` requests for V
versions under the prefix, instead of one or two HEADs per entry. Entries added one by one are
grouped by directory and listed when at least :data:`LIST_MIN_ENTRIES` share one; the rest get
a HEAD of the current version (one request when nothing drifted, two otherwise). A listing that
grows past the number of requests the HEADs would cost is abandoned for HEADs, so verifying never
costs much more than the cheaper of the two.

Statuses (see DESIGN.md): ``ok``, ``moved`` and ``deleted`` pass (the last two are drift);
``version_missing``, ``changed`` and ``corrupt`` fail; ``unreachable`` means the bucket could
not be asked (missing, access denied, network).
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, computed_field

from .backends import Backend, Backends, ObjectStat, ScanLimitReached
from .errors import ObjectNotFound, ReftrackError
from .manifest import Manifest, ManifestEntry
from .progress import NullProgress, Progress
from .uri import RefURI, parse_uri

__all__ = ["EntryResult", "Status", "VerifyReport", "verify_manifest"]

PAGE_SIZE = 1000
LIST_MIN_ENTRIES = 8


class Status(StrEnum):
    OK = "ok"
    MOVED = "moved"
    DELETED = "deleted"
    VERSION_MISSING = "version_missing"
    CHANGED = "changed"
    CORRUPT = "corrupt"
    UNREACHABLE = "unreachable"


PASSING = frozenset({Status.OK, Status.MOVED, Status.DELETED})
DRIFT = frozenset({Status.MOVED, Status.DELETED})
FAILING = frozenset({Status.VERSION_MISSING, Status.CHANGED, Status.CORRUPT})


class EntryResult(BaseModel):
    """What the verifier found for one entry."""

    model_config = ConfigDict(frozen=True)

    path: str
    uri: str
    status: Status
    detail: str
    recorded_etag: str | None = None
    recorded_size: int | None = None
    current_version_id: str | None = None
    current_etag: str | None = None
    current_size: int | None = None


class VerifyReport(BaseModel):
    """The verifier's answer for one manifest."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = 1
    artifact: str | None
    digest: str
    checked_at: datetime
    requests: int
    entries: list[EntryResult]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys((s.value for s in Status), 0)
        for entry in self.entries:
            counts[entry.status.value] += 1
        return counts

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        """True when every entry is ``ok``, ``moved`` or ``deleted``."""
        return all(e.status in PASSING for e in self.entries)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def exit_code(self) -> int:
        """0 intact (drift allowed), 1 integrity failure, 3 unreachable."""
        statuses = {e.status for e in self.entries}
        if statuses & FAILING:
            return 1
        if Status.UNREACHABLE in statuses:
            return 3
        return 0

    def by_status(self, *statuses: Status) -> list[EntryResult]:
        return [e for e in self.entries if e.status in statuses]

    @property
    def drift(self) -> list[EntryResult]:
        return self.by_status(*DRIFT)


# -- planning -----------------------------------------------------------------------------


@dataclass
class _Item:
    entry: ManifestEntry
    ref: RefURI  # pinned version in ref.version_id


@dataclass
class _Listing:
    prefix: RefURI
    recursive: bool
    items: list[_Item]
    budget_pages: int  # abandon the listing for HEADs after this many pages


@dataclass
class _Plan:
    listings: list[_Listing] = field(default_factory=list)
    heads: list[_Item] = field(default_factory=list)


def _plan(manifest: Manifest) -> _Plan:
    plan = _Plan()
    by_bucket: dict[tuple[str, str], list[_Item]] = defaultdict(list)
    for entry in manifest.sorted_entries():
        ref = parse_uri(entry.ref).with_version(entry.version_id)
        by_bucket[(ref.scheme, ref.bucket)].append(_Item(entry, ref))

    sources: dict[tuple[str, str], list[tuple[RefURI, int]]] = defaultdict(list)
    for source in manifest.sources:
        if source.kind != "prefix":
            continue
        try:
            ref = parse_uri(source.uri)
        except ReftrackError:
            continue
        sources[(ref.scheme, ref.bucket)].append((ref, source.listed))

    for bucket, items in by_bucket.items():
        # Shortest prefix first: one listing of data/ covers data/sub/ too.
        prefixes = sorted(sources.get(bucket, []), key=lambda s: len(s[0].key))
        groups: dict[int, list[_Item]] = defaultdict(list)
        loose: list[_Item] = []
        for item in items:
            for index, (prefix, _) in enumerate(prefixes):
                if item.ref.key.startswith(prefix.key):
                    groups[index].append(item)
                    break
            else:
                loose.append(item)
        for index, members in groups.items():
            prefix, listed = prefixes[index]
            expected_pages = max(1, math.ceil(max(listed, len(members)) / PAGE_SIZE))
            if expected_pages <= len(members):
                plan.listings.append(_Listing(prefix, True, members, budget_pages=len(members)))
            else:
                plan.heads.extend(members)
        by_dir: dict[str, list[_Item]] = defaultdict(list)
        for item in loose:
            by_dir[item.ref.key.rpartition("/")[0]].append(item)
        for directory, members in by_dir.items():
            if len(members) >= LIST_MIN_ENTRIES:
                prefix = members[0].ref.child(directory + "/" if directory else "")
                plan.listings.append(
                    _Listing(prefix, False, members, budget_pages=len(members))
                )
            else:
                plan.heads.extend(members)
    return plan


# -- judging ------------------------------------------------------------------------------


def _judge(item: _Item, latest: ObjectStat | None, pinned: ObjectStat | None) -> EntryResult:
    """The status of one entry, from the key's current version (``latest``, possibly a
    delete marker) and the pinned version (``pinned``, None when it does not exist)."""
    entry = item.entry
    live = latest if latest is not None and not latest.is_delete_marker else None

    def result(status: Status, detail: str) -> EntryResult:
        return EntryResult(
            path=entry.path,
            uri=str(item.ref),
            status=status,
            detail=detail,
            recorded_etag=entry.etag,
            recorded_size=entry.size,
            current_version_id=live.version_id if live else None,
            current_etag=live.etag if live else None,
            current_size=live.size if live else None,
        )

    if not entry.checksummed:
        if live is None:
            return result(
                Status.VERSION_MISSING,
                "the object no longer exists (recorded with checksum=False: nothing was "
                "pinned, so nothing can be recovered)",
            )
        return result(Status.OK, "exists; recorded with checksum=False, so only existence "
                      "is checked")

    if not entry.pinned:
        if live is None:
            return result(
                Status.VERSION_MISSING,
                "the object was deleted; it was recorded without a version id (unversioned "
                "bucket), so its bytes cannot be recovered",
            )
        if live.etag != entry.etag or live.size != entry.size:
            return result(
                Status.CHANGED,
                f"overwritten since it was logged: ETag {entry.etag} -> {live.etag}, size "
                f"{entry.size} -> {live.size} (unversioned bucket: the original bytes are gone)",
            )
        return result(Status.OK, "unchanged (unversioned object)")

    if pinned is None:
        return result(
            Status.VERSION_MISSING,
            f"version {entry.version_id} no longer exists (deleted permanently or by a "
            "lifecycle rule); the data pinned for this entry is lost",
        )
    if pinned.etag != entry.etag or pinned.size != entry.size:
        return result(
            Status.CORRUPT,
            f"the pinned version now reports ETag {pinned.etag}, size {pinned.size}; "
            f"recorded ETag {entry.etag}, size {entry.size}",
        )
    if latest is not None and latest.is_delete_marker:
        return result(
            Status.DELETED,
            "the key was deleted (current version is a delete marker); the pinned version "
            "is intact and downloadable",
        )
    if live is None:
        return result(Status.DELETED, "the key has no current version; the pinned version "
                      "is intact")
    if live.version_id != entry.version_id:
        return result(
            Status.MOVED,
            f"the key now holds version {live.version_id} (ETag {live.etag}, size "
            f"{live.size}); the pinned version is intact and downloadable",
        )
    return result(Status.OK, "pinned version is current and intact")


def _unreachable(item: _Item, error: BaseException) -> EntryResult:
    return EntryResult(
        path=item.entry.path,
        uri=str(item.ref),
        status=Status.UNREACHABLE,
        detail=str(error),
        recorded_etag=item.entry.etag,
        recorded_size=item.entry.size,
    )


class _Verifier:
    def __init__(self, backends: Backends, progress: Progress) -> None:
        self.backends = backends
        self.progress = progress
        self.results: dict[str, EntryResult] = {}
        self._lock = threading.Lock()
        self._bucket_errors: dict[tuple[str, str], ReftrackError | None] = {}

    def _backend(self, ref: RefURI) -> Backend:
        return self.backends.for_uri(ref)

    def _done(self, results: Iterable[EntryResult]) -> None:
        results = list(results)
        with self._lock:
            for result in results:
                self.results[result.path] = result
        self.progress.advance(len(results))

    def run_listing(self, listing: _Listing) -> list[_Item]:
        """Judge the listing's entries; return those left for HEADs (budget exceeded)."""
        try:
            backend = self._backend(listing.prefix)
            wanted: dict[str, list[_Item]] = defaultdict(list)
            for item in listing.items:
                wanted[item.ref.key].append(item)
            latest: dict[str, ObjectStat] = {}
            versions: dict[tuple[str, str | None], ObjectStat] = {}
            for stat in backend.scan(listing.prefix, all_versions=True,
                                     recursive=listing.recursive,
                                     page_limit=listing.budget_pages):
                if stat.key in wanted:
                    if stat.is_latest:
                        latest[stat.key] = stat
                    if not stat.is_delete_marker:
                        versions[(stat.key, stat.version_id)] = stat
        except ScanLimitReached:
            return listing.items  # the listing outgrew its budget: HEADs are cheaper now
        except ObjectNotFound:
            return listing.items
        except ReftrackError as exc:
            self._done(_unreachable(item, exc) for item in listing.items)
            return []
        self._done(
            _judge(item, latest.get(item.ref.key),
                   versions.get((item.ref.key, item.ref.version_id)))
            for item in listing.items
        )
        return []

    def run_head(self, item: _Item) -> None:
        try:
            self._done([self._head(item)])
        except ReftrackError as exc:
            self._done([_unreachable(item, exc)])

    def _head(self, item: _Item) -> EntryResult:
        backend = self._backend(item.ref)
        current_ref = item.ref.with_version(None)
        latest: ObjectStat | None
        try:
            latest = backend.stat(current_ref)
        except ObjectNotFound as exc:
            latest = (
                ObjectStat(uri=current_ref, size=None, etag=None, is_delete_marker=True)
                if exc.delete_marker else None
            )
        if not item.entry.pinned:
            if latest is None:
                self._check_bucket(backend, item.ref)
            return _judge(item, latest, None)
        if latest is not None and latest.version_id == item.ref.version_id:
            return _judge(item, latest, latest)
        try:
            pinned: ObjectStat | None = backend.stat(item.ref)
        except ObjectNotFound:
            self._check_bucket(backend, item.ref)
            pinned = None
        return _judge(item, latest, pinned)

    def _check_bucket(self, backend: Backend, ref: RefURI) -> None:
        """A HEAD 404 does not say whether the key or the bucket is missing: ask once."""
        key = (ref.scheme, ref.bucket)
        with self._lock:
            known = key in self._bucket_errors
            error = self._bucket_errors.get(key)
        if not known:
            try:
                backend.check_bucket(ref.bucket)
                error = None
            except ReftrackError as exc:
                error = exc
            with self._lock:
                self._bucket_errors[key] = error
        if error is not None:
            raise error


def verify_manifest(
    manifest: Manifest,
    backends: Backends,
    *,
    artifact: str | None = None,
    concurrency: int = 32,
    progress: Progress | None = None,
) -> VerifyReport:
    """Check every entry of ``manifest`` against its bucket and return the report."""
    progress = progress or NullProgress()
    plan = _plan(manifest)
    verifier = _Verifier(backends, progress)
    before = _requests(backends)
    progress.start("verifying", total=len(manifest), unit="entries")
    try:
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            leftovers: list[_Item] = list(plan.heads)
            for remaining in pool.map(verifier.run_listing, plan.listings):
                leftovers.extend(remaining)
            list(pool.map(verifier.run_head, leftovers))
    finally:
        progress.finish()
    return VerifyReport(
        artifact=artifact,
        digest=manifest.digest,
        checked_at=datetime.now(UTC),
        requests=_requests(backends) - before,
        entries=[verifier.results[path] for path in sorted(verifier.results)],
    )


def _requests(backends: Backends) -> int:
    return sum(b.requests for b in backends.made())

