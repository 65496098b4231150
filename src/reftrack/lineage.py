"""Lineage: the bipartite graph of runs and artifact versions, its walks and its exports.

Two kinds of edge join the two kinds of node, always pointing the way data flows:

* ``run -> version`` (``logged``): the run logged that version (``VersionRecord.run_id``);
* ``version -> run`` (``used``): the run declared the version an input (``use_artifact``).

Walking **upstream** from a node follows edges backwards (what was this built from?);
**downstream** follows them forwards (what was built from this?). ``both`` is the union of
the two walks from the same root: the ancestors and the descendants of the root, not its
siblings (another output of the run that logged the root is not included).

**Depth counts edges** (hops run <-> version): from a model version, depth 1 reaches the run
that logged it, depth 2 the versions that run used, depth 3 the runs that logged those.
``depth=None`` walks the whole graph. A limited walk keeps every edge between the nodes it
reached and says ``truncated=True`` when some node at the limit had more neighbours beyond it:
nothing is cut silently.

The walk is breadth-first and visits each node once, so it ends even on a graph that loops.
The registry refuses the one loop a single run could make (using a version it logged
itself); a longer loop through several concurrently running runs cannot be refused by that
rule alone, and the walk does not depend on its absence.

Exports: :meth:`LineageGraph.model_dump` (JSON), :meth:`LineageGraph.to_dot` (Graphviz) and
:meth:`LineageGraph.to_mermaid`. :func:`sources` answers "which source data is this built
on?": the upstream versions nothing upstream produced from other versions, each with its
entry count; :func:`references` then streams each one's pinned references (path, URI with
its version id or generation) from its manifest.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterable, Iterator
from typing import IO, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict

from .errors import UsageError
from .manifest import ManifestEntry
from .registry import RunRecord, VersionRecord
from .registry.remote import AnyRegistry

__all__ = [
    "Direction",
    "LineageEdge",
    "LineageGraph",
    "LineageNode",
    "PinnedReference",
    "SourceVersion",
    "node_id",
    "references",
    "sources",
    "walk",
    "write_sources_json",
]

SCHEMA_VERSION = 1

Direction = Literal["both", "upstream", "downstream"]
NodeKind = Literal["run", "version"]
EdgeKind = Literal["logged", "used"]
Side = Literal["root", "upstream", "downstream"]

Record = VersionRecord | RunRecord


# -- the graph model --------------------------------------------------------------------------


class LineageNode(BaseModel):
    """A run or a version in a lineage graph.

    ``id`` is ``run:project/run_id`` or ``version:project/name:vN``. ``depth`` is the number
    of edges from the root on ``side`` (``root``, ``upstream`` or ``downstream``).
    ``attributes``: for versions ``type``, ``digest``, ``aliases``, ``entry_count``, ``size``,
    ``created_at``, ``logged_by``; for runs ``name``, ``job_type``, ``state``, ``started_at``,
    ``finished_at``.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    kind: NodeKind
    label: str
    side: Side
    depth: int
    attributes: dict[str, Any]


class LineageEdge(BaseModel):
    """``source -> target`` in the direction data flows: ``run -> version`` is ``logged``,
    ``version -> run`` is ``used``."""

    model_config = ConfigDict(frozen=True)

    source: str
    target: str
    kind: EdgeKind


