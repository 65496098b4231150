"""Benchmark reftrack's S3 request counts (and wall times) against a local moto S3 server.

For each size N it fills a fresh versioned bucket with N small objects under ``data/`` (plus an
overwrite of a fraction of them, so there are V > N versions), then measures, with every S3
request counted *server-side* (a WSGI middleware in front of moto):

  log            ``Artifact.add_reference("s3://bucket/data/")`` + ``run.log_artifact``
                 bound: ceil(V/1000) + 2 requests
  verify         ``artifact.verify()`` with nothing changed        bound: ceil(V/1000) + 2
                 (the bucket's lifecycle configuration and versioning state, once each)
  verify-drift   ``artifact.verify()`` after overwriting 1% and deleting 1% of the objects
                 bound: ceil(V'/1000) + 2, V' = versions + delete markers now under data/
  download       ``artifact.download(dir)``                       bound: N (one GET each)
  download-again the same into the same directory                  bound: 0 (all skipped)
  naive-head     what a user would otherwise write: boto3 ``head_object`` per key (N requests)

and reports, for log (track), verify and verify-drift, the ratio to naive-head measured in the
same run: naive requests / reftrack requests, and naive seconds / reftrack seconds (above 1:
reftrack made fewer requests, took less time). A naive *track* would also have to list the
keys first; the ratio leaves that out, in the naive side's favour.

Everything runs against moto's server (a ThreadedMotoServer on 127.0.0.1, a free port) that
this script starts, by default in a child process of its own (``--in-process``: in a thread
of this one, about twice as slow on two cores): no network, no AWS account, no AWS
configuration read (AWS_* variables are hidden while it runs and restored afterwards), and a
throw-away registry. Exit status: 0 when every request bound and every
result check holds, 1 otherwise (2 for bad arguments).

    python benchmarks/bench_s3.py                      # sizes 1000, 2000, 5000, 10000
    python benchmarks/bench_s3.py --sizes 50 --json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

import reftrack
from reftrack.settings import Settings

PAGE_SIZE = 1000  # S3's ListObjectVersions page
COMPARED = ("log", "verify", "verify-drift")  # the steps compared with one HEAD per object
BUCKET_RULES = 2  # verify reads the bucket's lifecycle rules and versioning state once each
BUCKET_PREFIX = "reftrack-bench"
PREFIX = "data/"
ACCESS_KEY = "bench"  # moto accepts anything; never real credentials
SECRET_KEY = "bench"
REGION = "us-east-1"


def footer(in_process: bool) -> str:
    where = (
        "moto runs in this process and shares its GIL with the client"
        if in_process else
        "moto runs in a child process (one core at most, shared with nothing but the OS)"
    )
    return (
        "requests: counted server-side (every HTTP request moto received during the step); "
        "'reftrack' is the library's own client-side counter.\n"
        "Wall times measure moto more than reftrack: moto's ListObjectVersions deep-copies "
        "and sorts every version in the bucket on every page (quadratic: ~9 s to list 10,000 "
        "keys), each moto request costs ~2 ms of Python on a new TCP connection (its server "
        f"answers 'Connection: close'), and {where}. The request counts are the real result: "
        "on S3 each request is a round trip and is billed."
    )


# -- server-side request counting ---------------------------------------------------------


def classify(method: str, path: str, query: str) -> str:
    """An S3 operation name for one request (path-style addressing: /bucket[/key])."""
    params = {part.split("=", 1)[0] for part in query.split("&") if part}
    bucket, _, key = path.lstrip("/").partition("/")
    if key:
        name = {
            "HEAD": "HeadObject", "GET": "GetObject", "PUT": "PutObject",
            "DELETE": "DeleteObject",
        }.get(method, f"{method} object")
        if "versionId" in params:
            name += "[versionId]"
        return name
    if not bucket:
        return f"{method} /"
    if method == "GET":
        if "versions" in params:
            return "ListObjectVersions"
        if "versioning" in params:
            return "GetBucketVersioning"
        if "list-type" in params:
            return "ListObjectsV2"
        if "location" in params:
            return "GetBucketLocation"
        if "lifecycle" in params:
            return "GetBucketLifecycleConfiguration"
        return "ListObjects" if not params else "GET bucket?" + ",".join(sorted(params))
    if method == "PUT":
        if "versioning" in params:
            return "PutBucketVersioning"
        return "CreateBucket" if not params else "PUT bucket?" + ",".join(sorted(params))
    if method == "HEAD":
        return "HeadBucket"
    if method == "POST" and "delete" in params:
        return "DeleteObjects"
    return f"{method} bucket" + ("?" + ",".join(sorted(params)) if params else "")


CONTROL_PATH = "/__reftrack_bench__/counts"  # answered by the middleware, never by moto


class RequestCounter:
    """WSGI middleware: counts, per operation, every S3 request the server receives (moto's
    own /moto-api/ calls excluded). ``GET CONTROL_PATH`` answers the counts since the previous
    such call as JSON and starts again from zero; it is not counted and never reaches moto."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def take(self) -> Counter[str]:
        with self._lock:
            counts, self._counts = self._counts, Counter()
        return counts

    def wrap(self, app: Callable[..., Any]) -> Callable[..., Any]:
        def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            path = environ.get("PATH_INFO", "")
            if path == CONTROL_PATH:
                body = json.dumps(self.take()).encode()
                start_response("200 OK", [("Content-Type", "application/json"),
                                          ("Content-Length", str(len(body)))])
                return [body]
            if not path.startswith("/moto-api"):
                op = classify(environ["REQUEST_METHOD"], path, environ.get("QUERY_STRING", ""))
                with self._lock:
                    self._counts[op] += 1
            return app(environ, start_response)

        return counted


