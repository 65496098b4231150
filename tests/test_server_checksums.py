"""Server-side checksums (S3 ``x-amz-checksum-*``) and deep verification without downloading;
multipart ETags recomputed from the bytes; ``--deep`` streaming, concurrent and chunked.

What moto 5.2.1's server does (and so what these tests can show):

- PutObject with ``ChecksumAlgorithm`` stores the checksum (SHA256, SHA1, CRC32; CRC32C only
  with the ``crc32c`` package, else it stores a CRC32 under the CRC32C name; CRC64NVME only with
  awscrt, else a CRC32 again). botocore >= 1.36 sends a CRC32 with every PutObject by default
  ("flexible checksums"), so objects put by boto3 carry one; objects seeded straight into moto's
  state carry none.
- HeadObject with ``ChecksumMode=ENABLED`` returns the value, but neither ``ChecksumType`` nor
  the ``-N`` suffix of composite checksums (GetObject and GetObjectAttributes say COMPOSITE).
- ListObjectVersions never names ``ChecksumAlgorithm`` (ListObjectsV2 does).
- GetObjectAttributes returns ``Checksum`` (with ``ChecksumType``) but never ``ObjectParts``;
  HeadObject with ``PartNumber=1`` returns the first part's ContentLength and ``PartsCount``.
- Multipart uploads created with ``ChecksumAlgorithm`` get a COMPOSITE checksum (a checksum of
  the parts' checksums); without one, no checksum is exposed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import zlib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import reftrack
from reftrack import checksums
from reftrack.backends import Backends
from reftrack.backends import s3 as s3_backend
from reftrack.backends.s3 import _checksums
from reftrack.cli import app
from reftrack.errors import BucketAccessDenied
from reftrack.integrity import MultipartCheck, expected_checksums
from reftrack.manifest import Manifest, ManifestEntry
from reftrack.settings import Settings
from reftrack.verify import verify_manifest

MIB = 1024 * 1024


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def add(uri: str, **kw: Any) -> reftrack.Artifact:
    art = reftrack.Artifact("ds", type="dataset")
    art.add_reference(uri, **kw)
    return art


def deep(manifest: Manifest, **kw: Any) -> reftrack.VerifyReport:
    return verify_manifest(manifest, Backends(Settings.from_env()), deep=True,
                           bucket_rules=False, **kw)


def queries(query: str) -> set[str]:
    return {part.partition("=")[0] for part in query.split("&") if part}


def object_gets(log: Any) -> int:
    """GetObject requests: a GET of a key that is no GetObjectAttributes."""
    return sum(1 for method, path, query in log.calls
               if method == "GET" and path.split("/", 2)[2:] != [""]
               and len(path.split("/", 2)) == 3 and "attributes" not in queries(query))


def count(log: Any, method: str, query: str | None = None) -> int:
    return sum(1 for m, path, q in log.calls
               if m == method and len(path.split("/", 2)) == 3 and path.split("/", 2)[2]
               and (query is None or query in queries(q)))


def tampered(manifest: Manifest, path: str, **changes: Any) -> Manifest:
    entries = [e.model_copy(update=changes) if e.path == path else e
               for e in manifest.sorted_entries()]
    out = Manifest(entries)
    out.sources.extend(manifest.sources)
    return out


def multipart_upload(s3: Any, bucket: str, key: str, parts: list[bytes], **kw: Any) -> str:
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, **kw)
    done = []
    for number, data in enumerate(parts, start=1):
        answer = s3.upload_part(Bucket=bucket, Key=key, PartNumber=number, Body=data,
                                UploadId=upload["UploadId"], **kw)
        part = {"PartNumber": number, "ETag": answer["ETag"]}
        part.update({k: v for k, v in answer.items() if k.startswith("Checksum")})
        done.append(part)
    answer = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"],
                                          MultipartUpload={"Parts": done})
    return str(answer["ETag"]).strip('"')


# -- recording ----------------------------------------------------------------------------


def test_single_object_records_the_server_sha256_with_its_one_head(
        s3: Any, bucket: str, requests_log: Any) -> None:
    body = b"pinned bytes"
    s3.put_object(Bucket=bucket, Key="one.bin", Body=body, ChecksumAlgorithm="SHA256")
    requests_log.clear()
    entry = add(f"s3://{bucket}/one.bin").manifest.entries["one.bin"]
    assert entry.checksums is not None and entry.checksums["sha256"] == sha256_hex(body)
    # one HEAD (which asked for the checksums) and the bucket's versioning state: no extra
    assert count(requests_log, "HEAD") == 1 and len(requests_log) == 2
    assert entry.digest == entry.etag  # the W&B digest stays the ETag


def test_default_boto3_puts_carry_a_crc32_and_seeded_objects_none(
        s3: Any, bucket: str, put: Any, seed: Any) -> None:
    """botocore's flexible checksums: a plain put_object sends (and S3 keeps) a CRC32."""
    put(bucket, "plain.txt", b"hello")
    seed(bucket, {"seeded.txt": b"hello"})
    plain = add(f"s3://{bucket}/plain.txt").manifest.entries["plain.txt"]
    assert plain.checksums == {"crc32": f"{zlib.crc32(b'hello'):08x}"}
    seeded = add(f"s3://{bucket}/seeded.txt").manifest.entries["seeded.txt"]
    assert seeded.checksums is None