class LineageGraph(BaseModel):
    """The result of :func:`walk`: nodes (the root first, then breadth-first) and edges."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = SCHEMA_VERSION
    root: str
    direction: Direction
    depth: int | None
    truncated: bool
    nodes: tuple[LineageNode, ...]
    edges: tuple[LineageEdge, ...]

    def node(self, id: str) -> LineageNode:
        for node in self.nodes:
            if node.id == id:
                return node
        raise KeyError(id)

    @property
    def node_ids(self) -> list[str]:
        return [n.id for n in self.nodes]

    def upstream_of(self, id: str) -> list[str]:
        """The nodes of this graph with an edge into ``id``."""
        return [e.source for e in self.edges if e.target == id]

    def downstream_of(self, id: str) -> list[str]:
        """The nodes of this graph that ``id`` has an edge to."""
        return [e.target for e in self.edges if e.source == id]

    def source_nodes(self) -> list[LineageNode]:
        """The versions of this graph (the root or upstream of it) that no version upstream
        in this graph leads to: those no run logged, or whose run used nothing.

        On a depth-limited (``truncated``) graph these are only the sources within reach;
        :func:`sources` walks the whole upstream graph. A downstream-only walk holds nothing
        upstream of its root: asking it is a :class:`~reftrack.errors.UsageError`.
        """
        if self.direction == "downstream":
            raise UsageError(
                "a downstream lineage walk has no upstream to find sources in; walk upstream"
            )
        out = []
        for node in self.nodes:
            if node.kind != "version" or node.side == "downstream":
                continue
            producers = self.upstream_of(node.id)
            if not any(self.upstream_of(run) for run in producers):
                out.append(node)
        return out

    # -- exports ---------------------------------------------------------------------------

    def to_dot(self) -> str:
        """Graphviz DOT text: runs as rounded boxes, versions as folders, the root bold."""
        lines = [
            "digraph lineage {",
            "  rankdir=LR;",
            '  node [fontname="Helvetica", fontsize=10];',
            '  edge [fontname="Helvetica", fontsize=9];',
        ]
        for node in self.nodes:
            attrs = {
                "label": "\n".join(_label_lines(node)),
                "shape": "box" if node.kind == "run" else "folder",
            }
            if node.kind == "run":
                attrs["style"] = "rounded"
            if node.id == self.root:
                attrs["penwidth"] = "2"
            lines.append(f"  {_dot_quote(node.id)} [{_dot_attrs(attrs)}];")
        for edge in self.edges:
            lines.append(
                f"  {_dot_quote(edge.source)} -> {_dot_quote(edge.target)} "
                f"[{_dot_attrs({'label': edge.kind})}];"
            )
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_mermaid(self) -> str:
        """Mermaid flowchart text. Node ids are ``r<N>``/``v<N>`` (letters, digits and
        underscores only); labels are quoted, with ``"``, ``<``, ``>`` and ``#`` escaped."""
        ids = {node.id: _mermaid_id(node, i) for i, node in enumerate(self.nodes)}
        lines = ["flowchart LR"]
        for node in self.nodes:
            label = "<br/>".join(_mermaid_escape(line) for line in _label_lines(node))
            opening, closing = ('(["', '"])') if node.kind == "run" else ('["', '"]')
            lines.append(f"  {ids[node.id]}{opening}{label}{closing}")
        for edge in self.edges:
            lines.append(f"  {ids[edge.source]} -->|{edge.kind}| {ids[edge.target]}")
        lines.append("  classDef run fill:#eef,stroke:#557;")
        lines.append("  classDef version fill:#efe,stroke:#575;")
        lines.append("  classDef root stroke-width:3px;")
        for kind in ("run", "version"):
            members = [ids[n.id] for n in self.nodes if n.kind == kind]
            if members:
                lines.append(f"  class {','.join(members)} {kind};")
        lines.append(f"  class {ids[self.root]} root;")
        return "\n".join(lines) + "\n"


class PinnedReference(BaseModel):
    """One entry of a source version: its path, the exact object it pins and the facts that
    prove it (``uri`` carries the version id, ``?versionId=...`` or ``#generation``)."""

    model_config = ConfigDict(frozen=True)

    path: str
    ref: str
    uri: str
    version_id: str | None
    pinned: bool
    etag: str | None
    size: int | None
    digest: str | None
    checksums: dict[str, str] | None

    @classmethod
    def from_entry(cls, entry: ManifestEntry) -> PinnedReference:
        return cls(
            path=entry.path,
            ref=entry.ref,
            uri=entry.uri,
            version_id=entry.version_id,
            pinned=entry.pinned,
            etag=entry.etag,
            size=entry.size,
            digest=entry.digest,
            checksums=entry.checksums,
        )


class SourceVersion(BaseModel):
    """A version the root is built on that nothing upstream derived from other versions.

    The references are not held here (a source may pin a million objects): ask
    :func:`references` for them, one at a time.
    """

    model_config = ConfigDict(frozen=True)

    node: str
    qualified_name: str
    type: str
    digest: str
    aliases: list[str]
    entry_count: int
    size: int
    logged_by: str | None
    depth: int

    def references(self, registry: AnyRegistry) -> Iterator[PinnedReference]:
        """This version's pinned references, by path (see :func:`references`)."""
        return references(registry, self)


# -- walking ----------------------------------------------------------------------------------


def node_id(record: Record) -> str:
    """``version:project/name:vN`` or ``run:project/run_id``."""
    if isinstance(record, VersionRecord):
        return f"version:{record.qualified_name}"
    return f"run:{record.project}/{record.id}"