@contextlib.contextmanager
def faster_moto() -> Iterator[None]:
    """moto's server looks up, on every request, whether the Host header names one of its
    service packages by listing its own package directory (~175 stat calls, about 40% of its
    time per request). The list never changes while it runs: answer it from memory. Same
    behaviour, same responses; restored afterwards."""
    import moto.backends

    original = getattr(moto.backends, "list_of_moto_modules", None)
    if original is None:  # another moto version: leave it alone
        yield
        return
    modules = tuple(original())
    moto.backends.list_of_moto_modules = lambda: iter(modules)
    try:
        yield
    finally:
        moto.backends.list_of_moto_modules = original


def start_counted_server() -> tuple[Any, str]:
    """A ThreadedMotoServer on 127.0.0.1 (free port) behind the counting middleware."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    inner = server._server
    assert inner is not None
    inner.app = RequestCounter().wrap(inner.app)  # werkzeug reads server.app per request
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def serve_forever() -> int:
    """``--serve-moto``: run the server in this (child) process; print its URL; stop when
    stdin closes (the parent exited or is done)."""
    with faster_moto():
        server, url = start_counted_server()
        print(url, flush=True)
        try:
            sys.stdin.read()
        finally:
            server.stop()
    return 0


class MotoS3:
    """moto's S3 server with server-side request counting.

    By default it runs in a child process (this script with ``--serve-moto``): moto and the
    client under test then do not share one GIL, which roughly halves the run time on two
    cores. ``in_process=True`` runs the ThreadedMotoServer in a thread of this process."""

    def __init__(self, *, in_process: bool = False) -> None:
        self.in_process = in_process
        self.url = ""
        self._server: Any = None
        self._child: subprocess.Popen[str] | None = None
        self._patch: contextlib.ExitStack | None = None
        # No proxy for 127.0.0.1, whatever HTTP(S)_PROXY says.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def start(self) -> None:
        if self.in_process:
            self._patch = contextlib.ExitStack()
            self._patch.enter_context(faster_moto())
            self._server, self.url = start_counted_server()
            return
        self._child = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve-moto"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self._child.stdout is not None
        line = self._child.stdout.readline().strip()
        if not line.startswith("http://127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"the moto server process did not start (said {line!r})")
        self.url = line

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._patch is not None:
            self._patch.close()
            self._patch = None
        child, self._child = self._child, None
        if child is not None:
            with contextlib.suppress(OSError):
                child.stdin.close()  # type: ignore[union-attr]
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            if child.stdout is not None:
                child.stdout.close()

    def _http(self, path: str, method: str) -> bytes:
        request = urllib.request.Request(
            self.url + path, data=b"" if method == "POST" else None, method=method
        )
        with self._opener.open(request, timeout=120) as response:
            body: bytes = response.read()
            return body

    def take(self) -> Counter[str]:
        """Requests per operation since the previous call."""
        return Counter(json.loads(self._http(CONTROL_PATH, "GET")))

    def reset(self) -> None:
        self._http("/moto-api/reset", "POST")
        self.take()


@contextlib.contextmanager
def hermetic_environment(scratch: Path) -> Iterator[None]:
    """Hide every AWS_* variable (profiles, endpoints, credentials) while the benchmark runs,
    point the AWS config files at nothing, and keep 127.0.0.1 off any proxy; restore the
    environment afterwards. Endpoint and credentials are passed explicitly anyway."""
    saved = dict(os.environ)
    try:
        for name in list(os.environ):
            if name.startswith("AWS_"):
                del os.environ[name]
        os.environ["AWS_CONFIG_FILE"] = str(scratch / "no-aws-config")
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(scratch / "no-aws-credentials")
        os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
        for name in ("NO_PROXY", "no_proxy"):
            current = os.environ.get(name, "")
            os.environ[name] = ",".join(p for p in (current, "127.0.0.1", "localhost") if p)
        yield
    finally:
        for name in [n for n in os.environ if n not in saved]:
            del os.environ[name]
        for name, value in saved.items():
            if os.environ.get(name) != value:
                os.environ[name] = value


# -- the benchmark --------------------------------------------------------------------------


def _parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must be whole numbers, got {text!r}") from None
    if not sizes or any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be at least 1, got {text!r}")
    return sizes


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _key(i: int) -> str:
    return f"{PREFIX}shard-{i % 16:02d}/obj-{i:06d}.txt"


def _ratio(naive: float, ours: float, digits: int) -> float | None:
    """naive / ours, rounded; None when ours is 0 (nothing to divide by)."""
    return round(naive / ours, digits) if ours else None


def _fmt_ops(counts: Counter[str]) -> str:
    return " ".join(f"{op}={n}" for op, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _reftrack_requests(artifact: Any) -> int | None:
    """reftrack's own (client-side) request counter; private API, so best effort."""
    try:
        return int(sum(b.requests for b in artifact._ctx.backends.made()))
    except AttributeError:
        return None


