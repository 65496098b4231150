"""The team-mode commands of ``reftrack``: ``server`` (the registry server), ``admin``
(users and API tokens) and ``project`` (create, visibility, members, audit). Registered on
:data:`reftrack.cli.app` when :mod:`reftrack.cli` is imported.

``admin`` acts on the registry database directly: it is for the operator on the server's
machine (``--registry postgresql://...`` or the SQLite file). ``project`` works either way,
through one seam (:func:`_projects`) so that its output is the same: on the registry
database (:class:`~reftrack.registry.team.TeamStore`, checking no access rights; ``--by`` /
``--owner`` name who acted, for the audit log), or over a registry server
(:class:`~reftrack.registry.remote.RemoteRegistry`) as the token's user, with the server's
access rules.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Protocol

import typer
from rich.markup import escape
from rich.table import Table

from .cli import JsonOpt, RegistryOpt, _handle_errors, _print_json, _settings, app
from .errors import MissingBackend, UsageError
from .registry import Registry
from .registry.remote import ProjectView, RemoteRegistry
from .registry.remote_http import is_server_url
from .registry.team import (
    AuditRecord,
    MemberRecord,
    ProjectAccess,
    Role,
    TeamStore,
    Visibility,
    check_role,
    check_visibility,
)
from .render import make_console

admin_app = typer.Typer(help="Users and API tokens of a team registry (run on the server's "
                        "machine, against its registry).", no_args_is_help=True)
user_app = typer.Typer(help="Registry users.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens (only their SHA-256 is stored).", no_args_is_help=True)
project_app = typer.Typer(help="Projects: visibility (private, public, open) and members.",
                          no_args_is_help=True)
member_app = typer.Typer(help="Add or remove project members.", no_args_is_help=True)
admin_app.add_typer(user_app, name="user")
admin_app.add_typer(token_app, name="token")
project_app.add_typer(member_app, name="member")
app.add_typer(admin_app, name="admin")
app.add_typer(project_app, name="project")

ByOpt = Annotated[str | None, typer.Option(
    "--by", help="The user making the change (recorded in the audit log): needed on a "
    "registry database; over a registry server it is the token's user (if given, it must "
    "be that user).", show_default=False)]


def _team(ctx: typer.Context, registry: str | None) -> TeamStore:
    location = _settings(ctx, registry).registry
    if is_server_url(location):
        raise UsageError(
            f"{location} is a registry server: the admin commands (users and tokens) act on "
            "the registry database itself; run them on the server's machine with --registry "
            "pointing at its database (postgresql://... or the SQLite file)")
    return TeamStore(Registry(location))


def _dump(record: Any) -> dict[str, Any]:
    data: dict[str, Any] = record.model_dump(mode="json")
    return data


def _table(*columns: str) -> Table:
    table = Table(*columns, show_edge=False, pad_edge=False)
    return table


# -- server -------------------------------------------------------------------------------------


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@app.command("server")
@_handle_errors
def server_cmd(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port.")] = 8080,
    ssl_certfile: Annotated[str | None, typer.Option(
        "--ssl-certfile", help="TLS certificate (PEM): serve HTTPS.")] = None,
    ssl_keyfile: Annotated[str | None, typer.Option(
        "--ssl-keyfile", help="TLS private key (PEM).")] = None,
    allow_insecure_http: Annotated[bool, typer.Option(
        "--allow-insecure-http", help="Serve plain HTTP on a non-loopback address (only "
        "behind a reverse proxy that terminates TLS: tokens travel in every request).")]
        = False,
    max_manifest_bytes: Annotated[int, typer.Option(
        "--max-manifest-bytes", min=1, help="Largest manifest accepted (stored bytes).")]
        = 64 * 1024 * 1024,
    max_manifest_entries: Annotated[int, typer.Option(
        "--max-manifest-entries", min=1, help="Most entries in one manifest.")] = 1_000_000,
    max_json_bytes: Annotated[int, typer.Option(
        "--max-json-bytes", min=1024, help="Largest body of the other requests.")]
        = 1024 * 1024,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn's log level.")]
        = "info",
    registry: RegistryOpt = None,
) -> None:
    """Serve the registry to a team: an HTTP JSON API (OpenAPI at /docs and /openapi.json)
    with users, tokens and per-project access control. Cloud credentials never pass
    through it: clients read buckets themselves."""
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise UsageError("give both --ssl-certfile and --ssl-keyfile, or neither")
    if ssl_certfile is not None and ssl_keyfile is not None:
        _check_tls_files(ssl_certfile, ssl_keyfile)
    if not _loopback(host) and ssl_certfile is None and not allow_insecure_http:
        raise UsageError(
            f"refusing to serve plain HTTP on {host}: tokens would cross the network in "
            "clear text. Serve HTTPS (--ssl-certfile/--ssl-keyfile), or pass "
            "--allow-insecure-http when a reverse proxy terminates TLS in front of it")
    try:
        import uvicorn

        from .server import Limits, create_app
    except ImportError as exc:
        raise MissingBackend(f"reftrack server needs the server extra ({exc}): "
                             "pip install 'reftrack[server]'") from exc
    location = _settings(ctx, registry).registry
    if location.lower().startswith(("http://", "https://")):
        raise UsageError(f"--registry must be a database (postgresql://... or an SQLite file), "
                         f"not a server URL ({location})")
    limits = Limits(json_bytes=max_json_bytes, manifest_bytes=max_manifest_bytes,
                    manifest_entries=max_manifest_entries)
    reg = Registry(location)
    server_app = create_app(reg, limits=limits)
    scheme = "https" if ssl_certfile else "http"
    make_console(stderr=True).print(
        f"reftrack server: registry {escape(reg.location)}, serving {scheme}://{escape(host)}:"
        f"{port} (API under /api/v1, docs at /docs)")
    uvicorn.run(server_app, host=host, port=port, log_level=log_level.lower(),
                ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile, server_header=False,
                timeout_graceful_shutdown=5)


def _check_tls_files(certfile: str, keyfile: str) -> None:
    """Load the certificate and key as uvicorn will, so that a wrong path or a key that does
    not match is a usage error before anything starts, not a traceback."""
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        detail = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise UsageError(
            f"cannot serve HTTPS with --ssl-certfile {certfile} and --ssl-keyfile {keyfile} "
            f"({detail}): give the PEM certificate (intermediates after it) and the PEM "
            "private key that matches it") from None


# -- admin user / token ---------------------------------------------------------------------


@user_app.command("add")
@_handle_errors
def user_add_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="User name (letters, digits, . _ -).")],
    admin: Annotated[bool, typer.Option("--admin", help="A server admin: may do everything "
                                        "in every project.")] = False,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a user; give them a token with `reftrack admin token create NAME`."""
    user = _team(ctx, registry).add_user(name, is_admin=admin)
    if as_json:
        _print_json(_dump(user))
        return
    kind = "server admin" if user.is_admin else "user"
    make_console().print(f"added {kind} {escape(user.name)}; create a token with "
                         f"`reftrack admin token create {escape(user.name)}`")


