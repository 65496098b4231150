"""Team mode in the registry: users, API tokens, project visibility and membership, and the
audit log of who changed them. What each principal may *do* is decided in one place,
:mod:`reftrack.server.access`; this module only stores and reads the facts.

- **Tokens** are ``rt_`` + ``secrets.token_urlsafe(32)`` (256 random bits). Only their
  SHA-256 is stored; the token is returned once, by :meth:`TeamStore.create_token`. A plain
  hash suffices for a random secret of this length (no password stretching needed).
- **Visibility**: ``private`` (members only), ``public`` (everyone reads, members write),
  ``open`` (everyone reads and writes). A project created in team mode is private unless
  asked otherwise, and its creator is its admin. A project with no ``project_access`` row
  (made before team mode, or by logging to the registry directly) is private with no
  members: only server admins see it until they give it members or another visibility.
- **Audit**: project creation, visibility changes and membership changes each write one
  ``audit_log`` row (who, when, project, action, old -> new) in the same transaction.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import IO, Any, Literal, cast, get_args

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import Connection

from ..errors import NotFound, ProjectExists, UsageError
from . import schema as t
from . import team_schema as ts
from .names import check_name
from .records import VersionRecord
from .store import Registry

__all__ = [
    "TOKEN_PREFIX",
    "AuditRecord",
    "MemberRecord",
    "ProjectAccess",
    "ProjectExists",
    "Role",
    "TeamStore",
    "TokenRecord",
    "UserRecord",
    "Visibility",
    "hash_token",
    "looks_like_token",
]

Visibility = Literal["private", "public", "open"]
Role = Literal["admin", "member"]
VISIBILITIES: tuple[str, ...] = get_args(Visibility)
ROLES: tuple[str, ...] = get_args(Role)
DEFAULT_VISIBILITY: Visibility = "private"

TOKEN_PREFIX = "rt_"
_TOKEN_RE = re.compile(r"^rt_[A-Za-z0-9_-]{20,200}$")
LAST_USED_EVERY = timedelta(seconds=60)
"""``last_used_at`` is written at most this often per token (a write per request would make
every read queue behind writers on SQLite)."""


class UserRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    name: str
    is_admin: bool
    created_at: datetime
    disabled_at: datetime | None = None
    """When the user was disabled (their tokens stop working); None: enabled."""


class TokenRecord(BaseModel):
    """An API token as stored: never the token itself."""

    model_config = ConfigDict(frozen=True)

    id: int
    user: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None = None
    """When the token stops working by itself; None: never."""

    @property
    def active(self) -> bool:
        """Not revoked (an expired token is not active either: see :meth:`usable`)."""
        return self.revoked_at is None

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class ProjectAccess(BaseModel):
    """A project's visibility; ``explicit`` is False for a project without an access row
    (treated as private with no members)."""

    model_config = ConfigDict(frozen=True)

    id: int
    name: str
    visibility: Visibility
    explicit: bool
    created_at: datetime


class MemberRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    project: str
    user: str
    role: Role
    added_at: datetime


class AuditRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    at: datetime
    actor: str
    project: str
    action: str
    subject: str | None
    old: str | None
    new: str | None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def looks_like_token(token: str) -> bool:
    """The shape of a reftrack token (``rt_`` and URL-safe base64), before any lookup."""
    return bool(_TOKEN_RE.match(token))


def check_visibility(value: object) -> Visibility:
    if value not in VISIBILITIES:
        raise UsageError(f"visibility must be one of {', '.join(VISIBILITIES)}, not {value!r}")
    return cast(Visibility, value)


def check_role(value: object) -> Role:
    if value not in ROLES:
        raise UsageError(f"role must be one of {', '.join(ROLES)}, not {value!r}")
    return cast(Role, value)


class TeamStore:
    """Users, tokens, visibility, membership and audit of one :class:`Registry`.

    Every write is one registry transaction (``registry._write()``), stamped with the
    registry's clock; an audited change and its audit row commit together."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    # -- users --------------------------------------------------------------------------------

    def add_user(self, name: str, *, is_admin: bool = False) -> UserRecord:
        check_name(name, "user name")
        with self.registry._write() as conn:
            if self._user_row(conn, name) is not None:
                raise UsageError(f"user {name!r} exists already")
            conn.execute(ts.users.insert().values(
                name=name, is_admin=bool(is_admin), created_at=self.registry._now()))
            return self._user(conn, name)

    def users(self) -> list[UserRecord]:
        with self.registry.engine.connect() as conn:
            rows = conn.execute(sa.select(ts.users).order_by(ts.users.c.name)).all()
        return [_user_record(r) for r in rows]

    def user(self, name: str) -> UserRecord:
        check_name(name, "user name")
        with self.registry.engine.connect() as conn:
            return self._user(conn, name)

    def _user_row(self, conn: Connection, name: str) -> sa.Row[Any] | None:
        return conn.execute(sa.select(ts.users).where(ts.users.c.name == name)).first()

    def _user(self, conn: Connection, name: str) -> UserRecord:
        row = self._user_row(conn, name)
        if row is None:
            raise NotFound(f"user {name!r} does not exist; add it with "
                           f"`reftrack admin user add {name}`")
        return _user_record(row)

    def set_disabled(self, name: str, disabled: bool) -> UserRecord:
        """Disable a user (every token of theirs is refused from the next request on, and
        they keep their memberships), or enable them again. Idempotent."""
        check_name(name, "user name")
        with self.registry._write() as conn:
            user = self._user(conn, name)
            if (user.disabled_at is not None) != disabled:
                conn.execute(ts.users.update().where(ts.users.c.id == user.id).values(
                    disabled_at=self.registry._now() if disabled else None))
            return self._user(conn, name)

    # -- tokens -------------------------------------------------------------------------------

    def create_token(self, user: str, name: str | None = None, *,
                     expires_in: timedelta | None = None) -> tuple[TokenRecord, str]:
        """A new API token for ``user``: its record, and the token itself (shown once; only
        its SHA-256 is stored). ``expires_in``: it stops working that long from now (None:
        never). A disabled user gets no token."""
        if name is not None:
            check_name(name, "token name")
        if expires_in is not None and (not isinstance(expires_in, timedelta)
                                       or expires_in < timedelta(seconds=1)):
            raise UsageError(f"a token's lifetime must be at least one second, not {expires_in}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.registry._write() as conn:
            owner = self._user(conn, user)
            if owner.disabled_at is not None:
                raise UsageError(f"user {user!r} is disabled; enable them first with "
                                 f"`reftrack admin user enable {user}`")
            now = self.registry._now()
            token_id = _pk(conn.execute(ts.api_tokens.insert().values(
                user_id=owner.id, name=name or "default", token_sha256=hash_token(token),
                created_at=now, expires_at=None if expires_in is None else now + expires_in)))
            return self._token(conn, token_id), token

    def tokens(self, user: str) -> list[TokenRecord]:
        with self.registry.engine.connect() as conn:
            owner = self._user(conn, check_name(user, "user name"))
            ids = conn.execute(sa.select(ts.api_tokens.c.id)
                               .where(ts.api_tokens.c.user_id == owner.id)
                               .order_by(ts.api_tokens.c.id)).scalars().all()
            return [self._token(conn, int(i)) for i in ids]

    def revoke_token(self, token_id: int) -> TokenRecord:
        """Revoke a token: it stops working at the next request. Revoking a revoked token
        changes nothing."""
        with self.registry._write() as conn:
            record = self._token(conn, token_id)
            if record.revoked_at is None:
                conn.execute(ts.api_tokens.update().where(ts.api_tokens.c.id == token_id)
                             .values(revoked_at=self.registry._now()))
                record = self._token(conn, token_id)
            return record

    def refusal(self, token: str) -> str:
        """Why :meth:`authenticate` refuses ``token``, for the 401 (the caller holds the
        token: telling them it expired or was revoked reveals nothing new)."""
        found = None
        if looks_like_token(token):
            with self.registry.engine.connect() as conn:
                row = conn.execute(sa.select(ts.api_tokens.c.id).where(
                    ts.api_tokens.c.token_sha256 == hash_token(token))).first()
                if row is not None:
                    found = self._token(conn, int(row.id))
                    user = self._user(conn, found.user)
        new = "; ask a server admin for a new one (reftrack admin token create USER)"
        if found is None:
            return "the token is not known (mistyped, or from another registry)" + new
        if found.revoked_at is not None:
            return f"the token was revoked on {found.revoked_at:%Y-%m-%d %H:%M} UTC" + new
        if found.expires_at is not None and found.expires_at <= self.registry._now():
            return f"the token expired on {found.expires_at:%Y-%m-%d %H:%M} UTC" + new
        if user.disabled_at is not None:
            return (f"user {user.name!r} is disabled; ask a server admin to enable them "
                    f"(reftrack admin user enable {user.name})")
        return "the token is not valid" + new

    def authenticate(self, token: str) -> tuple[UserRecord, TokenRecord] | None:
        """The user and token record for a token, or None when it is malformed, unknown,
        revoked or expired, or its user is disabled (:meth:`refusal` says which). Records
        when it was last used (at most once a minute)."""
        if not looks_like_token(token):
            return None
        digest = hash_token(token)
        with self.registry.engine.connect() as conn:
            row = conn.execute(
                sa.select(ts.api_tokens.c.id, ts.api_tokens.c.revoked_at,
                          ts.api_tokens.c.expires_at, ts.api_tokens.c.last_used_at,
                          ts.api_tokens.c.token_sha256)
                .where(ts.api_tokens.c.token_sha256 == digest)
            ).first()
        now = self.registry._now()
        if row is None or row.revoked_at is not None \
                or (row.expires_at is not None and _utc(row.expires_at) <= now) \
                or not secrets.compare_digest(str(row.token_sha256), digest):
            return None
        if row.last_used_at is None or _utc(row.last_used_at) <= now - LAST_USED_EVERY:
            with self.registry._write() as conn:
                conn.execute(ts.api_tokens.update().where(ts.api_tokens.c.id == row.id)
                             .values(last_used_at=now))
        with self.registry.engine.connect() as conn:
            record = self._token(conn, int(row.id))
            user = conn.execute(
                sa.select(ts.users).join(ts.api_tokens, ts.api_tokens.c.user_id == ts.users.c.id)
                .where(ts.api_tokens.c.id == row.id)
            ).one()
        if record.revoked_at is not None or user.disabled_at is not None:  # or in between
            return None
        return _user_record(user), record

    def _token(self, conn: Connection, token_id: int) -> TokenRecord:
        row = conn.execute(
            sa.select(ts.api_tokens, ts.users.c.name.label("user"))
            .join(ts.users, ts.users.c.id == ts.api_tokens.c.user_id)
            .where(ts.api_tokens.c.id == token_id)
        ).first()
        if row is None:
            raise NotFound(f"token {token_id} does not exist")
        return TokenRecord(
            id=row.id, user=row.user, name=row.name, created_at=_utc(row.created_at),
            last_used_at=_utc(row.last_used_at) if row.last_used_at else None,
            revoked_at=_utc(row.revoked_at) if row.revoked_at else None,
            expires_at=_utc(row.expires_at) if row.expires_at else None,
        )

    # -- projects -----------------------------------------------------------------------------

    def project(self, name: str) -> ProjectAccess | None:
        """A project's access facts, or None when no project has that name."""
        with self.registry.engine.connect() as conn:
            return self._access(conn, name)

    def projects(self) -> list[ProjectAccess]:
        with self.registry.engine.connect() as conn:
            rows = conn.execute(self._access_query().order_by(t.projects.c.name)).all()
        return [_access_record(r) for r in rows]

    def _access_query(self) -> sa.Select[Any]:
        return (sa.select(t.projects.c.id, t.projects.c.name, t.projects.c.created_at,
                          ts.project_access.c.visibility)
                .outerjoin(ts.project_access, ts.project_access.c.project_id == t.projects.c.id))

    def _access(self, conn: Connection, name: str) -> ProjectAccess | None:
        row = conn.execute(self._access_query().where(t.projects.c.name == name)).first()
        return _access_record(row) if row is not None else None

    def _require(self, conn: Connection, name: str) -> ProjectAccess:
        found = self._access(conn, check_name(name, "project name"))
        if found is None:
            raise NotFound(f"project {name!r} does not exist")
        return found

    def create_project(self, name: str, *, owner: str,
                       visibility: Visibility = DEFAULT_VISIBILITY) -> ProjectAccess:
        """Create ``name`` with ``visibility``; ``owner`` becomes its admin. A taken name is
        :class:`ProjectExists`."""
        check_name(name, "project name")
        check_visibility(visibility)
        with self.registry._write() as conn:
            if self._access(conn, name) is not None:
                raise ProjectExists(f"project name {name!r} is not available")
            return self._create_in(conn, name, self._user(conn, owner), visibility)

    def ensure_project(self, name: str, *, owner: str) -> tuple[ProjectAccess, bool]:
        """The project, created (private, ``owner`` its admin) when missing: what a write
        to a project that does not exist yet does in team mode. Returns (access, created)."""
        check_name(name, "project name")
        with self.registry._write() as conn:
            found = self._access(conn, name)
            if found is not None:
                return found, False
            return self._create_in(conn, name, self._user(conn, owner), DEFAULT_VISIBILITY), \
                True

    def _create_in(self, conn: Connection, name: str, owner: UserRecord,
                   visibility: Visibility) -> ProjectAccess:
        now = self.registry._now()
        project_id = self.registry._project_id(conn, name, create=True)
        conn.execute(ts.project_access.insert().values(
            project_id=project_id, visibility=visibility, updated_at=now))
        conn.execute(ts.project_members.insert().values(
            project_id=project_id, user_id=owner.id, role="admin", added_at=now))
        self._audit(conn, owner.name, name, "create", None, None, visibility)
        self._audit(conn, owner.name, name, "member_add", owner.name, None, "admin")
        return self._require(conn, name)

    def drop_empty_project(self, name: str) -> bool:
        """Undo :meth:`ensure_project` when the write it was made for failed: remove the
        project, its access, members and audit rows, if nothing else was recorded in it."""
        with self.registry._write() as conn:
            found = self._access(conn, name)
            if found is None:
                return False
            for table, column in ((t.artifacts, t.artifacts.c.project_id),
                                  (t.runs, t.runs.c.project_id)):
                if conn.execute(sa.select(sa.func.count()).select_from(table)
                                .where(column == found.id)).scalar_one():
                    return False
            conn.execute(ts.project_members.delete()
                         .where(ts.project_members.c.project_id == found.id))
            conn.execute(ts.project_access.delete()
                         .where(ts.project_access.c.project_id == found.id))
            conn.execute(ts.audit_log.delete().where(ts.audit_log.c.project == name))
            conn.execute(t.projects.delete().where(t.projects.c.id == found.id))
            return True

    def set_visibility(self, project: str, visibility: Visibility, *, by: str) -> ProjectAccess:
        """Change a project's visibility (audited: who, when, old -> new). Setting the
        visibility it has changes nothing and writes no audit row."""
        check_visibility(visibility)
        with self.registry._write() as conn:
            found = self._require(conn, project)
            actor = self._user(conn, by)
            if found.explicit and found.visibility == visibility:
                return found
            now = self.registry._now()
            if found.explicit:
                conn.execute(ts.project_access.update()
                             .where(ts.project_access.c.project_id == found.id)
                             .values(visibility=visibility, updated_at=now))
            else:
                conn.execute(ts.project_access.insert().values(
                    project_id=found.id, visibility=visibility, updated_at=now))
            self._audit(conn, actor.name, project, "visibility", None, found.visibility,
                        visibility)
            return self._require(conn, project)

    # -- membership ---------------------------------------------------------------------------

    def role(self, project_id: int, user_id: int) -> Role | None:
        with self.registry.engine.connect() as conn:
            role = conn.execute(sa.select(ts.project_members.c.role).where(
                ts.project_members.c.project_id == project_id,
                ts.project_members.c.user_id == user_id)).scalar()
        return cast(Role, role) if role is not None else None

    def roles_of(self, user_id: int) -> dict[int, Role]:
        """project id -> role, for every project ``user_id`` is a member of."""
        with self.registry.engine.connect() as conn:
            rows = conn.execute(sa.select(ts.project_members.c.project_id,
                                          ts.project_members.c.role)
                                .where(ts.project_members.c.user_id == user_id)).all()
        return {int(r.project_id): cast(Role, r.role) for r in rows}

    def members(self, project: str) -> list[MemberRecord]:
        with self.registry.engine.connect() as conn:
            found = self._require(conn, project)
            rows = conn.execute(
                sa.select(ts.users.c.name, ts.project_members.c.role,
                          ts.project_members.c.added_at)
                .join(ts.users, ts.users.c.id == ts.project_members.c.user_id)
                .where(ts.project_members.c.project_id == found.id)
                .order_by(ts.users.c.name)
            ).all()
        return [MemberRecord(project=found.name, user=r.name, role=cast(Role, r.role),
                             added_at=_utc(r.added_at)) for r in rows]

    def set_member(self, project: str, user: str, role: Role, *, by: str) -> MemberRecord:
        """Add ``user`` to ``project`` with ``role``, or change their role (audited)."""
        check_role(role)
        with self.registry._write() as conn:
            found = self._require(conn, project)
            member = self._user(conn, check_name(user, "user name"))
            actor = self._user(conn, by)
            old = self._role_in(conn, found.id, member.id)
            now = self.registry._now()
            if old is None:
                conn.execute(ts.project_members.insert().values(
                    project_id=found.id, user_id=member.id, role=role, added_at=now))
                self._audit(conn, actor.name, found.name, "member_add", member.name, None, role)
            elif old != role:
                if old == "admin":
                    self._keep_an_admin(conn, found, member)
                conn.execute(ts.project_members.update().where(
                    ts.project_members.c.project_id == found.id,
                    ts.project_members.c.user_id == member.id).values(role=role))
                self._audit(conn, actor.name, found.name, "member_role", member.name, old, role)
            return self._member(conn, found, member)

    def remove_member(self, project: str, user: str, *, by: str) -> Role:
        """Remove ``user`` from ``project`` (audited); returns the role they had."""
        with self.registry._write() as conn:
            found = self._require(conn, project)
            member = self._user(conn, check_name(user, "user name"))
            actor = self._user(conn, by)
            old = self._role_in(conn, found.id, member.id)
            if old is None:
                raise NotFound(f"user {member.name!r} is not a member of project {found.name!r}")
            if old == "admin":
                self._keep_an_admin(conn, found, member)
            conn.execute(ts.project_members.delete().where(
                ts.project_members.c.project_id == found.id,
                ts.project_members.c.user_id == member.id))
            self._audit(conn, actor.name, found.name, "member_remove", member.name, old, None)
            return old

    def _keep_an_admin(self, conn: Connection, found: ProjectAccess, leaving: UserRecord) -> None:
        admins = conn.execute(sa.select(sa.func.count()).where(
            ts.project_members.c.project_id == found.id,
            ts.project_members.c.role == "admin",
            ts.project_members.c.user_id != leaving.id)).scalar_one()
        if not admins:
            raise UsageError(f"{leaving.name} is the last admin of project {found.name!r}; "
                             "make another member admin first")

    def _role_in(self, conn: Connection, project_id: int, user_id: int) -> Role | None:
        role = conn.execute(sa.select(ts.project_members.c.role).where(
            ts.project_members.c.project_id == project_id,
            ts.project_members.c.user_id == user_id)).scalar()
        return cast(Role, role) if role is not None else None

    def _member(self, conn: Connection, found: ProjectAccess, user: UserRecord) -> MemberRecord:
        row = conn.execute(sa.select(ts.project_members).where(
            ts.project_members.c.project_id == found.id,
            ts.project_members.c.user_id == user.id)).one()
        return MemberRecord(project=found.name, user=user.name, role=cast(Role, row.role),
                            added_at=_utc(row.added_at))

    # -- audit --------------------------------------------------------------------------------

    def _audit(self, conn: Connection, actor: str, project: str, action: str,
               subject: str | None, old: str | None, new: str | None) -> None:
        conn.execute(ts.audit_log.insert().values(
            at=self.registry._now(), actor=actor, project=project, action=action,
            subject=subject, old=old, new=new))

    def audit(self, project: str | None = None) -> list[AuditRecord]:
        """The audit rows (of ``project``), oldest first."""
        query = sa.select(ts.audit_log).order_by(ts.audit_log.c.id)
        if project is not None:
            query = query.where(ts.audit_log.c.project == check_name(project, "project name"))
        with self.registry.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [AuditRecord(id=r.id, at=_utc(r.at), actor=r.actor, project=r.project,
                            action=r.action, subject=r.subject, old=r.old, new=r.new)
                for r in rows]

    # -- what the server needs besides the Registry's own methods -----------------------------

    def version(self, version_id: int) -> VersionRecord | None:
        """A version by id, visible or not (deleted, expired); None when there is none."""
        with self.registry.engine.connect() as conn:
            known = conn.execute(sa.select(t.versions.c.id)
                                 .where(t.versions.c.id == version_id)).first()
            return self.registry._version_by_id(conn, version_id) if known else None

    def open_manifest(self, digest: str) -> AbstractContextManager[IO[bytes]]:
        """The stored bytes of a manifest (``Manifest.to_bytes()``) in a spooled file."""
        return self.registry._spooled(digest)


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes: they were stored in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _pk(result: sa.CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None:  # pragma: no cover - every table here has a primary key
        raise RuntimeError("the database returned no primary key")
    return int(key[0])


def _user_record(row: sa.Row[Any]) -> UserRecord:
    return UserRecord(id=row.id, name=row.name, is_admin=bool(row.is_admin),
                      created_at=_utc(row.created_at),
                      disabled_at=_utc(row.disabled_at) if row.disabled_at else None)


def _access_record(row: sa.Row[Any]) -> ProjectAccess:
    explicit = row.visibility is not None
    return ProjectAccess(id=row.id, name=row.name,
                         visibility=cast(Visibility, row.visibility or DEFAULT_VISIBILITY),
                         explicit=explicit, created_at=_utc(row.created_at))
