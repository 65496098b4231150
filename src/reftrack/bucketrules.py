"""The bucket's own rules: what the bucket itself will do to pinned data, and how to stop it.

**Warnings.** :func:`bucket_warnings` asks every S3 bucket of a manifest, once, for its
lifecycle configuration (``GetBucketLifecycleConfiguration``) and versioning state
(``GetBucketVersioning``, cached by the backend), and says, per rule, which entries of the
version it will take and when the first one goes:

- ``noncurrent_expiration`` (NoncurrentVersionExpiration, N days): a pinned version that is no
  longer the key's current version is deleted N days after it *became* noncurrent, i.e. after
  its successor (the next version, or a delete marker) was written. ``verify`` knows when that
  was: from a listing, the successor itself (``date_basis="successor"``, exact); from a HEAD,
  only the key's current version (``"current_version"``: exact when the key was overwritten
  once, earlier otherwise). Without an observation (``show``) the earliest possible date is the
  version's own LastModified + N days (``"earliest"``). A pinned version that is still current
  goes N days after it is overwritten or deleted; when an Expiration rule also covers it, that
  rule makes it noncurrent first (``"expiration_rule"``).
- ``expiration`` (Expiration, Days or Date): the *current* object goes ``LastModified + Days``
  (or on ``Date``). That destroys the bytes of entries recorded without a version id
  (unversioned or suspended bucket, ``checksum=False``): deleted for good on an unversioned
  bucket, replaced by a delete marker otherwise (reftrack pinned no version to get back).
  Pinned versions only become noncurrent: see above.
- ``versioning_suspended`` / ``versioning_disabled``: an overwrite or delete destroys the bytes
  of every entry that has no version id (``null`` versions).
- ``rules_unknown``: the lifecycle configuration or the versioning state could not be read
  (access denied, ...): rules reftrack cannot see may still delete data.

Dates: S3 adds the days to the start time and rounds *up* to the next midnight UTC
(10:30 on 1 Jan + 3 days -> 00:00 on 5 Jan; a start exactly at midnight also moves to the next
one); the object is *eligible* from then, and S3 removes it asynchronously, usually within a
day or two. Rules filtered by object tags (which reftrack does not read) are reported with
``may_apply=True``.

What stops a rule: a legal hold on every pinned object version (:mod:`reftrack.protection`,
``reftrack protect``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from .backends import Backends, ObjectStat, Versioning
from .backends.base import LifecycleRule
from .errors import BucketAccessDenied, ReftrackError
from .manifest import Manifest, ManifestEntry
from .uri import parse_uri

__all__ = [
    "BucketWarning",
    "Observation",
    "RuleBackend",
    "bucket_warnings",
    "eligible_at",
    "observe_head",
    "observe_versions",
]

WarningKind = Literal[
    "noncurrent_expiration", "expiration", "versioning_suspended", "versioning_disabled",
    "rules_unknown",
]
DateBasis = Literal["successor", "current_version", "earliest", "expiration_rule", "written",
                    "rule_date"]


@runtime_checkable
class RuleBackend(Protocol):
    """A backend that can say what the bucket's lifecycle rules are (S3)."""

    def lifecycle_rules(self, bucket: str) -> list[LifecycleRule]: ...

    def versioning(self, bucket: str) -> Versioning: ...


# -- dates --------------------------------------------------------------------------------


def eligible_at(start: datetime, days: int) -> datetime:
    """When S3 lifecycle makes an object eligible: ``start + days``, rounded up to the next
    midnight UTC (always the *next* one, even from exactly midnight)."""
    moment = start.astimezone(UTC) + timedelta(days=days)
    return datetime.combine(moment.date() + timedelta(days=1), time(0), tzinfo=UTC)


def _expiration_due(rule: LifecycleRule, written: datetime | None) -> datetime | None:
    """When an Expiration rule takes the current object written at ``written``."""
    if rule.expiration_days is not None:
        return eligible_at(written, rule.expiration_days) if written else None
    if rule.expiration_date is not None:
        if written is None:
            return rule.expiration_date
        # Objects written after the rule's date are taken at the next daily run.
        return max(rule.expiration_date, eligible_at(written, 0))
    return None


# -- what verify saw ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Observation:
    """What ``verify`` saw of one entry's key, for dating lifecycle actions.

    ``gone``: the pinned version no longer exists. ``still_current``: it is the key's current
    version. ``noncurrent_since``: when it stopped being current (its successor's
    LastModified), ``exact`` when the successor itself was seen (a listing), False when only
    the key's current version was (a HEAD). ``newer_noncurrent``: noncurrent versions newer
    than the pinned one (listings only). ``live_modified``: the current object's LastModified.
    """

    still_current: bool = False
    noncurrent_since: datetime | None = None
    exact: bool = False
    newer_noncurrent: int | None = None
    gone: bool = False
    live_modified: datetime | None = None