def test_prefix_records_server_checksums_only_when_asked(
        s3: Any, bucket: str, requests_log: Any) -> None:
    files = {f"d/{i}.bin": os.urandom(100 + i) for i in range(4)}
    for key, data in files.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256")
    s3.put_object(Bucket=bucket, Key="d/0.bin", Body=b"newer", ChecksumAlgorithm="SHA256")
    files["d/0.bin"] = b"newer"

    requests_log.clear()
    cheap = add(f"s3://{bucket}/d/")
    assert all(e.checksums is None for e in cheap.manifest.entries.values())
    assert count(requests_log, "HEAD") == 0  # the default keeps the listing's cost

    requests_log.clear()
    art = add(f"s3://{bucket}/d/", server_checksums=True)
    got = {e.path: (e.checksums or {}).get("sha256") for e in art.manifest.entries.values()}
    assert got == {k.removeprefix("d/"): sha256_hex(v) for k, v in files.items()}
    # moto's version listings name no algorithm: one HEAD per current object (not per version)
    assert count(requests_log, "HEAD") == 4
    assert requests_log.count("GET", "versions") == 1

    with pytest.raises(reftrack.UsageError, match="checksum=True"):
        add(f"s3://{bucket}/d/", server_checksums=True, checksum=False)


def test_listing_names_decide_which_objects_get_a_head(
        s3: Any, bucket: str, requests_log: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """S3's version listings name each object's checksum algorithm: only those get a HEAD."""
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"d/{i}", Body=b"x" * i, ChecksumAlgorithm="SHA256")
    real = s3_backend.S3Backend._call

    def named(self: Any, operation: str, uri: Any, **kw: Any) -> dict[str, Any]:
        answer = real(self, operation, uri, **kw)
        if operation == "list_object_versions":
            for item in answer.get("Versions", ()):
                if item["Key"] in ("d/1", "d/3"):
                    item["ChecksumAlgorithm"] = ["SHA256"]
        return answer

    monkeypatch.setattr(s3_backend.S3Backend, "_call", named)
    requests_log.clear()
    art = add(f"s3://{bucket}/d/", server_checksums=True)
    assert count(requests_log, "HEAD") == 2
    with_values = {e.path for e in art.manifest.entries.values() if e.checksums}
    assert with_values == {"1", "3"}


