"""Concurrent writers through the team registry server: 8 processes, each with its own token,
log versions of one artifact at once with the public API (``REFTRACK_REGISTRY=http://...``).
Versions must come out unique and gap-free, ``latest`` on the highest, and every alias where
its writer put it."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from server_fixtures import TeamServer

import reftrack

WRITERS = 8
VERSIONS = 5
PROJECT = "race"

WRITER = r"""
import json, sys, time
from pathlib import Path
import reftrack

index, count, root = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
files = []
for j in range(count):
    path = root / f"writer-{index}" / f"{j}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"writer {index}, version {j}")
    files.append(path)
(root / f"ready-{index}").touch()
deadline = time.monotonic() + 60
while not (root / "go").exists() and time.monotonic() < deadline:
    time.sleep(0.005)
logged = []
with reftrack.init(project="race", id=f"writer-{index}", job_type="write") as run:
    for j, path in enumerate(files):
        art = reftrack.Artifact("shared", type="dataset")
        art.add_reference(str(path))
        run.log_artifact(art, aliases=[f"w{index}-{j}", f"w{index}"])
        logged.append({"alias": f"w{index}-{j}", "version": art.version,
                       "digest": art.digest, "new": art.new_version})
print(json.dumps(logged))
"""


def test_eight_writer_processes_through_the_server(team_server: TeamServer,
                                                   tmp_path: Path) -> None:
    team_server.reset()
    team = team_server.team()
    tokens = {}
    for i in range(WRITERS):
        team.add_user(f"writer{i}")
        tokens[i] = team.create_token(f"writer{i}", "race")[1]
    team.create_project(PROJECT, owner="writer0")
    for i in range(1, WRITERS):
        team.set_member(PROJECT, f"writer{i}", "member", by="writer0")

    base = {k: v for k, v in os.environ.items() if not k.startswith("REFTRACK_")}
    processes = []
    for i in range(WRITERS):
        env = {**base, "REFTRACK_REGISTRY": team_server.url, "REFTRACK_TOKEN": tokens[i]}
        processes.append(subprocess.Popen(
            [sys.executable, "-c", WRITER, str(i), str(VERSIONS), str(tmp_path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and \
            not all((tmp_path / f"ready-{i}").exists() for i in range(WRITERS)):
        assert all(p.poll() is None for p in processes), "a writer died before the start"
        time.sleep(0.01)
    (tmp_path / "go").touch()  # all at once
    reports = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()
        reports.append(json.loads(out))

    total = WRITERS * VERSIONS
    logged = [item for report in reports for item in report]
    order = [i["alias"].partition("-")[0] for i in sorted(logged, key=lambda i: int(
        i["version"][1:]))]
    assert sum(a != b for a, b in itertools.pairwise(order)) > WRITERS - 1, \
        "the writers did not overlap"
    assert all(item["new"] for item in logged)
    assert sorted(int(item["version"][1:]) for item in logged) == list(range(total))
    api = reftrack.Api(settings=reftrack.Settings(registry=team_server.url, token=tokens[0]))
    versions = api.artifact_versions(f"{PROJECT}/shared")
    assert [v.version for v in versions] == [f"v{i}" for i in range(total)]  # gap-free, once
    assert len({v.digest for v in versions}) == total
    latest = api.artifact(f"{PROJECT}/shared:latest")
    assert latest.version == f"v{total - 1}"
    by_version = {v.version: v for v in versions}
    for index, report in enumerate(reports):
        for item in report:  # every alias is still where its writer put it
            found = api.artifact(f"{PROJECT}/shared:{item['alias']}")
            assert (found.version, found.digest) == (item["version"], item["digest"])
            assert item["alias"] in by_version[item["version"]].aliases
        last = api.artifact(f"{PROJECT}/shared:w{index}")  # moved along by its writer
        assert last.version == report[-1]["version"]
    summary = api.artifact_collections(PROJECT)[0]
    assert summary.versions == total and summary.latest == f"v{total - 1}"
    assert len(summary.aliases) == total + WRITERS
    runs = api.runs(PROJECT)
    assert sorted(r.id for r in runs) == sorted(f"writer-{i}" for i in range(WRITERS))
    assert {r.user for r in runs} == {f"writer{i}" for i in range(WRITERS)}
    assert all(len(r.logged_artifacts()) == VERSIONS for r in runs)
