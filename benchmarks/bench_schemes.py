"""Benchmark reftrack on GCS, local files and HTTP(S): request counts, bytes read, wall times.

For each size N and each scheme (``--schemes gcs,local,http``, default all) it builds a
dataset of N objects, then logs, verifies, downloads and re-verifies it after some drift,
counting what matters for that scheme where it happens:

gcs   gcp-storage-emulator in this process on 127.0.0.1 (a free port), served by a counting
      handler that also pages ``objects.list`` as GCS does (the emulator itself ignores
      ``maxResults``). N objects are written straight into the emulator's storage (not counted);
      reftrack reaches it through ``STORAGE_EMULATOR_HOST``. Requests are counted server-side.

  log            ``add_reference("gs://bucket/data/")`` + ``log_artifact``
                 bound: ceil(N/1000) list pages + 1 bucket GET
  verify         nothing changed                                    bound: ceil(N/1000)
  download       1 media GET per entry, + 1 metadata GET each because the emulator sends no
                 ``x-goog-generation`` (real GCS does)              bound: 2N
  download-again the same into the same directory                   bound: 0
  verify-drift   after overwriting 1% of the objects                bound: ceil(N/1000);
                 those entries must be ``version_missing`` (the emulator keeps no old
                 generations), the others ``ok``
  naive          what one would otherwise do: one ``objects.get`` per object (N requests,
                 plain JSON-API GETs from ``--concurrency`` threads)

local a temp directory of N files (``--file-size``, default 64 KiB, deterministic bytes). No
      requests: reads are counted by spying on the real ``LocalBackend.open`` and
      ``LocalReader.read`` (files opened, bytes read), nothing is faked.

  log            every file hashed once              bound: bytes read = total size (MB/s shown)
  verify         nothing changed                     bound: 0 bytes read
  download       every file read once from the source (copied after re-hashing)
                                                     bound: N files read
  download-again 0 files read from the source (the skip-check reads the destination copies,
                 which is not counted here)          bound: 0 files read
  verify-drift   after touching 1% (mtime moved, same bytes: re-hashed, ``ok``) and rewriting
                 another 1% (same size, other bytes, mtime moved: re-hashed, ``changed``)
                 bound: files read = exactly those 2%
  verify-deep    ``verify(deep=True)``: every file read  bound: N files read

http  a loopback ThreadingHTTPServer (HTTP/1.1 keep-alive, strong ETags = quoted MD5s,
      Last-Modified) serving N files of ``--http-size`` bytes, each referenced by its URL.
      Requests are counted server-side by method.

  log            N ``add_reference(url)`` + ``log_artifact``: 1 HEAD + 1 GET (hash) per URL
                 bound: 2N
  verify         nothing changed: N HEADs and no GET   bound: N
  download       bound: N GETs
  download-again bound: 0
  verify-drift   after changing the bytes of 1% (same size; new ETag and Last-Modified): N
                 HEADs + 1 GET per changed file to re-hash it (``changed``)
                 bound: N + 1%

Downloads run before the drift steps: a drifted entry can no longer be downloaded exactly
(the emulator dropped the generation, the local file or HTTP resource changed), which is the
point of pinning but would spoil the "download-again" count.

Nothing leaves 127.0.0.1; the registry is a throw-away SQLite file in a temporary directory;
the environment variables set for the run (``STORAGE_EMULATOR_HOST``,
``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT``, ``REFTRACK_REGISTRY``, ``NO_PROXY``) are restored
afterwards. Exit status: 0 when every bound and every result check holds, 1 otherwise, 2 for
bad arguments.

    python benchmarks/bench_schemes.py                   # sizes 1000, 5000, all: ~65 s, 2 cores
    python benchmarks/bench_schemes.py --sizes 50 --schemes gcs,http --json
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote

import reftrack
from reftrack.errors import DownloadFailed
from reftrack.settings import Settings

SCHEMES = ("gcs", "local", "http")
PAGE_SIZE = 1000  # GCS objects.list page
PREFIX = "data/"
MIB = 1024 * 1024

FOOTER = (
    "gcs/http requests: counted server-side (every request the emulator or the HTTP server "
    "received during the step); local: files opened and bytes read through reftrack's "
    "LocalBackend (no requests).\n"
    "Wall times are loopback times with the servers in this process, sharing its GIL with the "
    "client (gcp-storage-emulator answers HTTP/1.0, one TCP connection per request); they say "
    "little about real GCS or a real web server. The request counts are the result that "
    "carries over: there each request is a round trip (and, on GCS, billed)."
)


# -- environment ---------------------------------------------------------------------------


@contextlib.contextmanager
def scoped_environ(values: dict[str, str]) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` meanwhile; restore exactly what was there after."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        os.environ.update(values)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _no_proxy() -> dict[str, str]:
    out = {}
    for name in ("NO_PROXY", "no_proxy"):
        current = os.environ.get(name, "")
        out[name] = ",".join(p for p in (current, "127.0.0.1", "localhost") if p)
    return out


# -- GCS: gcp-storage-emulator behind a counting, paginating handler ------------------------


def _gcs_operation(method: str, path: str, params: dict[str, str]) -> str:
    """A JSON-API operation name for one request."""
    parts = path.removeprefix("/download").split("/")
    # ['', 'storage', 'v1', 'b', bucket, 'o', key...]
    if method == "GET" and parts[1:4] == ["storage", "v1", "b"]:
        if len(parts) == 5:
            return "buckets.get"
        if len(parts) == 6 and parts[5] == "o":
            return "objects.list"
        if len(parts) >= 7 and parts[5] == "o":
            media = params.get("alt") == "media" or path.startswith("/download/")
            return "objects.download" if media else "objects.get"
    return f"{method} {path}"


def _gcs_handler_class() -> type:
    from gcp_storage_emulator.server import RequestHandler

    class Handler(RequestHandler):  # type: ignore[misc]
        """The emulator's handler, plus a count of every request and GCS-style paging of
        ``objects.list`` (at most ``maxResults`` entries, ``nextPageToken`` while more
        remain; the emulator itself answers every object on one page)."""

        def __init__(self, emulator: GCSEmulator, *args: Any, **kwargs: Any) -> None:
            self.emulator = emulator
            super().__init__(emulator.storage, *args, **kwargs)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_PATCH(self) -> None:
            self._serve("PATCH")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self, method: str) -> None:
            path, _, query = self.path.partition("?")
            params = {k: v[-1] for k, v in parse_qs(query).items()}
            operation = _gcs_operation(method, path, params)
            self.emulator.count(operation)
            with self.emulator.lock:
                if operation == "objects.list":
                    self._list_page(unquote(path.split("/")[4]), params)
                else:
                    getattr(super(), f"do_{method}")()

        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _list_page(self, bucket: str, params: dict[str, str]) -> None:
            from gcp_storage_emulator.exceptions import NotFound

            try:
                items, prefixes = self.storage.get_file_list(
                    bucket, params.get("prefix"), params.get("delimiter")
                )
            except NotFound:
                self._json(404, {"error": {"code": 404, "message": "no such bucket",
                                           "errors": [{"reason": "notFound"}]}})
                return
            entries = sorted(
                [(str(obj["name"]), obj) for obj in items] + [(p, None) for p in prefixes],
                key=lambda entry: entry[0],
            )
            if params.get("pageToken"):
                after = base64.urlsafe_b64decode(params["pageToken"]).decode()
                entries = [entry for entry in entries if entry[0] > after]
            size = max(1, min(int(params.get("maxResults") or PAGE_SIZE), PAGE_SIZE))
            page, rest = entries[:size], entries[size:]
            body: dict[str, Any] = {
                "kind": "storage#objects",
                "items": [obj for _, obj in page if obj is not None],
                "prefixes": [name for name, obj in page if obj is None],
            }
            if rest:
                body["nextPageToken"] = base64.urlsafe_b64encode(page[-1][0].encode()).decode()
            self._json(200, body)

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog (5) drops concurrent connects: 1 s stalls

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up early is no news; anything else is printed as usual."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class GCSEmulator:
    """gcp-storage-emulator's storage (in memory) served from a ThreadingHTTPServer on
    127.0.0.1 (a free port) by the counting handler; requests are handled one at a time (the
    emulator's storage is plain dicts)."""

    def __init__(self) -> None:
        from gcp_storage_emulator.storage import Storage

        for name in ("gcp_storage_emulator", "api.object", "api.bucket"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        self.storage = Storage(use_memory_fs=True)
        # In memory the emulator re-serialises all its metadata to an in-memory ".meta" file
        # on every write (quadratic for many objects); nothing reads it back in memory mode.
        self.storage._write_config_to_file = lambda: None
        self.lock = threading.RLock()
        self._counts: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), partial(_gcs_handler_class(), self))
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="bench-gcs-emulator", daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def count(self, operation: str) -> None:
        with self._count_lock:
            self._counts[operation] += 1

    def take(self) -> Counter[str]:
        """Requests per operation since the previous call."""
        with self._count_lock:
            counts, self._counts = self._counts, Counter()
        return counts

    # data, straight into the emulator's storage (not counted, not over HTTP)

    def create_bucket(self, name: str, *, versioning: bool = True) -> None:
        from gcp_storage_emulator.handlers.buckets import create_bucket

        with self.lock:
            create_bucket(name, self.storage)
            self.storage.buckets[name]["versioning"] = {"enabled": versioning}

    def seed(self, bucket: str, objects: dict[str, bytes]) -> dict[str, str]:
        """Create or overwrite objects; returns key -> new generation."""
        from gcp_storage_emulator.handlers.objects import _checksums, _make_object_resource

        generations: dict[str, str] = {}
        with self.lock:
            for key, data in objects.items():
                obj = _make_object_resource(
                    self.url, bucket, key, "application/octet-stream", str(len(data))
                )
                obj = _checksums(data, obj)
                self.storage.create_file(bucket, key, data, obj)
                generations[key] = str(obj["generation"])
        return generations