def observe_versions(entry: ManifestEntry, history: Sequence[ObjectStat]) -> Observation:
    """An observation from every version and delete marker of the entry's key, as a listing
    returns them (versions newest first)."""
    live = next((s for s in history if s.is_latest and not s.is_delete_marker), None)
    live_modified = live.last_modified if live else None
    if entry.version_id is None:
        return Observation(still_current=live is not None, live_modified=live_modified)
    versions = [s for s in history if not s.is_delete_marker]
    index = next((i for i, s in enumerate(versions) if s.version_id == entry.version_id), None)
    if index is None:
        return Observation(gone=True, live_modified=live_modified)
    pinned = versions[index]
    if pinned.is_latest:
        return Observation(still_current=True, live_modified=live_modified)
    newer = versions[:index]
    times = [s.last_modified for s in newer if s.last_modified is not None]
    start = pinned.last_modified
    times += [m.last_modified for m in history if m.is_delete_marker
              and m.last_modified is not None and (start is None or m.last_modified >= start)]
    return Observation(
        noncurrent_since=min(times) if times else None,
        exact=bool(times),
        newer_noncurrent=sum(1 for s in newer if not s.is_latest),
        live_modified=live_modified,
    )


def observe_head(entry: ManifestEntry, latest: ObjectStat | None,
                 pinned: ObjectStat | None) -> Observation:
    """An observation from a HEAD of the key's current version (``latest``, possibly a delete
    marker) and of the pinned version (None when it does not exist)."""
    live = latest if latest is not None and not latest.is_delete_marker else None
    live_modified = live.last_modified if live else None
    if entry.version_id is None:
        return Observation(still_current=live is not None, live_modified=live_modified)
    if pinned is None:
        return Observation(gone=True, live_modified=live_modified)
    if latest is not None and latest.version_id == entry.version_id:
        return Observation(still_current=True, live_modified=live_modified)
    since = latest.last_modified if latest is not None else None
    return Observation(noncurrent_since=since, live_modified=live_modified)


# -- warnings -----------------------------------------------------------------------------


class BucketWarning(BaseModel):
    """One thing a bucket will do to the data a version pinned.

    ``entries``: how many entries of the version it covers; ``first_date``: the earliest date
    any of them becomes eligible for deletion (None when none has a date yet, e.g. all are
    still current), with ``date_basis`` saying how it was computed; ``may_apply``: the rule
    filters by object tags (or size) reftrack cannot check, so it may not cover them.
    """

    model_config = ConfigDict(frozen=True)

    bucket: str
    kind: WarningKind
    rule_id: str | None = None
    entries: int = 0
    first_date: datetime | None = None
    date_basis: DateBasis | None = None
    may_apply: bool = False
    message: str


@dataclass
class _BucketState:
    uri: str
    rules: list[LifecycleRule] = field(default_factory=list)
    versioning: Versioning = "unknown"
    problems: list[str] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)  # entry path -> object key


def _read_bucket(backend: RuleBackend, bucket: str) -> _BucketState:
    state = _BucketState(uri=f"s3://{bucket}")
    try:
        state.rules = backend.lifecycle_rules(bucket)
    except BucketAccessDenied as exc:
        state.problems.append(f"its lifecycle configuration cannot be read ({exc}; needs "
                              "s3:GetLifecycleConfiguration)")
    except ReftrackError as exc:
        state.problems.append(f"its lifecycle configuration cannot be read ({exc})")
    try:
        state.versioning = backend.versioning(bucket)
    except ReftrackError as exc:
        state.problems.append(f"its versioning state cannot be read ({exc})")
    else:
        if state.versioning == "unknown":
            state.problems.append("its versioning state cannot be read (access denied; needs "
                                  "s3:GetBucketVersioning)")
    return state


