"""Lineage: walks over runs and versions both ways, sources with pinned references, the
refused loop, and the graph exports (JSON, DOT, Mermaid) through the CLI.

The graph used throughout (three runs, four versions)::

    ingest ──logged──> raw:v0 ────used──┐
       └────logged──> labels:v0 ──used──┴─> preprocess ──logged──> features:v0
                                                                        │ used
                                                  model:v0 <──logged── train

raw:v0 pins local files (sha256 checksums, no version ids); labels:v0 pins one object of a
versioned S3 bucket (moto), so a real version id is checked.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import reftrack
from reftrack.cli import app
from reftrack.errors import UsageError
from reftrack.lineage import (
    LineageEdge,
    LineageGraph,
    LineageNode,
    node_id,
    references,
    sources,
    walk,
)
from reftrack.registry import Registry, RunRecord, VersionRecord, schema

runner = CliRunner()

RAW = {"a.csv": b"id,x\n1,2\n", "b.csv": b"id,x\n3,4\n"}
LABELS = b"id,label\n1,cat\n3,dog\n"


@dataclass
class Story:
    registry: Registry
    ingest: str
    preprocess: str
    train: str
    labels_version_id: str
    raw_dir: Path

    def version(self, name: str) -> VersionRecord:
        return self.registry.resolve("ml", name, "v0")

    def run(self, run_id: str) -> RunRecord:
        return self.registry.run("ml", run_id)


def v(name: str) -> str:
    return f"version:ml/{name}:v0"


def r(run_id: str, project: str = "ml") -> str:
    return f"run:{project}/{run_id}"


@pytest.fixture
def story(tmp_path: Path, bucket: str, put: Any) -> Story:
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    for name, data in RAW.items():
        (raw_dir / name).write_bytes(data)
    labels_version = put(bucket, "labels/labels.csv", LABELS)
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "f.parquet").write_bytes(b"features")
    (tmp_path / "model.bin").write_bytes(b"weights")

    with reftrack.init(project="ml", job_type="ingest") as ingest:
        raw = reftrack.Artifact("raw", type="dataset")
        raw.add_reference(str(raw_dir))
        ingest.log_artifact(raw)
        labels = reftrack.Artifact("labels", type="dataset")
        labels.add_reference(f"s3://{bucket}/labels/labels.csv")
        ingest.log_artifact(labels, aliases=["gold"])
    with reftrack.init(project="ml", job_type="preprocess") as prep:
        prep.use_artifact("raw:v0")
        prep.use_artifact("labels:gold")
        feats = reftrack.Artifact("features", type="dataset")
        feats.add_reference(str(tmp_path / "features"))
        prep.log_artifact(feats)
    with reftrack.init(project="ml", job_type="train", name='run "one"') as train:
        train.use_artifact("features:latest")
        train.log_artifact(str(tmp_path / "model.bin"), name="model", type="model")
    return Story(
        registry=reftrack.Api()._ctx.registry,
        ingest=ingest.id,
        preprocess=prep.id,
        train=train.id,
        labels_version_id=labels_version,
        raw_dir=raw_dir,
    )


def edge_set(graph: LineageGraph) -> set[tuple[str, str, str]]:
    return {(e.source, e.target, e.kind) for e in graph.edges}


def depths(graph: LineageGraph) -> dict[str, tuple[str, int]]:
    return {n.id: (n.side, n.depth) for n in graph.nodes}


def all_edges(s: Story) -> set[tuple[str, str, str]]:
    return {
        (r(s.ingest), v("raw"), "logged"),
        (r(s.ingest), v("labels"), "logged"),
        (v("raw"), r(s.preprocess), "used"),
        (v("labels"), r(s.preprocess), "used"),
        (r(s.preprocess), v("features"), "logged"),
        (v("features"), r(s.train), "used"),
        (r(s.train), v("model"), "logged"),
    }


# -- walks ------------------------------------------------------------------------------------


def test_upstream_from_the_model_reaches_every_run_and_version(story: Story) -> None:
    s = story
    graph = walk(s.registry, s.version("model"), direction="upstream")
    assert graph.root == v("model") and graph.nodes[0].id == v("model")
    assert graph.direction == "upstream" and graph.depth is None and not graph.truncated
    assert depths(graph) == {
        v("model"): ("root", 0),
        r(s.train): ("upstream", 1),
        v("features"): ("upstream", 2),
        r(s.preprocess): ("upstream", 3),
        v("raw"): ("upstream", 4),
        v("labels"): ("upstream", 4),
        r(s.ingest): ("upstream", 5),
    }
    assert edge_set(graph) == all_edges(s)
    assert len(graph.edges) == 7 and len(set(graph.node_ids)) == 7  # each node once
    # breadth-first: nearer nodes come first
    assert [n.depth for n in graph.nodes] == sorted(n.depth for n in graph.nodes)

    model = graph.node(v("model"))
    assert model.kind == "version" and model.label == "ml/model:v0"
    assert model.attributes["type"] == "model" and model.attributes["entry_count"] == 1
    assert model.attributes["aliases"] == ["latest"]
    assert model.attributes["digest"] == s.version("model").digest
    assert model.attributes["logged_by"] == r(s.train)
    train = graph.node(r(s.train))
    assert train.kind == "run" and train.label == f"ml/{s.train}"
    assert train.attributes["job_type"] == "train" and train.attributes["state"] == "finished"
    assert train.attributes["name"] == 'run "one"' and train.attributes["started_at"]
    assert graph.node(v("labels")).attributes["aliases"] == ["latest", "gold"]


@pytest.mark.parametrize(
    ("depth", "reached", "truncated"),
    [
        (0, {"model"}, True),
        (1, {"model", "train"}, True),
        (2, {"model", "train", "features"}, True),
        (4, {"model", "train", "features", "preprocess", "raw", "labels"}, True),
        (5, {"model", "train", "features", "preprocess", "raw", "labels", "ingest"}, False),
        (50, {"model", "train", "features", "preprocess", "raw", "labels", "ingest"}, False),
    ],
)
def test_upstream_depth_counts_edges(story: Story, depth: int, reached: set[str],
                                     truncated: bool) -> None:
    s = story
    ids = {"train": r(s.train), "preprocess": r(s.preprocess), "ingest": r(s.ingest)}
    graph = walk(s.registry, s.version("model"), direction="upstream", depth=depth)
    assert set(graph.node_ids) == {ids.get(n, v(n)) for n in reached}
    assert graph.truncated is truncated and graph.depth == depth
    assert max(n.depth for n in graph.nodes) <= depth
    # every edge kept joins two reached nodes, and none between reached nodes is missing
    assert edge_set(graph) == {e for e in all_edges(s) if {e[0], e[1]} <= set(graph.node_ids)}


def test_downstream_from_raw_data(story: Story) -> None:
    s = story
    graph = walk(s.registry, s.version("raw"), direction="downstream")
    assert depths(graph) == {
        v("raw"): ("root", 0),
        r(s.preprocess): ("downstream", 1),
        v("features"): ("downstream", 2),
        r(s.train): ("downstream", 3),
        v("model"): ("downstream", 4),
    }
    # labels:v0 is a sibling (another input of preprocess), not downstream of raw:v0
    assert v("labels") not in graph.node_ids and r(s.ingest) not in graph.node_ids
    assert edge_set(graph) == {
        (v("raw"), r(s.preprocess), "used"),
        (r(s.preprocess), v("features"), "logged"),
        (v("features"), r(s.train), "used"),
        (r(s.train), v("model"), "logged"),
    }
    near = walk(s.registry, s.version("raw"), direction="downstream", depth=2)
    assert set(near.node_ids) == {v("raw"), r(s.preprocess), v("features")}
    assert near.truncated
    leaf = walk(s.registry, s.version("model"), direction="downstream")
    assert leaf.node_ids == [v("model")] and leaf.edges == () and not leaf.truncated


def test_both_ways_is_ancestors_and_descendants(story: Story) -> None:
    s = story
    graph = walk(s.registry, s.version("features"))
    assert graph.direction == "both"
    assert depths(graph) == {
        v("features"): ("root", 0),
        r(s.preprocess): ("upstream", 1),
        v("raw"): ("upstream", 2),
        v("labels"): ("upstream", 2),
        r(s.ingest): ("upstream", 3),
        r(s.train): ("downstream", 1),
        v("model"): ("downstream", 2),
    }
    assert edge_set(graph) == all_edges(s)
    one = walk(s.registry, s.version("features"), depth=1)
    assert set(one.node_ids) == {v("features"), r(s.preprocess), r(s.train)}
    assert one.truncated


def test_walk_from_a_run(story: Story) -> None:
    s = story
    graph = walk(s.registry, s.run(s.preprocess))
    assert graph.root == r(s.preprocess) and graph.nodes[0].kind == "run"
    assert edge_set(graph) == all_edges(s)
    assert depths(graph)[v("model")] == ("downstream", 3)
    assert depths(graph)[r(s.ingest)] == ("upstream", 2)
    down = walk(s.registry, s.run(s.ingest), direction="downstream")
    assert {n.id for n in down.nodes} == {
        r(s.ingest), v("raw"), v("labels"), r(s.preprocess), v("features"), r(s.train),
        v("model"),
    }
    assert node_id(s.run(s.ingest)) == r(s.ingest) and node_id(s.version("raw")) == v("raw")


def test_walk_validates_its_arguments(story: Story) -> None:
    s = story
    root = s.version("model")
    with pytest.raises(UsageError, match="0 or more"):
        walk(s.registry, root, depth=-1)
    with pytest.raises(UsageError, match="whole number"):
        walk(s.registry, root, depth=True)
    with pytest.raises(UsageError, match="whole number"):
        walk(s.registry, root, depth=1.5)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="direction must be one of"):
        walk(s.registry, root, direction="sideways")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="VersionRecord or a RunRecord"):
        walk(s.registry, "ml/model:v0")  # type: ignore[arg-type]


# -- the refused loop ---------------------------------------------------------------------


def test_a_run_cannot_use_a_version_it_logged(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.txt").write_bytes(b"x")
    with reftrack.init(project="loop", job_type="self") as run:
        art = run.log_artifact(str(tmp_path / "d"), name="ds", type="dataset")
        with pytest.raises(UsageError, match="lineage must not loop"):
            run.use_artifact("ds:v0")
        with pytest.raises(UsageError, match="lineage must not loop"):
            run.use_artifact(art)
        assert run.used_artifacts() == []
    registry = reftrack.Api()._ctx.registry
    version = registry.resolve("loop", "ds", "v0")
    assert registry.version_users(version.id) == []
    graph = walk(registry, version)
    assert edge_set(graph) == {(r(run.id, "loop"), "version:loop/ds:v0", "logged")}


def test_the_walk_ends_even_on_a_longer_loop(tmp_path: Path) -> None:
    """The walk does not rely on the graph having no loop: one closed behind the registry's
    back (a -> second -> b -> first -> a) is walked with each node once, and ends."""
    for name in ("a", "b"):
        (tmp_path / name).write_bytes(name.encode())
    with reftrack.init(project="loop", job_type="first") as first:
        first.log_artifact(str(tmp_path / "a"), name="a", type="dataset")
    with reftrack.init(project="loop", job_type="second") as second:
        second.use_artifact("a:v0")
        second.log_artifact(str(tmp_path / "b"), name="b", type="dataset")
    registry = reftrack.Api()._ctx.registry
    b = registry.resolve("loop", "b", "v0")
    with registry.engine.begin() as conn:  # the input edge first -> b, written directly
        conn.execute(schema.run_inputs.insert().values(
            run_pk=registry.run("loop", first.id).pk, version_id=b.id,
            used_at=datetime.now(UTC)))
    everything = {"version:loop/a:v0", "version:loop/b:v0", r(first.id, "loop"),
                  r(second.id, "loop")}
    for direction in ("both", "upstream", "downstream"):
        graph = walk(registry, registry.resolve("loop", "a", "v0"), direction=direction)
        assert set(graph.node_ids) == everything and len(graph.node_ids) == 4
        assert len(graph.edges) == 4 and not graph.truncated
    assert sources(registry, b) == []  # every version is derived from another: no source


# -- sources ----------------------------------------------------------------------------------


def test_sources_of_the_model_are_the_raw_data_with_pinned_versions(story: Story) -> None:
    s = story
    found = sources(s.registry, s.version("model"))
    assert [x.qualified_name for x in found] == ["ml/raw:v0", "ml/labels:v0"]
    raw, labels = found
    assert raw.entry_count == 2 and raw.type == "dataset" and raw.depth == 4
    assert raw.logged_by == r(s.ingest) and raw.digest == s.version("raw").digest
    assert labels.aliases == ["latest", "gold"] and labels.entry_count == 1

    raw_refs = list(raw.references(s.registry))
    assert [x.path for x in raw_refs] == ["a.csv", "b.csv"]
    for ref in raw_refs:
        data = RAW[ref.path]
        assert ref.version_id is None and not ref.pinned  # local files have no versions
        assert ref.checksums == {"sha256": hashlib.sha256(data).hexdigest()}
        assert ref.size == len(data)
        assert ref.uri == ref.ref == (s.raw_dir / ref.path).resolve().as_uri()

    (label_ref,) = references(s.registry, labels)
    assert label_ref.path == "labels.csv" and label_ref.pinned
    assert label_ref.version_id == s.labels_version_id
    assert label_ref.ref == "s3://test-bucket/labels/labels.csv"
    assert label_ref.uri == f"{label_ref.ref}?versionId={s.labels_version_id}"
    assert label_ref.etag == hashlib.md5(LABELS, usedforsecurity=False).hexdigest()

    # from a run, from a version in the middle, and from a source itself
    from_run = sources(s.registry, s.run(s.train))
    assert [x.qualified_name for x in from_run] == ["ml/raw:v0", "ml/labels:v0"]
    assert [x.qualified_name for x in sources(s.registry, s.version("raw"))] == ["ml/raw:v0"]


def test_references_are_lazy(story: Story, monkeypatch: pytest.MonkeyPatch) -> None:
    s = story
    found = sources(s.registry, s.version("model"))
    loads: list[str] = []
    real = s.registry.load_manifest

    def counting(digest: str) -> Any:
        loads.append(digest)
        return real(digest)

    monkeypatch.setattr(s.registry, "load_manifest", counting)
    it = references(s.registry, found[0])
    assert loads == []  # nothing read until asked
    assert next(it).path == "a.csv" and loads == [found[0].digest]


def test_source_nodes_of_a_graph(story: Story) -> None:
    s = story
    full = walk(s.registry, s.version("model"), direction="upstream")
    assert [n.id for n in full.source_nodes()] == [v("raw"), v("labels")]
    cut = walk(s.registry, s.version("model"), direction="upstream", depth=2)
    assert [n.id for n in cut.source_nodes()] == [v("features")]  # within reach only
    with pytest.raises(UsageError, match="no upstream"):
        walk(s.registry, s.version("raw"), direction="downstream").source_nodes()


# -- exports ----------------------------------------------------------------------------------

_DOT_ID = r'"(?:[^"\\]|\\.)*"'
_DOT_NODE = re.compile(rf"^  ({_DOT_ID}) \[(.*)\];$")
_DOT_EDGE = re.compile(rf"^  ({_DOT_ID}) -> ({_DOT_ID}) \[label=\"(logged|used)\"\];$")


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _braces_balanced(text: str) -> bool:
    depth = 0
    for token in re.sub(_DOT_ID, '""', text):
        depth += {"{": 1, "}": -1}.get(token, 0)
        if depth < 0:
            return False
    return depth == 0


def check_dot(text: str, graph: LineageGraph) -> None:
    """Structure checked by hand always; by pydot and Graphviz when they are installed."""
    lines = text.strip().splitlines()
    assert lines[0] == "digraph lineage {" and lines[-1] == "}"
    assert _braces_balanced(text)
    nodes = {_unquote(m.group(1)) for m in map(_DOT_NODE.match, lines) if m}
    edges = {(_unquote(m.group(1)), _unquote(m.group(2)), m.group(3))
             for m in map(_DOT_EDGE.match, lines) if m}
    assert nodes == set(graph.node_ids)
    assert edges == edge_set(graph)
    try:
        pydot: Any = importlib.import_module("pydot")
    except ImportError:
        pydot = None
    if pydot is not None:
        with warnings.catch_warnings():  # pydot's parser uses pyparsing's old names
            warnings.simplefilter("ignore", DeprecationWarning)
            (parsed,) = pydot.graph_from_dot_data(text)
        assert parsed.get_type() == "digraph"
        names = {_unquote(n.get_name()) for n in parsed.get_nodes()
                 if n.get_name() not in ("node", "edge", "graph")}
        assert names == set(graph.node_ids)
        assert {(_unquote(e.get_source()), _unquote(e.get_destination()),
                 _unquote(str(e.get("label")))) for e in parsed.get_edges()} == edge_set(graph)
    dot = shutil.which("dot")
    if dot is not None:
        done = subprocess.run([dot, "-Tsvg"], input=text.encode(), capture_output=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr.decode()
        assert b"<svg" in done.stdout and not done.stderr.strip()


_MERMAID_NODE = re.compile(r'^  ([A-Za-z0-9_]+)(\(\["|\[")(.*)("\]\)|"\])$')
_MERMAID_EDGE = re.compile(r"^  ([A-Za-z0-9_]+) -->\|(logged|used)\| ([A-Za-z0-9_]+)$")


def check_mermaid(text: str, graph: LineageGraph) -> dict[str, str]:
    """Every node once with an alphanumeric id and a quoted label, every edge; returns the
    label of each Mermaid id."""
    lines = text.strip().splitlines()
    assert lines[0] == "flowchart LR"
    labels: dict[str, str] = {}
    edges = set()
    for line in lines[1:]:
        node, edge = _MERMAID_NODE.match(line), _MERMAID_EDGE.match(line)
        if node:
            assert node.group(1) not in labels
            assert '"' not in node.group(3)  # quotes inside labels are escaped
            shape = "run" if node.group(2) == '(["' else "version"
            labels[node.group(1)] = f"{shape}:{node.group(3)}"
        elif edge:
            edges.add((edge.group(1), edge.group(3), edge.group(2)))
        else:
            assert line.startswith(("  classDef ", "  class ")), line
    assert len(labels) == len(graph.nodes)
    by_label = {graph_label: mid for mid, graph_label in labels.items()}
    ids = {}
    for n in graph.nodes:
        (match,) = [mid for lab, mid in by_label.items()
                    if lab.startswith(f"{n.kind}:{n.label}<br/>")]
        ids[n.id] = match
    assert edges == {(ids[e.source], ids[e.target], e.kind) for e in graph.edges}
    return labels


def test_dot_and_mermaid_escape_awkward_labels() -> None:
    awkward = 'we"ird\\name <b>#1</b>\nline'
    graph = LineageGraph(
        root="run:p/x",
        direction="both",
        depth=None,
        truncated=False,
        nodes=(
            LineageNode(id="run:p/x", kind="run", label=awkward, side="root", depth=0,
                        attributes={"job_type": "end", "state": "finished", "name": 'a "b"'}),
            LineageNode(id='version:p/q"uote:v0', kind="version", label="p/end:v0",
                        side="downstream", depth=1,
                        attributes={"type": "t", "entry_count": 1, "aliases": ["latest"]}),
        ),
        edges=(LineageEdge(source="run:p/x", target='version:p/q"uote:v0', kind="logged"),),
    )
    dot = graph.to_dot()
    assert '\\"' in dot and "\\\\name" in dot
    check_dot(dot, graph)
    mermaid = graph.to_mermaid()
    lines = mermaid.splitlines()
    assert lines[0] == "flowchart LR"
    run_line, version_line = lines[1], lines[2]
    match = _MERMAID_NODE.match(run_line)
    assert match is not None and match.group(1).startswith("r0_")
    assert match.group(3) == (
        "we#quot;ird\\name #lt;b#gt;#35;1#lt;/b#gt; line<br/>a #quot;b#quot;<br/>end, finished"
    )
    match = _MERMAID_NODE.match(version_line)
    assert match is not None and match.group(1) == "v1_p_end_v0"  # 'end' is safe after v1_
    assert re.fullmatch(r"  r0_[A-Za-z0-9_]+ -->\|logged\| v1_p_end_v0", lines[3])


def test_json_export_round_trips(story: Story) -> None:
    s = story
    graph = walk(s.registry, s.version("model"), direction="upstream", depth=3)
    data = json.loads(json.dumps(graph.model_dump(mode="json")))
    assert data["schema_version"] == 1 and data["root"] == v("model")
    assert data["direction"] == "upstream" and data["depth"] == 3 and data["truncated"]
    assert LineageGraph.model_validate(data) == graph


# -- the command line ---------------------------------------------------------------------


def cli(*args: str) -> Result:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"reftrack {' '.join(args)} raised {result.exception!r}:\n"
                             f"{result.output}") from result.exception
    return result


def ok(*args: str) -> str:
    result = cli(*args)
    assert result.exit_code == 0, f"{result.exit_code}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_cli_table(story: Story) -> None:
    s = story
    out = ok("lineage", "ml/model:v0")
    flat = " ".join(out.split())
    assert "lineage of ml/model:v0 (both, unbounded)" in flat
    for text in ("ml/raw:v0", "ml/labels:v0", "ml/features:v0", f"ml/{s.train}",
                 f"ml/{s.preprocess}", f"ml/{s.ingest}", "↑5", "↑4", "root",
                 "logged ml/model:v0", f"used by ml/{s.train}", "model, 1 entry"):
        assert text in flat, text
    lines = out.splitlines()

    def row(needle: str) -> int:
        return next(i for i, line in enumerate(lines) if needle in line)

    # upstream farthest first, then the root
    assert row(f"│ ml/{s.ingest} ") < row("│ ml/raw:v0 ") < row("│ ml/features:v0 ") < row("│ root")
    assert "ml/model:v0" in lines[row("│ root")]
    down = " ".join(ok("lineage", "ml/raw:v0", "--downstream", "--depth", "1").split())
    assert "↓1" in down and "used ml/raw:v0" in down and "more lineage beyond" in down
    assert "ml/model:v0" not in down


def test_cli_json(story: Story) -> None:
    s = story
    data = json.loads(ok("lineage", "ml/model:v0", "--upstream", "--json"))
    assert data["root"] == v("model") and data["direction"] == "upstream"
    assert {n["id"] for n in data["nodes"]} == {
        v("model"), v("features"), v("raw"), v("labels"), r(s.train), r(s.preprocess),
        r(s.ingest),
    }
    assert {(e["source"], e["target"], e["kind"]) for e in data["edges"]} == all_edges(s)
    same = json.loads(ok("lineage", "ml/model:latest", "--upstream", "--format", "json"))
    assert same == data
    near = json.loads(ok("lineage", "ml/model", "--json", "--depth", "2"))
    assert {n["id"] for n in near["nodes"]} == {v("model"), r(s.train), v("features")}
    assert near["truncated"] is True and near["depth"] == 2


def test_cli_dot(story: Story) -> None:
    s = story
    text = ok("lineage", "ml/features:v0", "--format", "dot")
    check_dot(text, walk(s.registry, s.version("features")))
    assert 'penwidth="2"' in text  # the root stands out
    assert f'"run:ml/{s.train}" [label="ml/{s.train}\\nrun \\"one\\"\\ntrain, finished"' in text
    up = ok("lineage", "ml/model:v0", "--upstream", "-f", "dot")
    check_dot(up, walk(s.registry, s.version("model"), direction="upstream"))
    assert len(re.findall(r" -> ", up)) == 7


def test_cli_mermaid(story: Story) -> None:
    s = story
    text = ok("lineage", "ml/model:v0", "--format", "mermaid")
    graph = walk(s.registry, s.version("model"))
    labels = check_mermaid(text, graph)
    assert len(labels) == 7 and text.count("-->|") == 7
    assert f"run:ml/{s.train}<br/>run #quot;one#quot;<br/>train, finished" in labels.values()
    assert "version:ml/labels:v0<br/>dataset, 1 entry [latest, gold]" in labels.values()
    root_id = next(m for m, lab in labels.items() if lab.startswith("version:ml/model:v0"))
    assert f"  class {root_id} root;" in text


def test_cli_sources(story: Story) -> None:
    s = story
    out = " ".join(ok("lineage", "ml/model:v0", "--sources").split())
    assert "ml/model:v0 is built on 2 source version(s)" in out
    assert "ml/raw:v0 (dataset, 2 entries" in out and "ml/labels:v0 (dataset, 1 entry" in out
    assert s.labels_version_id in out and "(local file)" in out and "a.csv" in out
    limited = " ".join(ok("lineage", "ml/model:v0", "--sources", "--limit", "1").split())
    assert "1 more entries" in limited and "b.csv" not in limited

    data = json.loads(ok("lineage", "ml/model:v0", "--sources", "--json"))
    assert data["root"] == "ml/model:v0"
    assert [x["qualified_name"] for x in data["sources"]] == ["ml/raw:v0", "ml/labels:v0"]
    raw, labels = data["sources"]
    assert [ref["path"] for ref in raw["references"]] == ["a.csv", "b.csv"]
    assert raw["references"][0]["checksums"]["sha256"] == hashlib.sha256(
        RAW["a.csv"]).hexdigest()
    (ref,) = labels["references"]
    assert ref["version_id"] == s.labels_version_id and ref["pinned"] is True
    assert ref["uri"].endswith(f"?versionId={s.labels_version_id}")

    itself = " ".join(ok("lineage", "ml/raw:v0", "--sources").split())
    assert "is source data itself" in itself


def test_cli_errors(story: Story) -> None:
    cases = [
        (["ml/model:v0", "--depth", "-1"], 2, "--depth must be 0 or more"),
        (["ml/nope:v0"], 4, "artifact ml/nope does not exist"),
        (["ml/model:v9"], 4, "no version v9"),
        (["ml/model:v0", "--upstream", "--downstream"], 2, "exclude each other"),
        (["ml/model:v0", "--format", "png"], 2, "--format must be one of"),
        (["ml/model:v0", "--json", "--format", "dot"], 2, "disagree"),
        (["ml/model:v0", "--sources", "--downstream"], 2, "--sources walks"),
        (["ml/model:v0", "--sources", "--depth", "2"], 2, "--sources walks"),
        (["ml/model:v0", "--sources", "-f", "mermaid"], 2, "table or JSON"),
    ]
    for args, code, message in cases:
        result = cli("lineage", *args)
        assert result.exit_code == code, (args, result.stdout, result.stderr)
        if "--json" in args:
            said = json.loads(result.stdout)["error"]["message"]
        else:
            said = " ".join(result.stderr.split())
        assert message in said, (args, said)
    for flag in (["--json"], ["--format", "json"]):
        result = cli("lineage", "ml/nope:v0", *flag)
        assert result.exit_code == 4
        error = json.loads(result.stdout)["error"]
        assert error["type"] == "NotFound" and error["exit_code"] == 4
    bad = cli("lineage", "ml/model:v0", "--depth", "-3", "--json")
    assert bad.exit_code == 2 and json.loads(bad.stdout)["error"]["type"] == "UsageError"
