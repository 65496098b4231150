"""The verifier: re-check every reference of a manifest against its bucket.

Plan: entries that came from a prefix listing (the manifest records its sources) are checked
by listing that prefix again, every version, in pages of 1000: ``ceil(V/1000)`` requests for V
versions under the prefix, instead of one or two HEADs per entry. Entries added one by one are
grouped by directory and listed when at least :data:`LIST_MIN_ENTRIES` share one; the rest get
a HEAD of the current version (one request when nothing drifted, two otherwise). A listing that
grows past the number of requests the HEADs would cost is abandoned for HEADs, so verifying never
costs much more than the cheaper of the two.

Memory: the manifest is taken a window of :data:`WINDOW` entries at a time (path order), each
planned, checked and reported before the next is read (:mod:`reftrack.verify_stream`), so a
stored manifest is streamed from the registry and never held whole. Within one prefix, path
order is key order, so a window is a range of keys: its listing starts after the keys of the
windows before it (``start_after``) and stops after its own last key, so that the windows
together list a prefix about once. A report of more than :data:`KEEP_ALL` entries counts its
``ok`` results instead of listing them.

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

import contextlib
import math
import re
import secrets
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from .backends import Backend, Backends, ObjectStat, ScanLimitReached
from .bucketrules import (
    Observation,
    WarningTally,
    observe_head,
    observe_versions,
)
from .checksums import compare, deciding, local_algorithms
from .errors import ObjectNotFound, ReftrackError, UsageError
from .integrity import (
    MultipartCheck,
    PartLayout,
    content_match,
    expected_checksums,
    hash_reader,
    multipart_etag,
    server_checksums,
)
from .manifest import Manifest, ManifestEntry
from .progress import NullProgress, Progress
from .uri import RefURI
from .verify_plan import (
    LIST_MIN_ENTRIES,
    PAGE_SIZE,
    _Item,
    _judge,
    _Listing,
    _Seen,
    _unreachable,
)
from .verify_report import DRIFT, FAILING, PASSING, EntryResult, Status, VerifyReport
from .verify_stream import (
    Collected,
    EntrySource,
    Previous,
    Sampler,
    Windows,
    as_source,
    lookup,
    windows,
)

__all__ = [
    "DRIFT",
    "FAILING",
    "KEEP_ALL",
    "LIST_MIN_ENTRIES",
    "PAGE_SIZE",
    "PASSING",
    "WINDOW",
    "EntryResult",
    "EntrySource",
    "Status",
    "VerifyReport",
    "parse_sample",
    "verify_manifest",
]

RESULT_BATCH = 500
"""Results handed to ``verify_manifest(on_results=...)`` at a time (the registry stores each
batch in one transaction, so an interrupted verification keeps every finished batch)."""

WINDOW = 20_000
"""Entries read, planned and checked at a time: what the verifier holds in memory (their
entries, results and observations), whatever the size of the manifest."""

KEEP_ALL = 100_000
"""A report of at most this many entries lists every result; a larger one lists only those
that are not ``ok`` and counts the others (``VerifyReport.omitted_ok``)."""


_NOT_DEEP = ("deep check not possible: no content checksum recorded (multipart or encrypted "
             "ETag); checked by metadata")


class _Verifier:
    def __init__(self, backends: Backends, progress: Progress, *, deep: bool,
                 clock: Callable[[], datetime] | None = None,
                 on_results: Callable[[list[EntryResult]], None] | None = None) -> None:
        self.backends = backends
        self.progress = progress
        self.deep = deep
        self.clock = clock or _utcnow
        self.on_results = on_results
        self._pending: list[EntryResult] = []
        self.results: dict[str, EntryResult] = {}
        """The results of the current window of entries."""
        self.observations: dict[str, Observation] = {}
        """What was seen of each S3 entry's key in the current window, for dating lifecycle
        rules."""
        self._lock = threading.Lock()
        self._bucket_errors: dict[tuple[str, str], ReftrackError | None] = {}

    def _backend(self, ref: RefURI) -> Backend:
        return self.backends.for_uri(ref)

    def _done(self, results: Iterable[EntryResult]) -> None:
        now = self.clock()
        results = [r.model_copy(update={"checked_at": now}) for r in results]
        with self._lock:
            for result in results:
                self.results[result.path] = result
            if self.on_results is not None:
                self._pending.extend(results)
        self.progress.advance(len(results))

    def take(self) -> tuple[dict[str, EntryResult], dict[str, Observation]]:
        """The current window's results and observations, which are then forgotten."""
        with self._lock:
            taken = self.results, self.observations
            self.results, self.observations = {}, {}
        return taken

    def flush(self, *, full_only: bool = False) -> None:
        """Hand decided results to ``on_results``: whole batches, or (at the end, or when
        interrupted) everything pending. Called from the calling thread only."""
        if self.on_results is None:
            return
        with self._lock:
            size = len(self._pending)
            size -= size % RESULT_BATCH if full_only else 0
            taken, self._pending = self._pending[:size], self._pending[size:]
        for start in range(0, len(taken), RESULT_BATCH):
            try:
                self.on_results(taken[start:start + RESULT_BATCH])
            except BaseException:
                with self._lock:  # not stored: keep them for the next flush
                    self._pending[:0] = taken[start:]
                raise

    def check(self, item: _Item) -> None:
        """HEAD one entry and decide it at once (so its result can be stored at once)."""
        self.finish(self.run_head(item))

    def _observe(self, observed: Iterable[tuple[_Item, Observation]]) -> None:
        with self._lock:
            for item, observation in observed:
                if item.ref.scheme == "s3":
                    self.observations[item.entry.path] = observation

    def run_listing(self, listing: _Listing) -> tuple[list[_Item], list[_Seen]]:
        """List once (from ``listing.start_after``; up to ``listing.stop_after``, after
        which no further page is asked for); return the entries left for HEADs (budget
        exceeded) and what the listing saw of the others."""
        try:
            backend = self._backend(listing.prefix)
            wanted: dict[str, list[_Item]] = defaultdict(list)
            for item in listing.items:
                wanted[item.ref.key].append(item)
            latest: dict[str, ObjectStat] = {}
            versions: dict[tuple[str, str | None], ObjectStat] = {}
            history: dict[str, list[ObjectStat]] = defaultdict(list)
            start = ({} if listing.start_after is None
                     else {"start_after": listing.start_after})
            scan = backend.scan(listing.prefix, all_versions=True, recursive=listing.recursive,
                                page_limit=listing.budget_pages, **start)
            stop = listing.stop_after
            try:
                for stat in scan:
                    if stop is not None and stat.key > stop:
                        break  # past this window's keys: the rest is for the next windows
                    if stat.key in wanted:
                        history[stat.key].append(stat)
                        if stat.is_latest:
                            latest[stat.key] = stat
                        if not stat.is_delete_marker:
                            versions[(stat.key, stat.version_id)] = stat
            finally:
                close = getattr(scan, "close", None)
                if callable(close):
                    close()  # a generator stopped early asks for no further page
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

    def needs_request(self, seen: _Seen | None) -> bool:
        """Whether deciding ``seen`` asks the store again (deep, or metadata cannot tell):
        the others are judged from what was seen, without a thread of their own."""
        if seen is None:
            return False
        target = _target(seen)
        if target is None or not seen.item.entry.checksummed:
            return False
        content = content_match(seen.item.entry, target)
        return content is not False and (self.deep or content is None)

    def _decide(self, seen: _Seen) -> EntryResult:
        item, latest, pinned = seen.item, seen.latest, seen.pinned
        entry = item.entry
        target = _target(seen)
        if target is None or not entry.checksummed:
            return _judge(item, latest, pinned)
        content = content_match(entry, target)
        note = ""
        if content is not False and (self.deep or content is None):
            ref = item.ref if entry.pinned else item.ref.with_version(None)
            try:
                decided, note = self._ask_server(ref, entry, target)
                if decided is None:
                    decided, note = self._rehash(ref, entry, target, content)
            except ObjectNotFound:
                if entry.pinned:
                    return _judge(item, latest, None)
                return _judge(item, None, None)
            if decided is not None:
                content = decided
        return _judge(item, latest, pinned, content, note)

    def _ask_server(self, ref: RefURI, entry: ManifestEntry,
                    target: ObjectStat) -> tuple[bool | None, str]:
        """Deep without reading the bytes: the recorded S3 checksums against the server's
        own, from the HEAD already made, else one more ``HeadObject`` (``ChecksumMode``).
        ``(None, "")`` when nothing server-side was recorded or the server reports none of it
        (the bytes are read then)."""
        recorded = server_checksums(entry)
        if not recorded:
            return None, ""
        answer, how = target, "the HEAD's"
        if deciding(recorded, answer.checksums) is None:
            answer, how = self._backend(ref).stat(ref), "one HeadObject"
        name = deciding(recorded, answer.checksums)
        if name is None:
            return None, ""
        if entry.size is not None and answer.size is not None and answer.size != entry.size:
            return False, f"the server reports {answer.size} bytes, recorded {entry.size}"
        what = "composite " + name.removeprefix("s3-composite-") \
            if name.startswith("s3-composite-") else name
        if compare(recorded, answer.checksums):
            return True, f"server-side {what} matches the record ({how}, no bytes read)"
        return False, (f"server-side {what} is {answer.checksums[name][:16]}..., recorded "
                       f"{recorded[name][:16]}... ({how}, no bytes read)")

    def _rehash(self, ref: RefURI, entry: ManifestEntry, target: ObjectStat,
                content: bool | None) -> tuple[bool | None, str]:
        """Deep by reading: stream the bytes once (1 MiB chunks) and hash them with the
        strongest recorded checksum that can be computed here, else recompute a multipart
        ETag. ``(None, note)`` when there is nothing to hash against."""
        expected = expected_checksums(entry, target.encryption)
        algorithms = local_algorithms(expected)
        parts = None if algorithms else multipart_etag(entry, target.encryption)
        if not algorithms and not (parts and entry.size):
            return None, _NOT_DEEP if not expected else (
                f"deep check not possible here: {'/'.join(sorted(expected))} cannot be "
                "computed locally (crc64nvme needs awscrt); checked by metadata")
        backend = self._backend(ref)
        multipart: MultipartCheck | None = None
        if not algorithms and entry.etag and entry.size:
            layout = backend.part_sizes(ref) if isinstance(backend, PartLayout) else None
            multipart = MultipartCheck(entry.etag, entry.size, layout)
        with backend.open(ref) as reader:
            encryption = reader.stat.encryption or target.encryption
            if encryption != target.encryption:  # a listing does not tell; the GET does
                expected = expected_checksums(entry, encryption)
                algorithms = local_algorithms(expected)
                if multipart is not None and multipart_etag(entry, encryption) is None:
                    multipart = None
                if not algorithms and multipart is None:
                    return None, _NOT_DEEP
            actual, _ = hash_reader(reader, algorithms,
                                    parts=multipart.hashers if multipart else ())
        if multipart is not None:
            return multipart.verdict()
        decided = compare(expected, actual)
        names = "/".join(algorithms)
        if decided and content is None:
            return True, f"metadata changed but the content is identical ({names} re-hashed)"
        if decided:
            return True, f"bytes re-hashed: {names} match"
        return False, f"bytes re-hashed: {names} differs from the record"

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
    manifest: Manifest | EntrySource,
    backends: Backends,
    *,
    artifact: str | None = None,
    concurrency: int = 32,
    progress: Progress | None = None,
    deep: bool = False,
    bucket_rules: bool = True,
    protected: bool = False,
    previous: Previous | None = None,
    sample: float | None = None,
    seed: int | None = None,
    on_results: Callable[[list[EntryResult]], None] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> VerifyReport:
    """Check every entry of ``manifest`` against its store and return the report.

    ``manifest``: a :class:`Manifest`, or an :class:`EntrySource` streaming a stored one
    (``Registry.stream_manifest``) in path order. Either way the entries are verified a
    window of :data:`WINDOW` at a time (planned, listed, checked, reported), so memory does
    not grow with the number of entries; a stream whose entries do not match its header's
    count and digest raises :class:`~reftrack.errors.ManifestError` (results of the windows
    already checked have gone to ``on_results``). Within a window, entries that came from a
    prefix are checked by listing it from after the keys of earlier windows
    (``start_after``) up to the window's last key (every window but the last stops there, so
    no page is listed twice); one listing a prefix, as a whole manifest, when it fits in a
    window.

    Incremental: entries with a result in ``previous`` (path -> an earlier result, or a
    function giving those of a window's paths) are not checked; that result goes into the
    report marked ``reused``. ``sample`` (0 < f <= 1) checks a random fraction of the
    entries (``ceil(f * N)``, chosen with ``seed``; a random seed, reported, when None); the
    report then holds only the sampled entries. The plan (listings vs HEADs) is made for
    the entries actually checked. ``on_results`` receives the new results in batches of
    :data:`RESULT_BATCH` as they are decided (and what is left at the end, or when
    interrupted), stamped ``checked_at`` by ``clock``. A report of more than
    :data:`KEEP_ALL` entries lists only those that are not ``ok`` (``omitted_ok``).

    ``deep=True`` also reads every object's pinned bytes and compares them with the recorded
    checksums: recorded S3 checksums are asked of the server (no bytes read); other entries
    are streamed and hashed (one GET each).
    ``bucket_rules=True`` also reads each S3 bucket's lifecycle rules and versioning state
    (two requests per bucket) into ``report.warnings``; ``protected``: the version carries
    legal holds (``reftrack protect``), which the warnings then mention.
    """
    progress = progress or NullProgress()
    source = as_source(manifest)
    sample = check_sample(sample)
    if sample is not None and seed is None:
        seed = secrets.randbelow(2**31)
    total = source.total
    size = total if sample is None else min(total, math.ceil(round(sample * total, 9)))
    verifier = _Verifier(backends, progress, deep=deep, clock=clock, on_results=on_results)
    state = Windows(
        source, verifier, progress, lambda scheme: _listable(backends, scheme),
        sampler=Sampler(total, size, seed) if sample is not None else None,
        earlier=lookup(previous), collected=Collected(keep_all=size <= KEEP_ALL),
        tally=WarningTally(backends, protected=protected) if bucket_rules else None,
    )
    before = _requests(backends)
    progress.start("verifying", total=size, unit="entries")
    try:
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            for window, last in windows(source.entries(), max(1, WINDOW)):
                state.run(pool, window, last=last)
                del window  # before the next window is read
    except BaseException:
        # Keep what was decided before the interruption (or the error), which matters more
        # than an error storing it.
        with contextlib.suppress(Exception):
            verifier.flush()
        raise
    finally:
        progress.finish()
    verifier.flush()
    warnings = state.warnings()  # (before the requests are counted: it may make some)
    collected = state.collected
    return VerifyReport(
        artifact=artifact,
        digest=source.digest,
        checked_at=(clock or _utcnow)(),
        requests=_requests(backends) - before,
        deep=deep,
        entries=collected.entries,
        warnings=warnings,
        total=total,
        sampled=sample,
        seed=seed if sample is not None else None,
        omitted_ok=collected.omitted_ok,
        omitted_reused_ok=collected.omitted_reused_ok,
    )


