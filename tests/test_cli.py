"""The ``reftrack`` command line, end to end against moto's S3 server.

Most cases drive the real Typer app through ``typer.testing.CliRunner`` (stdout and stderr are
captured separately by click >= 8.2); a few run ``python -m reftrack`` in a subprocess to check
real process exit codes. Every case checks the exit code, and the human or ``--json`` output.
``reftrack demo`` is covered elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from reftrack import __version__
from reftrack.cli import app

DATA = {
    "data/a.txt": b"alpha",
    "data/b.txt": b"bravo",
    "data/sub/c.txt": b"charlie",
}
DATA_SIZE = sum(len(v) for v in DATA.values())  # 17
PREFIX = "s3://test-bucket/data/"
ART = "proj/ds"

runner = CliRunner()


# -- helpers ------------------------------------------------------------------------------


def cli(*args: str) -> Result:
    """Invoke ``reftrack ARGS``; a Python exception (a traceback for the user) fails the test."""
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(
            f"reftrack {' '.join(args)} raised {result.exception!r} (a traceback, not an "
            f"error message):\n{result.output}"
        ) from result.exception
    return result


def cli_json(*args: str, code: int = 0) -> Any:
    result = cli(*args, "--json")
    assert result.exit_code == code, _explain(result)
    return json.loads(result.stdout)


def _explain(result: Result) -> str:
    return f"exit {result.exit_code}\n--stdout--\n{result.stdout}\n--stderr--\n{result.stderr}"


def flat(text: str) -> str:
    """Rich wraps long lines at the console width: compare with whitespace collapsed."""
    return " ".join(text.split())


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def log(*args: str, name: str = "ds", project: str = "proj") -> Result:
    return cli("log", *args, "--project", project, "--name", name)


def ls_json(*args: str) -> list[dict[str, Any]]:
    out = cli_json("ls", *args)
    assert isinstance(out, list)
    return out


def entries_by_path(show: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["path"]: e for e in show["entries"]}


def destroy_bucket(s3: Any, bucket: str) -> None:
    """Delete every object version and delete marker, then the bucket itself."""
    listing = s3.list_object_versions(Bucket=bucket)
    for item in listing.get("Versions", []) + listing.get("DeleteMarkers", []):
        s3.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])
    s3.delete_bucket(Bucket=bucket)


@pytest.fixture
def seeded(bucket: str, put: Callable[..., str]) -> dict[str, str]:
    """DATA in the versioned bucket; returns key -> version id."""
    return {key: put(bucket, key, data) for key, data in DATA.items()}


@pytest.fixture
def logged(seeded: dict[str, str]) -> dict[str, str]:
    """DATA logged as proj/ds:v0 (prefix with trailing slash); returns key -> version id."""
    result = log(PREFIX)
    assert result.exit_code == 0, _explain(result)
    return seeded


def run_module(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reftrack", *args],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


# -- version and help ---------------------------------------------------------------------


def test_version_flag_prints_the_installed_version() -> None:
    result = cli("--version")
    assert result.exit_code == 0, _explain(result)
    assert result.stdout == f"reftrack {__version__}\n"
    assert __version__ == dist_version("reftrack")
    assert __version__ != "0+unknown"


def test_python_m_reftrack_version_and_console_script(tmp_path: Path) -> None:
    proc = run_module("--version", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"reftrack {__version__}"
    script = Path(sys.executable).parent / "reftrack"
    if script.exists():  # the [project.scripts] entry point of the editable install
        proc = subprocess.run([str(script), "--version"], env=os.environ.copy(),
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == f"reftrack {__version__}"


def test_no_arguments_shows_help() -> None:
    result = cli()
    # click >= 8.2 treats "no command" as a usage error (2); older click exits 0.
    assert result.exit_code in (0, 2), _explain(result)
    text = result.output
    assert "Usage:" in text
    assert "Track large datasets in place" in text
    for command in ("log", "ls", "show", "verify", "get"):
        assert f" {command} " in text, command
    assert "--registry" in text and "--version" in text
    assert "Traceback" not in text


# -- log ----------------------------------------------------------------------------------


def test_log_prefix_with_trailing_slash(seeded: dict[str, str]) -> None:
    result = log(PREFIX)
    assert result.exit_code == 0, _explain(result)
    out = flat(result.stdout)
    assert f"logged {ART}:v0: 3 entries, {DATA_SIZE} B (run proj/" in out
    assert "aliases: latest" in out
    assert f"{PREFIX}: prefix, 3 objects (3 versions listed); bucket versioning enabled" in out
    assert "warning" not in result.stderr

    show = cli_json("show", f"{ART}:v0")
    entries = entries_by_path(show)
    assert sorted(entries) == ["a.txt", "b.txt", "sub/c.txt"]
    for key, vid in seeded.items():
        entry = entries[key.removeprefix("data/")]
        assert entry["version_id"] == vid
        assert entry["etag"] == md5(DATA[key])
        assert entry["size"] == len(DATA[key])


def test_log_prefix_without_trailing_slash_gives_the_same_manifest(
    seeded: dict[str, str],
) -> None:
    with_slash = cli_json("log", PREFIX, "-p", "proj", "-n", "slash")
    without = cli_json("log", PREFIX.rstrip("/"), "-p", "proj", "-n", "noslash")
    assert without["new_version"] is True
    assert without["entries"] == 3
    assert without["digest"] == with_slash["digest"]
    assert [s["uri"] for s in without["sources"]] == [PREFIX]
    assert without["sources"][0]["kind"] == "prefix"


def test_log_several_uris_at_once(seeded: dict[str, str], put: Callable[..., str]) -> None:
    z_vid = put("test-bucket", "other/z.txt", b"zulu!")
    out = cli_json(
        "log",
        "s3://test-bucket/data/a.txt",
        "s3://test-bucket/data/sub/",
        "s3://test-bucket/other/z.txt",
        "-p", "proj", "-n", "multi",
    )
    assert out["artifact"] == "proj/multi:v0"
    assert out["entries"] == 3
    assert out["size"] == len(b"alpha") + len(b"charlie") + len(b"zulu!")
    assert [s["kind"] for s in out["sources"]] == ["object", "prefix", "object"]
    assert out["sources"][0]["uri"] == (
        f"s3://test-bucket/data/a.txt?versionId={seeded['data/a.txt']}"
    )
    assert out["sources"][1]["uri"] == "s3://test-bucket/data/sub/"
    assert out["sources"][2]["uri"] == f"s3://test-bucket/other/z.txt?versionId={z_vid}"
    entries = entries_by_path(cli_json("show", "proj/multi:v0"))
    assert sorted(entries) == ["a.txt", "c.txt", "z.txt"]
    assert entries["z.txt"]["version_id"] == z_vid
    assert entries["c.txt"]["version_id"] == seeded["data/sub/c.txt"]


def test_log_json_output_fields(seeded: dict[str, str]) -> None:
    out = cli_json("log", PREFIX, "-p", "proj", "-n", "ds")
    assert set(out) >= {"artifact", "version", "new_version", "digest", "entries", "size",
                        "aliases", "sources", "warnings"}
    assert out["artifact"] == f"{ART}:v0"
    assert out["version"] == "v0"
    assert out["new_version"] is True
    assert len(out["digest"]) == 64 and int(out["digest"], 16) >= 0
    assert out["entries"] == 3
    assert out["size"] == DATA_SIZE
    assert out["aliases"] == ["latest"]
    assert out["run"].startswith("proj/")
    assert out["warnings"] == []
    assert out["sources"] == [{
        "uri": PREFIX, "kind": "prefix", "name": None, "entries": 3, "listed": 3,
        "versioning": "enabled", "checksum": True, "skipped_markers": 0,
    }]
    # the digest printed is the one the registry holds
    assert cli_json("show", f"{ART}:v0")["digest"] == out["digest"]


def test_log_aliases_metadata_and_description(seeded: dict[str, str]) -> None:
    out = cli_json(
        "log", PREFIX, "-p", "proj", "-n", "ds",
        "--alias", "raw", "-a", "first",
        "--metadata", "n=3", "-m", "flag=true", "-m", "who=alice", "-m", "ratio=0.5",
        "-m", 'tags=["x", "y"]', "-m", "eq=a=b", "-m", "empty=",
        "--description", "three small files",
    )
    assert sorted(out["aliases"]) == ["first", "latest", "raw"]
    show = cli_json("show", f"{ART}:raw")
    assert show["version"] == "v0"
    assert show["metadata"] == {
        "n": 3, "flag": True, "who": "alice", "ratio": 0.5, "tags": ["x", "y"],
        "eq": "a=b", "empty": "",
    }
    assert show["description"] == "three small files"
    assert cli_json("show", f"{ART}:first")["digest"] == out["digest"]
    assert ls_json()[0]["aliases"] == {"first": "v0", "raw": "v0"}

    human = cli("show", f"{ART}:v0")
    assert human.exit_code == 0, _explain(human)
    text = flat(human.stdout)
    assert "description: three small files" in text
    assert "n=3" in text and "flag=True" in text and "who='alice'" in text
    assert "aliases: latest" in text and "raw" in text and "first" in text


def test_log_identical_content_twice_is_not_a_new_version(seeded: dict[str, str]) -> None:
    first = cli_json("log", PREFIX, "-p", "proj", "-n", "ds")
    again = log(PREFIX, "--alias", "again")
    assert again.exit_code == 0, _explain(again)
    assert f"no new version: the manifest is identical to {ART}:v0" in flat(again.stdout)
    third = cli_json("log", PREFIX.rstrip("/"), "-p", "proj", "-n", "ds")
    assert third["new_version"] is False
    assert third["version"] == "v0"
    assert third["artifact"] == f"{ART}:v0"
    assert third["digest"] == first["digest"]
    assert "again" in third["aliases"]
    [summary] = ls_json()
    assert summary["versions"] == 1
    assert summary["latest"] == "v0"
    assert summary["aliases"] == {"again": "v0"}


def test_log_after_an_overwrite_makes_v1_and_moves_latest(
    logged: dict[str, str], put: Callable[..., str]
) -> None:
    cli_json("log", PREFIX, "-p", "proj", "-n", "ds", "--alias", "raw", code=0)  # alias on v0
    new_vid = put("test-bucket", "data/a.txt", b"ALPHA, rewritten")
    out = cli_json("log", PREFIX, "-p", "proj", "-n", "ds")
    assert out["new_version"] is True
    assert out["version"] == "v1"
    assert out["artifact"] == f"{ART}:v1"
    assert out["size"] == DATA_SIZE - len(b"alpha") + len(b"ALPHA, rewritten")
    [summary] = ls_json()
    assert summary["versions"] == 2
    assert summary["latest"] == "v1"
    assert summary["aliases"] == {"raw": "v0"}
    latest = cli_json("show", f"{ART}:latest")
    assert latest["version"] == "v1"
    assert "latest" in latest["aliases"]
    assert entries_by_path(latest)["a.txt"]["version_id"] == new_vid
    v0 = cli_json("show", f"{ART}:v0")
    assert "latest" not in v0["aliases"]
    assert entries_by_path(v0)["a.txt"]["version_id"] == logged["data/a.txt"]
    assert cli_json("show", ART)["version"] == "v1"  # no selector means latest


def test_log_no_checksum_records_uris_only(seeded: dict[str, str]) -> None:
    result = log(PREFIX, "--no-checksum")
    assert result.exit_code == 0, _explain(result)
    assert "checksum=False records URIs only; nothing is pinned" in flat(result.stderr)

    out = cli_json("log", PREFIX, "--no-checksum", "-p", "proj", "-n", "nock")
    assert out["size"] == 0
    assert out["sources"][0]["checksum"] is False
    assert any("checksum=False" in w for w in out["warnings"])

    human = cli("show", "proj/nock:v0")
    assert human.exit_code == 0, _explain(human)
    text = flat(human.stdout)
    assert "checksum=False: URIs only, nothing pinned" in text
    assert text.count("not recorded (checksum=False)") == 3
    for vid in seeded.values():
        assert vid not in human.stdout

    show = cli_json("show", "proj/nock:v0")
    assert show["sources"][0]["checksum"] is False
    for entry in show["entries"]:
        assert entry["version_id"] is None
        assert entry["etag"] is None
        assert entry["size"] is None
        assert entry["pinned"] is False
        assert entry["checksum"] is False
        assert "versionId" not in entry["uri"]


def test_log_unversioned_bucket_warns_on_stderr(
    unversioned_bucket: str, put: Callable[..., str]
) -> None:
    put(unversioned_bucket, "x/f.txt", b"hi")
    put(unversioned_bucket, "x/g.txt", b"there")
    result = log(f"s3://{unversioned_bucket}/x/", name="plain")
    assert result.exit_code == 0, _explain(result)
    err = flat(result.stderr)
    assert "warning:" in err
    assert "bucket versioning is disabled" in err
    assert "Enable versioning on the bucket" in err
    assert "warning" not in result.stdout
    assert "bucket versioning disabled" in flat(result.stdout)

    human = cli("show", "proj/plain:v0")
    assert human.exit_code == 0, _explain(human)
    assert flat(human.stdout).count("(unversioned)") == 2
    assert md5(b"hi") in human.stdout

    show = cli_json("show", "proj/plain:v0")
    assert show["sources"][0]["versioning"] == "disabled"
    for entry in show["entries"]:
        assert entry["version_id"] is None
        assert entry["pinned"] is False
        assert entry["checksum"] is True
        assert entry["etag"] is not None

    out = cli_json("log", f"s3://{unversioned_bucket}/x/", "-p", "proj", "-n", "plain2")
    assert any("versioning is disabled" in w for w in out["warnings"])


def test_log_max_objects_refuses_a_larger_prefix(seeded: dict[str, str]) -> None:
    result = log(PREFIX, "--max-objects", "2")
    assert result.exit_code == 2, _explain(result)
    err = flat(result.stderr)
    assert "max_objects=2" in err
    assert "--max-objects" in err  # says how to raise the limit
    assert ls_json() == []
    assert cli_json("log", PREFIX, "--max-objects", "3", "-p", "proj", "-n", "ds")["entries"] == 3


@pytest.mark.parametrize(
    ("uri", "needle"),
    [
        ("ftp://x/y", "unknown scheme 'ftp'"),
        ("s3:///key", "has no bucket"),
        ("s3://AKIA:secret@bucket/k", "embeds credentials"),
    ],
)
def test_log_bad_uri_is_a_usage_error(seeded: dict[str, str], uri: str, needle: str) -> None:
    result = log(uri)
    assert result.exit_code == 2, _explain(result)
    assert result.stderr.startswith("error: ")
    assert needle in flat(result.stderr)
    assert "secret" not in result.output
    assert "Traceback" not in result.output
    err = cli_json("log", uri, "-p", "proj", "-n", "ds", code=2)["error"]
    assert err["type"] == "InvalidURIError"
    assert err["exit_code"] == 2
    assert "secret" not in err["message"]
    assert ls_json() == []


def test_log_credentials_with_a_slash_are_not_echoed(seeded: dict[str, str]) -> None:
    uri = "s3://AKIAEXAMPLE:wJalrXUtn/FEMIK7MDENGbPxRfiCYEXAMPLEKEY@test-bucket/data/"
    result = log(uri)
    assert result.exit_code == 2, _explain(result)
    for fragment in ("wJalrXUtn", "FEMIK7MDENG"):
        assert fragment not in result.output
    out = cli_json("log", uri, "-p", "proj", "-n", "ds", code=2)
    assert "wJalrXUtn" not in json.dumps(out)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--metadata", "novalue"), "--metadata takes key=value"),
        (("--metadata", "=3"), "--metadata takes key=value"),
        (("--alias", "v3"), "invalid alias 'v3'"),
        (("--alias", "a/b"), "invalid alias 'a/b'"),
        (("--max-objects", "0"), "max_objects must be a whole number of at least 1"),
        (("--type", "bad type"), "invalid artifact type"),
    ],
)
def test_log_bad_options_are_usage_errors(
    seeded: dict[str, str], args: tuple[str, ...], needle: str
) -> None:
    result = log(PREFIX, *args)
    assert result.exit_code == 2, _explain(result)
    assert needle in flat(result.stderr)
    assert ls_json() == []


def test_log_bad_project_name_and_type_change_are_usage_errors(seeded: dict[str, str]) -> None:
    result = log(PREFIX, project="bad/proj")
    assert result.exit_code == 2, _explain(result)
    assert "invalid project name 'bad/proj'" in flat(result.stderr)
    assert log(PREFIX).exit_code == 0
    result = log(PREFIX, "--type", "model")
    assert result.exit_code == 2, _explain(result)
    assert "is of type 'dataset', not 'model'" in flat(result.stderr)
    assert ls_json()[0]["versions"] == 1


def test_log_metadata_nan_is_kept_as_a_string(seeded: dict[str, str]) -> None:
    result = log(PREFIX, "-m", "note=NaN", "-m", "limit=Infinity")
    assert result.exit_code == 0, _explain(result)
    assert cli_json("show", f"{ART}:v0")["metadata"] == {"note": "NaN", "limit": "Infinity"}


def test_log_missing_bucket_is_a_backend_error(s3: Any) -> None:
    result = log("s3://missing-bucket/data/")
    assert result.exit_code == 3, _explain(result)
    err = flat(result.stderr)
    assert "error:" in err
    assert "s3://missing-bucket does not exist" in err
    err_json = cli_json("log", "s3://missing-bucket/data/", "-p", "proj", "-n", "ds",
                        code=3)["error"]
    assert err_json["type"] == "BucketNotFound"
    assert err_json["exit_code"] == 3
    assert "missing-bucket" in err_json["message"]
    assert ls_json() == []


def test_log_nothing_under_the_key_is_not_found(seeded: dict[str, str]) -> None:
    result = log("s3://test-bucket/nothing-here")
    assert result.exit_code == 4, _explain(result)
    err = flat(result.stderr)
    assert "s3://test-bucket/nothing-here is not an object" in err
    assert "no objects under s3://test-bucket/nothing-here/" in err
    err_json = cli_json("log", "s3://test-bucket/nothing-here/", "-p", "proj", "-n", "ds",
                        code=4)["error"]
    assert err_json["type"] == "ObjectNotFound"
    assert ls_json() == []


def test_log_without_uris_is_a_click_usage_error(s3: Any) -> None:
    result = cli("log", "--project", "proj", "--name", "ds")
    assert result.exit_code == 2, _explain(result)
    assert "Missing argument" in result.stderr


# -- ls -----------------------------------------------------------------------------------


def test_ls_empty_registry() -> None:
    result = cli("ls")
    assert result.exit_code == 0, _explain(result)
    registry = os.environ["REFTRACK_REGISTRY"]
    assert flat(result.stdout) == (
        f"no artifacts in {registry} yet; log one with `reftrack log`"
    )
    assert ls_json() == []


def test_ls_lists_artifacts_and_filters_by_project(seeded: dict[str, str]) -> None:
    assert log(PREFIX, "--alias", "raw").exit_code == 0
    assert log("s3://test-bucket/data/sub/", project="other", name="sub",
               ).exit_code == 0
    result = cli("ls")
    assert result.exit_code == 0, _explain(result)
    for column in ("artifact", "type", "versions", "latest", "aliases", "size", "updated"):
        assert column in result.stdout
    assert "proj/ds" in result.stdout and "other/sub" in result.stdout
    assert "raw:v0" in result.stdout
    assert f"{DATA_SIZE} B" in result.stdout

    only = cli("ls", "proj")
    assert only.exit_code == 0, _explain(only)
    assert "proj/ds" in only.stdout
    assert "other/sub" not in only.stdout

    listing = ls_json()
    assert [(a["project"], a["name"]) for a in listing] == [("other", "sub"), ("proj", "ds")]
    ds = listing[1]
    assert ds["type"] == "dataset"
    assert ds["versions"] == 1
    assert ds["latest"] == "v0"
    assert ds["aliases"] == {"raw": "v0"}
    assert ds["size"] == DATA_SIZE
    assert ds["updated_at"]
    assert [a["name"] for a in ls_json("other")] == ["sub"]


def test_ls_unknown_project_is_not_found(logged: dict[str, str]) -> None:
    result = cli("ls", "unknown-project")
    assert result.exit_code == 4, _explain(result)
    err = flat(result.stderr)
    assert "project 'unknown-project' does not exist" in err
    assert "(projects: proj)" in err
    err_json = cli_json("ls", "unknown-project", code=4)["error"]
    assert err_json["type"] == "NotFound"
    assert err_json["exit_code"] == 4


# -- show ---------------------------------------------------------------------------------


def test_show_human_lists_version_ids_and_etags(logged: dict[str, str]) -> None:
    result = cli("show", f"{ART}:v0")
    assert result.exit_code == 0, _explain(result)
    out = result.stdout
    text = flat(out)
    assert text.startswith(f"{ART}:v0 (dataset)")
    assert f"entries: 3 ({DATA_SIZE} B)" in text
    assert "digest:" in text and "logged by: run" in text
    assert f"sources: {PREFIX}: prefix, 3 objects" in text
    for key, vid in logged.items():
        assert vid in out
        assert md5(DATA[key]) in out
        assert f"s3://test-bucket/{key}" in out
    assert "more entries" not in out


def test_show_json_entries(logged: dict[str, str]) -> None:
    show = cli_json("show", f"{ART}:v0")
    assert show["qualified_name"] == f"{ART}:v0"
    assert show["version"] == "v0"
    assert show["project"] == "proj" and show["name"] == "ds" and show["type"] == "dataset"
    assert show["entry_count"] == 3 and show["size"] == DATA_SIZE
    assert show["aliases"] == ["latest"]
    entries = entries_by_path(show)
    for key, vid in logged.items():
        entry = entries[key.removeprefix("data/")]
        assert entry["ref"] == f"s3://test-bucket/{key}"
        assert entry["uri"] == f"s3://test-bucket/{key}?versionId={vid}"
        assert entry["version_id"] == vid
        assert entry["etag"] == md5(DATA[key])
        assert entry["size"] == len(DATA[key])
        assert entry["pinned"] is True and entry["checksum"] is True


def test_show_limit(logged: dict[str, str]) -> None:
    result = cli("show", f"{ART}:v0", "--limit", "1")
    assert result.exit_code == 0, _explain(result)
    assert "2 more entries (use --limit 0 to show all)" in flat(result.stdout)
    assert logged["data/a.txt"] in result.stdout
    assert logged["data/b.txt"] not in result.stdout
    assert logged["data/sub/c.txt"] not in result.stdout

    every = cli("show", f"{ART}:v0", "--limit", "0")
    assert every.exit_code == 0, _explain(every)
    assert "more entries" not in every.stdout
    assert all(vid in every.stdout for vid in logged.values())


def test_show_negative_limit_is_a_usage_error(logged: dict[str, str]) -> None:
    result = cli("show", f"{ART}:v0", "--limit", "-1")
    assert result.exit_code == 2, _explain(result)


def test_show_unknown_artifact_lists_the_known_ones(logged: dict[str, str]) -> None:
    result = cli("show", "proj/zz:v0")
    assert result.exit_code == 4, _explain(result)
    assert "artifact proj/zz does not exist (artifacts in proj: ds)" in flat(result.stderr)
    assert result.stdout == ""

    missing_version = cli("show", f"{ART}:v9")
    assert missing_version.exit_code == 4, _explain(missing_version)
    assert "has no version v9 (versions are v0..v0)" in flat(missing_version.stderr)

    missing_alias = cli("show", f"{ART}:nosuch")
    assert missing_alias.exit_code == 4, _explain(missing_alias)
    assert "has no alias 'nosuch'" in flat(missing_alias.stderr)


@pytest.mark.parametrize("name", ["nonsense", "proj/ds:", "a/b/c", "proj/bad name:v0"])
def test_show_malformed_name_is_a_usage_error(logged: dict[str, str], name: str) -> None:
    result = cli("show", name)
    assert result.exit_code == 2, _explain(result)
    assert result.stderr.startswith("error: ")
    assert cli_json("show", name, code=2)["error"]["type"] == "UsageError"


def test_json_errors_are_json_objects() -> None:
    result = cli("show", "nope/nope:v0", "--json")
    assert result.exit_code == 4, _explain(result)
    out = json.loads(result.stdout)
    assert set(out) == {"error"}
    assert out["error"]["type"] == "NotFound"
    assert out["error"]["exit_code"] == 4
    assert "project 'nope' does not exist" in out["error"]["message"]
    assert result.stderr == ""
    for command in (("verify", "nope/nope:v0"), ("get", "nope/nope:v0", "dest")):
        err = cli_json(*command, code=4)["error"]
        assert err["type"] == "NotFound" and err["exit_code"] == 4


# -- verify -------------------------------------------------------------------------------


def test_verify_intact(logged: dict[str, str], requests_log: Any) -> None:
    requests_log.clear()
    result = cli("verify", f"{ART}:v0")
    assert result.exit_code == 0, _explain(result)
    text = flat(result.stdout)
    assert f"verified {ART}:v0: 3 entries with 3 request(s)" in text
    assert "INTACT: all 3 entries match" in text
    assert "entries that drifted or failed" not in text
    # one ListObjectVersions page for the whole prefix, and the report counts it right
    assert len(requests_log) == 3  # one listing + the bucket's lifecycle and versioning
    assert requests_log.count("GET", "versions") == 1

    everything = cli("verify", f"{ART}:v0", "--all")
    assert everything.exit_code == 0, _explain(everything)
    assert flat(everything.stdout).count("pinned version is current and intact") == 3

    report = cli_json("verify", f"{ART}:v0")
    assert report["artifact"] == f"{ART}:v0"
    assert report["passed"] is True
    assert report["exit_code"] == 0
    assert report["requests"] == 3
    assert report["summary"] == {"ok": 3, "moved": 0, "deleted": 0, "version_missing": 0,
                                 "changed": 0, "corrupt": 0, "unreachable": 0}
    assert [e["path"] for e in report["entries"]] == ["a.txt", "b.txt", "sub/c.txt"]
    assert report["digest"] == cli_json("show", f"{ART}:v0")["digest"]


def test_verify_drift_passes_and_names_moved_and_deleted(
    logged: dict[str, str], s3: Any, put: Callable[..., str]
) -> None:
    new_vid = put("test-bucket", "data/a.txt", b"ALPHA2")
    s3.delete_object(Bucket="test-bucket", Key="data/b.txt")
    result = cli("verify", f"{ART}:v0")
    assert result.exit_code == 0, _explain(result)
    text = flat(result.stdout)
    assert "moved" in text and "deleted" in text
    assert "INTACT: all 3 pinned versions are retrievable (2 drifted from the live bucket)" in text
    assert new_vid in text

    report = cli_json("verify", f"{ART}:v0")
    assert report["exit_code"] == 0 and report["passed"] is True
    statuses = {e["path"]: e["status"] for e in report["entries"]}
    assert statuses == {"a.txt": "moved", "b.txt": "deleted", "sub/c.txt": "ok"}
    assert report["summary"]["moved"] == 1 and report["summary"]["deleted"] == 1
    moved = next(e for e in report["entries"] if e["path"] == "a.txt")
    assert moved["current_version_id"] == new_vid
    assert moved["uri"].endswith(f"?versionId={logged['data/a.txt']}")


def test_verify_fails_when_a_pinned_version_is_destroyed(
    logged: dict[str, str], s3: Any
) -> None:
    s3.delete_object(Bucket="test-bucket", Key="data/sub/c.txt",
                     VersionId=logged["data/sub/c.txt"])
    result = cli("verify", f"{ART}:v0")
    assert result.exit_code == 1, _explain(result)
    text = flat(result.stdout)
    assert "version_missing" in text
    assert "FAILED: 1 of 3 entries no longer match what was pinned" in text
    assert logged["data/sub/c.txt"] in text

    report = cli_json("verify", f"{ART}:v0", code=1)
    assert report["exit_code"] == 1
    assert report["passed"] is False
    assert report["summary"]["version_missing"] == 1
    assert report["summary"]["ok"] == 2
    assert isinstance(report["requests"], int) and report["requests"] >= 1
    bad = [e for e in report["entries"] if e["status"] != "ok"]
    assert [(e["path"], e["status"]) for e in bad] == [("sub/c.txt", "version_missing")]


def test_verify_unreachable_bucket(seeded: dict[str, str], s3: Any) -> None:
    assert log(PREFIX).exit_code == 0
    assert log("s3://test-bucket/data/a.txt", name="one").exit_code == 0
    destroy_bucket(s3, "test-bucket")

    result = cli("verify", f"{ART}:v0")
    assert result.exit_code == 3, _explain(result)
    text = flat(result.output)
    assert "test-bucket" in text
    assert "unreachable" in text
    assert "UNREACHABLE: some entries could not be checked" in text

    report = cli_json("verify", f"{ART}:v0", code=3)
    assert report["exit_code"] == 3
    assert report["passed"] is False
    assert report["summary"]["unreachable"] == 3
    assert all("s3://test-bucket does not exist" in e["detail"] for e in report["entries"])

    # an artifact of single objects (verified by HEAD) is unreachable too, not "missing"
    single = cli_json("verify", "proj/one:v0", code=3)
    assert single["summary"]["unreachable"] == 1
    assert single["summary"]["version_missing"] == 0


def test_verify_unversioned_overwrite_fails_as_changed(
    unversioned_bucket: str, put: Callable[..., str]
) -> None:
    put(unversioned_bucket, "x/f.txt", b"hi")
    assert log(f"s3://{unversioned_bucket}/x/", name="plain").exit_code == 0
    assert cli("verify", "proj/plain:v0").exit_code == 0
    put(unversioned_bucket, "x/f.txt", b"changed!")
    result = cli("verify", "proj/plain:v0")
    assert result.exit_code == 1, _explain(result)
    assert "changed" in result.stdout
    report = cli_json("verify", "proj/plain:v0", code=1)
    assert report["summary"]["changed"] == 1


# -- get ----------------------------------------------------------------------------------


def test_get_downloads_the_pinned_bytes_after_overwrites(
    logged: dict[str, str], s3: Any, put: Callable[..., str], tmp_path: Path
) -> None:
    for key in DATA:
        put("test-bucket", key, b"overwritten " + key.encode())
    s3.delete_object(Bucket="test-bucket", Key="data/b.txt")
    dest = tmp_path / "dl"
    result = cli("get", f"{ART}:v0", str(dest))
    assert result.exit_code == 0, _explain(result)
    assert flat(result.stdout) == (
        f"downloaded 3 file(s) ({DATA_SIZE} B), skipped 0 already present, to {dest}"
    )
    for key, data in DATA.items():
        assert (dest / key.removeprefix("data/")).read_bytes() == data
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == ["a.txt", "b.txt", "sub/c.txt"]  # no temporary files left behind


def test_get_json_report_and_second_get_skips(
    logged: dict[str, str], tmp_path: Path, requests_log: Any
) -> None:
    dest = tmp_path / "dl"
    first = cli_json("get", f"{ART}:v0", str(dest))
    assert first["root"] == str(dest)
    assert (first["downloaded"], first["skipped"], first["failed"]) == (3, 0, 0)
    assert first["bytes"] == DATA_SIZE
    by_path = {f["path"]: f for f in first["files"]}
    assert by_path["a.txt"]["action"] == "downloaded"
    assert by_path["a.txt"]["uri"].endswith(f"?versionId={logged['data/a.txt']}")

    requests_log.clear()
    second = cli_json("get", f"{ART}:v0", str(dest))
    assert (second["downloaded"], second["skipped"], second["failed"]) == (0, 3, 0)
    assert second["bytes"] == 0
    assert {f["action"] for f in second["files"]} == {"skipped"}
    assert len(requests_log) == 0  # files already correct cost no request

    human = cli("get", f"{ART}:v0", str(dest))
    assert human.exit_code == 0, _explain(human)
    assert "downloaded 0 file(s) (0 B), skipped 3 already present" in flat(human.stdout)


def test_get_fails_when_a_pinned_version_is_destroyed(
    logged: dict[str, str], s3: Any, tmp_path: Path
) -> None:
    s3.delete_object(Bucket="test-bucket", Key="data/sub/c.txt",
                     VersionId=logged["data/sub/c.txt"])
    dest = tmp_path / "dl"
    result = cli("get", f"{ART}:v0", str(dest))
    assert result.exit_code == 1, _explain(result)
    err = flat(result.stderr)
    assert f"1 of 3 entries of {ART}:v0 could not be downloaded exactly" in err
    assert "sub/c.txt:" in err
    assert "the data pinned for this entry is lost" in err
    assert (dest / "a.txt").read_bytes() == b"alpha"  # what could be fetched stays
    assert not (dest / "sub" / "c.txt").exists()

    out = cli_json("get", f"{ART}:v0", str(tmp_path / "dl2"), code=1)
    assert out["error"]["type"] == "DownloadFailed"
    assert out["error"]["exit_code"] == 1
    assert (out["downloaded"], out["failed"]) == (2, 1)
    failed = [f for f in out["files"] if f["action"] == "failed"]
    assert [f["path"] for f in failed] == ["sub/c.txt"]
    assert "version no longer exists" in failed[0]["error"]


def test_get_unreachable_bucket_exits_3(logged: dict[str, str], s3: Any, tmp_path: Path) -> None:
    destroy_bucket(s3, "test-bucket")
    result = cli("get", f"{ART}:v0", str(tmp_path / "dl"))
    assert "test-bucket" in flat(result.stderr)
    assert result.exit_code == 3, _explain(result)


def test_get_bad_concurrency_and_bad_destination(logged: dict[str, str], tmp_path: Path) -> None:
    result = cli("get", f"{ART}:v0", str(tmp_path / "dl"), "--concurrency", "0")
    assert result.exit_code == 2, _explain(result)
    assert "--concurrency must be at least 1, got 0" in flat(result.stderr)
    assert not (tmp_path / "dl").exists()

    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    result = cli("get", f"{ART}:v0", str(a_file))
    assert result.exit_code == 2, _explain(result)
    assert "cannot create download directory" in flat(result.stderr)


# -- --registry ---------------------------------------------------------------------------


def test_registry_option_global_and_per_command(seeded: dict[str, str], tmp_path: Path) -> None:
    env_registry = os.environ["REFTRACK_REGISTRY"]
    other = tmp_path / "elsewhere" / "other.db"
    third = tmp_path / "third.db"

    result = cli("--registry", str(other), "log", PREFIX, "-p", "proj", "-n", "ds")
    assert result.exit_code == 0, _explain(result)
    assert other.is_file()
    assert ls_json() == []  # REFTRACK_REGISTRY did not get it

    global_opt = cli("--registry", str(other), "ls", "--json")
    assert global_opt.exit_code == 0, _explain(global_opt)
    assert [a["name"] for a in json.loads(global_opt.stdout)] == ["ds"]
    command_opt = cli("ls", "--registry", str(other), "--json")
    assert command_opt.exit_code == 0, _explain(command_opt)
    assert [a["name"] for a in json.loads(command_opt.stdout)] == ["ds"]

    # the command's option wins over the global one
    both = cli("--registry", str(third), "ls", "--registry", str(other), "--json")
    assert [a["name"] for a in json.loads(both.stdout)] == ["ds"]

    # per-command --registry on log, show and verify
    assert cli("log", PREFIX, "-p", "proj", "-n", "three", "--registry", str(third)).exit_code == 0
    assert [a["name"] for a in json.loads(cli("ls", "--registry", str(third), "--json").stdout)] \
        == ["three"]
    shown = cli("show", "proj/three:v0", "--registry", str(third), "--json")
    assert shown.exit_code == 0, _explain(shown)
    assert cli("show", "proj/three:v0").exit_code == 4  # not in REFTRACK_REGISTRY
    assert cli("--registry", str(other), "verify", f"{ART}:v0").exit_code == 0

    empty = cli("ls", "--registry", str(tmp_path / "fresh.db"))
    assert f"no artifacts in {tmp_path / 'fresh.db'} yet" in flat(empty.stdout)
    if "://" not in env_registry:  # (a database URL with REFTRACK_TEST_REGISTRY=postgres)
        assert Path(env_registry).exists()  # the default one is where the fixture says


def test_registry_that_is_not_a_database_is_a_usage_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite " * 100)
    result = cli("--registry", str(junk), "ls")
    assert result.exit_code == 2, _explain(result)
    assert "is not a reftrack registry" in flat(result.stderr)


# -- real processes -----------------------------------------------------------------------


def test_subprocess_log_then_ls(seeded: dict[str, str], tmp_path: Path) -> None:
    proc = run_module("log", PREFIX, "-p", "proj", "-n", "ds", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["artifact"] == f"{ART}:v0" and out["entries"] == 3
    proc = run_module("ls", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [(a["project"], a["name"], a["latest"]) for a in json.loads(proc.stdout)] == [
        ("proj", "ds", "v0")
    ]
    proc = run_module("show", "nope/nope:v0", cwd=tmp_path)
    assert proc.returncode == 4
    assert proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr


def test_subprocess_verify_exit_codes(logged: dict[str, str], s3: Any, tmp_path: Path) -> None:
    proc = run_module("verify", f"{ART}:v0", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "INTACT" in proc.stdout
    s3.delete_object(Bucket="test-bucket", Key="data/a.txt", VersionId=logged["data/a.txt"])
    proc = run_module("verify", f"{ART}:v0", "--json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["exit_code"] == 1
    assert report["summary"]["version_missing"] == 1
