"""The S3 backend against moto's server (s3fs underneath), bound to the contract suite."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from reftrack.backends.s3 import S3Backend
from reftrack.errors import BackendError, BucketNotFound
from reftrack.uri import RefURI

from .contract import ErrorContract, ReadContract, ScanContract, StatContract


class S3Store:
    def __init__(self, client: Any, bucket: str, moto: Any, versioned: bool) -> None:
        self.client = client
        self.bucket = bucket
        self.moto = moto
        self.versioned = versioned
        self.missing_bucket_error = BucketNotFound
        self.backend = S3Backend()

    def uri(self, key: str, version: str | None = None) -> RefURI:
        return RefURI("s3", self.bucket, key, version)

    def write(self, key: str, data: bytes) -> str | None:
        version = self.client.put_object(Bucket=self.bucket, Key=key, Body=data).get("VersionId")
        return None if version in (None, "null") else str(version)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def purge_version(self, key: str, version: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key, VersionId=version)

    def missing_bucket_uri(self, key: str) -> RefURI:
        return RefURI("s3", "no-such-bucket", key)

    @contextmanager
    def deny_access(self) -> Iterator[None]:
        # The server runs in this process: switch on moto's credential checks (what its
        # set_initial_no_auth_action_count does). Our keys are unknown to it -> real 403s.
        from moto import settings
        from moto.core.authorization import ActionAuthenticatorMixin

        previous = settings.INITIAL_NO_AUTH_ACTION_COUNT
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        ActionAuthenticatorMixin.request_count = 0
        try:
            yield
        finally:
            settings.INITIAL_NO_AUTH_ACTION_COUNT = previous


class TestS3Versioned(StatContract, ScanContract, ReadContract, ErrorContract):
    @pytest.fixture
    def store(self, s3: Any, bucket: str, moto_server: Any) -> S3Store:
        return S3Store(s3, bucket, moto_server, versioned=True)


class TestS3Unversioned(StatContract, ScanContract, ReadContract, ErrorContract):
    @pytest.fixture
    def store(self, s3: Any, unversioned_bucket: str, moto_server: Any) -> S3Store:
        return S3Store(s3, unversioned_bucket, moto_server, versioned=False)


def test_versioning_state(s3: Any, bucket: str, unversioned_bucket: str) -> None:
    backend = S3Backend()
    assert backend.versioning(bucket) == "enabled"
    assert backend.versioning(unversioned_bucket) == "disabled"
    s3.create_bucket(Bucket="paused")
    s3.put_bucket_versioning(Bucket="paused", VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_versioning(Bucket="paused", VersioningConfiguration={"Status": "Suspended"})
    assert backend.versioning("paused") == "suspended"


def test_pagination_and_request_count(s3: Any, bucket: str, seed: Any,
                                      requests_log: Any) -> None:
    seed(bucket, {f"many/{i:04d}": b"x" for i in range(1001)})
    backend = S3Backend()
    requests_log.clear()
    keys = [s.key for s in backend.scan(RefURI("s3", bucket, "many/"))]
    assert len(keys) == 1001 and len(set(keys)) == 1001
    assert requests_log.count("GET", "versions") == 2 == len(requests_log) == backend.requests


def test_unreachable_endpoint_is_a_backend_error(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = S3Backend({"endpoint_url": "http://127.0.0.1:9", "config_kwargs": {
        "retries": {"max_attempts": 1}, "connect_timeout": 1}})
    with pytest.raises(BackendError, match="cannot reach S3"):
        backend.stat(RefURI("s3", "some-bucket", "k"))


def test_storage_options_pass_through(moto_server: Any, s3: Any, bucket: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    backend = S3Backend({"endpoint_url": moto_server.url, "key": "a", "secret": "b"})
    assert backend.stat(RefURI("s3", bucket, "k")).size == 1


def test_page_limit_stops_before_fetching_another_page(s3: Any, bucket: str, seed: Any,
                                                       requests_log: Any) -> None:
    from reftrack.backends import ScanLimitReached

    seed(bucket, {f"pl/{i:04d}": b"x" for i in range(1500)})
    backend = S3Backend()
    requests_log.clear()
    with pytest.raises(ScanLimitReached):
        list(backend.scan(RefURI("s3", bucket, "pl/"), page_limit=1))
    assert len(requests_log) == 1
    assert len(list(backend.scan(RefURI("s3", bucket, "pl/"), page_limit=2))) == 1500
