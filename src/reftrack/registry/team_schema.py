"""Team-mode tables (SQLAlchemy Core, on :data:`reftrack.registry.schema.metadata`): users,
API tokens, project visibility, project memberships and the audit log.

They are new tables, so ``metadata.create_all`` makes them when any registry is opened (no
schema version bump, nothing rewritten). A project without a ``project_access`` row (made
before team mode, or by logging to the registry directly) is *private with no members*: only
server admins see it until someone gives it members or another visibility.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
)

from .schema import metadata

__all__ = ["api_tokens", "audit_log", "project_access", "project_members", "users"]

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("is_admin", Boolean, nullable=False),  # a server admin: every project, every action
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("disabled_at", DateTime(timezone=True)),  # schema 5: their tokens stop working
)

# Only the SHA-256 of a token is stored: the token itself is shown once, at creation.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True)),  # schema 5; None: never
)

project_access = Table(
    "project_access",
    metadata,
    Column("project_id", Integer, ForeignKey("projects.id"), primary_key=True),
    Column("visibility", String(16), nullable=False),  # private | public | open
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

project_members = Table(
    "project_members",
    metadata,
    Column("project_id", Integer, ForeignKey("projects.id"), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), primary_key=True),
    Column("role", String(16), nullable=False),  # admin | member
    Column("added_at", DateTime(timezone=True), nullable=False),
)

# Who changed what, when: project creation, visibility and membership changes. Names, not
# ids, so that a row reads on its own.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("project", String(128), nullable=False),
    Column("action", String(32), nullable=False),  # create | visibility | member_add | ...
    Column("subject", String(128)),  # the member concerned, for membership changes
    Column("old", Text),
    Column("new", Text),
)
