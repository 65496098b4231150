"""GCS test fixtures: gcp-storage-emulator in this process on 127.0.0.1 (port 0).

The emulator's own server is single-threaded and its thread is not a daemon, so the session
fixture serves the emulator's ``RequestHandler`` from a ``ThreadingHTTPServer`` instead, one
request at a time (a lock: the emulator's storage is plain dicts). The handler subclass adds
what tests need and the emulator lacks:

- a server-side log of every request (method, path, query), like the moto ``RequestLog``;
- ``deny()``: while on, every request gets a real HTTP 403 with a GCS-style JSON error body;
- ``unavailable(n)``: the next ``n`` requests get a 503 (to exercise retries);
- pagination of ``objects.list``: the emulator ignores ``maxResults``/``pageToken`` and always
  answers with every object on one page. With ``paginate`` on (the default) the handler pages
  the emulator's own listing as GCS does (at most ``maxResults`` entries of items + prefixes,
  ``nextPageToken`` while more remain). ``paginate = False`` shows the emulator's own answer;
- ``media_headers``: answer media downloads with the identity headers real GCS sends
  (``x-goog-generation``, ``x-goog-metageneration``, ``x-goog-stored-content-length``,
  ``ETag``, ``Last-Modified``); the emulator sends only ``X-Goog-Hash`` and Content-Type;
- ``preconditions``: answer as real GCS does for a generation that is not the live one (404:
  the emulator keeps no old generations, yet answers any generation with the live object) and
  for an ``If-Match`` that does not match (412; the emulator ignores If-Match).

Objects are written straight into the emulator's storage with its own resource code
(``write``/``delete``/``seed``): fast, deterministic, and invisible to the request log, so
the log holds only what reftrack sent. Every request reftrack makes goes through HTTP.

The ``gcs`` fixture gives each test a wiped emulator with one fresh bucket and points
``STORAGE_EMULATOR_HOST`` at it, so reftrack with no storage options reaches it. An autouse
fixture points every other test at a closed local port, so no test can reach real Google.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from functools import partial
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote

import pytest

GCS_BUCKET = "gcs-test-bucket"
CLOSED_PORT_URL = "http://127.0.0.1:9"

_LIST_PATH = re.compile(r"^/storage/v1/b/(?P<bucket>[-.\w]+)/o$")
_OBJECT_PATH = re.compile(r"^(?:/download)?/storage/v1/b/(?P<bucket>[-.\w]+)/o/(?P<key>.*[^/])$")


class GCSRequestLog:
    """Every request the emulator received: (method, path, query), path still %-encoded."""

    def __init__(self) -> None:
        self._calls: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()

    def add(self, method: str, path: str, query: str) -> None:
        with self._lock:
            self._calls.append((method, path, query))

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    @property
    def calls(self) -> list[tuple[str, str, str]]:
        with self._lock:
            return list(self._calls)

    def __len__(self) -> int:
        return len(self.calls)

    def count(self, method: str | None = None, query: str | None = None,
              path: str | None = None) -> int:
        """Requests matching all given: ``query`` is one ``name=value`` item, ``path`` a
        regular expression searched in the path."""
        return sum(
            1
            for m, p, q in self.calls
            if (method is None or m == method)
            and (query is None or query in q.split("&"))
            and (path is None or re.search(path, p))
        )

    def lists(self) -> int:
        """objects.list requests."""
        return self.count("GET", path=r"/b/[^/]+/o$")


@dataclass
class _Controls:
    log: GCSRequestLog = field(default_factory=GCSRequestLog)
    lock: threading.RLock = field(default_factory=threading.RLock)
    denied: bool = False
    fail_next: int = 0
    paginate: bool = True
    media_headers: bool = False
    preconditions: bool = False

    def reset(self) -> None:
        self.denied = False
        self.fail_next = 0
        self.paginate = True
        self.media_headers = False
        self.preconditions = False
        self.log.clear()


def _handler_class() -> type:
    from gcp_storage_emulator.server import RequestHandler

    class Handler(RequestHandler):  # type: ignore[misc,valid-type]
        """The emulator's handler plus a request log, a 403 switch, 503s, pagination and
        real-GCS answers (see the module docstring)."""

        def __init__(self, controls: _Controls, storage: Any, *args: Any, **kwargs: Any):
            self.controls = controls
            self._extra_headers: dict[str, str] = {}
            super().__init__(storage, *args, **kwargs)

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

        def end_headers(self) -> None:
            for name, value in self._extra_headers.items():
                self.send_header(name, value)
            self._extra_headers = {}
            super().end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

        # -- what the emulator does not do ------------------------------------------------

        def _serve(self, method: str) -> None:
            path, _, query = self.path.partition("?")
            controls = self.controls
            controls.log.add(method, path, query)
            with controls.lock:
                if controls.denied:
                    self._drain()
                    self._json(403, _error(403, "forbidden", _denied_message(method, path)))
                    return
                if controls.fail_next > 0:
                    controls.fail_next -= 1
                    self._drain()
                    self._json(503, _error(503, "backendError", "Backend Error"))
                    return
                params = {k: v[-1] for k, v in parse_qs(query).items()}
                listing = _LIST_PATH.match(path)
                if method == "GET" and listing and controls.paginate:
                    self._list_page(listing["bucket"], params)
                    return
                target = _OBJECT_PATH.match(path)
                if method == "GET" and target and self._real_gcs(target, params):
                    return
                getattr(super(), f"do_{method}")()

        def _drain(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)

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
                self._json(404, _error(404, "notFound", "The specified bucket does not exist."))
                return
            entries = sorted(
                [(str(obj["name"]), obj) for obj in items] + [(p, None) for p in prefixes],
                key=lambda entry: entry[0],
            )
            if params.get("pageToken"):
                after = base64.urlsafe_b64decode(params["pageToken"]).decode()
                entries = [entry for entry in entries if entry[0] > after]
            size = max(1, min(int(params.get("maxResults") or 1000), 1000))
            page, rest = entries[:size], entries[size:]
            body: dict[str, Any] = {
                "kind": "storage#objects",
                "items": [obj for _, obj in page if obj is not None],
                "prefixes": [name for name, obj in page if obj is None],
            }
            if rest:
                body["nextPageToken"] = base64.urlsafe_b64encode(page[-1][0].encode()).decode()
            self._json(200, body)

        def _real_gcs(self, target: re.Match[str], params: dict[str, str]) -> bool:
            """Answer (and return True) where real GCS differs from the emulator."""
            from urllib.parse import unquote

            obj = (self.storage.objects.get(target["bucket"]) or {}).get(
                unquote(target["key"])
            )
            if obj is None:
                return False
            media = params.get("alt") == "media" or self.path.startswith("/download/")
            if self.controls.preconditions:
                generation = params.get("generation")
                if generation and generation != str(obj["generation"]):
                    self._json(404, _error(404, "notFound", "No such object."))
                    return True
                wanted = self.headers.get("If-Match")
                if media and wanted and wanted.strip('"') != obj.get("etag"):
                    self._json(412, _error(412, "conditionNotMet", "Precondition Failed"))
                    return True
            if media and self.controls.media_headers:
                updated = datetime.fromisoformat(obj["updated"])
                self._extra_headers = {
                    "x-goog-generation": str(obj["generation"]),
                    "x-goog-metageneration": str(obj["metageneration"]),
                    "x-goog-stored-content-length": str(obj["size"]),
                    "ETag": f'"{obj["etag"]}"',
                    "Last-Modified": format_datetime(updated, usegmt=True),
                }
            return False

    return Handler


def _error(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
        }
    }


def _denied_message(method: str, path: str) -> str:
    if _LIST_PATH.match(path):
        permission, what = "storage.objects.list", "bucket"
    elif "/o/" in path:
        permission = "storage.objects.get" if method == "GET" else "storage.objects.create"
        what = "object"
    else:
        permission, what = "storage.buckets.get", "bucket"
    return (
        f"anonymous caller does not have {permission} access to the Google Cloud Storage "
        f"{what}. Permission '{permission}' denied on resource (or it may not exist)."
    )


class GCSEmulator:
    """The running emulator (session-wide)."""

    def __init__(self) -> None:
        from gcp_storage_emulator.storage import Storage

        for name in ("gcp_storage_emulator", "api.object", "api.bucket"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        self.storage = Storage(use_memory_fs=True)
        # In memory the emulator re-serialises all its metadata to an in-memory ".meta" file on
        # every write (quadratic for many objects); nothing reads it back in memory mode.
        self.storage._write_config_to_file = lambda: None
        self.controls = _Controls()
        self._server = ThreadingHTTPServer(
            ("127.0.0.1", 0), partial(_handler_class(), self.controls, self.storage)
        )
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="gcs-emulator", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def reset(self) -> None:
        with self.controls.lock:
            self.storage.wipe()
            self.controls.reset()


@dataclass
class GCSFixture:
    """What a test gets from the ``gcs`` fixture: a wiped emulator with one bucket."""

    emulator: GCSEmulator
    bucket: str

    @property
    def url(self) -> str:
        return self.emulator.url

    @property
    def log(self) -> GCSRequestLog:
        return self.emulator.controls.log

    def uri(self, key: str, generation: str | None = None) -> str:
        return f"gs://{self.bucket}/{key}" + (f"#{generation}" if generation else "")

    # -- switches -------------------------------------------------------------------------

    @property
    def paginate(self) -> bool:
        return self.emulator.controls.paginate

    @paginate.setter
    def paginate(self, on: bool) -> None:
        self.emulator.controls.paginate = on

    @property
    def media_headers(self) -> bool:
        return self.emulator.controls.media_headers

    @media_headers.setter
    def media_headers(self, on: bool) -> None:
        self.emulator.controls.media_headers = on

    @property
    def preconditions(self) -> bool:
        return self.emulator.controls.preconditions

    @preconditions.setter
    def preconditions(self, on: bool) -> None:
        self.emulator.controls.preconditions = on

    @contextmanager
    def deny(self) -> Iterator[None]:
        """Every request gets HTTP 403 (a GCS JSON error, reason ``forbidden``) meanwhile."""
        self.emulator.controls.denied = True
        try:
            yield
        finally:
            self.emulator.controls.denied = False

    @contextmanager
    def unavailable(self, requests: int) -> Iterator[None]:
        """The next ``requests`` requests get HTTP 503 (reason ``backendError``)."""
        self.emulator.controls.fail_next = requests
        try:
            yield
        finally:
            self.emulator.controls.fail_next = 0

    # -- data (straight into the emulator's storage, not logged) --------------------------

    def create_bucket(self, name: str) -> None:
        from gcp_storage_emulator.handlers.buckets import create_bucket

        with self.emulator.controls.lock:
            create_bucket(name, self.emulator.storage)

    def set_versioning(self, enabled: bool, bucket: str | None = None) -> None:
        with self.emulator.controls.lock:
            self.emulator.storage.buckets[bucket or self.bucket]["versioning"] = {
                "enabled": enabled
            }

    def write(self, key: str, data: bytes, bucket: str | None = None) -> str:
        """Create or overwrite an object; returns its new generation."""
        return self.seed({key: data}, bucket)[key]

    def seed(self, objects: Mapping[str, bytes], bucket: str | None = None) -> dict[str, str]:
        """Write many objects at once; returns key -> generation."""
        from gcp_storage_emulator.handlers.objects import _checksums, _make_object_resource

        bucket = bucket or self.bucket
        generations: dict[str, str] = {}
        with self.emulator.controls.lock:
            for key, data in objects.items():
                obj = _make_object_resource(
                    self.url, bucket, key, "application/octet-stream", str(len(data))
                )
                obj = _checksums(data, obj)
                self.emulator.storage.create_file(bucket, key, data, obj)
                generations[key] = str(obj["generation"])
        return generations

    def delete(self, key: str, bucket: str | None = None) -> None:
        with self.emulator.controls.lock:
            self.emulator.storage.delete_file(bucket or self.bucket, key)

    def resource(self, key: str, bucket: str | None = None) -> dict[str, Any]:
        """The emulator's stored object resource (a copy)."""
        with self.emulator.controls.lock:
            return dict(self.emulator.storage.get_file_obj(bucket or self.bucket, key))

    def filesystem(self) -> Any:
        """A gcsfs filesystem on the emulator (anonymous), for tests that want one."""
        from gcsfs.core import GCSFileSystem

        return GCSFileSystem(endpoint_url=self.url, token="anon", skip_instance_cache=True,
                             use_listings_cache=False)

    @staticmethod
    def quote(key: str) -> str:
        return quote(key, safe="")


@pytest.fixture(autouse=True)
def gcs_isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No test may reach real Google: GCS goes to a closed local port unless the ``gcs``
    fixture points it at the emulator; no credentials file, no metadata server."""
    monkeypatch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", CLOSED_PORT_URL)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud-config"))
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    monkeypatch.setenv("NO_GCE_CHECK", "true")


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GCSEmulator]:
    emulator = GCSEmulator()
    yield emulator
    emulator.stop()


@pytest.fixture
def gcs(gcs_emulator: GCSEmulator, gcs_isolated_env: None,
        monkeypatch: pytest.MonkeyPatch) -> GCSFixture:
    """A wiped emulator with one empty bucket; ``STORAGE_EMULATOR_HOST`` points at it."""
    gcs_emulator.reset()
    fixture = GCSFixture(gcs_emulator, GCS_BUCKET)
    fixture.create_bucket(GCS_BUCKET)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.url)
    return fixture
