"""Who may do what: every access decision of the server is made here, by :func:`decide`.

Artifacts and runs inherit access from their project:

============  ===========================  ============================  =====================
visibility    read                         write                         manage
============  ===========================  ============================  =====================
private       members                      members                       project admins
public        everyone (anonymous too)     members                       project admins
open          everyone (anonymous too)     everyone (anonymous too)      project admins
============  ===========================  ============================  =====================

- *manage* is the project's own settings: visibility, membership, default ttl. The member
  list (``members``) is shown to members only.
- Server admins (``users.is_admin``) may do everything, in every project.
- A private project is never revealed to someone who may not read it: every answer is
  404, with the same body as for a project that does not exist (:func:`not_found_body`).
- Refusals where the project is visible are 403 (a non-member, or anonymous, writing to a
  public project; anyone but a project admin managing it).
- A bad, revoked or malformed token is 401 on every request, before any of this: it never
  falls back to anonymous (see :mod:`reftrack.server.deps`).
- Creating a project (explicitly, or by writing to a project that does not exist yet) needs
  an authenticated user, who becomes its admin; anonymous callers get 401 for an explicit
  creation and 404 for a write to a missing project (as for a private one).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Literal

from ..registry.team import ProjectAccess, Role, TokenRecord, UserRecord

__all__ = ["Action", "Decision", "Principal", "decide", "not_found_body"]

Action = Literal["read", "write", "members", "manage"]


class Decision(enum.IntEnum):
    """The HTTP status each outcome is answered with."""

    ALLOW = 200
    UNAUTHENTICATED = 401
    FORBIDDEN = 403
    NOT_FOUND = 404


@dataclass(frozen=True)
class Principal:
    """Who is asking: a user (with the token they used), or anonymous (no token)."""

    user: UserRecord | None = None
    token: TokenRecord | None = None

    @property
    def anonymous(self) -> bool:
        return self.user is None

    @property
    def is_admin(self) -> bool:
        return self.user is not None and self.user.is_admin

    @property
    def name(self) -> str | None:
        return self.user.name if self.user is not None else None


ANONYMOUS = Principal()


def decide(principal: Principal, project: ProjectAccess | None, role: Role | None,
           action: Action) -> Decision:
    """May ``principal`` (whose role in the project is ``role``, None for none) do
    ``action`` in ``project`` (None: no such project)?"""
    if project is None:
        return Decision.NOT_FOUND
    if principal.is_admin or role == "admin":
        return Decision.ALLOW
    visibility = project.visibility
    can_read = role is not None or visibility in ("public", "open")
    if not can_read:
        return Decision.NOT_FOUND  # private: never reveal that it exists
    if action == "read":
        return Decision.ALLOW
    if action == "write":
        if role is not None or visibility == "open":
            return Decision.ALLOW
        return Decision.FORBIDDEN
    if action == "members":
        return Decision.ALLOW if role is not None else Decision.FORBIDDEN
    return Decision.FORBIDDEN  # manage: project admins and server admins only


def decide_create(principal: Principal) -> Decision:
    """May ``principal`` create a project? Any authenticated user may."""
    return Decision.UNAUTHENTICATED if principal.anonymous else Decision.ALLOW


def not_found_body(project: str) -> dict[str, Any]:
    """The one answer for a project that does not exist *or* that the caller may not see."""
    return {"error": {"type": "NotFound", "status": 404,
                      "message": f"project {project!r} does not exist, or you have no access "
                                 "to it"}}


def forbidden_message(principal: Principal, project: str, action: Action) -> str:
    who = "anonymous callers" if principal.anonymous else f"user {principal.name!r}"
    if action == "write":
        return (f"{who} may read project {project!r} but not write to it: ask a project admin "
                "for membership")
    if action == "members":
        return f"the members of project {project!r} are shown to its members only"
    return (f"only admins of project {project!r} (or server admins) may change its visibility, "
            "members or settings")
