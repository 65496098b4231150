"""Benchmark the memory of ``verify`` on a logged version: flat in the number of entries.

A synthetic S3 bucket (deterministic listings, no network: keys in order, 10% of them with
an older version, every 1000th overwritten after logging so that it verifies as ``moved``)
stands behind the ``s3`` backend. For each N, one child process logs a manifest of N
entries referencing it into a fresh SQLite registry (``Manifest(entries=...)`` and
``Registry.log_version``); a second, fresh child process then runs
``Api().artifact("bench/data:v0").verify()`` -- the streamed path: the manifest is read from
the registry a window of entries at a time, results are stored in batches -- and measures
that call alone: the peak of ``tracemalloc`` (Python allocations) and the growth of the peak
RSS (``ru_maxrss``) during the call, with its wall time and the synthetic bucket's listing
requests. Logging runs in its own process so that the manifest built there is not in the
verifying process's memory.

"Flat" means the largest N's traced peak is within 1.5x of the smallest N's. Note that a
report of at most ``reftrack.verify.KEEP_ALL`` (100,000) entries lists every result, and
larger ones list only the entries that are not ok: ``--keep-all 0`` compares the streaming
machinery alone (every ok result counted, none listed).

    python benchmarks/bench_verify_memory.py                   # 100k and 1M, traced: ~8 min
    python benchmarks/bench_verify_memory.py --no-trace        # the same, RSS only: ~2 min
    python benchmarks/bench_verify_memory.py --entries 100000,1000000 --keep-all 0 --json
    python benchmarks/bench_verify_memory.py --entries 20000,200000 --window 5000 --check

(tracemalloc slows the verification down about 4x; times are from one development machine.)

Exit status 0; with ``--check``, 1 when the peaks are not flat (2 for bad arguments).
"""

from __future__ import annotations

import argparse
import bisect
import gc
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BUCKET = "bench-bucket"
PREFIX = "data/"
PAGE = 1000  # ListObjectVersions page
SHARD = 4096  # keys per "directory"
OLD_EVERY = 10  # every 10th key has an older, noncurrent version
MOVED_EVERY = 1000  # every 1000th key was overwritten after logging: verifies as moved
FLAT_RATIO = 1.5


def key(i: int) -> str:
    return f"{PREFIX}shard-{i // SHARD:04d}/part-{i:08d}.parquet"


def version(i: int, generation: int = 0) -> str:
    return f"{(i * 2654435761 + generation * 97 + 1) % (1 << 128):032x}"


def etag(i: int, generation: int = 0) -> str:
    return f"{(i * 40503 + generation * 7919 + 17) % (1 << 128):032x}"


def size(i: int) -> int:
    return (i * 7919) % (1 << 30)


