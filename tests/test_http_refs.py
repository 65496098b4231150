"""HTTP(S) references end to end against a loopback HTTP server: record (ETag, Last-Modified,
size, sha256), verify (metadata first, re-hash only when metadata moved, deep), download."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import reftrack
from reftrack.cli import app
from reftrack.errors import DownloadFailed, ObjectNotFound, UsageError

LATER = datetime(2026, 6, 1, tzinfo=UTC)


def log(*uris: str, name: str = "web", **kw: Any) -> reftrack.Artifact:
    with reftrack.init(project="h", job_type="ingest") as run:
        art = reftrack.Artifact(name, type="dataset")
        for uri in uris:
            art.add_reference(uri, **kw)
        run.log_artifact(art)
    return art


def test_reference_records_etag_last_modified_size_sha256(http_server: Any) -> None:
    url = http_server.put("files/classes.txt?sig=abc", b"cat\ndog\n")
    http_server.clear_log()
    art = log(url)
    e = art.manifest.entries["classes.txt"]  # the file name, without the query string
    assert e.ref == url  # the URL verbatim, query string included
    assert e.etag == hashlib.md5(b"cat\ndog\n").hexdigest()
    assert e.size == 8 and e.last_modified is not None and e.version_id is None
    assert e.checksums == {"sha256": hashlib.sha256(b"cat\ndog\n").hexdigest()}
    assert e.digest == e.etag
    assert [r.method for r in http_server.log] == ["HEAD", "GET"]  # HEAD, then one GET to hash


def test_no_etag_digest_is_sha256_and_head_refused_falls_back(http_server: Any) -> None:
    http_server.refuse_head = True
    url = http_server.put("plain.bin", b"x" * 100, etag=None)
    art = log(url, name="plain")
    e = art.manifest.entries["plain.bin"]
    assert e.etag is None and e.digest == hashlib.sha256(b"x" * 100).hexdigest()
    ranged = [r for r in http_server.log if r.headers.get("range") == "bytes=0-0"]
    assert len(ranged) == 1 and e.size == 100


def test_prefix_and_missing_urls_are_refused_clearly(http_server: Any) -> None:
    art = reftrack.Artifact("x", type="dataset")
    with pytest.raises(UsageError, match="list"):
        art.add_reference(http_server.url + "/dir/")
    with pytest.raises(ObjectNotFound, match="no-such"):
        art.add_reference(http_server.url + "/no-such.txt")
    assert len(art.manifest) == 0


def test_verify_uses_metadata_and_rehashes_only_when_it_moved(http_server: Any) -> None:
    urls = {name: http_server.put(f"d/{name}", name.encode() * 10)
            for name in ("same", "touched", "changed", "gone")}
    log(*urls.values())
    art = reftrack.Api().artifact("h/web:v0")
    http_server.clear_log()
    report = art.verify()
    assert report.passed and http_server.count("GET") == 0
    assert http_server.count("HEAD") == 4 == report.requests

    # re-deployed with a new ETag and date, same bytes: re-hashed, not a false alarm
    http_server.put("d/touched", b"touched" * 10, etag='"new-etag"', last_modified=LATER)
    http_server.put("d/changed", b"CHANGED" * 10)  # same size, other bytes, other ETag
    http_server.delete("d/gone")
    http_server.clear_log()
    report = art.verify()
    by_path = {e.path: e for e in report.entries}
    assert by_path["same"].status.value == "ok"
    assert by_path["touched"].status.value == "ok" and "identical" in by_path["touched"].detail
    assert by_path["changed"].status.value == "changed"
    assert by_path["gone"].status.value == "version_missing"
    assert report.exit_code == 1
    assert http_server.count("GET") == 2  # only the two whose metadata moved were read


def test_deep_reads_every_body(http_server: Any) -> None:
    url = http_server.put("a.txt", b"aaaa")
    log(url)
    http_server.put("a.txt", b"bbbb", etag=hashlib.md5(b"aaaa").hexdigest().join('""'))
    art = reftrack.Api().artifact("h/web:v0")
    assert art.verify().passed  # the server lies with the old ETag: metadata cannot tell
    deep = art.verify(deep=True)
    assert deep.entries[0].status.value == "changed" and "sha256" in deep.entries[0].detail


def test_download_rehashes_and_refuses_changed_bodies(http_server: Any, tmp_path: Path) -> None:
    a = http_server.put("a.txt", b"alpha")
    b = http_server.put("sub/b.txt", b"bravo")
    log(a, b)
    art = reftrack.Api().artifact("h/web:v0")
    path = art.download(tmp_path / "out")
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"alpha"
    assert path.report.downloaded == 2
    http_server.put("a.txt", b"ALPHA", etag=None)
    (tmp_path / "out" / "a.txt").unlink()
    with pytest.raises(DownloadFailed) as info:
        art.download(tmp_path / "out")
    failed = [f for f in info.value.report.files if f.action == "failed"]
    assert [f.path for f in failed] == ["a.txt"] and "sha256" in (failed[0].error or "")
    assert not (tmp_path / "out" / "a.txt").exists()


def test_cli_log_and_verify_http(http_server: Any) -> None:
    url = http_server.put("data.csv", b"a,b\n1,2\n")
    runner = CliRunner()
    result = runner.invoke(app, ["log", url, "-p", "h", "-n", "csv", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["warnings"] == []
    result = runner.invoke(app, ["show", "h/csv:v0"])
    assert "(HTTP, no versions)" in result.stdout
    http_server.delete("data.csv")
    result = runner.invoke(app, ["verify", "h/csv:v0"])
    assert result.exit_code == 1 and "version_missing" in result.stdout