def test_cli_log_server_checksums(s3: Any, bucket: str, requests_log: Any) -> None:
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"c/{i}", Body=bytes([i]) * 10,
                      ChecksumAlgorithm="SHA1")
    requests_log.clear()
    result = CliRunner().invoke(app, ["log", f"s3://{bucket}/c/", "-p", "p", "-n", "ds",
                                      "--server-checksums", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["entries"] == 3
    assert count(requests_log, "HEAD") == 3
    entries = reftrack.Api().artifact("p/ds:v0").manifest.entries
    assert entries["1"].checksums == {"sha1": hashlib.sha1(b"\x01" * 10).hexdigest()}


# -- deep without downloading ------------------------------------------------------------


def test_deep_verify_asks_the_server_not_the_bytes(
        s3: Any, bucket: str, requests_log: Any) -> None:
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"d/{i}", Body=os.urandom(2000),
                      ChecksumAlgorithm="SHA256")
    manifest = add(f"s3://{bucket}/d/", server_checksums=True).manifest

    requests_log.clear()
    report = deep(manifest)
    assert report.summary["ok"] == 3 and report.passed
    assert all("server-side sha256 matches" in e.detail for e in report.entries)
    assert object_gets(requests_log) == 0  # no byte was read
    assert count(requests_log, "HEAD") == 3  # the listing had no values: one HEAD each

    bad = tampered(manifest, "1", checksums={"sha256": "0" * 64})
    requests_log.clear()
    shallow = verify_manifest(bad, Backends(Settings.from_env()), bucket_rules=False)
    assert shallow.passed  # the listing carries ETags and sizes, not checksum values
    report = deep(bad)
    by_path = {e.path: e for e in report.entries}
    assert by_path["1"].status.value == "corrupt" and report.exit_code == 1
    assert "server-side sha256" in by_path["1"].detail and "no bytes read" in by_path["1"].detail
    assert by_path["0"].status.value == "ok"
    assert object_gets(requests_log) == 0


def test_single_object_entries_need_no_request_beyond_their_head(
        s3: Any, bucket: str, requests_log: Any) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"abc", ChecksumAlgorithm="SHA256")
    manifest = add(f"s3://{bucket}/k").manifest
    requests_log.clear()
    report = deep(manifest)
    assert report.entries[0].status.value == "ok"
    assert "server-side sha256 matches the record (the HEAD's" in report.entries[0].detail
    assert len(requests_log) == 1 and count(requests_log, "HEAD") == 1
    bad = tampered(manifest, "k", checksums={"sha256": "1" * 64})
    report = verify_manifest(bad, Backends(Settings.from_env()), bucket_rules=False)
    assert report.entries[0].status.value == "corrupt"  # the HEAD's checksum tells, even shallow


def test_unversioned_object_with_a_checksum_still_refuses_a_changed_object(
        s3: Any, unversioned_bucket: str, requests_log: Any, tmp_path: Path) -> None:
    """A recorded S3 checksum does not weaken the ETag: a changed unversioned object is
    ``changed`` without reading it, and download refuses it (If-Match)."""
    b = unversioned_bucket
    s3.put_object(Bucket=b, Key="u", Body=b"first", ChecksumAlgorithm="SHA256")
    with reftrack.init(project="p", job_type="t") as run:
        art = add(f"s3://{b}/u")
        run.log_artifact(art)
    s3.put_object(Bucket=b, Key="u", Body=b"second!", ChecksumAlgorithm="SHA256")
    requests_log.clear()
    logged = reftrack.Api().artifact("p/ds:v0")
    assert logged.verify().entries[0].status.value == "changed"
    assert object_gets(requests_log) == 0
    with pytest.raises(reftrack.DownloadFailed):
        logged.download(tmp_path / "out")
    assert not (tmp_path / "out" / "u").exists()


