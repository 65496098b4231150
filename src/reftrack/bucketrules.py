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
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from .backends import Backends, ObjectStat, Versioning
from .backends.base import LifecycleRule
from .errors import BucketAccessDenied, ReftrackError
from .manifest import Manifest, ManifestEntry
from .uri import RefURI, parse_uri

__all__ = [
    "BucketWarning",
    "Observation",
    "RuleBackend",
    "WarningTally",
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
class _NoncurrentTally:
    """What one NoncurrentVersionExpiration rule does to the entries seen so far: counts
    and the earliest date, never the entries themselves."""

    rule: LifecycleRule
    expirers: list[LifecycleRule]
    """The bucket's other rules with an Expiration in days (they make a current version
    noncurrent first)."""
    affected: int = 0
    maybe: bool = False
    current: int = 0
    retained: int = 0
    first: tuple[datetime, DateBasis] | None = None

    def _date(self, date: datetime, basis: DateBasis) -> None:
        if self.first is None or (date, basis) < self.first:
            self.first = (date, basis)

    def add(self, entry: ManifestEntry, key: str, seen: Observation | None) -> None:
        rule = self.rule
        applies = rule.applies_to(key, entry.size)
        if applies == "no":
            return
        self.maybe = self.maybe or applies == "maybe"
        if seen is not None and seen.gone:
            return  # already lost: verify reports it as version_missing
        self.affected += 1
        days = rule.noncurrent_days or 0
        keep = rule.newer_noncurrent_versions
        if seen is None:
            if entry.last_modified is not None:
                self._date(eligible_at(entry.last_modified, days), "earliest")
            else:
                self.current += 1
        elif seen.still_current:
            made_noncurrent = _made_noncurrent(self.expirers, entry, key)
            if made_noncurrent is not None:
                self._date(eligible_at(made_noncurrent, days), "expiration_rule")
            else:
                self.current += 1
        elif keep is not None and seen.newer_noncurrent is not None \
                and seen.newer_noncurrent < keep:
            self.retained += 1
        elif seen.noncurrent_since is not None:
            self._date(eligible_at(seen.noncurrent_since, days),
                       "successor" if seen.exact else "current_version")
        elif entry.last_modified is not None:
            self._date(eligible_at(entry.last_modified, days), "earliest")
        else:
            self.current += 1


@dataclass
class _ExpirationTally:
    """What one Expiration rule does to the entries recorded without a version id."""

    rule: LifecycleRule
    covered: int = 0
    maybe: bool = False
    first: datetime | None = None

    def add(self, entry: ManifestEntry, key: str, seen: Observation | None) -> None:
        applies = self.rule.applies_to(key, entry.size)
        if applies == "no":
            return
        self.covered += 1
        self.maybe = self.maybe or applies == "maybe"
        written = entry.last_modified or (seen.live_modified if seen else None)
        due = _expiration_due(self.rule, written)
        if due is not None and (self.first is None or due < self.first):
            self.first = due


@dataclass
class _BucketState:
    uri: str
    rules: list[LifecycleRule] = field(default_factory=list)
    versioning: Versioning = "unknown"
    problems: list[str] = field(default_factory=list)
    entries: int = 0
    unpinned: int = 0
    noncurrent: list[_NoncurrentTally | None] = field(default_factory=list)
    expiration: list[_ExpirationTally | None] = field(default_factory=list)
    """Per rule (in ``rules`` order), when the rule has that action."""

    def start(self) -> None:
        """Set up a tally per rule action, once the rules are known."""
        self.noncurrent = [
            _NoncurrentTally(rule, [r for r in self.rules
                                    if r is not rule and r.expiration_days is not None])
            if rule.noncurrent_days is not None else None
            for rule in self.rules
        ]
        self.expiration = [
            _ExpirationTally(rule)
            if rule.expiration_days is not None or rule.expiration_date is not None else None
            for rule in self.rules
        ]

    def add(self, entry: ManifestEntry, key: str, seen: Observation | None) -> None:
        self.entries += 1
        pinned = entry.version_id is not None
        if not pinned:
            self.unpinned += 1
        for noncurrent, expiration in zip(self.noncurrent, self.expiration, strict=True):
            if pinned and noncurrent is not None:
                noncurrent.add(entry, key, seen)
            if not pinned and expiration is not None:
                expiration.add(entry, key, seen)


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
    state.start()
    return state


class WarningTally:
    """:func:`bucket_warnings` a batch of entries at a time, in bounded memory: each S3
    bucket's rules are read (one ``GetBucketLifecycleConfiguration``, at most one
    ``GetBucketVersioning``) when a batch first holds one of its entries, and each batch
    is folded into counts and earliest dates per bucket and rule; neither the entries nor
    their observations are kept. The batches may come in any order: the warnings are the
    same as for all the entries at once."""

    def __init__(self, backends: Backends, *, protected: bool = False) -> None:
        self._backends = backends
        self._protected = protected
        self._states: dict[str, _BucketState] = {}

    def add(self, entries: Iterable[ManifestEntry],
            observations: Mapping[str, Observation] | None = None, *,
            refs: Sequence[RefURI] | None = None) -> None:
        """Fold a batch of entries (with what ``verify`` saw of them, by entry path;
        ``refs``: their references already parsed, in the same order)."""
        observations = observations or {}
        batch: dict[str, list[tuple[ManifestEntry, str]]] = defaultdict(list)
        for index, entry in enumerate(entries):
            if refs is not None:
                ref = refs[index]
            else:
                try:
                    ref = parse_uri(entry.ref)
                except ReftrackError:
                    continue
            if ref.scheme == "s3":
                batch[ref.bucket].append((entry, ref.key))
        new = sorted(bucket for bucket in batch if bucket not in self._states)
        if new:
            backend = self._backends.for_scheme("s3")
            if not isinstance(backend, RuleBackend):  # pragma: no cover - S3 always is
                return
            with ThreadPoolExecutor(max_workers=min(8, len(new))) as pool:
                for bucket, state in zip(new, pool.map(lambda b: _read_bucket(backend, b), new),
                                         strict=True):
                    self._states[bucket] = state
        for bucket, items in batch.items():
            state = self._states[bucket]
            for entry, key in items:
                state.add(entry, key, observations.get(entry.path))

    def warnings(self, now: datetime | None = None) -> list[BucketWarning]:
        """The warnings for every bucket seen so far, by bucket."""
        now = now or datetime.now(UTC)
        out: list[BucketWarning] = []
        for bucket in sorted(self._states):
            out.extend(_warnings_for(self._states[bucket], now, self._protected))
        return out


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
    raises for a bucket it cannot ask: that becomes a ``rules_unknown`` warning.
    (:class:`WarningTally` does the same a batch of entries at a time.)"""
    tally = WarningTally(backends, protected=protected)
    tally.add(manifest.sorted_entries(), observations)
    return tally.warnings(now)


def _warnings_for(state: _BucketState, now: datetime, protected: bool) -> list[BucketWarning]:
    out: list[BucketWarning] = []
    entries, unpinned = state.entries, state.unpinned
    if state.problems:
        out.append(BucketWarning(
            bucket=state.uri, kind="rules_unknown", entries=entries,
            message=f"{state.uri}: {'; '.join(state.problems)}: rules reftrack cannot see may "
                    f"still delete data pinned by this version ({entries} entries)",
        ))
    if state.versioning == "suspended":
        if unpinned:
            text = (f"{unpinned} entries recorded without a version id lose their bytes "
                    "on the next overwrite or delete of their key (it replaces the 'null' "
                    "version)")
        else:
            text = ("the entries pinned by version id are kept, but new writes are no longer "
                    "versioned, so versions logged from now on cannot be pinned")
        out.append(BucketWarning(
            bucket=state.uri, kind="versioning_suspended", entries=unpinned,
            message=f"{state.uri}: versioning is suspended: {text}; re-enable it (aws s3api "
                    "put-bucket-versioning --versioning-configuration Status=Enabled)",
        ))
    elif state.versioning == "disabled":
        out.append(BucketWarning(
            bucket=state.uri, kind="versioning_disabled", entries=unpinned,
            message=f"{state.uri}: versioning is not enabled: an overwrite or delete destroys "
                    f"the bytes of the {unpinned} entries at once (no version was "
                    "pinned); enable it (aws s3api put-bucket-versioning "
                    "--versioning-configuration Status=Enabled) and log a new version",
        ))
    for noncurrent, expiration in zip(state.noncurrent, state.expiration, strict=True):
        if noncurrent is not None:
            warning = _noncurrent_warning(state, noncurrent, now, protected)
            if warning is not None:
                out.append(warning)
        if expiration is not None:
            warning = _expiration_warning(state, expiration, state.versioning, now)
            if warning is not None:
                out.append(warning)
    return out


def _rule_name(rule: LifecycleRule) -> str:
    return f"lifecycle rule {rule.id!r}" if rule.id else "a lifecycle rule (no id)"


def _date_text(date: datetime, now: datetime, basis: DateBasis | None = None) -> str:
    text = f"{date:%Y-%m-%d} 00:00 UTC"
    if date > now:
        return text
    if basis == "earliest":
        return text + " (past: if it was overwritten by then it may be gone already; " \
            "reftrack verify tells)"
    return text + " (already due: S3 may have deleted it)"


def _noncurrent_warning(state: _BucketState, tally: _NoncurrentTally, now: datetime,
                        protected: bool) -> BucketWarning | None:
    rule = tally.rule
    days = rule.noncurrent_days or 0
    keep = rule.newer_noncurrent_versions
    affected, maybe, current, retained = tally.affected, tally.maybe, tally.current, \
        tally.retained
    if affected == 0:
        return None
    kept = f", keeping the {keep} newest noncurrent versions" if keep else ""
    parts = [f"{state.uri}: {_rule_name(rule)} deletes object versions {days} days after they "
             f"become noncurrent{kept}; it covers {affected} pinned entries of this version"]
    if maybe:
        parts[0] += " (if their tags or sizes match its filter)"
    first = tally.first
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


def _expiration_warning(state: _BucketState, tally: _ExpirationTally, versioning: Versioning,
                        now: datetime) -> BucketWarning | None:
    rule, covered, maybe, first = tally.rule, tally.covered, tally.maybe, tally.first
    if not covered:
        return None
    when = (f"{rule.expiration_days} days after they are written"
            if rule.expiration_days is not None
            else f"from {rule.expiration_date:%Y-%m-%d}")
    effect = {
        "disabled": "deleted for good (the bucket is not versioned)",
        "suspended": "replaced by a delete marker, which removes the 'null' version for good",
    }.get(versioning, "hidden behind a delete marker, and reftrack recorded no version "
                            "id to get them back")
    text = (f"{state.uri}: {_rule_name(rule)} expires current objects {when}: they are "
            f"{effect}; it covers {covered} entries recorded without a version id")
    if maybe:
        text += " (if their tags or sizes match its filter)"
    if first is not None:
        text += f"; the first goes on {_date_text(first, now)}"
    return BucketWarning(
        bucket=state.uri, kind="expiration", rule_id=rule.id or None, entries=covered,
        first_date=first,
        date_basis=(None if first is None else
                    "written" if rule.expiration_days is not None else "rule_date"),
        may_apply=maybe, message=text,
    )