@user_app.command("list")
@_handle_errors
def user_list_cmd(ctx: typer.Context, registry: RegistryOpt = None,
                  as_json: JsonOpt = False) -> None:
    """List users."""
    users = _team(ctx, registry).users()
    if as_json:
        _print_json([_dump(u) for u in users])
        return
    table = _table("user", "server admin", "created", "disabled")
    for u in users:
        table.add_row(escape(u.name), "yes" if u.is_admin else "", f"{u.created_at:%Y-%m-%d}",
                      f"{u.disabled_at:%Y-%m-%d %H:%M}" if u.disabled_at else "")
    make_console().print(table)


def _set_disabled(ctx: typer.Context, name: str, disabled: bool, registry: str | None,
                  as_json: bool) -> None:
    user = _team(ctx, registry).set_disabled(name, disabled)
    if as_json:
        _print_json(_dump(user))
        return
    make_console().print(f"user {escape(user.name)} is "
                         + ("disabled: their tokens are refused" if disabled else "enabled"))


@user_app.command("disable")
@_handle_errors
def user_disable_cmd(ctx: typer.Context,
                     name: Annotated[str, typer.Argument(help="User name.")],
                     registry: RegistryOpt = None, as_json: JsonOpt = False) -> None:
    """Disable a user: every token of theirs is refused (401) from the next request on; their
    memberships stay, for when they are enabled again."""
    _set_disabled(ctx, name, True, registry, as_json)