# -- HTTP: a loopback server with ETags, counting requests by method ------------------------


LAST_MODIFIED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


class _HTTPServer(_QuietServer):
    files: dict[str, tuple[bytes, str, str]]  # path -> (data, ETag header, Last-Modified)
    counts: Counter[str]
    lock: threading.Lock


class _HTTPHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: reftrack's pool reuses connections
    timeout = 30
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, *, head: bool) -> None:
        server = self.server
        with server.lock:
            server.counts[self.command] += 1
            resource = server.files.get(self.path)
        if resource is None:
            return self._answer(404, b"not found", {}, head)
        data, etag, modified = resource
        wanted = self.headers.get("If-Match")
        if wanted is not None and wanted.strip() not in ("*", etag):
            return self._answer(412, b"precondition failed", {}, head)
        headers = {"ETag": etag, "Last-Modified": modified,
                   "Content-Type": "application/octet-stream"}
        self._answer(200, data, headers, head)

    def _answer(self, status: int, body: bytes, headers: dict[str, str], head: bool) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            try:
                self.wfile.write(body)
            except OSError:
                self.close_connection = True


class LoopbackHTTP:
    def __init__(self) -> None:
        self._server = _HTTPServer(("127.0.0.1", 0), _HTTPHandler)
        self._server.files = {}
        self._server.counts = Counter()
        self._server.lock = threading.Lock()
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="bench-http", daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def put(self, path: str, data: bytes, modified: datetime = LAST_MODIFIED) -> str:
        etag = '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'
        with self._server.lock:
            self._server.files[path] = (data, etag, format_datetime(modified, usegmt=True))
        return self.url + path

    def take(self) -> Counter[str]:
        """Requests per method since the previous call (HEAD and GET always present)."""
        with self._server.lock:
            counts, self._server.counts = self._server.counts, Counter()
        return Counter({"HEAD": 0, "GET": 0, **counts})


