"""The verifier's plan (which entries a listing covers, which get a HEAD) and its judgement
of one entry from what the store said. Split from :mod:`reftrack.verify`."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .backends import ObjectStat
from .errors import ReftrackError
from .manifest import ManifestEntry, ManifestSource
from .uri import RefURI, parse_uri
from .verify_report import EntryResult, Status

PAGE_SIZE = 1000
LIST_MIN_ENTRIES = 8


# -- planning -----------------------------------------------------------------------------


@dataclass
class _Item:
    entry: ManifestEntry
    ref: RefURI  # pinned version in ref.version_id


ListingId = tuple[str, str, str, bool]
"""What makes two listings the same: scheme, bucket, prefix key, recursive."""


@dataclass
class _Listing:
    prefix: RefURI
    recursive: bool
    items: list[_Item]
    budget_pages: int  # abandon the listing for HEADs after this many pages
    start_after: str | None = None
    """List only the keys after this one (below every key of ``items``)."""
    last_key: str = ""
    """The greatest key of ``items``."""
    stop_after: str | None = None
    """Stop reading the listing once past this key (None: read it to the end)."""

    @property
    def identity(self) -> ListingId:
        return (self.prefix.scheme, self.prefix.bucket, self.prefix.key, self.recursive)


@dataclass
class _Plan:
    listings: list[_Listing] = field(default_factory=list)
    heads: list[_Item] = field(default_factory=list)
    tops: dict[ListingId, str] = field(default_factory=dict)
    """Per listing (planned or not), the greatest key of the entries it would cover: a
    start for the same listing in a later window of entries."""
    refs: list[RefURI] = field(default_factory=list)
    """The parsed reference of every entry planned for, in their order."""


def _plan(entries: Iterable[ManifestEntry], sources: Sequence[ManifestSource],
          listable: Callable[[str], bool], wanted: Callable[[ManifestEntry], bool] | None = None,
          *, floors: Mapping[ListingId, str] | None = None) -> _Plan:
    """How to check ``entries`` (path order), or those of them ``wanted`` says; the others
    (reused, not in the sample) only tell where a listing may start.

    ``floors`` (per listing, the greatest key listed for it in earlier windows of the same
    manifest) and the keys of the entries not wanted let a listing start after them
    (``start_after``), when they are below every key it must see; ``tops`` gives the floors
    for the next window. When the entries are a window of a larger manifest, a prefix is
    expected to hold its share of the versions listed when it was logged."""
    plan = _Plan()
    floors = floors or {}
    by_bucket: dict[tuple[str, str], list[tuple[_Item, bool]]] = defaultdict(list)
    for entry in entries:
        ref = parse_uri(entry.ref).with_version(entry.version_id)
        plan.refs.append(ref)
        by_bucket[(ref.scheme, ref.bucket)].append(
            (_Item(entry, ref), wanted is None or wanted(entry)))

    by_source: dict[tuple[str, str], list[tuple[RefURI, ManifestSource]]] = defaultdict(list)
    for source in sources:
        if source.kind != "prefix":
            continue
        try:
            ref = parse_uri(source.uri)
        except ReftrackError:
            continue
        by_source[(ref.scheme, ref.bucket)].append((ref, source))

    for bucket, items in by_bucket.items():
        if not listable(bucket[0]):
            plan.heads.extend(item for item, take in items if take)
            continue
        # Shortest prefix first: one listing of data/ covers data/sub/ too.
        prefixes = sorted(by_source.get(bucket, []), key=lambda s: len(s[0].key))
        groups: dict[int, list[tuple[_Item, bool]]] = defaultdict(list)
        loose: list[tuple[_Item, bool]] = []
        for item, take in items:
            for index, (prefix, _) in enumerate(prefixes):
                if item.ref.key.startswith(prefix.key):
                    groups[index].append((item, take))
                    break
            else:
                loose.append((item, take))
        for index, members in groups.items():
            prefix, source = prefixes[index]
            listing = _listing(plan, prefix, True, members, floors)
            if listing is None:
                continue
            share = min(1.0, len(members) / max(1, source.entries))
            versions = max(source.listed * share, len(listing.items))
            if max(1, math.ceil(versions / PAGE_SIZE)) <= len(listing.items):
                plan.listings.append(listing)
            else:
                plan.heads.extend(listing.items)
        by_dir: dict[str, list[tuple[_Item, bool]]] = defaultdict(list)
        for item, take in loose:
            by_dir[item.ref.key.rpartition("/")[0]].append((item, take))
        for directory, members in by_dir.items():
            prefix = members[0][0].ref.child(directory + "/" if directory else "")
            listing = _listing(plan, prefix, False, members, floors)
            if listing is None:
                continue
            if len(listing.items) >= LIST_MIN_ENTRIES:
                plan.listings.append(listing)
            else:
                plan.heads.extend(listing.items)
    return plan


def _listing(plan: _Plan, prefix: RefURI, recursive: bool, members: list[tuple[_Item, bool]],
             floors: Mapping[ListingId, str]) -> _Listing | None:
    """The listing of ``prefix`` for the wanted ``members`` (None when none is wanted),
    starting after the greatest key known to be below all of theirs; records its top."""
    listing = _Listing(prefix, recursive, [item for item, take in members if take],
                       budget_pages=0)
    plan.tops[listing.identity] = max(item.ref.key for item, _ in members)
    if not listing.items:
        return None
    listing.budget_pages = len(listing.items)
    keys = [item.ref.key for item in listing.items]
    first, listing.last_key = min(keys), max(keys)
    below = [item.ref.key for item, take in members if not take and item.ref.key < first]
    floor = floors.get(listing.identity)
    if floor is not None and floor < first:
        below.append(floor)
    listing.start_after = max(below) if below else None
    return listing


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