@user_app.command("enable")
@_handle_errors
def user_enable_cmd(ctx: typer.Context,
                    name: Annotated[str, typer.Argument(help="User name.")],
                    registry: RegistryOpt = None, as_json: JsonOpt = False) -> None:
    """Enable a disabled user again (their tokens that are not revoked or expired work)."""
    _set_disabled(ctx, name, False, registry, as_json)


@token_app.command("create")
@_handle_errors
def token_create_cmd(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="The user the token acts as.")],
    name: Annotated[str | None, typer.Option("--name", help="A label for the token.")] = None,
    expires: Annotated[str, typer.Option(
        "--expires", help="How long the token works: 90d, 12h, 2w, ... or never.")] = "never",
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API token and print it, once: only its SHA-256 is stored. Clients send it
    as REFTRACK_TOKEN (Authorization: Bearer ...)."""
    from .lifecycle import parse_duration

    record, token = _team(ctx, registry).create_token(user, name,
                                                      expires_in=parse_duration(expires))
    if as_json:
        _print_json({**_dump(record), "token": token})
        return
    sys.stdout.write(token + "\n")  # alone on stdout: TOKEN=$(reftrack admin token create u)
    until = f"until {record.expires_at:%Y-%m-%d %H:%M} UTC" if record.expires_at \
        else "with no expiry"
    make_console(stderr=True).print(
        f"token {record.id} ({escape(record.name)}) for {escape(record.user)}, {until}: store "
        "it now, it is not shown again; revoke it with "
        f"`reftrack admin token revoke {record.id}`")


@token_app.command("list")
@_handle_errors
def token_list_cmd(ctx: typer.Context,
                   user: Annotated[str, typer.Argument(help="User name.")],
                   registry: RegistryOpt = None, as_json: JsonOpt = False) -> None:
    """List a user's tokens (never the tokens themselves)."""
    tokens = _team(ctx, registry).tokens(user)
    if as_json:
        _print_json([_dump(t) for t in tokens])
        return
    table = _table("id", "name", "created", "last used", "expires", "revoked")
    for t in tokens:
        table.add_row(str(t.id), escape(t.name), f"{t.created_at:%Y-%m-%d %H:%M}",
                      f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "-",
                      f"{t.expires_at:%Y-%m-%d %H:%M}" if t.expires_at else "never",
                      f"{t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "")
    make_console().print(table)


@token_app.command("revoke")
@_handle_errors
def token_revoke_cmd(ctx: typer.Context,
                     token_id: Annotated[int, typer.Argument(help="The token's id.")],
                     registry: RegistryOpt = None, as_json: JsonOpt = False) -> None:
    """Revoke a token: the next request made with it is refused (401)."""
    record = _team(ctx, registry).revoke_token(token_id)
    if as_json:
        _print_json(_dump(record))
        return
    make_console().print(f"revoked token {record.id} ({escape(record.name)}) of "
                         f"{escape(record.user)}")


# -- project: one seam, the registry database or a registry server ---------------------------

Project = ProjectAccess | ProjectView


class _Projects(Protocol):
    """What the project commands do, on either side; ``by``/``owner``: ``--by``/``--owner``."""

    def create(self, name: str, visibility: Visibility, owner: str | None
               ) -> tuple[Project, str]: ...
    def set_visibility(self, name: str, visibility: Visibility, by: str | None
                       ) -> Project: ...
    def set_member(self, name: str, user: str, role: Role, by: str | None
                   ) -> MemberRecord: ...
    def remove_member(self, name: str, user: str, by: str | None) -> Role: ...
    def members(self, name: str) -> list[MemberRecord]: ...
    def audit(self, name: str) -> list[AuditRecord]: ...
    def listing(self) -> list[tuple[Project, Role | None]]: ...


class _LocalProjects:
    """The registry database: no access check; ``--by``/``--owner`` name who acts."""

    def __init__(self, team: TeamStore) -> None:
        self.team = team

    @staticmethod
    def _actor(given: str | None, option: str) -> str:
        if given is None:
            raise UsageError(f"{option} USER is needed on a registry database: name the user "
                             "acting (recorded in the audit log)")
        return given

    def create(self, name: str, visibility: Visibility, owner: str | None
               ) -> tuple[Project, str]:
        owner = self._actor(owner, "--owner")
        return self.team.create_project(name, owner=owner, visibility=visibility), owner

    def set_visibility(self, name: str, visibility: Visibility, by: str | None) -> Project:
        return self.team.set_visibility(name, visibility, by=self._actor(by, "--by"))

    def set_member(self, name: str, user: str, role: Role, by: str | None) -> MemberRecord:
        return self.team.set_member(name, user, role, by=self._actor(by, "--by"))

    def remove_member(self, name: str, user: str, by: str | None) -> Role:
        return self.team.remove_member(name, user, by=self._actor(by, "--by"))

    def members(self, name: str) -> list[MemberRecord]:
        return self.team.members(name)

    def audit(self, name: str) -> list[AuditRecord]:
        return self.team.audit(name)

    def listing(self) -> list[tuple[Project, Role | None]]:
        return [(p, None) for p in self.team.projects()]  # the database: every project


class _RemoteProjects:
    """A registry server: the token's user acts, with the server's access rules;
    ``--by``/``--owner``, when given, must name that user (checked before any change)."""

    def __init__(self, remote: RemoteRegistry) -> None:
        self.remote = remote

    def _check(self, given: str | None, option: str, *, always: bool = False) -> str | None:
        """The token's user (None: anonymous, refused by the server), asked of the server
        only when ``given`` must be checked against it, or ``always``."""
        if given is None and not always:
            return None
        user = self.remote.whoami()
        if given is not None and user is not None and given != user:
            raise UsageError(
                f"{option} {given}: over the registry server {self.remote.location} changes "
                f"are made, and audited, as the token's user ({user}); drop {option}, or use "
                f"a token of {given}'s")
        return user

    def create(self, name: str, visibility: Visibility, owner: str | None
               ) -> tuple[Project, str]:
        user = self._check(owner, "--owner", always=True)
        created = self.remote.create_project(name, visibility)  # anonymous: refused (401)
        return created, user or ""

    def set_visibility(self, name: str, visibility: Visibility, by: str | None) -> Project:
        self._check(by, "--by")
        return self.remote.set_visibility(name, visibility)

    def set_member(self, name: str, user: str, role: Role, by: str | None) -> MemberRecord:
        self._check(by, "--by")
        return self.remote.set_member(name, user, role)

    def remove_member(self, name: str, user: str, by: str | None) -> Role:
        self._check(by, "--by")
        return self.remote.remove_member(name, user)

    def members(self, name: str) -> list[MemberRecord]:
        return self.remote.members(name)

    def audit(self, name: str) -> list[AuditRecord]:
        return self.remote.audit(name)

    def listing(self) -> list[tuple[Project, Role | None]]:
        return [(p, p.role) for p in self.remote.project_views()]


@contextmanager
def _projects(ctx: typer.Context, registry: str | None) -> Iterator[_Projects]:
    """The seam: the registry database, or the registry server a URL names
    (``REFTRACK_TOKEN`` authenticates)."""
    settings = _settings(ctx, registry)
    if is_server_url(settings.registry):
        remote = RemoteRegistry(settings.registry, settings.token)
        try:
            yield _RemoteProjects(remote)
        finally:
            remote.close()
        return
    local = Registry(settings.registry)
    try:
        yield _LocalProjects(TeamStore(local))
    finally:
        local.close()


def _project_json(project: Project) -> dict[str, Any]:
    """What a registry database and a server both say of a project."""
    data: dict[str, Any] = project.model_dump(mode="json",
                                              include={"name", "visibility", "created_at"})
    return data


def _visibility(value: str) -> Visibility:
    return check_visibility(value.strip().lower())


@project_app.command("create")
@_handle_errors
def project_create_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Project name.")],
    owner: Annotated[str | None, typer.Option(
        "--owner", help="The user who becomes its admin: needed on a registry database; "
        "over a registry server it is the token's user.", show_default=False)] = None,
    visibility: Annotated[str, typer.Option(
        "--visibility", help="private (members only), public (everyone reads, members "
        "write) or open (everyone reads and writes).")] = "private",
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a project; OWNER (over a registry server: you) becomes its admin."""
    chosen = _visibility(visibility)
    with _projects(ctx, registry) as projects:
        access, owner = projects.create(name, chosen, owner)
    if as_json:
        _print_json({**_project_json(access), "owner": owner})
        return
    make_console().print(f"created {access.visibility} project {escape(access.name)} "
                         f"(admin: {escape(owner)})")


@project_app.command("visibility")
@_handle_errors
def project_visibility_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Project name.")],
    visibility: Annotated[str, typer.Argument(help="private, public or open.")],
    by: ByOpt = None,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a project's visibility (audited)."""
    chosen = _visibility(visibility)
    with _projects(ctx, registry) as projects:
        access = projects.set_visibility(name, chosen, by)
    if as_json:
        _print_json(_project_json(access))
        return
    make_console().print(f"project {escape(access.name)} is {access.visibility}")


@member_app.command("add")
@_handle_errors
def member_add_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Project name.")],
    user: Annotated[str, typer.Argument(help="The user to add (or whose role to change).")],
    by: ByOpt = None,
    role: Annotated[str, typer.Option("--role", help="admin or member.")] = "member",
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a member to a project, or change their role (audited)."""
    chosen = check_role(role.strip().lower())
    with _projects(ctx, registry) as projects:
        member = projects.set_member(name, user, chosen, by)
    if as_json:
        _print_json(_dump(member))
        return
    make_console().print(f"{escape(member.user)} is {member.role} of project "
                         f"{escape(member.project)}")


@member_app.command("remove")
@_handle_errors
def member_remove_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Project name.")],
    user: Annotated[str, typer.Argument(help="The member to remove.")],
    by: ByOpt = None,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove a member from a project (audited; the last admin stays)."""
    with _projects(ctx, registry) as projects:
        role = projects.remove_member(name, user, by)
    if as_json:
        _print_json({"project": name, "user": user, "removed_role": role})
        return
    make_console().print(f"removed {escape(user)} ({role}) from project {escape(name)}")


@project_app.command("list")
@_handle_errors
def project_list_cmd(ctx: typer.Context, registry: RegistryOpt = None,
                     as_json: JsonOpt = False) -> None:
    """List projects and their visibility: on the registry database every project; over a
    registry server the ones you may read, with your role in each."""
    with _projects(ctx, registry) as projects:
        found = projects.listing()
    if as_json:
        _print_json([{**_project_json(p), "role": role} for p, role in found])
        return
    if not found:
        make_console().print("no projects yet")
        return
    table = _table("project", "visibility", "your role", "created")
    for p, role in found:
        table.add_row(escape(p.name), p.visibility, role or "-", f"{p.created_at:%Y-%m-%d}")
    make_console().print(table)


@project_app.command("members")
@_handle_errors
def project_members_cmd(ctx: typer.Context,
                        name: Annotated[str, typer.Argument(help="Project name.")],
                        registry: RegistryOpt = None, as_json: JsonOpt = False) -> None:
    """List a project's members and roles (over a registry server: shown to members)."""
    with _projects(ctx, registry) as projects:
        members = projects.members(name)
    if as_json:
        _print_json([_dump(m) for m in members])
        return
    table = _table("user", "role", "added")
    for m in members:
        table.add_row(escape(m.user), m.role, f"{m.added_at:%Y-%m-%d %H:%M}")
    make_console().print(table)


@project_app.command("audit")
@_handle_errors
def project_audit_cmd(ctx: typer.Context,
                      name: Annotated[str, typer.Argument(help="Project name.")],
                      registry: RegistryOpt = None, as_json: JsonOpt = False) -> None:
    """Who created the project and changed its visibility and members, and when (over a
    registry server: for project admins)."""
    with _projects(ctx, registry) as projects:
        rows = projects.audit(name)
    if as_json:
        _print_json([_dump(r) for r in rows])
        return
    table = _table("when (UTC)", "who", "action", "member", "old", "new")
    for r in rows:
        table.add_row(f"{r.at:%Y-%m-%d %H:%M:%S}", escape(r.actor), r.action,
                      escape(r.subject or ""), escape(r.old or "-"), escape(r.new or "-"))
    make_console().print(table)
