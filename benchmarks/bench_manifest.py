"""Benchmark reftrack's CPU path at scale: build, store, read back and diff a manifest of
1,000,000 entries made from a synthetic bucket listing. No network, no cloud.

Phases, each timed (wall and CPU seconds), with the process's peak RSS (``getrusage``
high-water mark) after it:

  build     a synthetic S3 listing (N objects under ``s3://bench-bucket/data/``, in key order
            as S3 lists them, 10% with an older version that is skipped; version ids, ETags and
            sizes from a seeded RNG: the same every run) through the code ``add_reference``
            uses: ``references.reference_prefix`` (a row per object) and
            ``Manifest.add_all``. The time spent inside the synthetic listing itself (making up
            the ``ObjectStat`` objects a backend's scan would yield) is measured and taken off
  digest    ``manifest.digest``: SHA-256 of the canonical form of every entry
  store     ``Registry.log_version`` into a fresh SQLite registry (gzip JSON Lines written a
            batch at a time through a spooled file, stored in 4 MiB chunks)
  load      ``Registry.load_manifest``: read back, every entry checked (schema, safe path),
            then the count and digest. The built manifest is dropped first, so one manifest
            is in memory at a time, as when another process reads a version
  derive    setup (not in the total): a second manifest from the loaded one with 1% of the
            entries given a new version id and ETag, 0.1% removed and 0.1% added (unchanged
            entries are shared with the loaded manifest, so it costs little memory)
  diff      ``loaded.diff(second)``: the counts must be exactly those

Targets at N = 1,000,000: total (build + digest + store + load + diff, wall time) under 10 s
and peak RSS under 1 GiB. Exit status 0 when the results are right and, at 1,000,000 entries
or more, the targets are met; 1 otherwise, saying which (2 for bad arguments). Smaller runs
check results only. The output also gives the load average (other processes competing for the
CPUs inflate wall times: compare the CPU column) and a calibration time (a fixed Python loop)
to compare machines.

    python benchmarks/bench_manifest.py                 # 1,000,000 entries, ~20 s, ~0.8 GiB
    python benchmarks/bench_manifest.py --entries 2000 --json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from reftrack.backends import ObjectStat
from reftrack.manifest import Manifest, ManifestEntry
from reftrack.manifest_entry import Row, row_of
from reftrack.progress import NullProgress
from reftrack.references import reference_prefix
from reftrack.registry import Registry
from reftrack.uri import RefURI

TARGET_ENTRIES = 1_000_000
TARGET_SECONDS = 10.0
TARGET_RSS = 1 << 30  # 1 GiB
BUCKET = "bench-bucket"
PREFIX = "data/"
SHARDS = 256
IN_TOTAL = ("build", "digest", "store", "load", "diff")
CHANGED_EVERY = 100  # 1% of the entries get a new version id and ETag
REMOVED_EVERY = 1000  # 0.1% removed (and as many added)


# -- the synthetic listing ------------------------------------------------------------------


class SyntheticBucket:
    """Stands in for a versioned S3 bucket behind the backend protocol: ``scan`` yields what
    a ListObjectVersions listing would (keys in order, the latest version of a key first),
    ``versioning`` says enabled. Deterministic for a given ``seed``."""

    hashes_content = False
    can_scan = True

    def __init__(self, entries: int, seed: int) -> None:
        self.entries = entries
        self.seed = seed
        self.requests = 0
        self.seconds = 0.0
        """Time spent making up the listing (inside ``scan``), not by reftrack."""

    def versioning(self, bucket: str) -> str:
        return "enabled"

    def keys(self) -> Iterator[tuple[int, str]]:
        """``(i, key)`` in key order: shard by shard, 0 <= i < entries."""
        per_shard = -(-self.entries // SHARDS)
        for shard in range(SHARDS):
            for i in range(shard * per_shard, min(self.entries, (shard + 1) * per_shard)):
                yield i, f"{PREFIX}shard-{shard:03d}/part-{i:07d}.parquet"

    def scan(self, prefix: RefURI, *, all_versions: bool = False, recursive: bool = True,
             page_limit: int | None = None) -> Iterator[ObjectStat]:
        rng = random.Random(self.seed)
        bits = rng.getrandbits
        base = datetime(2024, 1, 1, tzinfo=UTC)
        clock = time.perf_counter
        started = clock()
        for i, key in self.keys():
            stat = ObjectStat(
                uri=RefURI("s3", BUCKET, key, f"{bits(128):032x}"), size=bits(30),
                etag=f"{bits(128):032x}", last_modified=base + timedelta(seconds=i),
            )
            old = None
            if all_versions and i % 10 == 0:  # 10% were overwritten once: an older version
                old = ObjectStat(
                    uri=RefURI("s3", BUCKET, key, f"{bits(128):032x}"), size=bits(30),
                    etag=f"{bits(128):032x}", last_modified=base, is_latest=False,
                )
            self.seconds += clock() - started
            yield stat
            if old is not None:
                yield old
            started = clock()
        self.seconds += clock() - started


def build(bucket: SyntheticBucket) -> Manifest:
    """What ``Artifact.add_reference("s3://bench-bucket/data/")`` does with the listing."""
    prefix = RefURI("s3", BUCKET, PREFIX)
    entries, source = reference_prefix(
        bucket, prefix, None, True, 10 * bucket.entries, NullProgress(),  # type: ignore[arg-type]
        original=prefix, hint="",
    )
    manifest = Manifest()
    manifest.add_rows(entries)
    manifest.sources.append(source)
    return manifest


def store(registry: Registry, manifest: Manifest) -> Any:
    return registry.log_version(project="bench", name="data", type="dataset",
                                manifest=manifest)


def stored_bytes(registry: Registry, digest: str) -> int:
    """The stored (gzip) size of a manifest, from the registry's own bookkeeping."""
    with registry.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT stored_bytes FROM manifests WHERE digest = :d"),
                           {"d": digest}).first()
    return int(row[0]) if row else 0


