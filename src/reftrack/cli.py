"""The ``reftrack`` command: thin verbs over the library, Rich for people, ``--json`` for
machines. Exit codes: 0 ok, 1 integrity failure, 2 usage error, 3 unreachable/backend error,
4 not found, 5 access denied, 130 interrupted (README.md, "Exit codes")."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape

from . import __version__
from .api import Api
from .artifact import Artifact
from .bucketrules import bucket_warnings
from .errors import DownloadFailed, ReftrackError, UsageError
from .junit import write_junit
from .lifecycle import parse_duration
from .lineage import Direction, sources, walk, write_sources_json
from .render import (
    RichProgress,
    artifacts_table,
    bucket_warning_lines,
    download_lines,
    entries_table,
    lineage_source_table,
    lineage_table,
    make_console,
    protection_line,
    record_lines,
    size_text,
    sources_lines,
    verify_lines,
    verify_tables,
    verify_verdict,
)
from .run import init
from .settings import Settings
from .verify import parse_sample

app = typer.Typer(
    name="reftrack",
    help="Track large datasets in place in cloud buckets: pin, verify, download exactly.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

F = TypeVar("F", bound=Callable[..., Any])

RegistryOpt = Annotated[
    str | None,
    typer.Option(
        "--registry",
        help="Registry path, SQLAlchemy URL or registry server URL (https://..., with "
        "$REFTRACK_TOKEN) (default: $REFTRACK_REGISTRY, else "
        "<user data dir>/reftrack/registry.db).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


class _State:
    registry: str | None = None


def _settings(ctx: typer.Context, registry: str | None) -> Settings:
    state = ctx.find_root().obj
    chosen = registry or (state.registry if isinstance(state, _State) else None)
    return Settings.from_env(registry=chosen)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _handle_errors(fn: F) -> F:
    """Turn reftrack errors into a message (or a JSON error) and their exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        try:
            return fn(*args, **kwargs)
        except DownloadFailed as exc:
            if as_json:
                _print_json({"error": _error_dict(exc), **exc.report.model_dump(mode="json")})
            else:
                make_console(stderr=True).print(f"[red]error:[/] {escape(str(exc))}")
            raise typer.Exit(exc.exit_code) from None
        except ReftrackError as exc:
            if as_json:
                _print_json({"error": _error_dict(exc)})
            else:
                make_console(stderr=True).print(f"[red]error:[/] {escape(str(exc))}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            make_console(stderr=True).print("[red]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _error_dict(exc: ReftrackError) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": str(exc), "exit_code": exc.exit_code}


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"reftrack {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    registry: RegistryOpt = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True,
                     help="Print the version and exit."),
    ] = False,
) -> None:
    state = _State()
    state.registry = registry
    ctx.obj = state


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def _parse_metadata(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--metadata takes key=value, got {pair!r}")
        try:
            out[key] = json.loads(value, parse_constant=_no_constant)
        except (json.JSONDecodeError, ValueError):
            out[key] = value  # not JSON (or NaN/Infinity, which JSON lacks): keep the text
    return out


@app.command("log")
@_handle_errors
def log_cmd(
    ctx: typer.Context,
    uris: Annotated[list[str], typer.Argument(
        help="s3://bucket/key, s3://bucket/prefix/, s3://bucket/key?versionId=..., "
        "gs://bucket/prefix/, gs://bucket/key#generation, ./local/dir, file:///abs/path, "
        "https://host/file", show_default=False)],
    project: Annotated[str, typer.Option("--project", "-p", help="Project name.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Artifact name.")],
    type_: Annotated[str, typer.Option("--type", "-t", help="Artifact type.")] = "dataset",
    alias: Annotated[list[str] | None, typer.Option("--alias", "-a",
                                                    help="Alias to set (repeatable).")] = None,
    metadata: Annotated[list[str] | None, typer.Option(
        "--metadata", "-m", help="key=value metadata (repeatable; JSON values allowed).")] = None,
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
    no_checksum: Annotated[bool, typer.Option(
        "--no-checksum", help="Record URIs only (no version id, ETag, size, hash).")] = False,
    max_objects: Annotated[int | None, typer.Option(
        "--max-objects", help="Refuse prefixes with more objects than this.")] = None,
    server_checksums: Annotated[bool, typer.Option(
        "--server-checksums", help="Also record the S3 checksums of every object under a "
        "prefix (sha256, crc32, crc64nvme...): one HEAD per object; `verify --deep` then "
        "compares them server-side, without reading the bytes.")] = False,
    job_type: Annotated[str, typer.Option("--job-type", help="Job type of the run "
                                          "that logs the version.")] = "reftrack-log",
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Pin objects or prefixes as the next version of PROJECT/NAME."""
    settings = _settings(ctx, registry)
    meta = _parse_metadata(metadata or [])
    progress = RichProgress()
    art = Artifact(name, type_, description=description, metadata=meta, settings=settings)
    for uri in uris:
        art.add_reference(uri, checksum=not no_checksum, max_objects=max_objects,
                          server_checksums=server_checksums,
                          progress=progress)
    with init(project=project, job_type=job_type, settings=settings) as run:
        run.log_artifact(art, aliases=list(alias or []))
    warnings = _warnings(art)
    if as_json:
        _print_json({
            "artifact": art.qualified_name,
            "version": art.version,
            "new_version": art.new_version,
            "digest": art.digest,
            "entries": art.file_count,
            "size": art.size,
            "aliases": art.aliases,
            "run": run.path,
            "sources": [s.model_dump(mode="json") for s in art.manifest.sources],
            "warnings": warnings,
        })
        return
    console = make_console()
    if art.new_version:
        console.print(f"logged [bold]{escape(art.qualified_name)}[/]: {art.file_count} entries, "
                      f"{size_text(art.size)} (run {escape(run.path)})")
    else:
        console.print(f"no new version: the manifest is identical to "
                      f"[bold]{escape(art.qualified_name)}[/]; aliases updated")
    console.print(f"aliases: {escape(', '.join(art.aliases))}")
    for line in sources_lines(art.manifest):
        console.print(line)
    err = make_console(stderr=True)
    for warning in warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}")


def _warnings(art: Artifact) -> list[str]:
    out = []
    for source in art.manifest.sources:
        scheme = source.uri.partition("://")[0].lower()
        if scheme == "gs" and source.versioning == "disabled" and source.checksum:
            out.append(
                f"{source.uri}: Object Versioning is off on this bucket: generations are "
                "recorded, but an overwritten or deleted object's pinned generation is gone at "
                "once (verify reports version_missing, download refuses it). Enable Object "
                "Versioning to keep them."
            )
        elif scheme == "s3" and source.versioning in ("disabled", "suspended") \
                and source.checksum:
            out.append(
                f"{source.uri}: bucket versioning is {source.versioning}, so version ids are "
                "not recorded: verify detects changes, but the original bytes cannot be "
                "downloaded after an overwrite. Enable versioning on the bucket."
            )
        if not source.checksum:
            out.append(f"{source.uri}: checksum=False records URIs only; nothing is pinned")
        if source.skipped_markers:
            out.append(f"{source.uri}: skipped {source.skipped_markers} directory marker(s) "
                       "(zero-byte keys ending in '/')")
    return out


@app.command("ls")
@_handle_errors
def ls_cmd(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Argument(help="Only this project.")] = None,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List artifacts (of PROJECT, or every project)."""
    api = Api(settings=_settings(ctx, registry))
    summaries = api.artifact_collections(project)
    if as_json:
        _print_json([s.model_dump(mode="json") for s in summaries])
        return
    console = make_console()
    if not summaries:
        where = f"project {project}" if project else api.settings.registry
        console.print(f"no artifacts in {escape(where)} yet; log one with `reftrack log`")
        return
    console.print(artifacts_table(summaries))


@app.command("show")
@_handle_errors
def show_cmd(
    ctx: typer.Context,
    artifact: Annotated[str, typer.Argument(help="project/name:version_or_alias")],
    limit: Annotated[int, typer.Option("--limit", min=0, help="Entries to show (0: all).")] = 50,
    offline: Annotated[bool, typer.Option(
        "--offline", help="Read the registry only: do not ask the S3 buckets for their "
        "lifecycle rules and versioning state (two requests per bucket).")] = False,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a version: metadata, sources and entries with version ids and ETags, whether it
    is protected, and what the buckets' lifecycle rules will do to it."""
    art = Api(settings=_settings(ctx, registry)).artifact(artifact)
    record = art._logged()
    manifest = art.manifest
    warnings = [] if offline else bucket_warnings(manifest, art._ctx.backends,
                                                  protected=record.protected)
    if as_json:
        _print_json({
            **record.model_dump(mode="json"),
            "version": record.version,
            "qualified_name": record.qualified_name,
            "sources": [s.model_dump(mode="json") for s in manifest.sources],
            "entries": [
                {**e.model_dump(mode="json"), "uri": e.uri, "pinned": e.pinned,
                 "checksum": e.checksummed}
                for e in manifest.sorted_entries()
            ],
            "warnings": [w.model_dump(mode="json") for w in warnings],
        })
        return
    console = make_console()
    for line in record_lines(record):
        console.print(line)
    protection = protection_line(record)
    if protection:
        console.print(protection)
    console.print("sources:")
    for line in sources_lines(manifest):
        console.print(line)
    console.print(entries_table(manifest, limit=limit or None))
    for line in bucket_warning_lines(warnings):
        console.print(line)


@app.command("verify")
@_handle_errors
def verify_cmd(
    ctx: typer.Context,
    artifact: Annotated[str, typer.Argument(help="project/name:version_or_alias")],
    all_entries: Annotated[bool, typer.Option("--all", help="List every entry, not only "
                                              "those that drifted or failed.")] = False,
    deep: Annotated[bool, typer.Option("--deep", help="Also check content: S3 checksums are "
                                       "asked of the server (no bytes read), other entries' "
                                       "pinned bytes are streamed and hashed (one GET each).")
                    ] = False,
    since: Annotated[str | None, typer.Option(
        "--since", help="Check only entries not verified in this long (24h, 7d, 1d12h); "
        "reuse the stored results of the others.", show_default=False)] = None,
    sample: Annotated[str | None, typer.Option(
        "--sample", help="Check a random sample of the entries: a percentage (1%) or a "
        "fraction (0.01). Reported as a sample, never as a full verification.",
        show_default=False)] = None,
    seed: Annotated[int | None, typer.Option(
        "--seed", help="Seed of the --sample, to draw the same sample again (default: "
        "random, and printed).", show_default=False)] = None,
    resume: Annotated[bool, typer.Option(
        "--resume/--no-resume", help="Resume a verification of this version that was "
        "interrupted less than 24 hours ago (reusing what it checked).")] = True,
    junit: Annotated[str | None, typer.Option(
        "--junit", help="Also write a JUnit XML report to this file, for CI systems.",
        show_default=False)] = None,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-check every reference against its store. Exit 0 intact (drift allowed),
    1 integrity failure, 3 unreachable. Results are kept per entry: --since re-checks only
    stale entries, an interrupted run is resumed, --sample checks a random sample."""
    fresh = parse_duration(since) if since is not None else None
    fraction = parse_sample(sample) if sample is not None else None
    if seed is not None and fraction is None:
        raise UsageError("--seed chooses the entries of a --sample; give --sample too")
    art = Api(settings=_settings(ctx, registry)).artifact(artifact)
    try:
        report = art.verify(deep=deep, progress=RichProgress(), since=fresh, sample=fraction,
                            seed=seed, resume=resume)
    except KeyboardInterrupt:
        make_console(stderr=True).print(
            "[yellow]the results checked so far are stored: run the same command again to "
            "resume[/]")
        raise
    if junit is not None:
        write_junit([report], junit)
    if as_json:
        _print_json(report.model_dump(mode="json"))
    else:
        console = make_console()
        for line in verify_lines(report, art.qualified_name):
            console.print(line)
        for table in verify_tables(report, all_entries=all_entries):
            console.print(table)
        for line in bucket_warning_lines(report.warnings):
            console.print(line)
        console.print(verify_verdict(report))
    raise typer.Exit(report.exit_code)


@app.command("get")
@_handle_errors
def get_cmd(
    ctx: typer.Context,
    artifact: Annotated[str, typer.Argument(help="project/name:version_or_alias")],
    dest: Annotated[str, typer.Argument(help="Directory to download into.")],
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-j",
                                                    help="Parallel transfers.")] = None,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Download the exact bytes a version pinned into DEST."""
    if concurrency is not None and concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {concurrency}")
    art = Api(settings=_settings(ctx, registry)).artifact(artifact)
    path = art.download(dest, concurrency=concurrency, progress=RichProgress())
    if as_json:
        _print_json(path.report.model_dump(mode="json"))
        return
    console = make_console()
    for line in download_lines(path.report):
        console.print(line)


@app.command("demo")
@_handle_errors
def demo_cmd(
    workdir: Annotated[str | None, typer.Option(
        "--workdir", help="Keep the demo's registry and downloads here "
        "(default: a temporary directory, removed afterwards).")] = None,
) -> None:
    """Run the whole story on a local S3 server (moto): log, drift, verify, download."""
    from .demo import run_demo

    raise typer.Exit(run_demo(make_console(), workdir=workdir))


LINEAGE_FORMATS = ("table", "json", "dot", "mermaid")


@app.command("lineage")
def lineage_cmd(
    ctx: typer.Context,
    artifact: Annotated[str, typer.Argument(help="project/name:version_or_alias")],
    upstream: Annotated[bool, typer.Option(
        "--upstream", help="Only what the version was built from (runs that logged it, the "
        "versions they used, ...).")] = False,
    downstream: Annotated[bool, typer.Option(
        "--downstream", help="Only what was built from the version (runs that used it, the "
        "versions they logged, ...).")] = False,
    depth: Annotated[int | None, typer.Option(
        "--depth", help="Edges to walk from the version (run <-> version hops; 2 reaches the "
        "versions its run used). Default: the whole graph.", show_default=False)] = None,
    format_: Annotated[str, typer.Option(
        "--format", "-f", help="table (people), json, dot (Graphviz) or mermaid.")] = "table",
    show_sources: Annotated[bool, typer.Option(
        "--sources", help="Instead of the graph: the source data the version is built on "
        "(upstream versions no run derived from others), each with its pinned references.")]
        = False,
    limit: Annotated[int, typer.Option(
        "--limit", min=0, help="With --sources: references shown per source in the table "
        "(0: all; --json always lists all).")] = 20,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Walk the lineage graph of a version: the runs that logged and used it, transitively.
    Prints a table, or JSON, Graphviz DOT or Mermaid text (--format) to render elsewhere:
    `reftrack lineage p/model:v0 -f dot | dot -Tsvg > lineage.svg`."""
    fmt = "json" if as_json else format_.strip().lower()
    _lineage(ctx, artifact=artifact, upstream=upstream, downstream=downstream, depth=depth,
             fmt=fmt, format_given=format_, show_sources=show_sources, limit=limit,
             registry=registry, as_json=fmt == "json" or as_json)


@_handle_errors
def _lineage(ctx: typer.Context, *, artifact: str, upstream: bool, downstream: bool,
             depth: int | None, fmt: str, format_given: str, show_sources: bool, limit: int,
             registry: str | None, as_json: bool) -> None:
    if fmt not in LINEAGE_FORMATS:
        raise UsageError(f"--format must be one of {', '.join(LINEAGE_FORMATS)}, "
                         f"not {format_given!r}")
    if as_json and format_given.strip().lower() not in ("table", "json"):
        raise UsageError(f"--json and --format {format_given} disagree; give one of them")
    if upstream and downstream:
        raise UsageError("--upstream and --downstream exclude each other; give neither to "
                         "walk both ways")
    if depth is not None and depth < 0:
        raise UsageError(f"--depth must be 0 or more (edges from the version), not {depth}")
    direction: Direction = "upstream" if upstream else "downstream" if downstream else "both"
    api = Api(settings=_settings(ctx, registry))
    record = api.artifact(artifact)._logged()
    reg = api._ctx.registry
    if show_sources:
        if downstream or depth is not None:
            raise UsageError("--sources walks the whole upstream graph; drop --downstream "
                             "and --depth")
        if fmt not in ("table", "json"):
            raise UsageError("--sources prints a table or JSON, not a graph; drop --format "
                             f"{fmt} (or --sources)")
        found = sources(reg, record)
        if fmt == "json":
            write_sources_json(reg, record.qualified_name, found, sys.stdout)
            return
        console = make_console()
        if found == [] or [s.qualified_name for s in found] == [record.qualified_name]:
            console.print(f"{escape(record.qualified_name)} is source data itself: no run "
                          "derived it from other versions")
        else:
            console.print(f"[bold]{escape(record.qualified_name)}[/] is built on "
                          f"{len(found)} source version(s):")
        for source in found:
            console.print(lineage_source_table(source, source.references(reg),
                                               limit=limit or None))
        return
    graph = walk(reg, record, direction=direction, depth=depth)
    if fmt == "json":
        _print_json(graph.model_dump(mode="json"))
    elif fmt == "dot":
        sys.stdout.write(graph.to_dot())
    elif fmt == "mermaid":
        sys.stdout.write(graph.to_mermaid())
    else:
        make_console().print(lineage_table(graph))


@app.command("diff")
@_handle_errors
def diff_cmd(
    ctx: typer.Context,
    old: Annotated[str, typer.Argument(help="project/name:version_or_alias (before)")],
    new: Annotated[str, typer.Argument(help="project/name:version_or_alias (after)")],
    limit: Annotated[int, typer.Option(
        "--limit", min=0, help="Entries shown per kind (0: all; --json always lists all).")]
        = 20,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What changed from OLD to NEW: entries added, removed and changed (and what changed:
    ref, version_id, etag, size, digest, checksums), and how many are unchanged. Reads the
    registry only: no request to any bucket. Exit code 0 whether or not they differ."""
    api = Api(settings=_settings(ctx, registry))
    before, after = api.artifact(old), api.artifact(new)
    diff = before.manifest.diff(after.manifest)
    names = {"old": before.qualified_name, "new": after.qualified_name}
    if as_json:
        _print_json({
            **names, **diff.summary, "identical": diff.identical,
            "added": [{**e.model_dump(mode="json"), "uri": e.uri} for e in diff.added],
            "removed": [{**e.model_dump(mode="json"), "uri": e.uri} for e in diff.removed],
            "changed": [{"path": c.path, "fields": list(c.fields),
                         "old": {**c.old.model_dump(mode="json"), "uri": c.old.uri},
                         "new": {**c.new.model_dump(mode="json"), "uri": c.new.uri}}
                        for c in diff.changed],
        })
        return
    console = make_console()
    counts = ", ".join(f"{n:,} {kind}" for kind, n in diff.summary.items())
    console.print(f"{escape(names['old'])} -> {escape(names['new'])}: {counts}")
    shown = limit or None
    for mark, style, entries in (("+", "green", diff.added), ("-", "red", diff.removed)):
        for entry in entries[:shown]:
            console.print(f"[{style}]{mark}[/] {escape(entry.path)}  {escape(entry.uri)}")
        if shown is not None and len(entries) > shown:
            console.print(f"  ... {len(entries) - shown:,} more ({mark}); --limit 0 shows all")
    for change in diff.changed[:shown]:
        what = ", ".join(
            f"{field} {getattr(change.old, field)!s} -> {getattr(change.new, field)!s}"
            for field in change.fields
        )
        console.print(f"[yellow]~[/] {escape(change.path)}  {escape(what)}")
    if shown is not None and len(diff.changed) > shown:
        console.print(f"  ... {len(diff.changed) - shown:,} more (~); --limit 0 shows all")


# The lifecycle commands (protect, unprotect, ttl, delete, restore, gc) live in
# cli_lifecycle.py; importing it registers them on ``app``.
from . import cli_lifecycle as _cli_lifecycle  # noqa: E402, F401
from . import cli_team as _cli_team  # noqa: E402, F401  (server, admin, project)


def main() -> None:
    app()