class Bench:
    def __init__(self, server: MotoS3, args: argparse.Namespace, workdir: Path,
                 log: Callable[[str], None]) -> None:
        self.server = server
        self.args = args
        self.workdir = workdir
        self.say = log
        self.rows: list[dict[str, Any]] = []
        self.ratios: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.s3 = boto3.session.Session(
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
        ).client(
            "s3",
            endpoint_url=server.url,
            config=Config(
                max_pool_connections=max(args.upload_workers, args.concurrency),
                retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )
        self.settings = Settings(
            registry=str(workdir / "registry.db"),
            concurrency=args.concurrency,
            storage_options={"s3": {
                "endpoint_url": server.url, "key": ACCESS_KEY, "secret": SECRET_KEY,
                "client_kwargs": {"region_name": REGION},
            }},
        )

    # -- helpers --

    def _pool_map(self, func: Callable[[Any], Any], items: list[Any], workers: int) -> list[Any]:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return list(pool.map(func, items))

    def _put(self, bucket: str, key: str, generation: int) -> None:
        self.s3.put_object(Bucket=bucket, Key=key, Body=f"{generation}:{key}\n".encode())

    def _record(self, n: int, versions: int, operation: str, counts: Counter[str],
                seconds: float, bound: int | None, reftrack_count: int | None,
                details: dict[str, Any], expect_exact: bool = False) -> None:
        requests = sum(counts.values())
        within = None if bound is None else (requests == bound if expect_exact
                                             else requests <= bound)
        if within is False:
            relation = "==" if expect_exact else "<="
            self.problems.append(
                f"N={n} {operation}: {requests} requests, bound {relation} {bound} violated "
                f"({_fmt_ops(counts)})"
            )
        if reftrack_count is not None and reftrack_count != requests:
            details = {**details, "note": f"server saw {requests}, reftrack counted "
                                          f"{reftrack_count}"}
        self.rows.append({
            "n": n,
            "versions": versions,
            "operation": operation,
            "requests": requests,
            "bound": bound,
            "bound_kind": None if bound is None else ("exact" if expect_exact else "max"),
            "within_bound": within,
            "reftrack_requests": reftrack_count,
            "seconds": round(seconds, 3),
            "by_operation": dict(sorted(counts.items())),
            "details": details,
        })
        shown = "" if bound is None else f" (bound {bound})"
        self.say(f"  {operation}: {requests} requests{shown}, {seconds:.2f}s")

    def _check(self, condition: bool, what: str) -> None:
        if not condition:
            self.problems.append(what)
            self.say(f"  UNEXPECTED: {what}")

    # -- one size --

    def run_size(self, n: int) -> None:
        args = self.args
        bucket = f"{BUCKET_PREFIX}-{n}"
        self.say(f"N={n}: resetting moto, uploading to s3://{bucket}/{PREFIX}")
        self.server.reset()
        self.s3.create_bucket(Bucket=bucket)
        self.s3.put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
        )
        keys = [_key(i) for i in range(n)]
        rng = random.Random(n)
        started = time.perf_counter()
        self._pool_map(lambda k: self._put(bucket, k, 0), keys, args.upload_workers)
        overwritten = rng.sample(keys, round(n * args.overwrite_fraction))
        self._pool_map(lambda k: self._put(bucket, k, 1), overwritten, args.upload_workers)
        setup = self.server.take()
        # Versions under data/ now (each overwrite adds one). Not listed separately: a
        # listing costs moto O(V) per page; the log step's page count corroborates it.
        versions = n + len(overwritten)
        self.say(f"  uploaded {n} objects + {len(overwritten)} overwrites "
                 f"({sum(setup.values())} PUTs etc.) in {time.perf_counter() - started:.1f}s; "
                 f"V={versions}")

        # a. log
        uri = f"s3://{bucket}/{PREFIX}"
        self.server.take()
        t0 = time.perf_counter()
        with reftrack.init(project="bench", job_type="benchmark",
                           settings=self.settings) as run:
            artifact = reftrack.Artifact(f"data-{n}", type="dataset", settings=self.settings)
            artifact.add_reference(uri)
            t1 = time.perf_counter()
            client_count = _reftrack_requests(artifact)
            run.log_artifact(artifact)
        t2 = time.perf_counter()
        counts = self.server.take()
        self._check(artifact.file_count == n,
                    f"N={n}: logged {artifact.file_count} entries, expected {n}")
        self._record(n, versions, "log", counts, t2 - t0, math.ceil(versions / PAGE_SIZE) + 2,
                     client_count,
                     {"entries": artifact.file_count, "add_reference_seconds": round(t1 - t0, 3),
                      "log_artifact_seconds": round(t2 - t1, 3), "version": artifact.version})

        # b. verify, no drift
        self.server.take()
        t0 = time.perf_counter()
        report = artifact.verify()
        seconds = time.perf_counter() - t0
        counts = self.server.take()
        summary = {k: v for k, v in report.summary.items() if v}
        self._check(summary == {"ok": n}, f"N={n}: verify without drift gave {summary}")
        self._record(n, versions, "verify", counts, seconds,
                     math.ceil(versions / PAGE_SIZE) + BUCKET_RULES, report.requests,
                     {"statuses": summary, "exit_code": report.exit_code})

        # b'. drift, then verify again
        changed = max(1, round(n * args.drift_fraction)) if args.drift_fraction else 0
        drifted = rng.sample(keys, min(n, 2 * changed))
        moved, deleted = drifted[:changed], drifted[changed:]
        self._pool_map(lambda k: self._put(bucket, k, 2), moved, args.upload_workers)
        self._pool_map(lambda k: self.s3.delete_object(Bucket=bucket, Key=k), deleted,
                       args.upload_workers)
        versions_now = versions + len(moved) + len(deleted)  # new versions + delete markers
        self.server.take()
        t0 = time.perf_counter()
        report = artifact.verify()
        seconds = time.perf_counter() - t0
        counts = self.server.take()
        summary = {k: v for k, v in report.summary.items() if v}
        expected = {k: v for k, v in
                    {"ok": n - len(moved) - len(deleted), "moved": len(moved),
                     "deleted": len(deleted)}.items() if v}
        self._check(summary == expected and report.exit_code == 0,
                    f"N={n}: verify after drift gave {summary} (exit {report.exit_code}), "
                    f"expected {expected}")
        self._record(n, versions_now, "verify-drift", counts, seconds,
                     math.ceil(versions_now / PAGE_SIZE) + BUCKET_RULES, report.requests,
                     {"statuses": summary, "exit_code": report.exit_code,
                      "overwritten": len(moved), "deleted": len(deleted)})

        # c. download twice
        target = self.workdir / f"download-{n}"
        for operation, bound in (("download", n), ("download-again", 0)):
            before = _reftrack_requests(artifact)
            self.server.take()
            t0 = time.perf_counter()
            path = artifact.download(target)
            seconds = time.perf_counter() - t0
            counts = self.server.take()
            after = _reftrack_requests(artifact)
            rep = path.report
            if operation == "download":
                self._check(rep.downloaded == n and counts.get("GetObject[versionId]", 0) == n,
                            f"N={n}: download fetched {rep.downloaded} files with "
                            f"{_fmt_ops(counts)}, expected {n} versioned GETs")
            else:
                self._check(rep.skipped == n, f"N={n}: second download skipped {rep.skipped} "
                            f"of {n}")
            self._record(
                n, versions_now, operation, counts, seconds, bound,
                None if before is None or after is None else after - before,
                {"downloaded": rep.downloaded, "skipped": rep.skipped, "failed": rep.failed,
                 "bytes": rep.bytes},
                expect_exact=True,
            )
        shutil.rmtree(target, ignore_errors=True)

        # d. the naive approach: one HEAD per object
        missing: list[str] = []  # list.append is atomic across threads

        def head(key: str) -> None:
            try:
                self.s3.head_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                missing.append(str(exc.response.get("Error", {}).get("Code")))

        self.server.take()
        t0 = time.perf_counter()
        self._pool_map(head, keys, args.concurrency)
        seconds = time.perf_counter() - t0
        counts = self.server.take()
        self._record(n, versions_now, "naive-head", counts, seconds, None, None,
                     {"heads": n, "not_found": len(missing),
                      "workers": args.concurrency})
        self._compare_with_naive(n)

    def _compare_with_naive(self, n: int) -> None:
        """Ratios of the naive-head row to log (track), verify and verify-drift of size n,
        all measured in this run: on each of those rows (``vs_naive``) and in ``ratios``."""
        rows = {row["operation"]: row for row in self.rows if row["n"] == n}
        naive = rows.get("naive-head")
        if naive is None:
            return
        for operation in COMPARED:
            row = rows.get(operation)
            if row is None:
                continue
            ratio = {
                "n": n,
                "operation": "track" if operation == "log" else operation,
                "requests": row["requests"],
                "naive_requests": naive["requests"],
                "request_ratio": _ratio(naive["requests"], row["requests"], 1),
                "seconds": row["seconds"],
                "naive_seconds": naive["seconds"],
                "time_ratio": _ratio(naive["seconds"], row["seconds"], 2),
            }
            row["vs_naive"] = {"requests": ratio["request_ratio"],
                               "seconds": ratio["time_ratio"]}
            self.ratios.append(ratio)