def derive(manifest: Manifest) -> tuple[Manifest, dict[str, int]]:
    """A second version: every CHANGED_EVERY-th entry with a new version id and ETag, every
    REMOVED_EVERY-th (offset 3) removed, as many new paths added. Deterministic."""
    removed = len(range(3, len(manifest), REMOVED_EVERY))
    changed = len(range(7, len(manifest), CHANGED_EVERY))

    def rows() -> Iterator[Row]:
        for i, row in enumerate(manifest.sorted_rows()):
            if i % REMOVED_EVERY == 3:
                continue
            if i % CHANGED_EVERY == 7:
                etag = f"{i:032x}"
                row = (row[0], row[1], f"{i:032x}".replace("0", "v"), etag, row[4], etag,
                       row[6], row[7])
            yield row
        for i in range(removed):
            yield row_of(ManifestEntry(
                path=f"shard-new/part-{i:07d}.parquet",
                ref=f"s3://{BUCKET}/{PREFIX}shard-new/part-{i:07d}.parquet",
                version_id=f"{i:032x}", etag=f"{i:032x}", size=i, digest=f"{i:032x}",
            ))

    second = Manifest(sources=manifest.sources)
    second.add_rows(list(rows()))
    return second, {"added": removed, "removed": removed, "changed": changed,
                    "unchanged": len(manifest) - removed - changed}


# -- measuring ------------------------------------------------------------------------------