def test_stat_falls_back_to_a_plain_head_when_checksums_are_refused(
        s3: Any, bucket: str, put: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading an SSE-KMS object's checksum needs kms:Decrypt; the object is still usable."""
    put(bucket, "kms.bin", b"secret")
    real = s3_backend.S3Backend._call

    def refuse(self: Any, operation: str, uri: Any, **kw: Any) -> dict[str, Any]:
        if kw.get("ChecksumMode"):
            raise BucketAccessDenied("denied (kms:Decrypt)", uri.bucket_uri)
        return real(self, operation, uri, **kw)

    monkeypatch.setattr(s3_backend.S3Backend, "_call", refuse)
    entry = add(f"s3://{bucket}/kms.bin").manifest.entries["kms.bin"]
    assert entry.size == 6 and entry.version_id and entry.checksums is None


# -- composite checksums ------------------------------------------------------------------


def test_composite_checksums_are_kept_apart_and_compared_server_side_only(
        s3: Any, bucket: str, requests_log: Any, tmp_path: Path) -> None:
    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), b"tail"]
    etag = multipart_upload(s3, bucket, "mp/c.bin", parts, ChecksumAlgorithm="SHA256")
    composite = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).hexdigest()

    entry = add(f"s3://{bucket}/mp/c.bin").manifest.entries["c.bin"]
    assert entry.etag == etag and etag.endswith("-3")
    # moto's HEAD says neither COMPOSITE nor -3: the multipart ETag tells it is no content hash
    assert entry.checksums == {"s3-composite-sha256": composite}
    assert expected_checksums(entry) == {}  # never checked against the bytes

    art = add(f"s3://{bucket}/mp/c.bin")
    requests_log.clear()
    report = deep(art.manifest)
    assert report.entries[0].status.value == "ok"
    assert "server-side composite sha256 matches" in report.entries[0].detail
    assert object_gets(requests_log) == 0

    bad = tampered(art.manifest, "c.bin", checksums={"s3-composite-sha256": "2" * 64})
    assert deep(bad).entries[0].status.value == "corrupt"

    # a composite checksum equal to the content's sha256 still decides nothing locally
    assert checksums.compare({"s3-composite-sha256": composite}, {"sha256": composite}) is None


def test_checksum_normaliser() -> None:
    raw = hashlib.sha256(b"x").digest()
    b64 = base64.b64encode(raw).decode()
    single = "0" * 32
    multi = "0" * 32 + "-3"
    assert _checksums({"ChecksumSHA256": b64}, single) == {"sha256": raw.hex()}
    # composite: said so, or a -N suffix, or a multipart object with no type (older S3, moto)
    key = "s3-composite-sha256"
    assert _checksums({"ChecksumSHA256": b64, "ChecksumType": "COMPOSITE"}, multi) == \
        {key: raw.hex()}
    assert _checksums({"ChecksumSHA256": b64 + "-3"}, None) == {key: raw.hex()}
    assert _checksums({"ChecksumSHA256": b64}, multi) == {key: raw.hex()}
    # full-object checksums of multipart uploads (CRC64NVME always is one)
    crc = base64.b64encode(b"\x01\x02\x03\x04").decode()
    assert _checksums({"ChecksumCRC32": crc, "ChecksumType": "FULL_OBJECT"}, multi) == \
        {"crc32": "01020304"}
    crc64 = base64.b64encode(bytes(range(8))).decode()
    assert _checksums({"ChecksumCRC64NVME": crc64}, multi) == {"crc64nvme": bytes(range(8)).hex()}
    # GetObjectAttributes nests them; junk and unknown fields are ignored
    assert _checksums({"Checksum": {"ChecksumSHA1": base64.b64encode(b"a" * 20).decode(),
                                    "ChecksumType": "FULL_OBJECT"}}, single) == \
        {"sha1": (b"a" * 20).hex()}
    assert _checksums({"ChecksumSHA256": "not base64!", "ChecksumFUTURE": b64}, single) == {}