class _Walker:
    """Breadth-first walks over one registry, remembering every record it met."""

    def __init__(self, registry: AnyRegistry) -> None:
        self.registry = registry
        self.records: dict[str, Record] = {}

    def _remember(self, record: Record) -> str:
        key = node_id(record)
        self.records.setdefault(key, record)
        return key

    def neighbours(self, key: str, upstream: bool) -> list[tuple[str, LineageEdge]]:
        record = self.records[key]
        out: list[tuple[str, LineageEdge]] = []
        if isinstance(record, VersionRecord):
            if upstream:
                if record.run_id is not None:
                    run = self._remember(self.registry.run(record.project, record.run_id))
                    out.append((run, LineageEdge(source=run, target=key, kind="logged")))
            else:
                for user in self.registry.version_users(record.id):
                    run = self._remember(user)
                    out.append((run, LineageEdge(source=key, target=run, kind="used")))
        elif upstream:
            for used in self.registry.run_inputs(record.pk):
                version = self._remember(used)
                out.append((version, LineageEdge(source=version, target=key, kind="used")))
        else:
            for logged in self.registry.run_outputs(record.pk):
                version = self._remember(logged)
                out.append((version, LineageEdge(source=key, target=version, kind="logged")))
        return out

    def walk(
        self, root: str, *, upstream: bool, depth: int | None
    ) -> tuple[dict[str, int], dict[tuple[str, str], LineageEdge], bool]:
        """Nodes reached (with their distance), the edges among them, and whether ``depth``
        stopped the walk before the graph ended."""
        reached = {root: 0}
        edges: dict[tuple[str, str], LineageEdge] = {}
        truncated = False
        queue = deque([root])
        while queue:
            key = queue.popleft()
            distance = reached[key]
            for other, edge in self.neighbours(key, upstream):
                if other in reached:
                    edges.setdefault((edge.source, edge.target), edge)
                elif depth is not None and distance >= depth:
                    truncated = True
                else:
                    reached[other] = distance + 1
                    edges.setdefault((edge.source, edge.target), edge)
                    queue.append(other)
        return reached, edges, truncated

    def node(self, key: str, side: Side, depth: int) -> LineageNode:
        record = self.records[key]
        if isinstance(record, VersionRecord):
            return LineageNode(
                id=key,
                kind="version",
                label=record.qualified_name,
                side=side,
                depth=depth,
                attributes={
                    "type": record.type,
                    "digest": record.digest,
                    "aliases": list(record.aliases),
                    "entry_count": record.entry_count,
                    "size": record.size,
                    "created_at": record.created_at.isoformat(),
                    "logged_by": (
                        f"run:{record.project}/{record.run_id}" if record.run_id else None
                    ),
                },
            )
        return LineageNode(
            id=key,
            kind="run",
            label=f"{record.project}/{record.id}",
            side=side,
            depth=depth,
            attributes={
                "name": record.name,
                "job_type": record.job_type,
                "state": record.state,
                "started_at": record.started_at.isoformat(),
                "finished_at": record.finished_at.isoformat() if record.finished_at else None,
            },
        )


def _check_walk(direction: str, depth: int | None) -> None:
    if direction not in get_args(Direction):
        raise UsageError(
            f"direction must be one of {', '.join(get_args(Direction))}, not {direction!r}"
        )
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int)):
        raise UsageError(f"depth must be a whole number of edges or None, not {depth!r}")
    if depth is not None and depth < 0:
        raise UsageError(f"depth must be 0 or more (edges from the root), not {depth}")


def _root_record(root: Record) -> Record:
    if not isinstance(root, VersionRecord | RunRecord):
        raise UsageError(
            f"a lineage walk starts at a VersionRecord or a RunRecord, not {root!r}"
        )
    return root


def walk(
    registry: AnyRegistry,
    root: VersionRecord | RunRecord,
    *,
    direction: Direction = "both",
    depth: int | None = None,
) -> LineageGraph:
    """Walk the lineage graph from ``root`` breadth-first, each node once.

    ``direction``: ``upstream`` (what ``root`` was built from), ``downstream`` (what was
    built from it) or ``both`` (the union of the two). ``depth`` counts edges (run <->
    version hops) from the root; ``None`` walks everything. Edges between reached nodes are
    all kept; ``truncated`` tells whether the limit left neighbours out.
    """
    _check_walk(direction, depth)
    walker = _Walker(registry)
    key = walker._remember(_root_record(root))
    sides: dict[str, tuple[Side, int]] = {key: ("root", 0)}
    edges: dict[tuple[str, str], LineageEdge] = {}
    truncated = False
    wanted: list[tuple[Side, bool]] = []
    if direction in ("both", "upstream"):
        wanted.append(("upstream", True))
    if direction in ("both", "downstream"):
        wanted.append(("downstream", False))
    for side, upstream in wanted:
        reached, found, cut = walker.walk(key, upstream=upstream, depth=depth)
        truncated = truncated or cut
        for other, distance in reached.items():
            if other not in sides or distance < sides[other][1]:
                sides[other] = (side, distance)
        for pair, edge in found.items():
            edges.setdefault(pair, edge)
    return LineageGraph(
        root=key,
        direction=direction,
        depth=depth,
        truncated=truncated,
        nodes=tuple(walker.node(k, side, d) for k, (side, d) in sides.items()),
        edges=tuple(edges.values()),
    )