def calibration() -> float:
    """Seconds for a fixed pure-Python loop (best of 3): how fast this machine runs Python
    bytecode, to compare runs across machines (it says nothing of allocation costs)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        sum(i * i for i in range(3_000_000))
        best = min(best, time.perf_counter() - t0)
    return best


def peak_rss() -> int:
    """The process's peak resident set size in bytes (ru_maxrss: KiB on Linux, bytes on
    macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class Phases:
    def __init__(self, say: Callable[[str], None], trace: bool) -> None:
        self.say = say
        self.trace = trace
        self.rows: list[dict[str, Any]] = []

    def discount(self, seconds: float, note: str) -> None:
        """Take ``seconds`` (not reftrack's) off the last phase's wall and CPU time."""
        row = self.rows[-1]
        row["seconds"] = round(max(0.0, row["seconds"] - seconds), 3)
        row["cpu_seconds"] = round(max(0.0, row["cpu_seconds"] - seconds), 3)
        row["excluded_seconds"] = round(seconds, 3)
        row["note"] = note

    def run(self, name: str, func: Callable[..., Any], *args: Any, note: str = "") -> Any:
        if self.trace:
            tracemalloc.reset_peak()
        t0, c0 = time.perf_counter(), time.process_time()
        result = func(*args)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        row: dict[str, Any] = {
            "phase": name, "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
            "peak_rss": peak_rss(), "in_total": name in IN_TOTAL, "note": note,
        }
        if self.trace:
            row["traced_peak"] = tracemalloc.get_traced_memory()[1]
        self.rows.append(row)
        self.say(f"  {name}: {seconds:.2f}s (CPU {cpu:.2f}s), peak RSS {mib(row['peak_rss'])}")
        return result


def mib(n: int) -> str:
    return f"{n / (1 << 20):,.0f} MiB"


def render(rows: list[dict[str, Any]], total: float, cpu: float, trace: bool) -> str:
    headers = ["phase", "seconds", "CPU s", "peak RSS", *(["traced peak"] if trace else []),
               "note"]
    lines = []
    for row in rows:
        phase = row["phase"] if row["in_total"] else f"({row['phase']})"
        cells = [phase, f"{row['seconds']:.2f}", f"{row['cpu_seconds']:.2f}",
                 mib(row["peak_rss"])]
        if trace:
            cells.append(mib(row["traced_peak"]))
        lines.append([*cells, row["note"]])
    lines.append(["total", f"{total:.2f}", f"{cpu:.2f}", mib(max(r["peak_rss"] for r in rows)),
                  *([""] if trace else []), "build + digest + store + load + diff"])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(widths[i]) if i in (0, len(cells) - 1) else
                         c.rjust(widths[i]) for i, c in enumerate(cells)).rstrip()

    return "\n".join([fmt(headers), fmt(["-" * w for w in widths]), *map(fmt, lines[:-1]),
                      fmt(["-" * w for w in widths]), fmt(lines[-1])])


# -- the benchmark --------------------------------------------------------------------------


