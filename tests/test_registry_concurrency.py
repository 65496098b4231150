"""Concurrent writers on one registry, on SQLite and on PostgreSQL: 8 processes open a fresh
registry at the same moment (so they also race to create its schema), then each logs 5 versions
of the same artifact and sets its own aliases. Version numbers must come out v0..v39, each once
(unique and gap-free), ``latest`` must be the newest, every alias must be where its writer put
it, and no writer may fail."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import sqlalchemy as sa

from reftrack.manifest import Manifest, ManifestEntry
from reftrack.registry import Registry
from reftrack.registry import schema as t

WRITERS = 8
VERSIONS = 5

WRITER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path

    from reftrack.registry import Registry
    from test_registry_concurrency import manifest

    location, writer, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    Path(f"{go}.ready{writer}").touch()
    while not go.exists():  # every writer starts at once: a barrier
        time.sleep(0.002)
    reg = Registry(location)  # a fresh registry: its schema is created now, by someone
    logged = []
    for j in range(VERSIONS):
        aliases = [f"logged-{writer}"] if j == 2 else []
        version, created = reg.log_version(project="p", name="ds", type="dataset",
                                           manifest=manifest(writer, j), aliases=aliases)
        logged.append({"index": version.index, "digest": version.digest, "created": created})
    # then move an alias of its own onto its second version (a write of its own)
    moved = reg.set_alias(reg.resolve("p", "ds", f"v{logged[1]['index']}"), f"moved-{writer}")
    print(json.dumps({"logged": logged, "moved": moved.index}))
""").replace("VERSIONS", str(VERSIONS))


def manifest(writer: int, j: int) -> Manifest:
    """Distinct content per version (identical content would be the same version)."""
    tag = f"w{writer}-{j}"
    return Manifest([ManifestEntry(path=f"data/{tag}.bin", ref=f"s3://b/data/{tag}.bin",
                                   version_id=f"{writer:04d}{j:04d}", etag=f"{writer:016x}{j:016x}",
                                   size=writer * 100 + j, digest=f"{writer:032x}{j:032x}")])


def run_writers(location: str, tmp_path: Path) -> list[dict[str, object]]:
    go = tmp_path / "go"
    tests = Path(__file__).resolve().parent
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, location, str(i), str(go)],
                              cwd=tests, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(WRITERS)]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"go.ready{i}").exists() for i in range(WRITERS)):
        assert time.monotonic() < deadline, "the writers did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    go.touch()
    results = []
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"writer {i} failed:\n{err}"
        results.append(json.loads(out))
    return results


def test_concurrent_writers_get_unique_gap_free_versions_and_keep_aliases(
        registry_location: str, tmp_path: Path) -> None:
    results = run_writers(registry_location, tmp_path)
    reg = Registry(registry_location)

    indexes = [e["index"] for r in results for e in r["logged"]]  # type: ignore[attr-defined]
    assert sorted(indexes) == list(range(WRITERS * VERSIONS))  # each v0..v39 exactly once
    for writer, result in enumerate(results):
        own = [e["index"] for e in result["logged"]]  # type: ignore[attr-defined]
        assert own == sorted(own)  # one writer's versions in its own order
        assert all(e["created"] for e in result["logged"])  # type: ignore[attr-defined]
        for j, entry in enumerate(result["logged"]):  # type: ignore[arg-type]
            assert entry["digest"] == manifest(writer, j).digest
            assert reg.resolve("p", "ds", f"v{entry['index']}").digest == entry["digest"]
        # every alias is where its writer put it
        assert reg.resolve("p", "ds", f"logged-{writer}").index == own[2]
        assert reg.resolve("p", "ds", f"moved-{writer}").index == own[1] == result["moved"]

    latest = reg.resolve("p", "ds")
    assert latest.index == WRITERS * VERSIONS - 1 and latest.aliases[0] == "latest"
    assert [v.index for v in reg.versions("p", "ds")] == list(range(WRITERS * VERSIONS))
    summary = reg.artifacts("p")[0]
    assert summary.versions == WRITERS * VERSIONS and summary.latest == f"v{latest.index}"
    assert len(summary.aliases) == 2 * WRITERS
    with reg.engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(t.versions)).scalar_one()
        last = conn.execute(sa.select(t.artifacts.c.last_index)).scalar_one()
        projects = conn.execute(sa.select(sa.func.count()).select_from(t.projects)).scalar_one()
        schema = conn.execute(sa.select(t.meta.c.value)).scalars().all()
    assert (count, last, projects) == (WRITERS * VERSIONS, WRITERS * VERSIONS - 1, 1)
    assert schema == [str(t.SCHEMA_VERSION)]  # created once
