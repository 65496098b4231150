"""``reftrack project ...`` over the registry server (``REFTRACK_REGISTRY=http://...`` with
``REFTRACK_TOKEN``), against a real ``reftrack server`` process: projects are created and
managed as the token's user, with the server's access rules and reftrack's exit codes; the
output (text and ``--json``) is that of the same commands on a local SQLite registry; and a
refused command changes nothing."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from server_fixtures import TeamServer
from typer.testing import CliRunner

from reftrack.cli import app
from reftrack.errors import Forbidden
from reftrack.registry import Registry
from reftrack.registry.remote import RemoteRegistry
from reftrack.registry.team import TeamStore

USERS = ("alice", "bob", "carol", "eve", "root")
"""alice, bob and carol act in the projects; eve is no member of any; root is a server
admin."""


@pytest.fixture
def server(team_server: TeamServer) -> TeamServer:
    return team_server


@pytest.fixture
def tokens(server: TeamServer) -> dict[str, str]:
    """An empty registry with USERS, one token each."""
    server.reset()
    team = server.team()
    out = {}
    for name in USERS:
        team.add_user(name, is_admin=name == "root")
        out[name] = team.create_token(name, "tests")[1]
    return out


class Cli:
    """``reftrack`` as one user (None: anonymous) against the server."""

    def __init__(self, server: TeamServer, tokens: dict[str, str]) -> None:
        self.server = server
        self.tokens = tokens

    def __call__(self, user: str | None, *args: str) -> tuple[int, str, str]:
        env = {"REFTRACK_REGISTRY": self.server.url,
               "REFTRACK_TOKEN": self.tokens[user] if user else ""}
        return invoke(env, *args)

    def json(self, user: str | None, *args: str) -> Any:
        code, out, err = self(user, *args, "--json")
        assert code == 0, (args, out, err)
        return json.loads(out)


def invoke(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"traceback for reftrack {args}: {result.exception!r}")
    return result.exit_code, result.stdout, " ".join(result.stderr.split())


@pytest.fixture
def cli(server: TeamServer, tokens: dict[str, str]) -> Cli:
    return Cli(server, tokens)


def refused(cli: Cli, user: str | None, args: tuple[str, ...], code: int, needle: str) -> str:
    """Run a command that must be refused with ``code`` and a message holding ``needle``,
    and check that the registry is exactly as it was."""
    before = cli.server.snapshot()
    got, out, err = cli(user, *args)
    assert (got, needle in err) == (code, True), (user, args, out, err)
    assert cli.server.snapshot() == before, (user, args)
    assert not any(token in out + err for token in cli.tokens.values())
    return err


# -- create --------------------------------------------------------------------------------


def test_create_as_the_token_user(cli: Cli, server: TeamServer) -> None:
    created = cli.json("alice", "project", "create", "vision")
    assert {k: created[k] for k in ("name", "visibility", "owner")} == {
        "name": "vision", "visibility": "private", "owner": "alice"}
    assert set(created) == {"name", "visibility", "created_at", "owner"}
    code, out, _ = cli("bob", "project", "create", "pub", "--visibility", "public")
    assert code == 0 and out.strip() == "created public project pub (admin: bob)"
    # --owner may name the token's user (scripts run alike on the database and the server)
    assert cli.json("carol", "project", "create", "wiki", "--visibility", "OPEN",
                    "--owner", "carol")["visibility"] == "open"

    team = server.team()
    assert [(p.name, p.visibility, p.explicit) for p in team.projects()] == [
        ("pub", "public", True), ("vision", "private", True), ("wiki", "open", True)]
    assert [(m.user, m.role) for m in team.members("pub")] == [("bob", "admin")]
    assert [(r.actor, r.action, r.subject, r.new) for r in team.audit("vision")] == [
        ("alice", "create", None, "private"), ("alice", "member_add", "alice", "admin")]


def test_create_refusals_change_nothing(cli: Cli) -> None:
    cli("alice", "project", "create", "vision")  # private: bob cannot see it
    err = refused(cli, "bob", ("project", "create", "vision"), 2,
                  "project name 'vision' is not available")
    assert "alice" not in err
    code, out, _ = cli("bob", "project", "create", "vision", "--json")
    assert code == 2 and json.loads(out)["error"]["message"] == (
        "project name 'vision' is not available")
    refused(cli, None, ("project", "create", "anon"), 5, "needs a token")
    refused(cli, None, ("project", "create", "anon"), 5, "set REFTRACK_TOKEN to a token")
    refused(cli, "alice", ("project", "create", "mine", "--owner", "bob"), 2,
            "as the token's user (alice)")
    refused(cli, "alice", ("project", "create", "../x"), 2, "invalid project name '../x'")
    refused(cli, "alice", ("project", "create", "x", "--visibility", "secret"), 2,
            "visibility must be one of private, public, open")
    cli.tokens["eve"] = "rt_" + "x" * 43  # well formed, unknown: 401 names REFTRACK_TOKEN
    refused(cli, "eve", ("project", "create", "x"), 5, "refused the token (REFTRACK_TOKEN)")


# -- visibility, members, audit ----------------------------------------------------------------


def test_visibility_and_members_are_audited_as_the_token_user(cli: Cli,
                                                              server: TeamServer) -> None:
    cli("alice", "project", "create", "vision")
    code, out, _ = cli("alice", "project", "visibility", "vision", "public")
    assert code == 0 and out.strip() == "project vision is public"
    added = cli.json("alice", "project", "member", "add", "vision", "bob")
    assert added == {"project": "vision", "user": "bob", "role": "member",
                     "added_at": added["added_at"]}
    code, out, _ = cli("alice", "project", "member", "add", "vision", "carol", "--role",
                       "admin", "--by", "alice")
    assert code == 0 and out.strip() == "carol is admin of project vision"
    assert [(m["user"], m["role"]) for m in cli.json("bob", "project", "members",
                                                     "vision")] == [
        ("alice", "admin"), ("bob", "member"), ("carol", "admin")]
    code, out, _ = cli("bob", "project", "members", "vision")  # members see the list
    assert code == 0 and re.search(r"carol\W+admin", out) and re.search(r"bob\W+member", out)

    removed = cli.json("carol", "project", "member", "remove", "vision", "alice")
    assert removed == {"project": "vision", "user": "alice", "removed_role": "admin"}
    code, out, _ = cli("carol", "project", "member", "remove", "vision", "bob")
    assert code == 0 and out.strip() == "removed bob (member) from project vision"
    refused(cli, "carol", ("project", "member", "remove", "vision", "carol"), 2, "last admin")
    refused(cli, "carol", ("project", "member", "remove", "vision", "eve"), 4,
            "user 'eve' is not a member of project 'vision'")
    refused(cli, "carol", ("project", "member", "add", "vision", "dave"), 4,
            "user 'dave' does not exist")
    refused(cli, "carol", ("project", "member", "add", "vision", "bob", "--role", "owner"), 2,
            "role must be one of admin, member")
    refused(cli, "carol", ("project", "visibility", "vision", "open", "--by", "alice"), 2,
            "as the token's user (carol)")
    # a server admin manages every project without being a member
    assert cli.json("root", "project", "visibility", "vision", "open")["visibility"] == "open"

    rows = cli.json("carol", "project", "audit", "vision")
    assert [(r["actor"], r["action"], r["subject"], r["old"], r["new"]) for r in rows] == [
        ("alice", "create", None, None, "private"),
        ("alice", "member_add", "alice", None, "admin"),
        ("alice", "visibility", None, "private", "public"),
        ("alice", "member_add", "bob", None, "member"),
        ("alice", "member_add", "carol", None, "admin"),
        ("carol", "member_remove", "alice", "admin", None),
        ("carol", "member_remove", "bob", "member", None),
        ("root", "visibility", None, "public", "open"),
    ]
    assert rows == [r.model_dump(mode="json") for r in server.team().audit("vision")]
    code, out, _ = cli("carol", "project", "audit", "vision")
    assert code == 0 and re.search(r"root\W+visibility\W+public\W+open", out)


def test_refusals_follow_the_access_table(cli: Cli) -> None:
    cli("alice", "project", "create", "secret")
    cli("alice", "project", "member", "add", "secret", "bob")
    cli("alice", "project", "create", "pub", "--visibility", "public")
    hidden = "project 'secret' does not exist, or you have no access to it"
    manage = "only admins of project"
    for args in (("project", "members", "secret"), ("project", "audit", "secret"),
                 ("project", "visibility", "secret", "open"),
                 ("project", "member", "add", "secret", "eve"),
                 ("project", "member", "remove", "secret", "bob")):
        refused(cli, "eve", args, 4, hidden)  # a private project: as if it did not exist
        refused(cli, None, args, 4, "no REFTRACK_TOKEN is set")
    refused(cli, "bob", ("project", "audit", "secret"), 5, manage)  # members read, not manage
    refused(cli, "bob", ("project", "visibility", "secret", "public"), 5, manage)
    refused(cli, "bob", ("project", "member", "add", "secret", "bob", "--role", "admin"), 5,
            manage)
    refused(cli, "bob", ("project", "member", "remove", "secret", "alice"), 5, manage)
    refused(cli, "eve", ("project", "members", "pub"), 5, "shown to its members only")
    for user in ("eve", None):
        refused(cli, user, ("project", "visibility", "pub", "open"), 5, manage)
        refused(cli, user, ("project", "member", "add", "pub", "eve"), 5, manage)
        # the member list is hidden from eve too: the removal is refused for its own reason
        refused(cli, user, ("project", "member", "remove", "pub", "alice"), 5, manage)
        refused(cli, user, ("project", "audit", "pub"), 5, manage)
    code, out, _ = cli("eve", "project", "audit", "pub", "--json")
    assert code == 5 and json.loads(out)["error"]["type"] == "Forbidden"


def test_the_client_methods(server: TeamServer, tokens: dict[str, str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    alice = RemoteRegistry(server.url, tokens["alice"])
    eve = RemoteRegistry(server.url, tokens["eve"])
    try:
        assert alice.whoami() == "alice" and RemoteRegistry(server.url).whoami() is None
        created = alice.create_project("vision", "public")
        assert (created.name, created.visibility, created.role) == ("vision", "public", "admin")
        seen = eve.project("vision")
        assert seen is not None and (seen.visibility, seen.role) == ("public", None)
        alice.set_visibility("vision", "private")
        assert eve.project("vision") is None and eve.project("nope") is None
        assert alice.set_member("vision", "bob", "member").role == "member"
        with pytest.raises(Forbidden):
            RemoteRegistry(server.url, tokens["bob"]).audit("vision")
        assert alice.set_member("vision", "carol", "admin").role == "admin"
        assert alice.remove_member("vision", "bob") == "member"  # the server says which
        assert alice.remove_member("vision", "carol") == "admin"
        assert [m.user for m in server.team().members("vision")] == ["alice"]
    finally:
        alice.close()
        eve.close()


# -- the same output as on a local registry --------------------------------------------------

SEQUENCE: list[tuple[str, tuple[str, ...]]] = [
    ("alice", ("project", "create", "vision", "--owner", "alice", "--visibility", "public")),
    ("bob", ("project", "create", "vision", "--owner", "bob")),
    ("alice", ("project", "visibility", "vision", "private", "--by", "alice")),
    ("alice", ("project", "visibility", "vision", "private", "--by", "alice")),
    ("alice", ("project", "member", "add", "vision", "bob", "--by", "alice")),
    ("alice", ("project", "member", "add", "vision", "carol", "--role", "admin", "--by",
               "alice")),
    ("alice", ("project", "member", "add", "vision", "bob", "--role", "admin", "--by",
               "alice")),
    ("bob", ("project", "member", "remove", "vision", "alice", "--by", "bob")),
    ("carol", ("project", "member", "remove", "vision", "eve", "--by", "carol")),
    ("carol", ("project", "member", "add", "vision", "dave", "--by", "carol")),
    ("carol", ("project", "member", "remove", "vision", "bob", "--by", "carol")),
    ("carol", ("project", "member", "remove", "vision", "carol", "--by", "carol")),
    ("carol", ("project", "members", "vision")),
    ("carol", ("project", "audit", "vision")),
]
STAMP = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)?")


def _normal(text: str) -> Any:
    """A JSON answer without its timestamps, audit ids counted from the first row's."""
    data = json.loads(STAMP.sub("T", text))
    if isinstance(data, list) and data and "action" in data[0]:
        first = data[0]["id"]
        data = [{**row, "id": row["id"] - first} for row in data]
    return data


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "text"])
def test_the_output_is_the_local_registrys(cli: Cli, tmp_path: Path, as_json: bool) -> None:
    """The same commands, acting as the same users (``--by``/``--owner`` on the database,
    their tokens on the server), answer alike: records, messages, exit codes."""
    local = str(tmp_path / "local.db")
    team = TeamStore(Registry(local))
    for name in USERS:
        team.add_user(name, is_admin=name == "root")
    team.registry.close()
    extra = ("--json",) if as_json else ()
    for user, args in SEQUENCE:
        here = invoke({"REFTRACK_REGISTRY": local, "REFTRACK_TOKEN": ""}, *args, *extra)
        there = cli(user, *args, *extra)
        assert here[0] == there[0], (args, here, there)
        if not as_json:
            assert STAMP.sub("T", here[1]) == STAMP.sub("T", there[1]), args
            assert here[2] == there[2], args
            continue
        mine, theirs = _normal(here[1]), _normal(there[1])
        if "not available" in here[1]:
            assert mine["error"]["type"] == theirs["error"]["type"] == "ProjectExists"
        assert mine == theirs, args