def parse_sample(text: str) -> float:
    """``1%``, ``0.5%`` or ``0.01`` -> the fraction of entries to check (0 < f <= 1)."""
    raw = text.strip()
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*(%?)", raw)
    if match is None:
        raise UsageError(f"{text!r} is not a sample size: write a percentage (1%, 0.5%) or a "
                         "fraction (0.01)")
    value = float(match.group(1)) / (100 if match.group(2) else 1)
    if value > 1 and not match.group(2):
        raise UsageError(f"{text!r}: a fraction must be at most 1 (write {raw}% for a "
                         "percentage)")
    return check_sample(value) or 1.0


def check_sample(sample: float | None) -> float | None:
    """A valid sample fraction; None for no sample (1 checks everything: not a sample)."""
    if sample is None:
        return None
    if isinstance(sample, bool) or not isinstance(sample, int | float) \
            or not 0 < sample <= 1:
        raise UsageError(f"sample must be a fraction of the entries, 0 < sample <= 1 "
                         f"(0.01 for 1%), not {sample!r}")
    return None if sample == 1 else float(sample)


def _target(seen: _Seen) -> ObjectStat | None:
    """The object that should hold the recorded bytes: the pinned version, or the live
    object when nothing was pinned."""
    latest = seen.latest
    live = latest if latest is not None and not latest.is_delete_marker else None
    return seen.pinned if seen.item.entry.pinned else live


def _utcnow() -> datetime:
    return datetime.now(UTC)


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

