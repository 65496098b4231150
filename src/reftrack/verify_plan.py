"""The verifier's plan (which entries a listing covers, which get a HEAD) and its judgement
of one entry from what the store said. Split from :mod:`reftrack.verify`."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from .backends import ObjectStat
from .errors import ReftrackError
from .manifest import Manifest, ManifestEntry
from .uri import RefURI, parse_uri
from .verify_report import EntryResult, Status

PAGE_SIZE = 1000
LIST_MIN_ENTRIES = 8


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


def _plan(manifest: Manifest, listable: Callable[[str], bool],
          only: set[str] | None = None) -> _Plan:
    """How to check the entries (those in ``only``, when given)."""
    plan = _Plan()
    by_bucket: dict[tuple[str, str], list[_Item]] = defaultdict(list)
    for entry in manifest.sorted_entries():
        if only is not None and entry.path not in only:
            continue
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