# -- local: spy on the real LocalBackend reads ----------------------------------------------


class ReadSpy:
    """Counts the files reftrack opens through ``LocalBackend.open`` and the bytes it reads
    through ``LocalReader.read``: the real methods are wrapped (and restored afterwards),
    they still do all the work."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.opened: list[str] = []
        self.bytes = 0

    def take(self) -> tuple[list[str], int]:
        with self._lock:
            opened, read = self.opened, self.bytes
            self.opened, self.bytes = [], 0
        return opened, read

    @contextlib.contextmanager
    def installed(self) -> Iterator[ReadSpy]:
        from reftrack.backends.local import LocalBackend, LocalReader

        real_open = LocalBackend.open
        real_read = LocalReader.read
        spy = self

        @functools.wraps(real_open)
        def open_(backend: Any, uri: Any, *args: Any, **kwargs: Any) -> Any:
            reader = real_open(backend, uri, *args, **kwargs)
            with spy._lock:
                spy.opened.append(uri.key)
            return reader

        @functools.wraps(real_read)
        def read(reader: Any, size: int) -> bytes:
            data = real_read(reader, size)
            with spy._lock:
                spy.bytes += len(data)
            return data

        LocalBackend.open = open_  # type: ignore[method-assign,assignment]
        LocalReader.read = read  # type: ignore[method-assign,assignment]
        try:
            yield self
        finally:
            LocalBackend.open = real_open  # type: ignore[method-assign]
            LocalReader.read = real_read  # type: ignore[method-assign]


# -- the benchmark --------------------------------------------------------------------------


def _parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must be whole numbers, got {text!r}") from None
    if not sizes or any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be at least 1, got {text!r}")
    return sizes


def _parse_schemes(text: str) -> list[str]:
    schemes = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [s for s in schemes if s not in SCHEMES]
    if not schemes or unknown:
        raise argparse.ArgumentTypeError(
            f"schemes are a comma-separated subset of {','.join(SCHEMES)}, got {text!r}"
        )
    return list(dict.fromkeys(schemes))


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 0.5:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 0.5, got {value}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _fmt_ops(counts: dict[str, int]) -> str:
    return " ".join(f"{op}={n}" for op, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _summary(report: Any) -> dict[str, int]:
    return {k: v for k, v in report.summary.items() if v}


def _reftrack_requests(artifact: Any) -> int | None:
    """reftrack's own (client-side) request counter; private API, so best effort."""
    try:
        return int(sum(b.requests for b in artifact._ctx.backends.made()))
    except AttributeError:
        return None