# -- output ---------------------------------------------------------------------------------


def render_table(rows: list[dict[str, Any]]) -> str:
    headers = ["N", "V", "operation", "requests", "bound", "reftrack", "seconds", "details"]
    lines: list[list[str]] = []
    for row in rows:
        bound = "" if row["bound"] is None else (
            ("= " if row["bound_kind"] == "exact" else "<= ") + str(row["bound"])
            + ("" if row["within_bound"] else "  VIOLATED")
        )
        details = dict(row["details"])
        statuses = details.pop("statuses", None)
        text = " ".join(f"{k}={v}" for k, v in (statuses or {}).items())
        keep = {
            "log": ("entries",),
            "download": ("downloaded", "failed"),
            "download-again": ("skipped",),
            "naive-head": ("not_found",),
        }.get(row["operation"], ())
        extra = [f"{k}={details[k]}" for k in keep if k in details]
        if "note" in details:
            extra.append(details["note"])
        ops = _fmt_ops(Counter(row["by_operation"]))
        text = "; ".join(part for part in (text, " ".join(extra), ops) if part)
        lines.append([
            str(row["n"]), str(row["versions"]), row["operation"], str(row["requests"]), bound,
            "" if row["reftrack_requests"] is None else str(row["reftrack_requests"]),
            f"{row['seconds']:.2f}", text,
        ])
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
              for i, h in enumerate(headers)]
    right = {0, 1, 3, 5, 6}

    def fmt(cells: list[str]) -> str:
        out = [c.rjust(widths[i]) if i in right else c.ljust(widths[i])
               for i, c in enumerate(cells)]
        return "  ".join(out).rstrip()

    result = [fmt(headers), fmt(["-" * w for w in widths])]
    previous = None
    for row, line in zip(rows, lines, strict=True):
        if previous is not None and row["n"] != previous:
            result.append("")
        previous = row["n"]
        result.append(fmt(line))
    return "\n".join(result)


