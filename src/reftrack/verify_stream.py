"""What lets :func:`~reftrack.verify.verify_manifest` run in memory that does not grow with
the number of entries: the manifest read as a stream of path-sorted entries
(:class:`EntrySource`: a :class:`~reftrack.manifest.Manifest` in memory, or a stored one
from :meth:`Registry.stream_manifest <reftrack.registry.Registry.stream_manifest>`), cut in
windows and checked one window at a time (:class:`Windows`: only where listings may start,
the report and the bucket warnings' tallies carry over from one to the next); random samples
drawn entry by entry; earlier results looked up a window at a time; and a report that counts
``ok`` results instead of listing them beyond a size. Split from :mod:`reftrack.verify`."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .bucketrules import BucketWarning, WarningTally
from .manifest import Manifest, ManifestEntry, ManifestSource
from .progress import Progress
from .uri import RefURI
from .verify_plan import ListingId, _Item, _Plan, _plan, _Seen
from .verify_report import EntryResult, Status

if TYPE_CHECKING:
    from .verify import _Verifier

__all__ = ["EntrySource", "Previous", "Windows"]

Previous = Mapping[str, EntryResult] | Callable[[list[str]], Mapping[str, EntryResult]]
"""Earlier results to reuse: path -> result, or a function giving those of a list of paths
(asked once per window of entries, with the paths of that window)."""


@runtime_checkable
class EntrySource(Protocol):
    """A manifest as the verifier reads it: its header facts, and its entries in path order
    from :meth:`entries` (which may raise :class:`~reftrack.errors.ManifestError` when the
    iteration ends: the entries did not match the header's count or digest)."""

    @property
    def sources(self) -> Sequence[ManifestSource]: ...

    @property
    def total(self) -> int: ...

    @property
    def digest(self) -> str: ...

    def entries(self) -> Iterator[ManifestEntry]: ...


class _InMemory:
    """A :class:`Manifest` already in memory, as an :class:`EntrySource`."""

    def __init__(self, manifest: Manifest) -> None:
        self._manifest = manifest
        self.sources: Sequence[ManifestSource] = manifest.sources
        self.total = len(manifest)
        self.digest = manifest.digest

    def entries(self) -> Iterator[ManifestEntry]:
        return self._manifest.iter_sorted()


def as_source(manifest: Manifest | EntrySource) -> EntrySource:
    return _InMemory(manifest) if isinstance(manifest, Manifest) else manifest


def windows(entries: Iterator[ManifestEntry], size: int
            ) -> Iterator[tuple[list[ManifestEntry], bool]]:
    """``entries`` in lists of ``size`` (the last may be shorter), each with whether it is
    the last one. One entry is read ahead, so the end of the stream (and the count and
    digest checks a stored manifest makes there) is reached before the last window is
    handed out."""
    ahead = next(entries, None)
    while ahead is not None:
        window = [ahead, *islice(entries, size - 1)]
        ahead = next(entries, None)
        yield window, ahead is None
        del window  # the caller drops its own before asking for the next one


def first_entries(source: EntrySource, count: int) -> Iterator[ManifestEntry]:
    """The first ``count`` entries of ``source`` read again (no check at the end: the
    stream was read whole before)."""
    if count <= 0:
        return
    stream = source.entries()
    try:
        yield from islice(stream, count)
    finally:
        close = getattr(stream, "close", None)
        if callable(close):
            close()


class Sampler:
    """A random sample of ``size`` of ``total`` entries, decided entry by entry in manifest
    order (selection sampling, Knuth's Algorithm S): every subset of that size is equally
    likely, exactly ``size`` are taken, nothing is held but two counters, and the same seed
    takes the same entries (so an interrupted sample resumes with the same ones)."""

    def __init__(self, total: int, size: int, seed: int | None) -> None:
        self._random = random.Random(seed).random
        self._left = total
        self._needed = size

    def take(self) -> bool:
        """Whether the next entry is in the sample."""
        if self._left <= 0 or self._needed <= 0:
            self._left -= 1
            return False
        taken = self._left * self._random() < self._needed
        self._left -= 1
        if taken:
            self._needed -= 1
        return taken


def lookup(previous: Previous | None
           ) -> Callable[[list[str]], Mapping[str, EntryResult]] | None:
    """``previous`` as a function of a window's paths (None: nothing to reuse)."""
    if previous is None:
        return None
    if callable(previous):
        return previous
    if not previous:
        return None
    known = previous
    return lambda paths: {p: known[p] for p in paths if p in known}


class Collected:
    """The results that go into the report, in path order: every one when ``keep_all``,
    else the ``ok`` ones only counted (``omitted_ok`` checked now, ``omitted_reused_ok``
    reused); whatever drifted, failed or could not be checked is always kept."""

    def __init__(self, *, keep_all: bool) -> None:
        self.keep_all = keep_all
        self.entries: list[EntryResult] = []
        self.omitted_ok = 0
        self.omitted_reused_ok = 0

    def add(self, results: list[EntryResult]) -> None:
        if self.keep_all:
            self.entries.extend(results)
            return
        for result in results:
            if result.status is not Status.OK:
                self.entries.append(result)
            elif result.reused:
                self.omitted_reused_ok += 1
            else:
                self.omitted_ok += 1


class Windows:
    """One verification, a window of entries at a time: what carries over from a window to
    the next (where listings may start, the report, the bucket warnings' tallies), never
    the entries of a window once it is done."""

    def __init__(self, source: EntrySource, verifier: _Verifier, progress: Progress,
                 listable: Callable[[str], bool], *, sampler: Sampler | None,
                 earlier: Callable[[list[str]], Mapping[str, EntryResult]] | None,
                 collected: Collected, tally: WarningTally | None) -> None:
        self.source = source
        self.verifier = verifier
        self.listable = listable
        self.progress = progress
        self.sampler = sampler
        self.earlier = earlier
        self.collected = collected
        self.tally = tally
        self.floors: dict[ListingId, str] = {}
        self.anything = False
        """Whether any entry was checked (else no bucket rules are asked for)."""
        self.untallied = 0
        """Leading entries not folded into the bucket warnings (nothing checked yet)."""

    def run(self, pool: ThreadPoolExecutor, window: list[ManifestEntry], *,
            last: bool) -> None:
        """Check one window (the entries the sample takes, and no reusable result covers);
        its results go to the report, what was seen to the bucket warnings."""
        sampler = self.sampler
        chosen = window if sampler is None else [e for e in window if sampler.take()]
        reused: dict[str, EntryResult] = {}
        if self.earlier is not None and chosen:
            reused = {path: result.model_copy(update={"reused": True})
                      for path, result in self.earlier([e.path for e in chosen]).items()}
            self.progress.advance(len(reused))
        wanted = {e.path for e in chosen} - reused.keys()
        refs: list[RefURI] | None = None
        if wanted:
            self.anything = True
            plan = _plan(window, self.source.sources, self.listable, _path_in(wanted),
                         floors=self.floors)
            self.floors = {k: v for k, v in self.floors.items() if k[3]} | plan.tops
            refs = plan.refs
            check_window(pool, self.verifier, plan, last=last)
            del plan
        results, observations = self.verifier.take()
        results.update(reused)
        self.collected.add([results[path] for path in sorted(results)])
        if self.tally is not None and self.anything:
            self.tally.add(window, observations, refs=refs)
        elif self.tally is not None:
            self.untallied += len(window)

    def warnings(self) -> list[BucketWarning]:
        if self.tally is None or not self.anything:
            return []
        # The windows before the first one with something to check (all reused) were not
        # folded in, so that nothing is asked when nothing is checked: read them again.
        self.tally.add(first_entries(self.source, self.untallied))
        return self.tally.warnings()


def check_window(pool: ThreadPoolExecutor, verifier: _Verifier, plan: _Plan, *,
                 last: bool) -> None:
    """Check one window's plan. Results are decided (and streamed) entry by entry: a
    listing's entries once it is done (here, unless they need another request), every
    other entry as soon as it was HEADed. Every window but the last stops its listings
    after its own keys."""
    for listing in plan.listings:
        listing.stop_after = None if last else listing.last_key
    leftovers: list[_Item] = list(plan.heads)
    seen: list[_Seen | None] = []
    for remaining, listed in pool.map(verifier.run_listing, plan.listings):
        leftovers.extend(remaining)
        seen.extend(listed)
    asking: list[_Seen | None] = []
    for one in seen:
        if verifier.needs_request(one):
            asking.append(one)
        else:
            verifier.finish(one)
            verifier.flush(full_only=True)
    del seen
    for _ in pool.map(verifier.finish, asking):
        verifier.flush(full_only=True)
    for _ in pool.map(verifier.check, leftovers):
        verifier.flush(full_only=True)


def _path_in(paths: set[str]) -> Callable[[ManifestEntry], bool]:
    return lambda entry: entry.path in paths
