"""The team-mode commands: ``reftrack admin`` (users, tokens), ``reftrack project``
(create, visibility, members, audit) and the checks ``reftrack server`` makes before it
starts (the real server process is exercised by test_server_security.py)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from reftrack.cli import app
from reftrack.manifest import Manifest, ManifestEntry
from reftrack.registry import Registry
from reftrack.registry.team import TeamStore, hash_token
from reftrack.server.access import ANONYMOUS, Decision, Principal, decide

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"traceback for reftrack {args}: {result.exception!r}")
    return result.exit_code, result.stdout, result.stderr


def ok_json(*args: str) -> object:
    code, out, err = run(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def team() -> TeamStore:
    return TeamStore(Registry(os.environ["REFTRACK_REGISTRY"]))


def test_users_and_tokens() -> None:
    assert ok_json("admin", "user", "add", "alice", "--admin")["is_admin"] is True
    code, out, _ = run("admin", "user", "add", "bob")
    assert code == 0 and "added user bob" in out
    assert [u["name"] for u in ok_json("admin", "user", "list")] == ["alice", "bob"]
    code, _, err = run("admin", "user", "add", "bob")
    assert code == 2 and "exists already" in err
    code, _, err = run("admin", "user", "add", "../etc")
    assert code == 2 and "invalid user name" in err

    code, out, err = run("admin", "token", "create", "bob", "--name", "laptop")
    token = out.strip()
    assert code == 0 and out == token + "\n" and token.startswith("rt_") and len(token) > 40
    assert "not shown again" in " ".join(err.split()) and "revoke 1" in err
    created = ok_json("admin", "token", "create", "bob")
    assert created["token"].startswith("rt_") and created["name"] == "default"
    listed = ok_json("admin", "token", "list", "bob")
    assert [(t["id"], t["name"], t["revoked_at"]) for t in listed] == [
        (1, "laptop", None), (2, "default", None)]
    assert all("token" not in t and "token_sha256" not in t for t in listed)
    # only the hash is stored
    store = team()
    with store.registry.engine.connect() as conn:
        dump = repr(conn.execute(sa.text("SELECT * FROM api_tokens")).all())
    assert token not in dump and hash_token(token) in dump
    user, record = store.authenticate(token) or (None, None)
    assert user is not None and user.name == "bob" and record is not None and record.id == 1

    revoked = ok_json("admin", "token", "revoke", "1")
    assert revoked["revoked_at"] is not None
    assert store.authenticate(token) is None
    assert store.authenticate(created["token"]) is not None
    code, out, _ = run("admin", "token", "revoke", "1")  # again: nothing changes
    assert code == 0 and "revoked token 1" in out
    code, _, err = run("admin", "token", "revoke", "99")
    assert code == 4 and "token 99 does not exist" in err
    code, _, err = run("admin", "token", "create", "carol")
    assert code == 4 and "reftrack admin user add carol" in " ".join(err.split())
    code, out, _ = run("admin", "token", "list", "bob")
    assert code == 0 and "laptop" in out and token not in out



def test_tokens_expire_and_users_can_be_disabled() -> None:
    from clocks import Clock

    run("admin", "user", "add", "dana")
    code, out, err = run("admin", "token", "create", "dana", "--expires", "30d")
    assert code == 0 and "until 20" in err and "UTC" in err
    expiring = out.strip()
    forever = ok_json("admin", "token", "create", "dana", "--name", "ci")
    assert forever["expires_at"] is None
    listed = ok_json("admin", "token", "list", "dana")
    made = datetime.fromisoformat(listed[0]["created_at"])
    assert datetime.fromisoformat(listed[0]["expires_at"]) - made == timedelta(days=30)
    code, out, _ = run("admin", "token", "list", "dana")
    assert code == 0 and "never" in out
    for bad, needle in (("soon", "not a duration"), ("0s", "at least one second")):
        code, _, err = run("admin", "token", "create", "dana", "--expires", bad)
        assert code == 2 and needle in " ".join(err.split()), err

    clock = Clock(datetime.now(UTC) + timedelta(days=29))
    store = TeamStore(Registry(os.environ["REFTRACK_REGISTRY"], clock=clock))
    assert store.authenticate(expiring) is not None
    clock.advance(days=2)
    assert store.authenticate(expiring) is None
    assert "the token expired on" in store.refusal(expiring)
    assert store.authenticate(forever["token"]) is not None  # no expiry
    assert "not known" in store.refusal("rt_" + "x" * 43)

    disabled = ok_json("admin", "user", "disable", "dana")
    assert disabled["disabled_at"] is not None
    assert store.authenticate(forever["token"]) is None
    assert "user 'dana' is disabled" in store.refusal(forever["token"])
    assert "reftrack admin user enable dana" in store.refusal(forever["token"])
    code, _, err = run("admin", "token", "create", "dana")
    assert code == 2 and "is disabled" in err
    code, out, _ = run("admin", "user", "list")
    assert code == 0 and "dana" in out
    code, out, _ = run("admin", "user", "enable", "dana")
    assert code == 0 and "user dana is enabled" in out
    assert store.authenticate(forever["token"]) is not None
    assert store.authenticate(expiring) is None  # enabling does not revive an expired token
    code, _, err = run("admin", "user", "disable", "nobody")
    assert code == 4 and "does not exist" in err

def test_projects_visibility_members_and_audit() -> None:
    for name in ("alice", "bob", "carol"):
        run("admin", "user", "add", name)
    created = ok_json("project", "create", "vision", "--owner", "alice", "--visibility",
                      "public")
    assert (created["name"], created["visibility"], created["owner"]) == (
        "vision", "public", "alice")
    code, _, err = run("project", "create", "vision", "--owner", "bob")
    assert code == 2 and "not available" in err
    code, _, err = run("project", "create", "other", "--owner", "alice", "--visibility",
                       "secret")
    assert code == 2 and "visibility must be one of private, public, open" in err
    assert ok_json("project", "visibility", "vision", "open", "--by", "alice")[
        "visibility"] == "open"
    code, out, _ = run("project", "visibility", "vision", "open", "--by", "alice")
    assert code == 0 and "vision is open" in out  # unchanged: no audit row
    member = ok_json("project", "member", "add", "vision", "bob", "--by", "alice")
    assert (member["user"], member["role"]) == ("bob", "member")
    ok_json("project", "member", "add", "vision", "bob", "--role", "admin", "--by", "alice")
    code, out, _ = run("project", "members", "vision")
    assert code == 0 and "bob" in out and "admin" in out
    assert [(m["user"], m["role"]) for m in ok_json("project", "members", "vision")] == [
        ("alice", "admin"), ("bob", "admin")]
    removed = ok_json("project", "member", "remove", "vision", "alice", "--by", "bob")
    assert removed["removed_role"] == "admin"
    code, _, err = run("project", "member", "remove", "vision", "bob", "--by", "bob")
    assert code == 2 and "last admin" in err
    code, _, err = run("project", "member", "remove", "vision", "carol", "--by", "bob")
    assert code == 4 and "not a member" in err
    code, _, err = run("project", "member", "add", "vision", "carol", "--role", "owner",
                       "--by", "bob")
    assert code == 2 and "role must be one of admin, member" in err
    code, _, err = run("project", "member", "add", "vision", "carol", "--by", "dave")
    assert code == 4 and "user 'dave' does not exist" in err
    code, _, err = run("project", "members", "nope")
    assert code == 4 and "project 'nope' does not exist" in err

    rows = ok_json("project", "audit", "vision")
    assert [(r["actor"], r["action"], r["subject"], r["old"], r["new"]) for r in rows] == [
        ("alice", "create", None, None, "public"),
        ("alice", "member_add", "alice", None, "admin"),
        ("alice", "visibility", None, "public", "open"),
        ("alice", "member_add", "bob", None, "member"),
        ("alice", "member_role", "bob", "member", "admin"),
        ("bob", "member_remove", "alice", "admin", None),
    ]
    assert all(datetime.fromisoformat(r["at"]) > datetime.now(UTC) - timedelta(minutes=5)
               for r in rows)
    code, out, _ = run("project", "audit", "vision")
    assert code == 0 and "member_role" in out


def test_projects_from_before_team_mode_are_private(tmp_path: Path) -> None:
    reg = Registry(os.environ["REFTRACK_REGISTRY"])
    reg.log_version(project="legacy", name="ds", type="dataset", manifest=Manifest(
        [ManifestEntry(path="a", ref="s3://b/a", version_id="1", etag="e", size=1)]))
    store = TeamStore(reg)
    legacy = store.project("legacy")
    assert legacy is not None and (legacy.visibility, legacy.explicit) == ("private", False)
    assert store.members("legacy") == []
    run("admin", "user", "add", "root", "--admin")
    run("admin", "user", "add", "eve")
    eve = store.user("eve")
    assert decide(Principal(user=eve), legacy, None, "read") is Decision.NOT_FOUND
    assert decide(ANONYMOUS, legacy, None, "read") is Decision.NOT_FOUND
    assert decide(Principal(user=store.user("root")), legacy, None, "manage") is Decision.ALLOW
    ok_json("project", "visibility", "legacy", "public", "--by", "root")
    assert store.audit("legacy")[-1].old == "private"
    assert decide(Principal(user=eve), store.project("legacy"), None, "read") is Decision.ALLOW


def test_ensure_project_and_undo() -> None:
    store = team()
    store.add_user("alice")
    access, created = store.ensure_project("fresh", owner="alice")
    assert created and access.visibility == "private"
    assert store.ensure_project("fresh", owner="alice")[1] is False
    assert [m.role for m in store.members("fresh")] == ["admin"]
    assert store.drop_empty_project("fresh") is True
    assert store.project("fresh") is None and store.audit("fresh") == []
    store.registry.create_run(project="busy", run_id="r")
    store.set_member("busy", "alice", "admin", by="alice")
    assert store.drop_empty_project("busy") is False  # it holds a run


def test_admin_commands_need_the_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFTRACK_REGISTRY", "https://registry.example.com")
    code, _, err = run("admin", "user", "list")
    assert code == 2 and "registry server" in err and "--registry" in err


@pytest.mark.parametrize("args, message", [
    (("--host", "0.0.0.0"), "refusing to serve plain HTTP on 0.0.0.0"),
    (("--host", "10.1.2.3", "--ssl-certfile", "c.pem"), "give both --ssl-certfile"),
    (("--registry", "http://127.0.0.1:8080"), "not a server URL"),
])
def test_server_refuses_unsafe_or_wrong_settings(args: tuple[str, ...], message: str) -> None:
    code, _, err = run("server", *args)
    assert code == 2 and message in " ".join(err.split())