def render_ratios(ratios: list[dict[str, Any]]) -> str:
    """reftrack vs one HEAD per object, per size and step (both measured in this run)."""
    headers = ["N", "step", "requests", "naive", "request ratio", "seconds", "naive s",
               "time ratio"]

    def times(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:,.{digits}f}x"

    lines = [[f"{r['n']:,}", r["operation"], f"{r['requests']:,}", f"{r['naive_requests']:,}",
              times(r["request_ratio"], 1), f"{r['seconds']:.2f}", f"{r['naive_seconds']:.2f}",
              times(r["time_ratio"], 2)] for r in ratios]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
              for i, h in enumerate(headers)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(widths[i]) if i == 1 else c.rjust(widths[i])
                         for i, c in enumerate(cells)).rstrip()

    return "\n".join([fmt(headers), fmt(["-" * w for w in widths]), *map(fmt, lines)])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench_s3.py",
        description="Count reftrack's S3 requests (log, verify, download) against a local "
                    "moto S3 server, and compare with one HEAD per object.",
    )
    parser.add_argument("--sizes", type=_parse_sizes, default=[1000, 2000, 5000, 10000],
                        help="comma-separated object counts (default 1000,2000,5000,10000; "
                             "about 4 minutes, much of it moto listing versions)")
    parser.add_argument("--overwrite-fraction", type=_fraction, default=0.1,
                        help="fraction of objects overwritten once before logging, so there "
                             "are more versions than objects (default 0.1)")
    parser.add_argument("--drift-fraction", type=_fraction, default=0.01,
                        help="fraction overwritten, and another fraction deleted, before the "
                             "second verify (default 0.01, at least one object each)")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="reftrack's concurrency and the naive HEAD thread pool (default 32)")
    parser.add_argument("--upload-workers", type=int, default=16,
                        help="threads uploading the test objects (default 16)")
    parser.add_argument("--in-process", action="store_true",
                        help="run moto's server in a thread of this process instead of a "
                             "child process (slower: moto and reftrack then share one GIL)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--serve-moto", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.serve_moto:
        return serve_forever()
    if args.concurrency < 1 or args.upload_workers < 1:
        parser.error("--concurrency and --upload-workers must be at least 1")

    def say(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    werkzeug = logging.getLogger("werkzeug")
    werkzeug_level = werkzeug.level
    werkzeug.setLevel(logging.ERROR)
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="reftrack-bench-",
                                         ignore_cleanup_errors=True) as tmp:
            workdir = Path(tmp)
            with hermetic_environment(workdir):
                server = MotoS3(in_process=args.in_process)
                server.start()
                try:
                    where = "this process" if args.in_process else "a child process"
                    say(f"moto S3 at {server.url} ({where}); registry "
                        f"{workdir / 'registry.db'}")
                    bench = Bench(server, args, workdir, say)
                    for n in args.sizes:
                        bench.run_size(n)
                finally:
                    server.stop()
    finally:
        werkzeug.setLevel(werkzeug_level)
    total = time.perf_counter() - started

    if args.json:
        print(json.dumps({
            "sizes": args.sizes,
            "overwrite_fraction": args.overwrite_fraction,
            "drift_fraction": args.drift_fraction,
            "concurrency": args.concurrency,
            "rows": bench.rows,
            "ratios": bench.ratios,
            "problems": bench.problems,
            "ok": not bench.problems,
            "total_seconds": round(total, 3),
            "in_process": args.in_process,
            "footer": footer(args.in_process),
        }, indent=2))
    else:
        print(render_table(bench.rows))
        print()
        print("reftrack vs one HEAD per object (naive-head, same run); ratio = naive / reftrack:")
        print(render_ratios(bench.ratios))
        print()
        print("V: object versions (+ delete markers) under data/ when the step ran; bound: "
              "'<=' an upper limit, '=' exact.")
        print(footer(args.in_process))
        print(f"total {total:.1f}s")
        if bench.problems:
            print()
            print(f"FAILED: {len(bench.problems)} problem(s):")
            for problem in bench.problems:
                print(f"  {problem}")
        else:
            print("all request bounds and result checks hold")
    return 1 if bench.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