def sources(registry: AnyRegistry, root: VersionRecord | RunRecord) -> list[SourceVersion]:
    """The source data ``root`` is built on, transitively: every version upstream of
    ``root`` (or ``root`` itself) that no run derived from other versions, i.e. that no run
    logged or whose run used no version. Nearest first; each names its exact version and
    entry count; :func:`references` gives the pinned references of each."""
    graph = walk(registry, root, direction="upstream")
    out = []
    for node in graph.source_nodes():
        attrs = node.attributes
        out.append(
            SourceVersion(
                node=node.id,
                qualified_name=node.label,
                type=attrs["type"],
                digest=attrs["digest"],
                aliases=attrs["aliases"],
                entry_count=attrs["entry_count"],
                size=attrs["size"],
                logged_by=attrs["logged_by"],
                depth=node.depth,
            )
        )
    return out


def references(
    registry: AnyRegistry, source: SourceVersion | VersionRecord
) -> Iterator[PinnedReference]:
    """The pinned references of a version's manifest, one at a time, sorted by path.

    The manifest is read when iteration starts (``registry.load_manifest``), not before.
    """
    digest = source.digest
    manifest = registry.load_manifest(digest)
    for path in sorted(manifest.entries):
        yield PinnedReference.from_entry(manifest.entries[path])


def write_sources_json(
    registry: AnyRegistry, root: str, found: Iterable[SourceVersion], out: IO[str]
) -> None:
    """Write ``{"root": ..., "sources": [{..., "references": [...]}, ...]}`` to ``out``,
    one reference at a time (a source's manifest is never turned into one big string)."""
    out.write("{\n  " + json.dumps("root") + ": " + json.dumps(root) + ",\n  \"sources\": [")
    for i, source in enumerate(found):
        head = json.dumps(source.model_dump(mode="json"), separators=(", ", ": "))
        out.write(("," if i else "") + "\n    " + head[:-1] + ', "references": [')
        for j, ref in enumerate(references(registry, source)):
            out.write(("," if j else "") + "\n      " + ref.model_dump_json())
        out.write("\n    ]}")
    out.write("\n  ]\n}\n")


# -- export helpers ---------------------------------------------------------------------------


def _label_lines(node: LineageNode) -> list[str]:
    attrs = node.attributes
    if node.kind == "version":
        second = f"{attrs['type']}, {entries_text(attrs['entry_count'])}"
        aliases = attrs.get("aliases") or []
        if aliases:
            second += f" [{', '.join(aliases)}]"
        return [node.label, second]
    details = [str(attrs.get("job_type") or "run"), str(attrs.get("state"))]
    name = attrs.get("name")
    lines = [node.label] + ([str(name)] if name else [])
    lines.append(", ".join(details))
    return lines


def entries_text(count: int) -> str:
    """``1 entry``, ``3 entries``."""
    return f"{count} entry" if count == 1 else f"{count} entries"


def _dot_quote(text: str) -> str:
    """A DOT double-quoted string: backslashes and quotes escaped, newlines as ``\\n``."""
    body = text.replace("\\", "\\\\").replace('"', '\\"')
    body = body.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")
    return f'"{body}"'


def _dot_attrs(attrs: dict[str, str]) -> str:
    return ", ".join(f"{name}={_dot_quote(value)}" for name, value in attrs.items())


_MERMAID_UNSAFE = re.compile(r"[^A-Za-z0-9_]+")


def _mermaid_id(node: LineageNode, index: int) -> str:
    """``r3`` / ``v4`` plus a readable tail; only letters, digits and underscores."""
    tail = _MERMAID_UNSAFE.sub("_", node.label).strip("_")[:40]
    prefix = "r" if node.kind == "run" else "v"
    return f"{prefix}{index}_{tail}" if tail else f"{prefix}{index}"


def _mermaid_escape(text: str) -> str:
    """Text safe inside a quoted Mermaid label (entity codes for the specials)."""
    out = []
    for char in text:
        if char == "#":
            out.append("#35;")
        elif char == '"':
            out.append("#quot;")
        elif char == "<":
            out.append("#lt;")
        elif char == ">":
            out.append("#gt;")
        elif char in "\r\n":
            out.append(" ")
        else:
            out.append(char)
    return "".join(out)