def _blob(seed: int, size: int) -> bytes:
    """Deterministic bytes: the same for the same seed and size."""
    return random.Random(seed).randbytes(size)


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path,
                 say: Callable[[str], None]) -> None:
        self.args = args
        self.workdir = workdir
        self.say = say
        self.rows: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.settings = Settings(registry=str(workdir / "registry.db"),
                                 concurrency=args.concurrency)

    # -- recording --

    def _check(self, condition: bool, what: str) -> None:
        if not condition:
            self.problems.append(what)
            self.say(f"  UNEXPECTED: {what}")

    def _record(
        self,
        scheme: str,
        operation: str,
        n: int,
        seconds: float,
        *,
        requests: Counter[str] | None = None,
        files_read: int | None = None,
        bytes_read: int | None = None,
        bound: int | None = None,
        bound_on: str = "requests",
        exact: bool = False,
        reftrack_count: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        details = dict(details or {})
        total = None if requests is None else sum(requests.values())
        measured = {"requests": total, "files_read": files_read, "bytes_read": bytes_read}
        value = measured[bound_on]
        within = None
        if bound is not None:
            assert value is not None
            within = value == bound if exact else value <= bound
            if not within:
                relation = "==" if exact else "<="
                extra = f" ({_fmt_ops(requests)})" if requests else ""
                self.problems.append(
                    f"{scheme} N={n} {operation}: {bound_on} {value}, bound {relation} {bound} "
                    f"violated{extra}"
                )
        if reftrack_count is not None and total is not None and reftrack_count != total:
            details["note"] = f"server saw {total}, reftrack counted {reftrack_count}"
        self.rows.append({
            "scheme": scheme,
            "operation": operation,
            "n": n,
            "requests": total,
            "by_operation": None if requests is None else dict(sorted(requests.items())),
            "files_read": files_read,
            "bytes_read": bytes_read,
            "bound": bound,
            "bound_on": None if bound is None else bound_on,
            "bound_kind": None if bound is None else ("exact" if exact else "max"),
            "within_bound": within,
            "reftrack_requests": reftrack_count,
            "seconds": round(seconds, 3),
            "details": details,
        })
        shown = "" if bound is None else f" (bound {'==' if exact else '<='} {bound})"
        self.say(f"  {scheme} {operation}: {bound_on} {value}{shown}, {seconds:.2f}s")

    def _log(self, name: str, add: Callable[[reftrack.Artifact], object]
             ) -> tuple[reftrack.Artifact, float, float, int | None]:
        """Build and log one artifact; returns it, the add_reference and total seconds, and
        reftrack's own request count for the references (read before logging rebinds it)."""
        t0 = time.perf_counter()
        with reftrack.init(project="bench", job_type="benchmark",
                           settings=self.settings) as run:
            artifact = reftrack.Artifact(name, type="dataset", settings=self.settings)
            add(artifact)
            t1 = time.perf_counter()
            client_count = _reftrack_requests(artifact)
            run.log_artifact(artifact)
        return artifact, t1 - t0, time.perf_counter() - t0, client_count

    def _download(self, artifact: reftrack.Artifact, target: Path) -> tuple[Any, float]:
        t0 = time.perf_counter()
        try:
            report = artifact.download(target).report
        except DownloadFailed as exc:
            report = exc.report
        return report, time.perf_counter() - t0

    def _drifted(self, n: int, rng: random.Random, count: int) -> list[int]:
        return sorted(rng.sample(range(n), min(n, count)))

    def _changes(self, n: int) -> int:
        return max(1, round(n * float(self.args.drift_fraction)))

    # -- GCS --

    def run_gcs(self, emulator: GCSEmulator, n: int) -> None:
        bucket = f"reftrack-bench-{n}"
        emulator.create_bucket(bucket)
        keys = [f"{PREFIX}shard-{i % 16:02d}/obj-{i:06d}.bin" for i in range(n)]
        contents = {key: _blob(i, self.args.gcs_size) for i, key in enumerate(keys)}
        t0 = time.perf_counter()
        generations = emulator.seed(bucket, contents)
        self.say(f"gcs N={n}: seeded {n} objects into gs://{bucket}/{PREFIX} at {emulator.url} "
                 f"in {time.perf_counter() - t0:.1f}s")
        pages = math.ceil(n / PAGE_SIZE)

        # log
        emulator.take()
        artifact, adding, seconds, client_count = self._log(
            f"gcs-{n}", lambda art: art.add_reference(f"gs://{bucket}/{PREFIX}")
        )
        counts = emulator.take()
        entries = artifact.manifest.entries
        self._check(
            artifact.file_count == n
            and all(entries[k.removeprefix(PREFIX)].version_id == generations[k] for k in keys),
            f"gcs N={n}: logged {artifact.file_count} entries (expected {n}, each with its "
            "generation)",
        )
        self._record("gcs", "log", n, seconds, requests=counts, bound=pages + 1,
                     reftrack_count=client_count,
                     details={"entries": artifact.file_count,
                              "add_reference_seconds": round(adding, 3),
                              "log_artifact_seconds": round(seconds - adding, 3)})

        # verify
        t0 = time.perf_counter()
        report = artifact.verify()
        seconds = time.perf_counter() - t0
        counts = emulator.take()
        self._check(_summary(report) == {"ok": n} and report.exit_code == 0,
                    f"gcs N={n}: verify without drift gave {_summary(report)}")
        self._record("gcs", "verify", n, seconds, requests=counts, bound=pages,
                     reftrack_count=report.requests,
                     details={"statuses": _summary(report), "exit_code": report.exit_code})

        # download, twice
        target = self.workdir / f"gcs-download-{n}"
        for operation, bound, exact in (("download", 2 * n, False), ("download-again", 0, True)):
            before = _reftrack_requests(artifact)
            emulator.take()
            result, seconds = self._download(artifact, target)
            counts = emulator.take()
            after = _reftrack_requests(artifact)
            total = sum(counts.values())
            if operation == "download":
                intact = all((target / k.removeprefix(PREFIX)).read_bytes() == contents[k]
                             for k in keys)
                self._check(result.downloaded == n and result.failed == 0 and intact,
                            f"gcs N={n}: download fetched {result.downloaded}, failed "
                            f"{result.failed}, bytes equal: {intact}")
                self._check(counts.get("objects.download", 0) == n,
                            f"gcs N={n}: download sent {counts.get('objects.download', 0)} "
                            f"media GETs, expected {n}")
            else:
                self._check(result.skipped == n, f"gcs N={n}: second download skipped "
                            f"{result.skipped} of {n}")
            self._record(
                "gcs", operation, n, seconds, requests=counts, bound=bound, exact=exact,
                reftrack_count=None if before is None or after is None else after - before,
                details={"downloaded": result.downloaded, "skipped": result.skipped,
                         "failed": result.failed, "bytes": result.bytes,
                         "per_entry": round(total / n, 3)},
            )
        shutil.rmtree(target, ignore_errors=True)

        # verify after drift: overwrite 1% (the emulator drops the old generations)
        changed = self._drifted(n, random.Random(n), self._changes(n))
        emulator.seed(bucket, {keys[i]: _blob(-1 - i, self.args.gcs_size) for i in changed})
        emulator.take()
        t0 = time.perf_counter()
        report = artifact.verify()
        seconds = time.perf_counter() - t0
        counts = emulator.take()
        missing = {e.path for e in report.entries if e.status == "version_missing"}
        expected_missing = {keys[i].removeprefix(PREFIX) for i in changed}
        expected = {k: v for k, v in {"ok": n - len(changed),
                                      "version_missing": len(changed)}.items() if v}
        self._check(_summary(report) == expected and missing == expected_missing
                    and report.exit_code == 1,
                    f"gcs N={n}: verify after overwriting {len(changed)} gave "
                    f"{_summary(report)} (exit {report.exit_code}), expected {expected} "
                    "(exit 1)")
        self._record("gcs", "verify-drift", n, seconds, requests=counts, bound=pages,
                     reftrack_count=report.requests,
                     details={"statuses": _summary(report), "exit_code": report.exit_code,
                              "overwritten": len(changed)})

        # naive: one objects.get per object (plain JSON API requests, a thread pool)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        def get(key: str) -> dict[str, Any]:
            url = f"{emulator.url}/storage/v1/b/{bucket}/o/{quote(key, safe='')}"
            with opener.open(url, timeout=60) as response:
                answer: dict[str, Any] = json.loads(response.read())
            return answer

        emulator.take()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=self.args.concurrency) as pool:
            infos = list(pool.map(get, keys))
        seconds = time.perf_counter() - t0
        counts = emulator.take()
        self._check([info.get("name") for info in infos] == keys,
                    f"gcs N={n}: naive objects.get answered {len(infos)} objects")
        self._record("gcs", "naive", n, seconds, requests=counts,
                     details={"client": f"objects.get per object ({self.args.concurrency} "
                                        "threads)"})

    # -- local --

    def run_local(self, spy: ReadSpy, n: int) -> None:
        size = self.args.file_size
        root = self.workdir / f"local-{n}"
        base = _blob(n, size)
        paths = []
        t0 = time.perf_counter()
        for i in range(n):
            path = root / f"shard-{i % 16:02d}" / f"file-{i:06d}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"{i:016d}".encode() + base[16:])
            paths.append(path)
        total = n * size
        self.say(f"local N={n}: wrote {n} files of {size} bytes ({total / MIB:.0f} MiB) under "
                 f"{root} in {time.perf_counter() - t0:.1f}s")

        # log: every file hashed once
        spy.take()
        artifact, adding, seconds, _ = self._log(
            f"local-{n}", lambda art: art.add_reference(str(root))
        )
        opened, read = spy.take()
        self._check(artifact.file_count == n and sorted(opened) == sorted(map(str, paths)),
                    f"local N={n}: logged {artifact.file_count} entries, opened "
                    f"{len(opened)} files ({len(set(opened))} distinct), expected {n}")
        self._record("local", "log", n, seconds, files_read=len(opened), bytes_read=read,
                     bound=total, bound_on="bytes_read", exact=True,
                     details={"entries": artifact.file_count,
                              "add_reference_seconds": round(adding, 3),
                              "log_artifact_seconds": round(seconds - adding, 3),
                              "hash_mb_per_s": round(read / MIB / adding, 1) if adding else None})

        # verify, nothing changed: nothing read
        t0 = time.perf_counter()
        report = artifact.verify()
        seconds = time.perf_counter() - t0
        opened, read = spy.take()
        self._check(_summary(report) == {"ok": n}, f"local N={n}: verify gave "
                    f"{_summary(report)}")
        self._record("local", "verify", n, seconds, files_read=len(opened), bytes_read=read,
                     bound=0, bound_on="bytes_read", exact=True,
                     details={"statuses": _summary(report), "exit_code": report.exit_code})

        # download, twice
        target = self.workdir / f"local-download-{n}"
        for operation, bound in (("download", n), ("download-again", 0)):
            result, seconds = self._download(artifact, target)
            opened, read = spy.take()
            if operation == "download":
                intact = all(
                    (target / p.relative_to(root)).read_bytes() == p.read_bytes() for p in paths
                )
                self._check(result.downloaded == n and result.failed == 0 and intact
                            and len(set(opened)) == n,
                            f"local N={n}: download fetched {result.downloaded}, failed "
                            f"{result.failed}, read {len(set(opened))} distinct files, bytes "
                            f"equal: {intact}")
            else:
                self._check(result.skipped == n, f"local N={n}: second download skipped "
                            f"{result.skipped} of {n}")
            self._record("local", operation, n, seconds, files_read=len(opened),
                         bytes_read=read, bound=bound, bound_on="files_read", exact=True,
                         details={"downloaded": result.downloaded, "skipped": result.skipped,
                                  "failed": result.failed, "bytes": result.bytes})
        shutil.rmtree(target, ignore_errors=True)

        # drift: touch 1% (mtime only), rewrite another 1% (same size, other bytes)
        changes = self._changes(n)
        picked = self._drifted(n, random.Random(n), 2 * changes)
        touched, rewritten = picked[:changes], picked[changes:]
        later = 10 * 10**9  # ten seconds later, whatever the clock resolution
        for i in touched:
            st = paths[i].stat()
            os.utime(paths[i], ns=(st.st_atime_ns, st.st_mtime_ns + later))
        for i in rewritten:
            st = paths[i].stat()
            paths[i].write_bytes(f"{'x' * 16}".encode() + base[16:])
            os.utime(paths[i], ns=(st.st_atime_ns, st.st_mtime_ns + later))
        spy.take()
        t0 = time.perf_counter()
        report = artifact.verify()
        seconds = time.perf_counter() - t0
        opened, read = spy.take()
        want_read = {str(paths[i]) for i in picked}
        by_path = {e.path: e for e in report.entries}
        rel = [str(p.relative_to(root)) for p in paths]
        expected = {k: v for k, v in {"ok": n - len(rewritten),
                                      "changed": len(rewritten)}.items() if v}
        self._check(
            _summary(report) == expected
            and all(by_path[rel[i]].status == "changed" for i in rewritten)
            and all("content is identical" in by_path[rel[i]].detail for i in touched),
            f"local N={n}: verify after touching {len(touched)} and rewriting "
            f"{len(rewritten)} gave {_summary(report)}, expected {expected} (touched ones ok "
            "after re-hashing)",
        )
        self._check(set(opened) == want_read and len(opened) == len(want_read),
                    f"local N={n}: verify after drift read {len(opened)} files "
                    f"({len(set(opened) - want_read)} not touched or rewritten), expected "
                    f"exactly the {len(want_read)} touched or rewritten")
        self._record("local", "verify-drift", n, seconds, files_read=len(opened),
                     bytes_read=read, bound=len(want_read), bound_on="files_read", exact=True,
                     details={"statuses": _summary(report), "exit_code": report.exit_code,
                              "touched": len(touched), "rewritten": len(rewritten)})

        # verify --deep: every file read
        t0 = time.perf_counter()
        report = artifact.verify(deep=True)
        seconds = time.perf_counter() - t0
        opened, read = spy.take()
        self._check(_summary(report) == expected and len(set(opened)) == n,
                    f"local N={n}: deep verify gave {_summary(report)} reading "
                    f"{len(set(opened))} distinct files, expected {expected} reading {n}")
        self._record("local", "verify-deep", n, seconds, files_read=len(opened),
                     bytes_read=read, bound=n, bound_on="files_read", exact=True,
                     details={"statuses": _summary(report), "exit_code": report.exit_code,
                              "mb_per_s": round(read / MIB / seconds, 1) if seconds else None})
        shutil.rmtree(root, ignore_errors=True)

    # -- HTTP --

    def run_http(self, server: LoopbackHTTP, n: int) -> None:
        size = self.args.http_size
        paths = [f"/n{n}/shard-{i % 16:02d}/file-{i:06d}.bin" for i in range(n)]
        contents = {p: _blob(10**9 + i, size) for i, p in enumerate(paths)}
        urls = [server.put(p, contents[p]) for p in paths]
        self.say(f"http N={n}: serving {n} files of {size} bytes at {server.url}/n{n}/")

        # log: one add_reference per URL
        def add_all(art: reftrack.Artifact) -> None:
            for i, url in enumerate(urls):
                art.add_reference(url, name=f"{i:06d}.bin")

        server.take()
        artifact, adding, seconds, client_count = self._log(f"http-{n}", add_all)
        counts = server.take()
        self._check(artifact.file_count == n, f"http N={n}: logged {artifact.file_count} "
                    f"entries, expected {n}")
        self._check(counts.get("HEAD", 0) == n and counts.get("GET", 0) == n,
                    f"http N={n}: log sent {_fmt_ops(counts)}, expected HEAD={n} GET={n}")
        self._record("http", "log", n, seconds, requests=counts, bound=2 * n,
                     reftrack_count=client_count,
                     details={"entries": artifact.file_count,
                              "add_reference_seconds": round(adding, 3),
                              "log_artifact_seconds": round(seconds - adding, 3)})

        # verify: one HEAD each, no GET
        t0 = time.perf_counter()
        report = artifact.verify()
        seconds = time.perf_counter() - t0
        counts = server.take()
        self._check(_summary(report) == {"ok": n}, f"http N={n}: verify gave "
                    f"{_summary(report)}")
        self._check(counts.get("GET", 0) == 0, f"http N={n}: verify sent "
                    f"{counts.get('GET', 0)} GETs, expected none")
        self._record("http", "verify", n, seconds, requests=counts, bound=n,
                     reftrack_count=report.requests,
                     details={"statuses": _summary(report), "exit_code": report.exit_code})

        # download, twice
        target = self.workdir / f"http-download-{n}"
        for operation, bound in (("download", n), ("download-again", 0)):
            before = _reftrack_requests(artifact)
            server.take()
            result, seconds = self._download(artifact, target)
            counts = server.take()
            after = _reftrack_requests(artifact)
            if operation == "download":
                intact = all((target / f"{i:06d}.bin").read_bytes() == contents[p]
                             for i, p in enumerate(paths))
                self._check(result.downloaded == n and result.failed == 0 and intact
                            and counts.get("GET", 0) == n,
                            f"http N={n}: download fetched {result.downloaded}, failed "
                            f"{result.failed} with {_fmt_ops(counts)}, bytes equal: {intact}")
            else:
                self._check(result.skipped == n, f"http N={n}: second download skipped "
                            f"{result.skipped} of {n}")
            self._record("http", operation, n, seconds, requests=counts, bound=bound,
                         exact=True,
                         reftrack_count=None if before is None or after is None
                         else after - before,
                         details={"downloaded": result.downloaded, "skipped": result.skipped,
                                  "failed": result.failed, "bytes": result.bytes})
        shutil.rmtree(target, ignore_errors=True)

        # drift: 1% get other bytes of the same size (new ETag, new Last-Modified)
        changed = self._drifted(n, random.Random(n), self._changes(n))
        for i in changed:
            server.put(paths[i], _blob(-1 - i, size), LAST_MODIFIED + timedelta(days=1))
        server.take()
        t0 = time.perf_counter()
        report = artifact.verify()
        seconds = time.perf_counter() - t0
        counts = server.take()
        expected = {k: v for k, v in {"ok": n - len(changed),
                                      "changed": len(changed)}.items() if v}
        self._check(_summary(report) == expected and report.exit_code == 1,
                    f"http N={n}: verify after changing {len(changed)} gave "
                    f"{_summary(report)} (exit {report.exit_code}), expected {expected}")
        self._check(counts.get("HEAD", 0) == n and counts.get("GET", 0) == len(changed),
                    f"http N={n}: verify after drift sent {_fmt_ops(counts)}, expected "
                    f"HEAD={n} GET={len(changed)}")
        self._record("http", "verify-drift", n, seconds, requests=counts,
                     bound=n + len(changed), reftrack_count=report.requests,
                     details={"statuses": _summary(report), "exit_code": report.exit_code,
                              "rewritten": len(changed)})
        with server._server.lock:
            for path in paths:
                server._server.files.pop(path, None)