def bucket_warnings(
    manifest: Manifest,
    backends: Backends,
    *,
    observations: Mapping[str, Observation] | None = None,
    now: datetime | None = None,
    protected: bool = False,
) -> list[BucketWarning]:
    """The lifecycle and versioning warnings for every S3 bucket of ``manifest``: one
    ``GetBucketLifecycleConfiguration`` and at most one ``GetBucketVersioning`` per bucket.
    ``observations`` (entry path -> what ``verify`` saw) sharpen the dates; without them
    they are the earliest possible. ``protected``: the version carries legal holds
    (``reftrack protect``), which no lifecycle rule can override; the warnings say so. Never
    raises for a bucket it cannot ask: that becomes a ``rules_unknown`` warning."""
    observations = observations or {}
    now = now or datetime.now(UTC)
    by_bucket: dict[str, list[ManifestEntry]] = defaultdict(list)
    keys: dict[str, str] = {}
    for entry in manifest.sorted_entries():
        try:
            ref = parse_uri(entry.ref)
        except ReftrackError:
            continue
        if ref.scheme == "s3":
            by_bucket[ref.bucket].append(entry)
            keys[entry.path] = ref.key
    if not by_bucket:
        return []
    backend = backends.for_scheme("s3")
    if not isinstance(backend, RuleBackend):  # pragma: no cover - S3 always is
        return []
    buckets = sorted(by_bucket)
    with ThreadPoolExecutor(max_workers=min(8, len(buckets))) as pool:
        states = list(pool.map(lambda b: _read_bucket(backend, b), buckets))
    out: list[BucketWarning] = []
    for state in states:
        entries = by_bucket[state.uri.removeprefix("s3://")]
        state.keys = keys
        out.extend(_warnings_for(state, entries, observations, now, protected))
    return out


def _warnings_for(state: _BucketState, entries: list[ManifestEntry],
                  observations: Mapping[str, Observation], now: datetime,
                  protected: bool) -> list[BucketWarning]:
    out: list[BucketWarning] = []
    if state.problems:
        out.append(BucketWarning(
            bucket=state.uri, kind="rules_unknown", entries=len(entries),
            message=f"{state.uri}: {'; '.join(state.problems)}: rules reftrack cannot see may "
                    f"still delete data pinned by this version ({len(entries)} entries)",
        ))
    unpinned = [e for e in entries if e.version_id is None]
    if state.versioning == "suspended":
        if unpinned:
            text = (f"{len(unpinned)} entries recorded without a version id lose their bytes "
                    "on the next overwrite or delete of their key (it replaces the 'null' "
                    "version)")
        else:
            text = ("the entries pinned by version id are kept, but new writes are no longer "
                    "versioned, so versions logged from now on cannot be pinned")
        out.append(BucketWarning(
            bucket=state.uri, kind="versioning_suspended", entries=len(unpinned),
            message=f"{state.uri}: versioning is suspended: {text}; re-enable it (aws s3api "
                    "put-bucket-versioning --versioning-configuration Status=Enabled)",
        ))
    elif state.versioning == "disabled":
        out.append(BucketWarning(
            bucket=state.uri, kind="versioning_disabled", entries=len(unpinned),
            message=f"{state.uri}: versioning is not enabled: an overwrite or delete destroys "
                    f"the bytes of the {len(unpinned)} entries at once (no version was "
                    "pinned); enable it (aws s3api put-bucket-versioning "
                    "--versioning-configuration Status=Enabled) and log a new version",
        ))
    for rule in state.rules:
        if rule.noncurrent_days is not None:
            warning = _noncurrent_warning(state, rule, entries, observations, now, protected)
            if warning is not None:
                out.append(warning)
        if rule.expiration_days is not None or rule.expiration_date is not None:
            warning = _expiration_warning(state, rule, unpinned, observations, now)
            if warning is not None:
                out.append(warning)
    return out


def _rule_name(rule: LifecycleRule) -> str:
    return f"lifecycle rule {rule.id!r}" if rule.id else "a lifecycle rule (no id)"


def _covered(state: _BucketState, rule: LifecycleRule, entries: list[ManifestEntry]
             ) -> tuple[list[ManifestEntry], bool]:
    """The entries ``rule`` may cover, and whether that is only a "maybe"."""
    covered: list[ManifestEntry] = []
    maybe = False
    for entry in entries:
        applies = rule.applies_to(state.keys[entry.path], entry.size)
        if applies != "no":
            covered.append(entry)
            maybe = maybe or applies == "maybe"
    return covered, maybe


def _date_text(date: datetime, now: datetime, basis: DateBasis | None = None) -> str:
    text = f"{date:%Y-%m-%d} 00:00 UTC"
    if date > now:
        return text
    if basis == "earliest":
        return text + " (past: if it was overwritten by then it may be gone already; " \
            "reftrack verify tells)"
    return text + " (already due: S3 may have deleted it)"