class _Keys(Sequence[str]):
    """The bucket's keys, in order, computed on demand (for bisect)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: Any) -> Any:
        return key(i)


class SyntheticBucket:
    """Stands in for a versioned S3 bucket behind the backend protocol. ``generation`` 0 is
    what was logged; after logging (``generation=1``) every ``MOVED_EVERY``-th key holds a
    newer version. Counts listing requests (pages of 1000) and scans."""

    scheme = "s3"
    keeps_versions = True
    can_scan = True
    hashes_content = False

    def __init__(self, entries: int, generation: int = 0) -> None:
        self.entries = entries
        self.generation = generation
        self.requests = 0
        self.scans = 0

    # -- what verify asks ---------------------------------------------------------------------

    def _stats(self, i: int) -> Iterator[Any]:
        from reftrack.backends import ObjectStat
        from reftrack.uri import RefURI

        base = datetime(2024, 1, 1, tzinfo=UTC)
        k = key(i)
        moved = self.generation and i % MOVED_EVERY == 1
        if moved:
            yield ObjectStat(uri=RefURI("s3", BUCKET, k, version(i, 1)), size=size(i) + 1,
                             etag=etag(i, 1), last_modified=base + timedelta(days=30))
        yield ObjectStat(uri=RefURI("s3", BUCKET, k, version(i)), size=size(i), etag=etag(i),
                         is_latest=not moved, last_modified=base + timedelta(seconds=i))
        if i % OLD_EVERY == 0:
            yield ObjectStat(uri=RefURI("s3", BUCKET, k, version(i, -1)), size=size(i) // 2,
                             etag=etag(i, -1), is_latest=False, last_modified=base)

    def scan(self, prefix: Any, *, all_versions: bool = False, recursive: bool = True,
             page_limit: int | None = None, start_after: str | None = None
             ) -> Iterator[Any]:
        from reftrack.backends import ScanLimitReached

        if not prefix.key.startswith(PREFIX) or not recursive:
            raise AssertionError(f"unexpected listing {prefix} (recursive={recursive})")
        self.scans += 1
        start = 0 if start_after is None else bisect.bisect_right(_Keys(self.entries),
                                                                  start_after)
        start = max(start, bisect.bisect_left(_Keys(self.entries), prefix.key))
        in_page = pages = 0
        for i in range(start, self.entries):
            if not key(i).startswith(prefix.key):
                break
            for stat in self._stats(i):
                if not all_versions and not stat.is_latest:
                    continue
                if in_page == 0:
                    if page_limit is not None and pages >= page_limit:
                        raise ScanLimitReached(f"{prefix}: more than {page_limit} page(s)")
                    pages += 1
                    self.requests += 1
                in_page = (in_page + 1) % PAGE
                yield stat

    def stat(self, uri: Any) -> Any:
        raise AssertionError(f"unexpected HEAD of {uri}: every entry is listed")

    def open(self, uri: Any, *, if_match: str | None = None) -> Any:
        raise AssertionError(f"unexpected GET of {uri}")

    def versioning(self, bucket: str) -> str:
        self.requests += 1
        return "enabled"

    def lifecycle_rules(self, bucket: str) -> list[Any]:
        self.requests += 1
        return []

    def check_bucket(self, bucket: str) -> None:
        pass


# -- the child processes --------------------------------------------------------------------


def log_child(registry_path: str, entries: int) -> dict[str, Any]:
    from reftrack.manifest import Manifest, ManifestEntry, ManifestSource
    from reftrack.registry import Registry

    t0 = time.perf_counter()
    manifest = Manifest(
        entries=(ManifestEntry(path=key(i)[len(PREFIX):], ref=f"s3://{BUCKET}/{key(i)}",
                               version_id=version(i), etag=etag(i), size=size(i),
                               digest=etag(i)) for i in range(entries)),
        sources=[ManifestSource(uri=f"s3://{BUCKET}/{PREFIX}", kind="prefix", entries=entries,
                                listed=entries + math.ceil(entries / OLD_EVERY),
                                versioning="enabled")],
    )
    registry = Registry(registry_path)
    record, _ = registry.log_version(project="bench", name="data", type="dataset",
                                     manifest=manifest)
    registry.close()
    return {"digest": record.digest, "log_seconds": round(time.perf_counter() - t0, 2)}


def peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def verify_child(registry_path: str, entries: int, window: int | None,
                 keep_all: int | None, trace: bool = True) -> dict[str, Any]:
    import reftrack
    import reftrack.verify
    from reftrack.settings import Settings

    if window is not None:
        reftrack.verify.WINDOW = window
    if keep_all is not None:
        reftrack.verify.KEEP_ALL = keep_all
    bucket = SyntheticBucket(entries, generation=1)
    api = reftrack.Api(settings=Settings(registry=registry_path))
    art = api.artifact("bench/data:v0")
    art._ctx.backends._made["s3"] = bucket  # type: ignore[assignment]  # the synthetic bucket
    gc.collect()
    rss_before = peak_rss()
    if trace:
        tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    report = art.verify()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    _, traced_peak = tracemalloc.get_traced_memory()  # (0, 0) when not tracing
    tracemalloc.stop()
    return {
        "entries": entries, "window": reftrack.verify.WINDOW,
        "keep_all": reftrack.verify.KEEP_ALL, "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2), "traced_peak": traced_peak,
        "rss_growth": max(0, peak_rss() - rss_before), "peak_rss": peak_rss(),
        "checked": report.checked, "listed": len(report.entries),
        "omitted_ok": report.omitted_ok, "moved": report.summary["moved"],
        "exit_code": report.exit_code, "requests": report.requests, "listings": bucket.scans,
    }


def child(argv: list[str]) -> None:
    mode, registry_path, entries = argv[0], argv[1], int(argv[2])
    if mode == "log":
        out = log_child(registry_path, entries)
    else:
        window = int(argv[3]) if argv[3] != "-" else None
        keep_all = int(argv[4]) if argv[4] != "-" else None
        out = verify_child(registry_path, entries, window, keep_all, trace=argv[5] == "trace")
    print(json.dumps(out))


def run_child(args: list[str]) -> dict[str, Any]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                          text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# -- the parent -----------------------------------------------------------------------------


def mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB"


def table(rows: list[dict[str, Any]], trace: bool) -> str:
    headers = ["entries", "verify s", "CPU s", *(["traced peak"] if trace else []),
               "RSS growth", "listings", "requests", "listed", "omitted ok", "moved"]
    lines = [[f"{r['entries']:,}", f"{r['seconds']:.1f}", f"{r['cpu_seconds']:.1f}",
              *([mib(r["traced_peak"])] if trace else []), mib(r["rss_growth"]),
              f"{r['listings']:,}", f"{r['requests']:,}", f"{r['listed']:,}",
              f"{r['omitted_ok']:,}", f"{r['moved']:,}"] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.rjust(widths[i]) for i, c in enumerate(cells))

    return "\n".join([fmt(headers), fmt(["-" * w for w in widths]), *map(fmt, lines)])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", default="100000,1000000",
                        help="comma-separated entry counts (default: 100000,1000000)")
    parser.add_argument("--window", type=int, default=None,
                        help="reftrack.verify.WINDOW (default: the library's, 20000)")
    parser.add_argument("--keep-all", type=int, default=None,
                        help="reftrack.verify.KEEP_ALL (default: the library's, 100000)")
    parser.add_argument("--no-trace", action="store_true",
                        help="measure the RSS only, without tracemalloc (about 2.5x faster; "
                             "--check then compares the RSS growth)")
    parser.add_argument("--json", action="store_true", help="print JSON, not a table")
    parser.add_argument("--check", action="store_true",
                        help=f"exit 1 unless the largest N's traced peak is within "
                             f"{FLAT_RATIO}x of the smallest N's")
    args = parser.parse_args(argv)
    try:
        sizes = sorted({int(n.replace("_", "")) for n in args.entries.split(",") if n.strip()})
    except ValueError:
        parser.error(f"--entries takes comma-separated whole numbers, not {args.entries!r}")
    if not sizes or sizes[0] < 1 or (args.window is not None and args.window < 1):
        parser.error("entry counts and --window must be positive")
    say = (lambda _: None) if args.json else (lambda text: print(text, flush=True))
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
            registry_path = str(Path(tmp) / "registry.db")
            say(f"N = {n:,}: logging the manifest ...")
            logged = run_child(["log", registry_path, str(n)])
            say(f"  logged in {logged['log_seconds']:.1f}s; verifying ...")
            row = run_child(["verify", registry_path, str(n),
                             "-" if args.window is None else str(args.window),
                             "-" if args.keep_all is None else str(args.keep_all),
                             "no-trace" if args.no_trace else "trace"])
            row["log_seconds"] = logged["log_seconds"]
            rows.append(row)
            say(f"  verified in {row['seconds']:.1f}s, "
                + (f"RSS growth {mib(row['rss_growth'])}" if args.no_trace
                   else f"traced peak {mib(row['traced_peak'])}"))
    measure = "rss_growth" if args.no_trace else "traced_peak"
    ratio = rows[-1][measure] / max(1, rows[0][measure])
    flat = ratio <= FLAT_RATIO
    if args.json:
        print(json.dumps({"runs": rows, "window": rows[0]["window"],
                          "keep_all": rows[0]["keep_all"], "measure": measure,
                          "peak_ratio": round(ratio, 3), "flat": flat}, indent=2))
    else:
        print()
        print(table(rows, trace=not args.no_trace))
        what = "RSS growth" if args.no_trace else "traced peak"
        print(f"\nwindow {rows[0]['window']:,} entries, KEEP_ALL {rows[0]['keep_all']:,}; "
              f"{what} at {sizes[-1]:,} entries = {ratio:.2f}x the one at {sizes[0]:,}"
              f" ({'flat' if flat else 'NOT flat'}: the bound is {FLAT_RATIO}x)")
    return 1 if args.check and not flat else 0


if __name__ == "__main__":
    sys.exit(main())
