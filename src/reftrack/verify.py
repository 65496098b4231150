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

The bucket's own rules: the report's ``warnings`` say which S3 lifecycle rules will delete
pinned versions and when, and whether versioning is suspended or off
(:mod:`reftrack.bucketrules`: one GetBucketLifecycleConfiguration and one GetBucketVersioning
per bucket, dated from what the listings and HEADs above saw). Warnings never change the
exit code.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, computed_field

from .backends import Backend, Backends, ObjectStat, ScanLimitReached
from .bucketrules import BucketWarning, Observation, bucket_warnings, observe_head, observe_versions
from .checksums import compare
from .errors import ObjectNotFound, ReftrackError
from .integrity import content_match, expected_checksums, hash_reader
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
    deep: bool = False
    entries: list[EntryResult]
    warnings: list[BucketWarning] = []
    """What the buckets' own rules will do to the pinned data (lifecycle expiration,
    suspended or absent versioning); never part of the exit code."""

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


def _plan(manifest: Manifest, listable: Callable[[str], bool]) -> _Plan:
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
        if not listable(bucket[0]):
            plan.heads.extend(items)
            continue
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


@dataclass
class _Seen:
    """What the store said about one entry: the key's current version (``latest``, possibly
    a delete marker) and the pinned version (``pinned``, None when it does not exist)."""

    item: _Item
    latest: ObjectStat | None
    pinned: ObjectStat | None