def _noncurrent_warning(state: _BucketState, rule: LifecycleRule, entries: list[ManifestEntry],
                        observations: Mapping[str, Observation], now: datetime,
                        protected: bool) -> BucketWarning | None:
    days = rule.noncurrent_days or 0
    keep = rule.newer_noncurrent_versions
    covered, maybe = _covered(state, rule, [e for e in entries if e.version_id is not None])
    expirers = [r for r in state.rules if r is not rule and r.expiration_days is not None]
    dated: list[tuple[datetime, DateBasis]] = []
    current = retained = affected = 0
    for entry in covered:
        seen = observations.get(entry.path)
        if seen is not None and seen.gone:
            continue  # already lost: verify reports it as version_missing
        affected += 1
        if seen is None:
            if entry.last_modified is not None:
                dated.append((eligible_at(entry.last_modified, days), "earliest"))
            else:
                current += 1
        elif seen.still_current:
            made_noncurrent = _made_noncurrent(expirers, entry, state.keys[entry.path])
            if made_noncurrent is not None:
                dated.append((eligible_at(made_noncurrent, days), "expiration_rule"))
            else:
                current += 1
        elif keep is not None and seen.newer_noncurrent is not None \
                and seen.newer_noncurrent < keep:
            retained += 1
        elif seen.noncurrent_since is not None:
            dated.append((eligible_at(seen.noncurrent_since, days),
                          "successor" if seen.exact else "current_version"))
        elif entry.last_modified is not None:
            dated.append((eligible_at(entry.last_modified, days), "earliest"))
        else:
            current += 1
    if affected == 0:
        return None
    kept = f", keeping the {keep} newest noncurrent versions" if keep else ""
    parts = [f"{state.uri}: {_rule_name(rule)} deletes object versions {days} days after they "
             f"become noncurrent{kept}; it covers {affected} pinned entries of this version"]
    if maybe:
        parts[0] += " (if their tags or sizes match its filter)"
    first: tuple[datetime, DateBasis] | None = min(dated) if dated else None
    if first is not None:
        date, basis = first
        why = {
            "successor": f"{days} days after it was overwritten",
            "current_version": f"{days} days after the key's current version was written; "
                               "earlier if it was overwritten more than once",
            "earliest": f"at the earliest: {days} days after it was written, if it was "
                        "overwritten at once",
            "expiration_rule": "an Expiration rule makes it noncurrent first",
        }.get(basis, "")
        parts.append(f"the first goes on {_date_text(date, now, basis)} ({why})")
    if current:
        parts.append(f"{current} still current: each goes {days} days after it is overwritten "
                     "or deleted")
    if retained:
        parts.append(f"{retained} kept while fewer than {keep} newer noncurrent versions exist")
    if protected:
        parts.append("but the version is protected: a legal hold is on its pinned versions, "
                     "and no rule deletes them while it is on (reftrack unprotect lifts it)")
    else:
        parts.append("protect the version (reftrack protect, on a bucket with Object Lock) or "
                     "exclude the prefix from the rule")
    return BucketWarning(
        bucket=state.uri, kind="noncurrent_expiration", rule_id=rule.id or None,
        entries=affected, first_date=first[0] if first else None,
        date_basis=first[1] if first else None, may_apply=maybe, message="; ".join(parts),
    )


def _made_noncurrent(expirers: list[LifecycleRule], entry: ManifestEntry,
                     key: str) -> datetime | None:
    """When an Expiration rule that surely covers ``entry`` puts a delete marker on it."""
    dues = [_expiration_due(r, entry.last_modified) for r in expirers
            if r.applies_to(key, entry.size) == "yes"]
    known = [d for d in dues if d is not None]
    return min(known) if known else None


def _expiration_warning(state: _BucketState, rule: LifecycleRule, unpinned: list[ManifestEntry],
                        observations: Mapping[str, Observation], now: datetime
                        ) -> BucketWarning | None:
    covered, maybe = _covered(state, rule, unpinned)
    if not covered:
        return None
    dates: list[datetime] = []
    for entry in covered:
        seen = observations.get(entry.path)
        written = entry.last_modified or (seen.live_modified if seen else None)
        due = _expiration_due(rule, written)
        if due is not None:
            dates.append(due)
    when = (f"{rule.expiration_days} days after they are written"
            if rule.expiration_days is not None
            else f"from {rule.expiration_date:%Y-%m-%d}")
    effect = {
        "disabled": "deleted for good (the bucket is not versioned)",
        "suspended": "replaced by a delete marker, which removes the 'null' version for good",
    }.get(state.versioning, "hidden behind a delete marker, and reftrack recorded no version "
                            "id to get them back")
    text = (f"{state.uri}: {_rule_name(rule)} expires current objects {when}: they are "
            f"{effect}; it covers {len(covered)} entries recorded without a version id")
    if maybe:
        text += " (if their tags or sizes match its filter)"
    first = min(dates) if dates else None
    if first is not None:
        text += f"; the first goes on {_date_text(first, now)}"
    return BucketWarning(
        bucket=state.uri, kind="expiration", rule_id=rule.id or None, entries=len(covered),
        first_date=first,
        date_basis=(None if first is None else
                    "written" if rule.expiration_days is not None else "rule_date"),
        may_apply=maybe, message=text,
    )
