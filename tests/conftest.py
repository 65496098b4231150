"""Shared fixtures: one real S3 API (moto's server on 127.0.0.1) per session, reset between
tests, with a server-side log of every request so tests can count them; a fresh versioned
bucket per test; an isolated environment (no real AWS, no user registry)."""

from __future__ import annotations

import logging
import os
import threading
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

BUCKET = "test-bucket"

# Fixtures for the other schemes' loopback servers live in their own modules.
pytest_plugins = ["gcs_fixtures", "http_fixtures", "pg_fixtures", "server_fixtures"]


class RequestLog:
    """Every S3 request the server received (moto's own /moto-api/ calls excluded)."""

    def __init__(self) -> None:
        self._calls: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()

    def wrap(self, app: Callable[..., Any]) -> Callable[..., Any]:
        def logged(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            path = environ.get("PATH_INFO", "")
            if not path.startswith("/moto-api"):
                with self._lock:
                    self._calls.append(
                        (environ["REQUEST_METHOD"], path, environ.get("QUERY_STRING", ""))
                    )
            return app(environ, start_response)

        return logged

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    @property
    def calls(self) -> list[tuple[str, str, str]]:
        with self._lock:
            return list(self._calls)

    def __len__(self) -> int:
        return len(self.calls)

    def count(self, method: str | None = None, query: str | None = None) -> int:
        return sum(
            1
            for m, _, q in self.calls
            if (method is None or m == method) and (query is None or query in q.split("&"))
        )


@dataclass
class FaultRule:
    method: str | None
    query: str | None  # one name or name=value item of the query string
    path: str | None  # a substring of the path
    status: int
    code: str
    times: int | None  # None: every matching request
    drop: bool  # answer 200, then cut the body short (a connection dropped mid-response)


class Faults:
    """Fault injection in front of moto's server (real HTTP errors and dropped connections
    that reach s3fs/botocore exactly as S3's would): ``faults.add(method="HEAD", path="/k",
    status=503, code="SlowDown", times=2)``. Cleared between tests."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self.injected = 0

    def add(self, *, method: str | None = None, query: str | None = None,
            path: str | None = None, status: int = 503, code: str = "SlowDown",
            times: int | None = None, drop: bool = False) -> None:
        with self._lock:
            self._rules.append(FaultRule(method, query, path, status, code, times, drop))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self.injected = 0

    def _match(self, environ: dict[str, Any]) -> FaultRule | None:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        items = environ.get("QUERY_STRING", "").split("&")
        names = {item.partition("=")[0] for item in items}
        with self._lock:
            for rule in self._rules:
                if rule.times is not None and rule.times <= 0:
                    continue
                if rule.method is not None and rule.method != method:
                    continue
                if rule.query is not None and rule.query not in items and rule.query not in names:
                    continue
                if rule.path is not None and rule.path not in path:
                    continue
                if rule.times is not None:
                    rule.times -= 1
                self.injected += 1
                return rule
        return None

    def wrap(self, app: Callable[..., Any]) -> Callable[..., Any]:
        def faulty(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            path = environ.get("PATH_INFO", "")
            rule = None if path.startswith("/moto-api") else self._match(environ)
            if rule is None:
                return app(environ, start_response)
            if rule.drop:
                start_response("200 OK", [("Content-Length", "1000"),
                                          ("Content-Type", "application/xml")])

                def cut() -> Any:
                    yield b"<?xml"
                    raise ConnectionResetError("fault injected: connection dropped")

                return cut()
            body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{rule.code}</Code>'
                    f"<Message>fault injected by the test</Message></Error>").encode()
            reason = {500: "Internal Server Error", 503: "Service Unavailable",
                      403: "Forbidden", 404: "Not Found"}.get(rule.status, "Error")
            start_response(f"{rule.status} {reason}",
                           [("Content-Type", "application/xml"),
                            ("Content-Length", str(len(body)))])
            return [b"" if environ["REQUEST_METHOD"] == "HEAD" else body]

        return faulty


@dataclass
class MotoEndpoint:
    url: str
    requests: RequestLog
    faults: Faults

    def post(self, path: str, data: bytes = b"") -> bytes:
        with urllib.request.urlopen(
            urllib.request.Request(self.url + path, data=data, method="POST"), timeout=30
        ) as response:
            body: bytes = response.read()
            return body

    def reset(self) -> None:
        self.post("/moto-api/reset")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoEndpoint]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    log = RequestLog()
    faults = Faults()
    inner = server._server
    assert inner is not None
    # werkzeug reads server.app on every request; the log sees every attempt, faulted or not
    inner.app = log.wrap(faults.wrap(inner.app))
    host, port = server.get_host_and_port()
    yield MotoEndpoint(f"http://{host}:{port}", log, faults)
    server.stop()


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No test may reach real AWS or the user's own registry."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "REFTRACK_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # Anything not pointed at moto goes to a closed local port, never to AWS.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("REFTRACK_REGISTRY", str(tmp_path / "registry.db"))


@pytest.fixture
def s3(moto_server: MotoEndpoint, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 client on a freshly reset moto server; reftrack sees the same endpoint."""
    moto_server.reset()
    moto_server.faults.clear()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_server.url)
    client = boto3.client("s3", endpoint_url=moto_server.url, region_name="us-east-1")
    moto_server.requests.clear()
    return client


@pytest.fixture
def requests_log(moto_server: MotoEndpoint) -> RequestLog:
    return moto_server.requests


@pytest.fixture
def faults(moto_server: MotoEndpoint) -> Iterator[Faults]:
    moto_server.faults.clear()
    yield moto_server.faults
    moto_server.faults.clear()


@pytest.fixture
def bucket(s3: Any) -> str:
    """A new, empty, versioned bucket."""
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return BUCKET


@pytest.fixture
def unversioned_bucket(s3: Any) -> str:
    s3.create_bucket(Bucket="plain-bucket")
    return "plain-bucket"


@pytest.fixture
def put(s3: Any) -> Callable[..., str]:
    """put(bucket, key, data) -> version id (None for unversioned buckets is 'null')."""

    def _put(bucket: str, key: str, data: bytes) -> str:
        return str(s3.put_object(Bucket=bucket, Key=key, Body=data).get("VersionId"))

    return _put


@pytest.fixture
def put_many(s3: Any) -> Callable[[str, dict[str, bytes]], None]:
    def _put_many(bucket: str, objects: dict[str, bytes]) -> None:
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda kv: s3.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]),
                          objects.items()))

    return _put_many


@pytest.fixture
def seed(s3: Any, put_many: Callable[[str, dict[str, bytes]], None]) -> Callable[..., None]:
    """Bulk set-up: write many objects straight into the in-process moto server's state.

    Uploading 1000 objects through the API takes moto ~5 s; this takes milliseconds. It only
    prepares data: every call reftrack makes still goes through the real S3 API. Falls back
    to real PUTs if moto's internals move.
    """

    def _seed(bucket: str, objects: dict[str, bytes]) -> None:
        try:
            from moto.core import DEFAULT_ACCOUNT_ID
            from moto.s3.models import s3_backends

            backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        except (ImportError, KeyError):  # pragma: no cover - moto changed
            put_many(bucket, objects)
            return
        for key, data in objects.items():
            backend.put_object(bucket, key, data)

    return _seed