def test_the_database_still_needs_by_and_owner(tmp_path: Path) -> None:
    env = {"REFTRACK_REGISTRY": str(tmp_path / "r.db")}
    code, _, err = invoke(env, "project", "create", "vision")
    assert code == 2 and "--owner USER is needed on a registry database" in err
    TeamStore(Registry(env["REFTRACK_REGISTRY"])).add_user("alice")
    assert invoke(env, "project", "create", "vision", "--owner", "alice")[0] == 0
    for args in (("project", "visibility", "vision", "open"),
                 ("project", "member", "add", "vision", "alice"),
                 ("project", "member", "remove", "vision", "alice")):
        code, _, err = invoke(env, *args)
        assert code == 2 and "--by USER is needed on a registry database" in err, args


def test_admin_and_server_stay_on_the_servers_machine(cli: Cli) -> None:
    code, _, err = cli("root", "admin", "user", "list")
    assert code == 2 and "server's machine" in err and "admin commands" in err
    code, _, err = cli("root", "server", "--registry", cli.server.url)
    assert code == 2 and "not a server URL" in err


# -- tokens that expire, users who are disabled -----------------------------------------------


def test_expired_tokens_and_disabled_users_are_refused_with_the_reason(
        cli: Cli, server: TeamServer, tokens: dict[str, str]) -> None:
    import time

    team = server.team()
    record, brief = team.create_token("alice", "brief", expires_in=timedelta(seconds=1))
    assert record.expires_at is not None
    assert cli.json("alice", "project", "create", "vision")["owner"] == "alice"
    cli.tokens["brief"] = brief
    assert cli("brief", "project", "members", "vision")[0] == 0  # works until it expires
    time.sleep(1.2)
    err = refused(cli, "brief", ("project", "members", "vision"), 5, "the token expired on")
    assert "refused the token (REFTRACK_TOKEN)" in err and "admin token create" in err
    raw = server.request("GET", "/api/v1/whoami", brief)
    assert raw.status_code == 401 and "expired" in raw.json()["error"]["message"]

    team.set_disabled("alice", True)
    err = refused(cli, "alice", ("project", "members", "vision"), 5, "user 'alice' is disabled")
    assert "reftrack admin user enable alice" in err
    assert server.request("GET", "/api/v1/whoami", tokens["alice"]).status_code == 401
    team.set_disabled("alice", False)
    assert [m["user"] for m in cli.json("alice", "project", "members", "vision")] == ["alice"]
    team.revoke_token(record.id)
    assert "was revoked on" in server.request("GET", "/api/v1/whoami",
                                              brief).json()["error"]["message"]