def test_algorithms_and_what_can_be_computed_here() -> None:
    h = checksums.Hasher(["sha1", "crc32", "sha512"])
    h.update(b"hello")
    out = h.hexdigests()
    assert out["crc32"] == base64.b64decode("NhCmhg==").hex()  # S3's CRC32 of b"hello"
    assert out["sha1"] == hashlib.sha1(b"hello").hexdigest()
    assert out["sha512"] == hashlib.sha512(b"hello").hexdigest()
    assert not checksums.computable("xxhash64") and not checksums.computable("s3-composite-crc32")
    with pytest.raises(ValueError, match="server-side"):
        checksums.Hasher(["xxhash3"])
    with pytest.raises(ValueError, match="unknown checksum"):
        checksums.Hasher(["whirlpool"])
    # the strongest computable one is hashed; an uncomputable one never decides locally
    assert checksums.local_algorithms({"crc32": "a", "sha256": "b", "xxhash128": "c"}) == \
        ["sha256"]
    assert checksums.local_algorithms({"xxhash64": "a"}) == []
    assert checksums.compare({"sha256": "aa", "crc32": "bb"}, {"crc32": "bb"}) is True
    try:
        import awscrt  # noqa: F401
    except ImportError:
        assert not checksums.computable("crc64nvme")
        assert checksums.local_algorithms({"crc64nvme": "a"}) == []
    else:  # pragma: no cover - awscrt is optional
        h = checksums.Hasher(["crc64nvme"])
        h.update(b"123456789")
        assert h.hexdigests()["crc64nvme"] == "ae8b14860a799888"  # the CRC64/NVME check value
    ManifestEntry(path="x", ref="s3://b/x", checksums={"crc64nvme": "ab", "sha1": "cd",
                                                      "s3-composite-crc32": "01"})


# -- multipart ETags, recomputed from the bytes -------------------------------------------


@pytest.fixture
def multipart(s3: Any, bucket: str) -> tuple[Manifest, str]:
    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(1234)]
    etag = multipart_upload(s3, bucket, "mp/big.bin", parts)
    with reftrack.init(project="p", job_type="t") as run:
        art = add(f"s3://{bucket}/mp/")
        run.log_artifact(art)
    entry = art.manifest.entries["big.bin"]
    assert entry.etag == etag and etag.endswith("-3") and entry.checksums is None
    return art.manifest, etag


def test_deep_recomputes_a_multipart_etag(multipart: tuple[Manifest, str],
                                          requests_log: Any) -> None:
    manifest, _ = multipart
    requests_log.clear()
    report = deep(manifest)
    result = report.entries[0]
    assert result.status.value == "ok", result.detail
    assert "multipart ETag recomputed" in result.detail
    # moto's GetObjectAttributes lists no parts: HeadObject partNumber=1 told the part size
    assert "5 MiB from HeadObject partNumber=1" in result.detail
    assert count(requests_log, "GET", "attributes") == 1
    assert count(requests_log, "HEAD", "partNumber") == 1
    assert object_gets(requests_log) == 1


