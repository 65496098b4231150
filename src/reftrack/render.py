"""Rich output for people: tables and progress bars shared by the CLI and the demo."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as RichProgressBar
from rich.table import Table

from .bucketrules import BucketWarning
from .lineage import (
    LineageGraph,
    LineageNode,
    PinnedReference,
    SourceVersion,
    entries_text,
)
from .manifest import Manifest, ManifestEntry
from .protection import ProtectReport
from .registry import ArtifactSummary, VersionRecord
from .transfer import DownloadReport
from .verify import FAILING, Status, VerifyReport

__all__ = [
    "RichProgress",
    "artifacts_table",
    "entries_table",
    "make_console",
    "size_text",
    "verify_tables",
]

STATUS_STYLE = {
    Status.OK: "green",
    Status.MOVED: "yellow",
    Status.DELETED: "yellow",
    Status.VERSION_MISSING: "red",
    Status.CHANGED: "red",
    Status.CORRUPT: "red",
    Status.UNREACHABLE: "magenta",
}


def make_console(*, stderr: bool = False) -> Console:
    """A console that never truncates: wide when output is not a terminal."""
    console = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console.width = max(int(os.environ.get("COLUMNS", "0") or 0), 200)
    return console


def size_text(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


class RichProgress:
    """The library's :class:`~reftrack.progress.Progress`, drawn as Rich progress bars on
    stderr (only when stderr is a terminal)."""

    def __init__(self, console: Console | None = None, *, enabled: bool | None = None) -> None:
        self.console = console or make_console(stderr=True)
        self.enabled = self.console.is_terminal if enabled is None else enabled
        self._bar: RichProgressBar | None = None
        self._task: TaskID | None = None

    def start(self, description: str, total: int | None = None, unit: str = "objects") -> None:
        self.finish()
        if not self.enabled:
            return
        if unit == "bytes":
            columns: Sequence[Any] = (
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TimeElapsedColumn(),
            )
        elif total is None:
            columns = (
                SpinnerColumn(), TextColumn("{task.description}"),
                TextColumn("{task.completed} " + unit), TimeElapsedColumn(),
            )
        else:
            columns = (
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn(unit), TimeElapsedColumn(),
            )
        self._bar = RichProgressBar(*columns, console=self.console, transient=True)
        self._bar.start()
        self._task = self._bar.add_task(escape(description), total=total)

    def advance(self, amount: int = 1) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, amount)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
            self._task = None


def _scheme(uri: str) -> str:
    return uri.partition("://")[0].lower()


def _version_text(entry: ManifestEntry) -> str:
    if not entry.checksummed:
        return "[dim]not recorded (checksum=False)[/]"
    if entry.version_id is None:
        scheme = _scheme(entry.ref)
        if scheme == "file":
            return "[dim](local file)[/]"
        if scheme in ("http", "https"):
            return "[dim](HTTP, no versions)[/]"
        return "[yellow](unversioned)[/]"
    return escape(entry.version_id)


def _identity_text(entry: ManifestEntry) -> str:
    """The ETag, or else the strongest content checksum (shortened)."""
    if entry.etag:
        return escape(entry.etag)
    for name, value in (entry.checksums or {}).items():
        return f"{name}:{value[:16]}…"
    return "-"


def entries_table(manifest: Manifest, *, limit: int | None = None, title: str = "") -> Table:
    table = Table(title=title or None, title_justify="left", show_lines=False)
    table.add_column("path", overflow="fold")
    table.add_column("version id", no_wrap=True)
    table.add_column("ETag / checksum", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("reference", overflow="fold")
    entries = manifest.sorted_entries()
    shown = entries if not limit else entries[:limit]
    for entry in shown:
        table.add_row(
            escape(entry.path),
            _version_text(entry),
            _identity_text(entry),
            size_text(entry.size),
            escape(entry.ref),
        )
    if len(shown) < len(entries):
        table.caption = f"{len(entries) - len(shown)} more entries (use --limit 0 to show all)"
    return table


def record_lines(record: VersionRecord) -> list[str]:
    lines = [
        f"[bold]{escape(record.qualified_name)}[/]  ({escape(record.type)})",
        f"aliases:     {escape(', '.join(record.aliases)) or '-'}",
        f"entries:     {record.entry_count}  ({size_text(record.size)})",
        f"digest:      {record.digest}",
        f"created:     {record.created_at:%Y-%m-%d %H:%M:%S %Z}",
        f"logged by:   run {escape(record.run_id) if record.run_id else '-'}",
    ]
    if record.ttl is not None or record.expires_at is not None:
        when = f", expires {record.expires_at:%Y-%m-%d %H:%M} UTC" if record.expires_at else ""
        lines.append(f"ttl:         {record.ttl or 'none'}{when}")
    if record.description:
        lines.append(f"description: {escape(record.description)}")
    if record.metadata:
        meta = ", ".join(f"{k}={v!r}" for k, v in record.metadata.items())
        lines.append(f"metadata:    {escape(meta)}")
    return lines


def sources_lines(manifest: Manifest) -> list[str]:
    lines = []
    for source in manifest.sources:
        if source.kind == "managed":
            name = f" as {source.name!r}" if source.name else ""
            files = "1 file" if source.entries == 1 else f"{source.entries} files"
            versioned = (f"; blob store versioning {source.versioning}"
                         if source.versioning not in ("disabled", "unknown") else "")
            lines.append(
                f"  {escape(source.uri)}{escape(name)}: managed, {files} copied into the blob "
                f"store (stored once per sha256; download and verify use the copies){versioned}"
            )
            continue
        what = (
            (f"directory, {source.entries} files" if _scheme(source.uri) == "file" else
             f"prefix, {source.entries} objects ({source.listed} versions listed)")
            if source.kind == "prefix" else "one object"
        )
        scheme = _scheme(source.uri)
        if scheme == "file":
            notes = ["local files: size, mtime and sha256 recorded, no versions"]
        elif scheme in ("http", "https"):
            notes = ["HTTP: ETag, Last-Modified, size and sha256 recorded, no versions"]
        else:
            notes = [f"bucket versioning {source.versioning}"]
        if not source.checksum:
            notes.append("checksum=False: URIs only, nothing pinned")
        if source.skipped_markers:
            notes.append(f"{source.skipped_markers} directory marker(s) skipped")
        name = f" as {source.name!r}" if source.name else ""
        lines.append(f"  {escape(source.uri)}{escape(name)}: {what}; {'; '.join(notes)}")
    return lines


def artifacts_table(summaries: Iterable[ArtifactSummary]) -> Table:
    table = Table()
    for column in ("artifact", "type", "versions", "latest", "aliases", "size", "updated"):
        table.add_column(column, no_wrap=column != "aliases")
    for s in summaries:
        aliases = ", ".join(f"{a}:{v}" for a, v in s.aliases.items())
        table.add_row(
            escape(f"{s.project}/{s.name}"), escape(s.type), str(s.versions), s.latest,
            escape(aliases) or "-", size_text(s.size), f"{s.updated_at:%Y-%m-%d %H:%M}",
        )
    return table


def verify_tables(report: VerifyReport, *, all_entries: bool = False) -> list[Any]:
    """A summary line per status, then the entries that are not ``ok``."""
    summary = Table(title="verification summary", title_justify="left")
    summary.add_column("status")
    summary.add_column("entries", justify="right")
    summary.add_column("meaning")
    meaning = {
        Status.OK: "pinned version intact and current",
        Status.MOVED: "drift: key overwritten, pinned version intact",
        Status.DELETED: "drift: key deleted, pinned version intact",
        Status.VERSION_MISSING: "FAIL: pinned data is gone",
        Status.CHANGED: "FAIL: unversioned object (or local file, HTTP resource) changed",
        Status.CORRUPT: "FAIL: content does not match the record",
        Status.UNREACHABLE: "could not check (bucket missing, access denied, network)",
    }
    for status in Status:
        count = report.summary[status.value]
        if count or status is Status.OK:
            style = STATUS_STYLE[status]
            summary.add_row(f"[{style}]{status.value}[/]", str(count), meaning[status])
    if report.omitted:
        summary.caption = (f"{report.omitted:,} ok entries are counted, not listed: a large "
                           "verification lists only the entries that are not ok (a logged "
                           "version keeps every result in the registry)")
        summary.caption_justify = "left"
    out: list[Any] = [summary]
    rows = report.entries if all_entries else [e for e in report.entries if e.status != Status.OK]
    if rows:
        title = "entries that drifted or failed"
        if all_entries:
            title = "entries" if not report.omitted else \
                f"entries (not the {report.omitted:,} ok ones counted above)"
        detail = Table(title=title, title_justify="left")
        detail.add_column("path", overflow="fold")
        detail.add_column("status", no_wrap=True)
        if report.reused:
            detail.add_column("checked", no_wrap=True)
        detail.add_column("detail", overflow="fold")
        for e in rows:
            style = STATUS_STYLE[e.status]
            cells = [escape(e.path), f"[{style}]{e.status.value}[/]"]
            if report.reused:
                cells.append(f"[dim]reused: {e.checked_at:%Y-%m-%d %H:%M}[/]"
                             if e.reused and e.checked_at else "now")
            detail.add_row(*cells, escape(e.detail))
        out.append(detail)
    return out


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def verify_lines(report: VerifyReport, name: str) -> list[str]:
    """What a verification covered: checked now, reused, sampled, resumed."""
    how = " (deep: bytes re-hashed)" if report.deep else ""
    total = report.total if report.total is not None else len(report.entries)
    lines = []
    if report.resumed_from is not None:
        lines.append(
            f"resuming: {report.reused:,} of {total:,} entries already checked since "
            f"{report.resumed_from:%Y-%m-%d %H:%M:%S} UTC (an interrupted verification; "
            "--no-resume checks everything again)")
    if report.sampled is None and not report.reused:
        lines.append(f"verified [bold]{escape(name)}[/]{how}: {report.checked:,} entries "
                     f"with {report.requests} request(s)")
        return lines + _not_stored(report)
    sample = (f" ({_percent(report.sampled)} sample, seed {report.seed})"
              if report.sampled is not None else "")
    line = (f"verified [bold]{escape(name)}[/]{how}: checked {report.checked:,} of {total:,} "
            f"entries{sample} with {report.requests} request(s)")
    if report.reused:
        since = (f" since {report.reused_since:%Y-%m-%d %H:%M:%S} UTC"
                 if report.reused_since and report.reused_since != report.resumed_from
                 else "")
        line += f"; {report.reused:,} result(s) reused from earlier checks{since}"
    lines.append(line)
    return lines + _not_stored(report)


def _not_stored(report: VerifyReport) -> list[str]:
    if report.results_stored is not False:
        return []
    return ["[yellow]results not stored[/]: you may read this project on the registry server "
            "but not write to it, so these results are not kept for `--since` or resuming "
            "(a member's verification stores them)"]


def verify_verdict(report: VerifyReport) -> str:
    n = len(report.entries) + report.omitted
    statuses = {e.status for e in report.entries}
    sample = ""
    if report.sampled is not None:
        total = report.total if report.total is not None else n
        sample = (f" (a {_percent(report.sampled)} sample of {total:,} entries, seed "
                  f"{report.seed}: not a full verification)")
    if statuses & FAILING:
        failed = [e for e in report.entries if e.status in FAILING]
        old = sum(1 for e in failed if e.reused)
        reused = (f"; {old} of them from an earlier check, not checked again now (run without "
                  "--since to check again)" if old else "")
        what = "sampled entries" if report.sampled is not None else "entries"
        return (f"[red bold]FAILED[/]: {len(failed)} of {n} {what} no longer match what was "
                f"pinned{sample}{reused}")
    if Status.UNREACHABLE in statuses:
        return f"[magenta bold]UNREACHABLE[/]: some entries could not be checked{sample}"
    if report.sampled is not None:
        return f"[green bold]SAMPLE INTACT[/]: all {n} sampled entries match{sample}"
    drift = len(report.drift)
    if drift:
        return (f"[green bold]INTACT[/]: all {n} pinned versions are retrievable "
                f"([yellow]{drift} drifted[/] from the live bucket)")
    return f"[green bold]INTACT[/]: all {n} entries match"


def download_lines(report: DownloadReport) -> list[str]:
    lines = [
        f"downloaded {report.downloaded} file(s) ({size_text(report.bytes)}), skipped "
        f"{report.skipped} already present, to {escape(report.root)}"
    ]
    notes: dict[str, int] = {}
    for f in report.files:
        if f.note and f.action == "downloaded":
            notes[f.note] = notes.get(f.note, 0) + 1
    for note, count in notes.items():
        lines.append(f"  note ({count} file(s)): {escape(note)}")
    return lines


def _lineage_relation(graph: LineageGraph, node: LineageNode, labels: dict[str, str]) -> str:
    """How ``node`` connects towards the root, e.g. ``logged proj/model:v0``."""
    if node.side == "upstream":
        verb = "logged" if node.kind == "run" else "used by"
        others = graph.downstream_of(node.id)
    elif node.side == "downstream":
        verb = "used" if node.kind == "run" else "logged by"
        others = graph.upstream_of(node.id)
    else:
        return ""
    return ", ".join(f"{verb} {labels.get(o, o)}" for o in others)


def _lineage_details(node: LineageNode) -> str:
    attrs = node.attributes
    if node.kind == "version":
        aliases = ", ".join(attrs.get("aliases") or [])
        text = f"{attrs['type']}, {entries_text(attrs['entry_count'])}, {size_text(attrs['size'])}"
        return f"{text}; aliases: {aliases}" if aliases else text
    parts = [str(attrs.get("job_type") or "-"), str(attrs.get("state"))]
    started = str(attrs.get("started_at") or "")
    if started:
        parts.append(f"started {started[:19].replace('T', ' ')}")
    if attrs.get("name"):
        parts.insert(0, repr(attrs["name"]))
    return ", ".join(parts)


def lineage_table(graph: LineageGraph) -> Table:
    """A lineage graph for people: upstream (farthest first), the root, then downstream."""
    how = "unbounded" if graph.depth is None else f"depth {graph.depth}"
    root_label = graph.node(graph.root).label
    table = Table(title=f"lineage of {escape(root_label)} ({graph.direction}, {how})",
                  title_justify="left")
    table.add_column("hops", justify="right", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("node", overflow="fold")
    table.add_column("details", overflow="fold")
    table.add_column("link towards the root", overflow="fold")
    labels = {n.id: n.label for n in graph.nodes}
    order = {"upstream": 0, "root": 1, "downstream": 2}
    ordered = sorted(
        graph.nodes,
        key=lambda n: (order[n.side], -n.depth if n.side == "upstream" else n.depth),
    )
    for node in ordered:
        hops = "root" if node.side == "root" else (
            f"↑{node.depth}" if node.side == "upstream" else f"↓{node.depth}")
        name = f"[bold]{escape(node.label)}[/]" if node.side == "root" else escape(node.label)
        table.add_row(hops, node.kind, name, escape(_lineage_details(node)),
                      escape(_lineage_relation(graph, node, labels)))
    if graph.truncated:
        table.caption = (f"the walk stopped at depth {graph.depth}: there is more lineage "
                         "beyond (raise --depth, or omit it to walk everything)")
    elif len(graph.nodes) == 1:
        table.caption = "no lineage recorded: no run logged or used this version"
    return table


def _pinned_version_text(ref: PinnedReference) -> str:
    if ref.version_id is not None:
        return escape(ref.version_id)
    if ref.etag is None and ref.digest is None and ref.size is None:
        return "[dim]not recorded (checksum=False)[/]"
    scheme = _scheme(ref.ref)
    if scheme == "file":
        return "[dim](local file)[/]"
    if scheme in ("http", "https"):
        return "[dim](HTTP, no versions)[/]"
    return "[yellow](unversioned)[/]"


def lineage_source_table(source: SourceVersion, refs: Iterable[PinnedReference],
                         *, limit: int | None = None) -> Table:
    """One source version and (up to ``limit`` of) its pinned references."""
    aliases = ", ".join(source.aliases)
    producer = source.logged_by.removeprefix("run:") if source.logged_by else "no run"
    title = (f"[bold]{escape(source.qualified_name)}[/] ({escape(source.type)}, "
             f"{entries_text(source.entry_count)}, {size_text(source.size)}; logged by "
             f"{escape(producer)}{'; aliases: ' + escape(aliases) if aliases else ''})")
    table = Table(title=title, title_justify="left")
    table.add_column("path", overflow="fold")
    table.add_column("version id", no_wrap=True)
    table.add_column("checksum / ETag", no_wrap=True)
    table.add_column("pinned uri", overflow="fold")
    shown = 0
    for ref in refs:
        if limit and shown >= limit:
            break
        check = ref.etag or next(
            (f"{k}:{v[:16]}…" for k, v in (ref.checksums or {}).items()), "-")
        table.add_row(escape(ref.path), _pinned_version_text(ref), escape(check),
                      escape(ref.uri))
        shown += 1
    if shown < source.entry_count:
        table.caption = (f"{source.entry_count - shown} more entries "
                         "(use --limit 0 to show all, or --json)")
    return table


def bucket_warning_lines(warnings: Iterable[BucketWarning]) -> list[str]:
    """One yellow line per warning about the buckets' own rules (lifecycle, versioning)."""
    return [f"[yellow]warning:[/] {escape(w.message)}" for w in warnings]


def protection_line(record: VersionRecord) -> str | None:
    """``protected (legal hold)`` for a version whose pinned objects all carry an S3 Object
    Lock legal hold; None otherwise."""
    if not record.protected:
        return None
    return ("protection:  [green]protected (legal hold)[/] on every pinned object version "
            "(`reftrack unprotect` lifts it)")


def protect_lines(report: ProtectReport) -> list[str]:
    """The outcome of ``reftrack protect`` / ``unprotect`` for people."""
    verb = "placed on" if report.hold else "removed from"
    where = ", ".join(report.buckets) or "no bucket"
    lines = [
        f"legal hold {verb} {report.succeeded} of {report.objects} object version(s) of "
        f"[bold]{escape(report.artifact)}[/] in {escape(where)} ({report.requests} request(s))"
    ]
    for failure in report.failed:
        lines.append(f"  [red]failed[/] {escape(failure.uri)} "
                     f"({escape(', '.join(failure.paths))}): {escape(failure.message)}")
    state = "[green]protected (legal hold)[/]" if report.protected else "not protected"
    lines.append(f"{escape(report.artifact)} is now {state}")
    return lines