def _judge(item: _Item, latest: ObjectStat | None, pinned: ObjectStat | None,
           content: bool | None = None, note: str = "") -> EntryResult:
    """The status of one entry. ``content`` is whether the object that should hold the
    recorded bytes (the pinned version, or the live object when nothing was pinned) still
    does: from :func:`~reftrack.integrity.content_match`, or from re-hashing its bytes."""
    entry = item.entry
    live = latest if latest is not None and not latest.is_delete_marker else None
    suffix = f"; {note}" if note else ""

    def result(status: Status, detail: str) -> EntryResult:
        return EntryResult(
            path=entry.path,
            uri=str(item.ref),
            status=status,
            detail=detail + suffix,
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
                "bucket, local file or HTTP resource), so its bytes cannot be recovered",
            )
        if content is False:
            return result(Status.CHANGED, _changed_detail(entry, live))
        return result(Status.OK, "unchanged" if content else
                      "exists with the recorded size (nothing else was recorded to compare)")

    if pinned is None:
        return result(
            Status.VERSION_MISSING,
            f"version {entry.version_id} no longer exists (deleted permanently or by a "
            "lifecycle rule); the data pinned for this entry is lost",
        )
    if content is False:
        return result(
            Status.CORRUPT,
            f"the pinned version no longer matches the record: ETag {pinned.etag}, size "
            f"{pinned.size} (recorded ETag {entry.etag}, size {entry.size})",
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


def _changed_detail(entry: ManifestEntry, live: ObjectStat) -> str:
    parts = []
    if entry.size != live.size:
        parts.append(f"size {entry.size} -> {live.size}")
    if entry.etag is not None and live.etag != entry.etag:
        parts.append(f"ETag {entry.etag} -> {live.etag}")
    if entry.last_modified is not None and live.last_modified not in (None, entry.last_modified):
        parts.append(f"modified {entry.last_modified:%Y-%m-%d %H:%M:%S} -> "
                     f"{live.last_modified:%Y-%m-%d %H:%M:%S}")
    recorded = entry.checksums or {}
    for name, value in live.checksums.items():
        if name in recorded and recorded[name] != value:
            parts.append(f"{name} {recorded[name][:12]}... -> {value[:12]}...")
            break
    what = ", ".join(parts) or "content differs"
    scheme = entry.ref.partition("://")[0].lower()
    gone = {
        "file": "local files keep no versions: the original bytes are gone",
        "http": "HTTP keeps no versions: the original bytes are gone",
        "https": "HTTP keeps no versions: the original bytes are gone",
    }.get(scheme, "unversioned: the original bytes are gone")
    return f"changed since it was logged: {what} ({gone})"


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
    def __init__(self, backends: Backends, progress: Progress, *, deep: bool) -> None:
        self.backends = backends
        self.progress = progress
        self.deep = deep
        self.results: dict[str, EntryResult] = {}
        self.observations: dict[str, Observation] = {}
        """What was seen of each S3 entry's key, for dating lifecycle rules."""
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

    def _observe(self, observed: Iterable[tuple[_Item, Observation]]) -> None:
        with self._lock:
            for item, observation in observed:
                if item.ref.scheme == "s3":
                    self.observations[item.entry.path] = observation

    def run_listing(self, listing: _Listing) -> tuple[list[_Item], list[_Seen]]:
        """List once; return the entries left for HEADs (budget exceeded) and what the
        listing saw of the others."""
        try:
            backend = self._backend(listing.prefix)
            wanted: dict[str, list[_Item]] = defaultdict(list)
            for item in listing.items:
                wanted[item.ref.key].append(item)
            latest: dict[str, ObjectStat] = {}
            versions: dict[tuple[str, str | None], ObjectStat] = {}
            history: dict[str, list[ObjectStat]] = defaultdict(list)
            for stat in backend.scan(listing.prefix, all_versions=True,
                                     recursive=listing.recursive,
                                     page_limit=listing.budget_pages):
                if stat.key in wanted:
                    history[stat.key].append(stat)
                    if stat.is_latest:
                        latest[stat.key] = stat
                    if not stat.is_delete_marker:
                        versions[(stat.key, stat.version_id)] = stat
        except ScanLimitReached:
            return listing.items, []  # the listing outgrew its budget: HEADs are cheaper now
        except ObjectNotFound:
            return listing.items, []
        except ReftrackError as exc:
            self._done(_unreachable(item, exc) for item in listing.items)
            return [], []
        self._observe((item, observe_versions(item.entry, history.get(item.ref.key, ())))
                      for item in listing.items)
        return [], [
            _Seen(item, latest.get(item.ref.key),
                  versions.get((item.ref.key, item.ref.version_id)))
            for item in listing.items
        ]

    def run_head(self, item: _Item) -> _Seen | None:
        try:
            seen = self._head(item)
        except ReftrackError as exc:
            self._done([_unreachable(item, exc)])
            return None
        self._observe([(item, observe_head(item.entry, seen.latest, seen.pinned))])
        return seen

    def _head(self, item: _Item) -> _Seen:
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
            return _Seen(item, latest, None)
        if latest is not None and latest.version_id == item.ref.version_id:
            return _Seen(item, latest, latest)
        try:
            pinned: ObjectStat | None = backend.stat(item.ref)
        except ObjectNotFound:
            self._check_bucket(backend, item.ref)
            pinned = None
        return _Seen(item, latest, pinned)

    def finish(self, seen: _Seen | None) -> None:
        """Compare content (re-hashing when metadata cannot tell, or when deep) and judge."""
        if seen is None:
            return
        item = seen.item
        try:
            self._done([self._decide(seen)])
        except ReftrackError as exc:
            self._done([_unreachable(item, exc)])

    def _decide(self, seen: _Seen) -> EntryResult:
        item, latest, pinned = seen.item, seen.latest, seen.pinned
        entry = item.entry
        live = latest if latest is not None and not latest.is_delete_marker else None
        target = pinned if entry.pinned else live
        if target is None or not entry.checksummed:
            return _judge(item, latest, pinned)
        content = content_match(entry, target)
        expected = expected_checksums(entry, target.encryption)
        note = ""
        if content is not False and (self.deep or content is None):
            if not expected:
                note = "deep check not possible: no content checksum recorded (multipart " \
                    "or encrypted ETag); checked by metadata"
            else:
                ref = item.ref if entry.pinned else item.ref.with_version(None)
                try:
                    with self._backend(ref).open(ref) as reader:
                        actual, _ = hash_reader(reader, list(expected))
                except ObjectNotFound:
                    if entry.pinned:
                        return _judge(item, latest, None)
                    return _judge(item, None, None)
                was_unknown = content is None
                content = compare(expected, actual)
                names = "/".join(sorted(set(expected) & set(actual)))
                if content and was_unknown:
                    note = f"metadata changed but the content is identical ({names} re-hashed)"
                elif content:
                    note = f"bytes re-hashed: {names} match"
                else:
                    note = f"bytes re-hashed: {names} differs from the record"
        return _judge(item, latest, pinned, content, note)

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
    deep: bool = False,
    bucket_rules: bool = True,
    protected: bool = False,
) -> VerifyReport:
    """Check every entry of ``manifest`` against its store and return the report.

    ``deep=True`` also reads every object's pinned bytes and compares them with the recorded
    checksums (sha256, md5, crc32c, or a single-part S3 ETag): one GET per entry.
    ``bucket_rules=True`` also reads each S3 bucket's lifecycle rules and versioning state
    (two requests per bucket) into ``report.warnings``; ``protected``: the version carries
    legal holds (``reftrack protect``), which the warnings then mention.
    """
    progress = progress or NullProgress()
    plan = _plan(manifest, lambda scheme: _listable(backends, scheme))
    verifier = _Verifier(backends, progress, deep=deep)
    before = _requests(backends)
    progress.start("verifying", total=len(manifest), unit="entries")
    try:
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            leftovers: list[_Item] = list(plan.heads)
            seen: list[_Seen | None] = []
            for remaining, listed in pool.map(verifier.run_listing, plan.listings):
                leftovers.extend(remaining)
                seen.extend(listed)
            seen.extend(pool.map(verifier.run_head, leftovers))
            list(pool.map(verifier.finish, seen))
    finally:
        progress.finish()
    warnings = (bucket_warnings(manifest, backends, observations=verifier.observations,
                                protected=protected)
                if bucket_rules else [])
    return VerifyReport(
        artifact=artifact,
        digest=manifest.digest,
        checked_at=datetime.now(UTC),
        requests=_requests(backends) - before,
        deep=deep,
        entries=[verifier.results[path] for path in sorted(verifier.results)],
        warnings=warnings,
    )


def _listable(backends: Backends, scheme: str) -> bool:
    """Bulk listing pays off for stores whose metadata identifies content (S3, GCS); local
    files are stat'ed one by one (no requests), HTTP cannot be listed."""
    try:
        backend = backends.for_scheme(scheme)
    except ReftrackError:
        return False
    return backend.can_scan and not backend.hashes_content


def _requests(backends: Backends) -> int:
    return sum(b.requests for b in backends.made())