def test_deep_multipart_etag_catches_other_bytes(multipart: tuple[Manifest, str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    manifest, _ = multipart
    assert verify_manifest(manifest, Backends(Settings.from_env()), bucket_rules=False).passed
    read = s3_backend.S3Reader.read
    flipped: list[bool] = []

    def flip(self: Any, size: int) -> bytes:
        data: bytes = read(self, size)
        if data and not flipped:
            flipped.append(True)
            return bytes([data[0] ^ 1]) + data[1:]
        return data

    monkeypatch.setattr(s3_backend.S3Reader, "read", flip)
    result = deep(manifest).entries[0]
    assert result.status.value == "corrupt"
    assert "not the recorded" in result.detail and "HeadObject partNumber=1" in result.detail


def test_deep_multipart_etag_with_a_corrupted_record(multipart: tuple[Manifest, str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A record whose ETag the store cannot confirm: corrupt (the ETag already says so), and
    the bytes, re-hashed, do not reproduce it either."""
    manifest, etag = multipart
    bad = tampered(manifest, "big.bin", etag="f" * 32 + "-3")
    assert deep(bad).entries[0].status.value == "corrupt"
    # the bytes decide even when the metadata agrees with the (wrong) record
    monkeypatch.setattr(s3_backend.S3Backend, "_from_info", _etag_says(etag, "f" * 32 + "-3"))
    result = deep(bad).entries[0]
    assert result.status.value == "corrupt" and "not the recorded" in result.detail


def _etag_says(real_etag: str, claimed: str) -> Any:
    original = s3_backend.S3Backend._from_info

    def from_info(bucket: str, key: str, info: dict[str, Any], **flags: Any) -> Any:
        stat = original(bucket, key, info, **flags)
        if stat.etag == real_etag:
            from dataclasses import replace
            return replace(stat, etag=claimed)
        return stat

    return staticmethod(from_info)


def test_deep_multipart_with_unknown_part_size_guesses_and_says_so(
        multipart: tuple[Manifest, str], monkeypatch: pytest.MonkeyPatch,
        requests_log: Any) -> None:
    manifest, _ = multipart
    monkeypatch.setattr(s3_backend.S3Backend, "part_sizes", lambda self, uri: None)
    requests_log.clear()
    result = deep(manifest).entries[0]
    assert result.status.value == "ok"
    assert "part size 5 MiB, guessed from the part sizes common clients use" in result.detail
    assert object_gets(requests_log) == 1


def test_unusual_part_sizes_are_inconclusive_never_corrupt(
        s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = [os.urandom(6 * MIB), os.urandom(6 * MIB), b"end"]  # 6 MiB: no common size
    multipart_upload(s3, bucket, "odd/o.bin", parts)
    manifest = add(f"s3://{bucket}/odd/").manifest
    assert deep(manifest).entries[0].status.value == "ok"  # HEAD partNumber=1: 6 MiB, exact
    monkeypatch.setattr(s3_backend.S3Backend, "part_sizes", lambda self, uri: None)
    result = deep(manifest).entries[0]
    assert result.status.value == "ok" and "inconclusive" in result.detail


def test_multipart_check_with_exact_part_sizes() -> None:
    parts = [b"a" * 7, b"b" * 9, b"c" * 2]  # uneven, as GetObjectAttributes may report
    etag = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + "-3"
    check = MultipartCheck(etag, 18, ((7, 9, 2), "GetObjectAttributes"))
    for hasher in check.hashers:
        hasher.update(b"".join(parts))
    decided, note = check.verdict()
    assert decided is True and "3 part sizes from GetObjectAttributes" in note
    wrong = MultipartCheck(etag, 18, ((7, 9, 2), "GetObjectAttributes"))
    for hasher in wrong.hashers:
        hasher.update(b"a" * 7 + b"b" * 8 + b"X" + b"c" * 2)
    assert wrong.verdict()[0] is False


# -- deep streaming: concurrent, bounded ----------------------------------------------------


def test_deep_streams_objects_without_server_checksums_concurrently_in_chunks(
        bucket: str, seed: Any, requests_log: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    files = {f"s/{i}": os.urandom(3 * MIB + i) for i in range(6)}
    seed(bucket, files)  # seeded: no server checksum, a single-part ETag (the MD5)
    manifest = add(f"s3://{bucket}/s/").manifest
    assert all(e.checksums is None for e in manifest.entries.values())

    lock = threading.Lock()
    active = [0]
    overlapped = threading.Event()
    sizes: list[int] = []
    real_open, real_read = s3_backend.S3Backend.open, s3_backend.S3Reader.read
    real_close = s3_backend.S3Reader.close

    def opened(self: Any, uri: Any, **kw: Any) -> Any:
        reader = real_open(self, uri, **kw)
        with lock:
            active[0] += 1
            if active[0] >= 2:
                overlapped.set()
        return reader

    def read(self: Any, size: int) -> bytes:
        sizes.append(size)
        overlapped.wait(5)  # a lone reader waits (at most 5 s) for a second one
        data: bytes = real_read(self, size)
        return data

    def close(self: Any) -> None:
        with lock:
            active[0] -= 1
        real_close(self)

    monkeypatch.setattr(s3_backend.S3Backend, "open", opened)
    monkeypatch.setattr(s3_backend.S3Reader, "read", read)
    monkeypatch.setattr(s3_backend.S3Reader, "close", close)
    requests_log.clear()
    report = deep(manifest, concurrency=4)
    assert report.summary["ok"] == 6
    assert all("bytes re-hashed: md5 match" in e.detail for e in report.entries)
    assert object_gets(requests_log) == 6 and count(requests_log, "HEAD") == 0
    assert overlapped.is_set()  # two objects were being hashed at once
    assert sizes and max(sizes) <= MIB  # streamed in chunks, never a whole object
