"""``reftrack demo``: the whole story on a local S3 server, no AWS account, no network.

It starts moto's S3 server on 127.0.0.1, writes a small dataset to a versioned bucket (as a
user's pipeline would, through fsspec), logs it, lets the bucket drift, verifies, downloads
the pinned bytes and proves they are the originals, logs the next version, and finally shows
the integrity gate failing when a pinned version is destroyed. It checks its own story: it
exits non-zero if reftrack did not behave as shown.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .api import Api
from .artifact import Artifact
from .errors import MissingBackend
from .render import RichProgress, entries_table, verify_tables, verify_verdict
from .run import init
from .settings import Settings
from .verify import Status

__all__ = ["demo_dataset", "run_demo"]

BUCKET = "reftrack-demo"
PREFIX = "datasets/images"


def _png(width: int, height: int, seed: int) -> bytes:
    """A small, valid, deterministic RGB PNG."""
    rows = b"".join(
        b"\x00" + bytes(
            ((x * 37 + y * 11 + seed * 53) % 256, (x * 7 + seed * 91) % 256, (y * 29 + seed) % 256)
            [c] for x in range(width) for c in range(3)
        )
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def demo_dataset() -> dict[str, bytes]:
    """Key (relative to the dataset prefix) -> bytes."""
    files: dict[str, bytes] = {}
    labels = ["path,label"]
    for i, kind in enumerate(["cat", "cat", "dog", "dog", "bird", "bird", "fish", "fish"]):
        name = f"{kind}_{i:02d}.png"
        files[name] = _png(16, 16, i)
        labels.append(f"{name},{kind}")
    files["labels.csv"] = ("\n".join(labels) + "\n").encode()
    files["_SUCCESS"] = b""  # a zero-byte marker, as Spark writes
    return files


def run_demo(console: Console, *, workdir: str | None = None) -> int:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        raise MissingBackend(
            "reftrack demo needs moto's S3 server: pip install 'reftrack[demo]'"
        ) from exc
    import fsspec

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    root = Path(workdir).resolve() if workdir else Path(tempfile.mkdtemp(prefix="reftrack-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3_options: dict[str, Any] = {
            "endpoint_url": endpoint, "key": "demo", "secret": "demo",
            "client_kwargs": {"region_name": "us-east-1"},
        }
        settings = Settings(registry=str(root / "registry.db"), storage_options={"s3": s3_options})
        fs = fsspec.filesystem("s3", skip_instance_cache=True, version_aware=True, **s3_options)
        return _story(console, fs, settings, endpoint, root)
    finally:
        server.stop()
        if not workdir:
            shutil.rmtree(root, ignore_errors=True)


def _step(console: Console, number: int, text: str) -> None:
    console.print()
    console.print(f"[bold cyan]{number}. {escape(text)}[/]")


def _story(console: Console, fs: Any, settings: Settings, endpoint: str, root: Path) -> int:
    problems: list[str] = []

    def expect(condition: bool, what: str) -> None:
        if not condition:
            problems.append(what)
            console.print(f"[red]unexpected:[/] {escape(what)}")

    console.print(f"[bold]reftrack demo[/]: a local S3 server (moto) at {endpoint}; "
                  "no AWS account, no network.")
    console.print(f"registry: {escape(settings.registry)}")

    _step(console, 1, f"A pipeline writes a dataset to s3://{BUCKET}/{PREFIX}/ (versioned)")
    fs.call_s3("create_bucket", Bucket=BUCKET)
    fs.make_bucket_versioned(BUCKET)
    originals = demo_dataset()
    for name, data in originals.items():
        fs.pipe_file(f"{BUCKET}/{PREFIX}/{name}", data)
    fs.pipe_file(f"{BUCKET}/{PREFIX}-extra/not-in-the-dataset.png", _png(4, 4, 99))
    console.print(f"{len(originals)} objects (8 PNGs, labels.csv, a zero-byte _SUCCESS); a "
                  f"sibling prefix {PREFIX}-extra/ that must not be included")

    _step(console, 2, f"Pin it: reftrack log s3://{BUCKET}/{PREFIX} -> demo/images:v0")
    with init(project="demo", job_type="ingest", settings=settings) as run:
        art = Artifact("images", type="dataset", description="demo images",
                       metadata={"source": "demo"}, settings=settings)
        art.add_reference(f"s3://{BUCKET}/{PREFIX}", progress=RichProgress(console))
        requests = sum(b.requests for b in art._ctx.backends.made())
        run.log_artifact(art, aliases=["raw"])
    v0 = art
    console.print(entries_table(v0.manifest, title=f"{v0.qualified_name} "
                                f"(aliases: {', '.join(v0.aliases)})"))
    console.print(f"{v0.file_count} entries pinned with {requests} S3 requests "
                  "(one HEAD, one versioning check, one listing page): no request per object")
    expect(v0.file_count == len(originals), "v0 should pin exactly the dataset's objects")

    with init(project="demo", job_type="train", settings=settings) as train:
        train.use_artifact("images:raw")
    console.print(f"run {train.path} (train) used demo/images:raw")

    _step(console, 3, "The bucket drifts: two objects overwritten, one deleted")
    fs.pipe_file(f"{BUCKET}/{PREFIX}/cat_00.png", _png(16, 16, 1000))
    fs.pipe_file(f"{BUCKET}/{PREFIX}/labels.csv", b"path,label\nrelabelled,oops\n")
    fs.rm_file(f"{BUCKET}/{PREFIX}/dog_03.png")
    console.print("overwrote cat_00.png and labels.csv, deleted dog_03.png")

    _step(console, 4, "reftrack verify demo/images:v0")
    api = Api(settings=settings)
    report = api.artifact("demo/images:v0").verify(progress=RichProgress(console))
    for table in verify_tables(report):
        console.print(table)
    console.print(verify_verdict(report) + f"  (exit code {report.exit_code}, "
                  f"{report.requests} request(s))")
    expect(report.summary["moved"] == 2 and report.summary["deleted"] == 1
           and report.exit_code == 0, "verify should report 2 moved, 1 deleted, and pass")

    _step(console, 5, "reftrack get demo/images:v0: the exact bytes that were pinned")
    out = api.artifact("demo/images:v0").download(root / "download-v0",
                                                  progress=RichProgress(console))
    same = sum(
        hashlib.sha256((Path(out) / name).read_bytes()).digest()
        == hashlib.sha256(data).digest()
        for name, data in originals.items()
    )
    console.print(f"downloaded {out.report.downloaded} files to {escape(str(out))}; "
                  f"[bold]{same} of {len(originals)}[/] are byte-identical (SHA-256) to the "
                  "originals, although 3 were overwritten or deleted in the bucket")
    expect(same == len(originals), "every downloaded file should equal the original bytes")

    _step(console, 6, "Pin the bucket as it is now -> demo/images:v1")
    with init(project="demo", job_type="ingest", settings=settings) as run:
        art = Artifact("images", type="dataset", settings=settings)
        art.add_reference(f"s3://{BUCKET}/{PREFIX}/")
        run.log_artifact(art)
    v1 = art
    table = Table(title="version ids per entry", title_justify="left")
    table.add_column("path")
    table.add_column("v0 version id", no_wrap=True)
    table.add_column("v1 version id", no_wrap=True)
    for path in sorted(set(v0.manifest.entries) | set(v1.manifest.entries)):
        a = v0.manifest.entries.get(path)
        b = v1.manifest.entries.get(path)
        va = a.version_id if a else None
        vb = b.version_id if b else None
        style = "" if va == vb else "[yellow]"
        table.add_row(escape(path), va or "-", f"{style}{vb or '(deleted)'}")
    console.print(table)
    console.print(f"latest is now {v1.qualified_name}; v0 still resolves to the old versions")
    expect(v1.version == "v1", "the drifted bucket should log as a new version v1")

    _step(console, 7, "A lifecycle rule permanently deletes a pinned version: the gate fails")
    pinned = v0.manifest.entries["bird_04.png"]
    fs.call_s3("delete_object", Bucket=BUCKET, Key=f"{PREFIX}/bird_04.png",
               VersionId=pinned.version_id)
    report = api.artifact("demo/images:v0").verify()
    for table in verify_tables(report):
        console.print(table)
    console.print(verify_verdict(report) + f"  (exit code {report.exit_code}: a pipeline "
                  "stops here)")
    expect(report.exit_code == 1 and report.summary["version_missing"] == 1
           and any(e.status is Status.VERSION_MISSING and e.path == "bird_04.png"
                   for e in report.entries),
           "verify should fail with version_missing for bird_04.png")

    console.print()
    if problems:
        console.print(f"[red bold]demo failed[/]: {len(problems)} unexpected result(s)")
        return 1
    console.print("[green bold]demo complete[/]: pinned, drifted, verified, downloaded "
                  "exactly, versioned again, and caught data loss.")
    console.print("Next: reftrack log s3://your-bucket/prefix/ --project P --name N, then "
                  "reftrack verify P/N:latest (see README.md)")
    return 0