# -- output ---------------------------------------------------------------------------------


def _mib(value: int | None) -> str:
    return "" if value is None else f"{value / MIB:.1f}"


def render_table(rows: list[dict[str, Any]]) -> str:
    headers = ["scheme", "N", "operation", "requests", "files read", "MiB read", "bound",
               "seconds", "details"]
    lines: list[list[str]] = []
    for row in rows:
        bound = ""
        if row["bound"] is not None:
            what = {"requests": "", "files_read": " files",
                    "bytes_read": " bytes"}[row["bound_on"]]
            bound = (("= " if row["bound_kind"] == "exact" else "<= ") + str(row["bound"])
                     + what + ("" if row["within_bound"] else "  VIOLATED"))
        details = dict(row["details"])
        parts = [" ".join(f"{k}={v}" for k, v in (details.pop("statuses", None) or {}).items())]
        keep = {
            "log": ("entries", "hash_mb_per_s"),
            "download": ("downloaded", "failed", "per_entry"),
            "download-again": ("skipped",),
            "verify-drift": ("overwritten", "touched", "rewritten"),
            "verify-deep": ("mb_per_s",),
            "naive": ("client",),
        }.get(row["operation"], ())
        parts.append(" ".join(f"{k}={details[k]}" for k in keep if details.get(k) is not None))
        if "note" in details:
            parts.append(details["note"])
        if row["by_operation"]:
            parts.append(_fmt_ops(row["by_operation"]))
        lines.append([
            row["scheme"], str(row["n"]), row["operation"],
            "" if row["requests"] is None else str(row["requests"]),
            "" if row["files_read"] is None else str(row["files_read"]),
            _mib(row["bytes_read"]), bound, f"{row['seconds']:.2f}",
            "; ".join(p for p in parts if p),
        ])
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
              for i, h in enumerate(headers)]
    right = {1, 3, 4, 5, 7}

    def fmt(cells: list[str]) -> str:
        out = [c.rjust(widths[i]) if i in right else c.ljust(widths[i])
               for i, c in enumerate(cells)]
        return "  ".join(out).rstrip()

    result = [fmt(headers), fmt(["-" * w for w in widths])]
    previous = None
    for row, line in zip(rows, lines, strict=True):
        if previous is not None and (row["scheme"], row["n"]) != previous:
            result.append("")
        previous = (row["scheme"], row["n"])
        result.append(fmt(line))
    return "\n".join(result)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench_schemes.py",
        description="Count reftrack's requests (GCS emulator, loopback HTTP server) and file "
                    "reads (local files) for log, verify and download, with wall times.",
    )
    parser.add_argument("--sizes", type=_parse_sizes, default=[1000, 5000],
                        help="comma-separated object/file counts (default 1000,5000)")
    parser.add_argument("--schemes", type=_parse_schemes, default=list(SCHEMES),
                        help="comma-separated subset of gcs,local,http (default all)")
    parser.add_argument("--drift-fraction", type=_fraction, default=0.01,
                        help="fraction changed before verify-drift (default 0.01, at least "
                             "one; local: that many touched and as many rewritten)")
    parser.add_argument("--file-size", type=_positive, default=64 * 1024,
                        help="bytes per local file (default 65536)")
    parser.add_argument("--gcs-size", type=_positive, default=256,
                        help="bytes per GCS object (default 256)")
    parser.add_argument("--http-size", type=_positive, default=1024,
                        help="bytes per HTTP file (default 1024)")
    parser.add_argument("--concurrency", type=_positive, default=32,
                        help="reftrack's concurrency and the naive thread pool (default 32)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    def say(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="reftrack-bench-schemes-",
                                     ignore_cleanup_errors=True) as tmp:
        workdir = Path(tmp)
        run_env = {"REFTRACK_REGISTRY": str(workdir / "registry.db"), **_no_proxy()}
        with scoped_environ(run_env):
            bench = Bench(args, workdir, say)
            say(f"registry {workdir / 'registry.db'}")
            if "gcs" in args.schemes:
                emulator = GCSEmulator()
                gcs_env = {"STORAGE_EMULATOR_HOST": emulator.url,
                           "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
                try:
                    with scoped_environ(gcs_env):
                        for n in args.sizes:
                            bench.run_gcs(emulator, n)
                finally:
                    emulator.stop()
            if "local" in args.schemes:
                spy = ReadSpy()
                with spy.installed():
                    for n in args.sizes:
                        bench.run_local(spy, n)
            if "http" in args.schemes:
                server = LoopbackHTTP()
                try:
                    for n in args.sizes:
                        bench.run_http(server, n)
                finally:
                    server.stop()
    total = time.perf_counter() - started

    if args.json:
        print(json.dumps({
            "ok": not bench.problems,
            "problems": bench.problems,
            "rows": bench.rows,
            "sizes": args.sizes,
            "schemes": args.schemes,
            "drift_fraction": args.drift_fraction,
            "concurrency": args.concurrency,
            "total_seconds": round(total, 3),
            "footer": FOOTER,
        }, indent=2))
    else:
        print(render_table(bench.rows))
        print()
        print("bound: '<=' an upper limit, '=' exact; on requests (gcs, http) or on the files/"
              "bytes read (local).")
        print(FOOTER)
        print(f"total {total:.1f}s")
        if bench.problems:
            print()
            print(f"FAILED: {len(bench.problems)} problem(s):")
            for problem in bench.problems:
                print(f"  {problem}")
        else:
            print("all bounds and result checks hold")
    return 1 if bench.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
