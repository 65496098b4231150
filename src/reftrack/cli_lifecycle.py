"""The lifecycle commands of ``reftrack``: ``protect``, ``unprotect``, ``ttl``, ``delete``,
``restore`` and ``gc``. Registered on :data:`reftrack.cli.app` when :mod:`reftrack.cli` is
imported (split from it to keep each module small)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.markup import escape

from .api import Api
from .cli import JsonOpt, RegistryOpt, _error_dict, _handle_errors, _print_json, _settings, app
from .errors import UsageError
from .protection import ProtectionFailed
from .render import RichProgress, make_console, protect_lines, size_text


@app.command("protect")
@_handle_errors
def protect_cmd(
    ctx: typer.Context,
    artifact: Annotated[str, typer.Argument(help="project/name:version_or_alias")],
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-j",
                                                    help="Parallel requests.")] = None,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Place an S3 Object Lock legal hold on every pinned object version, so that nothing
    (no user, no lifecycle rule) can delete them. The buckets need Object Lock."""
    _holds(ctx, artifact, True, concurrency, registry, as_json)


@app.command("unprotect")
@_handle_errors
def unprotect_cmd(
    ctx: typer.Context,
    artifact: Annotated[str, typer.Argument(help="project/name:version_or_alias")],
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-j",
                                                    help="Parallel requests.")] = None,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove the legal hold that `reftrack protect` placed on every pinned object version."""
    _holds(ctx, artifact, False, concurrency, registry, as_json)


def _holds(ctx: typer.Context, artifact: str, on: bool, concurrency: int | None,
           registry: str | None, as_json: bool) -> None:
    if concurrency is not None and concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {concurrency}")
    art = Api(settings=_settings(ctx, registry)).artifact(artifact)
    try:
        report = art.protect(concurrency=concurrency) if on else \
            art.unprotect(concurrency=concurrency)
    except ProtectionFailed as exc:
        report = exc.report
        if as_json:
            _print_json({"error": _error_dict(exc), **report.model_dump(mode="json")})
        else:
            for line in protect_lines(report):
                make_console().print(line)
            make_console(stderr=True).print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(report.exit_code) from None
    if as_json:
        _print_json(report.model_dump(mode="json"))
        return
    for line in protect_lines(report):
        make_console().print(line)


@app.command("ttl")
@_handle_errors
def ttl_cmd(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="project/name:version (or a project with "
                                          "--project)")],
    duration: Annotated[str, typer.Argument(help="30d, 12h, 90m, 2w, 1d12h, or none")],
    project_default: Annotated[bool, typer.Option(
        "--project", help="Set TARGET's default ttl (a project name), for every version that "
        "sets none.")] = False,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set how long a version lives (or a project's default); `none` keeps it forever.
    Expired versions disappear from queries at once and are removed by `reftrack gc`."""
    from .lifecycle import parse_duration

    ttl = parse_duration(duration)
    api = Api(settings=_settings(ctx, registry))
    if project_default:
        count = api.set_project_ttl(target, ttl)
        if as_json:
            _print_json({"project": target, "default_ttl_seconds": _seconds(ttl),
                         "versions_governed": count})
            return
        make_console().print(
            f"project {escape(target)}: default ttl {_ttl_text(ttl)} "
            f"({count} version(s) without a ttl of their own)")
        return
    art = api.artifact(target)
    art.ttl = ttl
    if as_json:
        _print_json({"artifact": art.qualified_name, "ttl_seconds": _seconds(art.ttl),
                     "expires_at": art.expires_at.isoformat() if art.expires_at else None})
        return
    when = f", expires {art.expires_at:%Y-%m-%d %H:%M} UTC" if art.expires_at else ""
    make_console().print(f"{escape(art.qualified_name)}: ttl {_ttl_text(art.ttl)}{when}")


def _seconds(ttl: Any) -> int | None:
    return int(ttl.total_seconds()) if ttl is not None else None


def _ttl_text(ttl: Any) -> str:
    return "none (kept forever)" if ttl is None else str(ttl)


@app.command("delete")
@_handle_errors
def delete_cmd(
    ctx: typer.Context,
    artifact: Annotated[str, typer.Argument(help="project/name:version_or_alias")],
    delete_aliases: Annotated[bool, typer.Option(
        "--delete-aliases", help="Also delete the user aliases that point at it.")] = False,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Soft-delete a version: gone from queries at once, restorable with `reftrack restore`
    until `reftrack gc` purges it after the grace period. Referenced bucket objects are never
    deleted."""
    art = Api(settings=_settings(ctx, registry)).artifact(artifact)
    name = art.qualified_name
    art.delete(delete_aliases=delete_aliases)
    if as_json:
        _print_json({"deleted": name, "restore": f"reftrack restore {name}"})
        return
    make_console().print(f"deleted {escape(name)}; restore it with `reftrack restore "
                         f"{escape(name)}` until gc purges it")


@app.command("restore")
@_handle_errors
def restore_cmd(
    ctx: typer.Context,
    artifact: Annotated[str, typer.Argument(help="project/name:vN")],
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Bring back a deleted version (until gc purged it)."""
    art = Api(settings=_settings(ctx, registry)).restore(artifact)
    if as_json:
        _print_json({"restored": art.qualified_name, "aliases": art.aliases})
        return
    make_console().print(f"restored {escape(art.qualified_name)} "
                         f"(aliases: {escape(', '.join(art.aliases)) or '-'})")


@app.command("gc")
@_handle_errors
def gc_cmd(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would go; change "
                                          "nothing.")] = False,
    grace: Annotated[str | None, typer.Option(
        "--grace", help="Purge versions deleted longer ago than this (default 7d; 0: all "
        "deleted versions now).")] = None,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Purge expired versions, deleted versions past the grace period, and the manifests
    and managed blobs (add_file) that no remaining version references. Objects referenced
    in buckets are never deleted: reftrack does not own them. Through a registry server it
    needs a server admin's token; the blobs are deleted with this machine's credentials."""
    from .lifecycle import parse_duration

    span: timedelta | None = None
    if grace is not None:
        zero = grace.strip().lower() in ("0", "0s", "0m", "0h", "0d")
        span = timedelta(0) if zero else parse_duration(grace)
        if span is None:
            raise UsageError("--grace takes a duration such as 7d, 12h or 0, not none")
    report = Api(settings=_settings(ctx, registry)).gc(dry_run=dry_run, grace=span,
                                                        progress=RichProgress())
    if as_json:
        _print_json(report.model_dump(mode="json"))
    else:
        console = make_console()
        verb = "would purge" if dry_run else "purged"
        console.print(f"{verb} {len(report.versions)} version(s), {report.manifests} "
                      f"manifest(s), {len(report.blobs)} blob(s) "
                      f"({size_text(report.blob_bytes)})")
        for v in report.versions:
            console.print(f"  {escape(v.version)} ({v.reason})")
        for name in report.kept_protected:
            console.print(f"  kept {escape(name)}: protected by a legal hold")
        err = make_console(stderr=True)
        for problem in report.blob_errors:
            err.print(f"[red]error:[/] {escape(problem)}")
    if report.blob_errors:
        raise typer.Exit(3)