def test_project_list_shows_what_each_caller_may_read(cli: Cli, tmp_path: Path) -> None:
    cli("alice", "project", "create", "vision")  # private
    cli("bob", "project", "create", "pub", "--visibility", "public")

    def listed(user: str | None) -> list[tuple[str, str, str | None]]:
        return [(p["name"], p["visibility"], p["role"])
                for p in cli.json(user, "project", "list")]

    assert listed("alice") == [("pub", "public", None), ("vision", "private", "admin")]
    assert listed("eve") == [("pub", "public", None)]  # a private project stays hidden
    assert listed(None) == [("pub", "public", None)]  # anonymous
    assert listed("root") == [("pub", "public", None), ("vision", "private", None)]
    code, out, _ = cli("alice", "project", "list")
    assert code == 0 and "vision" in out and "admin" in out
    # on the registry database: every project, no caller
    local = str(tmp_path / "local.db")
    env = {"REFTRACK_REGISTRY": local, "REFTRACK_TOKEN": ""}
    assert invoke(env, "project", "list")[1].strip() == "no projects yet"
    invoke(env, "admin", "user", "add", "alice")
    invoke(env, "project", "create", "vision", "--owner", "alice")
    code, out, _ = invoke(env, "project", "list", "--json")
    assert code == 0 and [(p["name"], p["visibility"], p["role"])
                          for p in json.loads(out)] == [("vision", "private", None)]