def run(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    n = args.entries
    problems: list[str] = []

    def check(condition: bool, what: str) -> None:
        if not condition:
            problems.append(what)
            say(f"  UNEXPECTED: {what}")

    baseline = peak_rss()
    if args.tracemalloc:
        tracemalloc.start()
    phases = Phases(say, args.tracemalloc)
    bucket = SyntheticBucket(n, args.seed)
    with tempfile.TemporaryDirectory(prefix="reftrack-bench-manifest-") as tmp:
        registry = Registry(str(Path(tmp) / "registry.db"))
        try:
            manifest = phases.run("build", build, bucket)
            listed = manifest.sources[0].listed
            phases.discount(bucket.seconds,
                            f"{listed:,} listed -> {n:,} entries; without the "
                            f"{bucket.seconds:.2f} s spent making up the listing")
            check(len(manifest) == n, f"built {len(manifest)} entries, expected {n}")
            digest = phases.run("digest", lambda m: m.digest, manifest)
            record, _ = phases.run("store", store, registry, manifest)
            phases.rows[-1]["note"] = f"{stored_bytes(registry, digest) / 1e6:,.1f} MB stored"
            del manifest  # another process reads it back: one manifest in memory at a time
            gc.collect()
            loaded = phases.run("load", registry.load_manifest, record.digest,
                                note="schema, safe paths, count, digest checked")
            check(loaded.digest == digest and len(loaded) == n,
                  f"loaded {len(loaded)} entries with digest {loaded.digest}, expected {n} "
                  f"with {digest}")
            second, expected = phases.run(
                "derive", derive, loaded,
                note="setup: 1% changed, 0.1% removed, 0.1% added",
            )
            diff = phases.run("diff", loaded.diff, second)
            check(diff.summary == expected, f"diff gave {diff.summary}, expected {expected}")
            check(all(c.fields == ("version_id", "etag", "digest") for c in diff.changed),
                  "a changed entry reports other fields than version_id, etag, digest")
            phases.rows[-1]["note"] = " ".join(f"{k}={v:,}" for k, v in diff.summary.items())
        finally:
            registry.close()
    if args.tracemalloc:
        tracemalloc.stop()
    rows = phases.rows
    total = sum(r["seconds"] for r in rows if r["in_total"])
    cpu = sum(r["cpu_seconds"] for r in rows if r["in_total"])
    peak = max(r["peak_rss"] for r in rows)
    targets = n >= TARGET_ENTRIES
    missed = []
    if targets and total >= TARGET_SECONDS:
        missed.append(f"total {total:.2f}s is not under {TARGET_SECONDS:.0f}s")
    if targets and peak >= TARGET_RSS:
        missed.append(f"peak RSS {mib(peak)} is not under {mib(TARGET_RSS)}")
    return {
        "entries": n,
        "seed": args.seed,
        "rows": rows,
        "total_seconds": round(total, 3),
        "total_cpu_seconds": round(cpu, 3),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "calibration_seconds": round(calibration(), 3),
        "peak_rss": peak,
        "baseline_rss": baseline,
        "targets": {"checked": targets, "entries": TARGET_ENTRIES, "seconds": TARGET_SECONDS,
                    "peak_rss": TARGET_RSS, "missed": missed},
        "problems": problems,
        "ok": not problems and not missed,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


def _entries(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 10:
        raise argparse.ArgumentTypeError(f"at least 10 entries, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench_manifest.py",
        description="Time building, storing, reading back and diffing a large manifest "
                    "(synthetic listing, SQLite registry); report seconds and peak RSS.",
    )
    parser.add_argument("--entries", type=_entries, default=TARGET_ENTRIES,
                        help=f"entries in the manifest (default {TARGET_ENTRIES:,}; the "
                             "targets are checked from that size up)")
    parser.add_argument("--seed", type=int, default=0, help="RNG seed of the listing (default 0)")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also report tracemalloc's peak per phase (slows every phase "
                             "down several times: timings and targets then mean little)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def say(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    say(f"manifest of {args.entries:,} entries (seed {args.seed})")
    result = run(args, say)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(render(result["rows"], result["total_seconds"], result["total_cpu_seconds"],
                     args.tracemalloc))
        print()
        print(f"{result['entries']:,} entries; peak RSS is the process's high-water mark "
              f"(ru_maxrss), {mib(result['baseline_rss'])} of it before the first phase "
              f"(Python and imports). Python {result['python']}, {result['cpus']} CPUs, load "
              f"average {result['load_average'][0]:.2f} at the end (above 1: other processes "
              "competed for the CPUs; compare 'CPU s'); this machine runs a fixed Python "
              f"loop in {result['calibration_seconds']:.2f} s (see calibration()).")
        target = result["targets"]
        if not target["checked"]:
            print(f"targets (under {TARGET_SECONDS:.0f} s and {mib(TARGET_RSS)}) apply "
                  f"from {TARGET_ENTRIES:,} entries: not checked")
        elif target["missed"]:
            print("TARGET MISSED: " + "; ".join(target["missed"]))
        else:
            print(f"targets met: under {TARGET_SECONDS:.0f} s and under {mib(TARGET_RSS)}")
        for problem in result["problems"]:
            print(f"FAILED: {problem}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
