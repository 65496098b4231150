"""A registry behind a team server: :class:`RemoteRegistry` has the methods of
:class:`~reftrack.registry.Registry` the public API calls, each one or a few requests to the
server's ``/api/v1`` (:mod:`reftrack.server`), and returns the same records.

``REFTRACK_REGISTRY=https://reftrack.example.com`` (or ``--registry``, ``registry=``) selects
it, ``REFTRACK_TOKEN`` authenticates (without it the client is anonymous). Only metadata and
manifests travel: buckets are read by the client itself, with its own credentials, and no
storage option or cloud credential is ever sent.

The registry's methods name runs by their primary key and versions by their id; the server's
routes name them under their project. Every record this client hands out was read through it,
so it remembers each run's and version's project (and each manifest digest's version) from the
records it returned, and builds the routes from that.

``gc`` works over the server for server admins: the server purges versions and manifests and
says which managed blobs nothing references; this client deletes them with its own
credentials (see :func:`reftrack.lifecycle.collect_garbage`). Projects are created and
managed (visibility, members, audit) as the token's user, with the records
:class:`~reftrack.registry.team.TeamStore` returns. Users and tokens are administered on the
server's machine (``reftrack admin``).
"""

from __future__ import annotations

import base64
import json
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import IO, Any, TypeAlias
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from ..errors import ManifestError, NotFound, UsageError
from ..manifest import Manifest
from .lifecycle import PurgeResult
from .manifests import SPOOL_BYTES, ManifestReader
from .names import LATEST, check_json, check_name
from .records import ArtifactSummary, RunRecord, VersionRecord
from .remote_http import TIMEOUT, Transport, check_server_url, check_token, is_server_url
from .remote_http import redact_server_url as _redact
from .store import UNSET, Registry, Unset
from .team import AuditRecord, MemberRecord, Role, Visibility, check_role, check_visibility
from .verifications import RESUME_WITHIN, StoredResult, VerificationRun

__all__ = ["AnyRegistry", "ProjectView", "RemoteRegistry", "is_server_url", "open_registry"]

RESULTS_PER_REQUEST = 1000
"""Verification results per request (the server takes 5000, and 16 MiB)."""
PATHS_PER_REQUEST = 1000
LEASES_PER_REQUEST = 5000
CLOCK_REFRESH_SECONDS = 300.0
"""How long the measured offset to the server's clock is used before it is measured again."""


def _q(segment: str) -> str:
    return quote(segment, safe="")


def _seconds(ttl: timedelta | None) -> int | None:
    return None if ttl is None else int(ttl.total_seconds())


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise UsageError("timestamps sent to the registry must be timezone-aware")
    return moment.isoformat()


class ProjectView(BaseModel):
    """A project as the registry server shows it (``GET /api/v1/projects/{p}``): what
    :class:`~reftrack.registry.team.ProjectAccess` says but the database's id and whether an
    access row exists, and ``role``, the caller's role in it (None: none)."""

    model_config = ConfigDict(frozen=True)

    name: str
    visibility: Visibility
    created_at: datetime
    role: Role | None = None


class RemoteRegistry(ManifestReader):
    """The registry served at ``url`` (``https://host[:port]``), as ``token``'s user
    (anonymous without one). ``clock``: what this client stamps what it stores with
    (verification results); None: the server's clock (its offset measured once in a while,
    so that timestamps agree with the ones the server writes)."""

    dialect = "server"

    def __init__(self, url: str, token: str | None = None, *,
                 clock: Callable[[], datetime] | None = None,
                 allow_insecure_http: bool | None = None, timeout: float | None = None
                 ) -> None:
        self.url = check_server_url(url, allow_insecure=allow_insecure_http)
        self.location = _redact(self.url)
        self._clock = clock
        self._http = Transport(self.url, check_token(token), location=self.location,
                               timeout=TIMEOUT if timeout is None else timeout)
        self._lock = threading.Lock()
        self._offset: timedelta | None = None
        self._offset_at = 0.0
        self._run_paths: dict[int, tuple[str, str]] = {}
        self._version_projects: dict[int, str] = {}
        self._digests: dict[str, tuple[str, int]] = {}

    def __repr__(self) -> str:
        return f"RemoteRegistry({self.location!r})"

    def close(self) -> None:
        self._http.close()

    # -- records and routes -------------------------------------------------------------------

    def _version(self, data: Any) -> VersionRecord:
        record = VersionRecord.model_validate(data)
        self._version_projects[record.id] = record.project
        self._digests[record.digest] = (record.project, record.id)
        return record

    def _versions(self, data: Any) -> list[VersionRecord]:
        return [self._version(item) for item in data]

    def _run(self, data: Any) -> RunRecord:
        record = RunRecord.model_validate(data)
        self._run_paths[record.pk] = (record.project, record.id)
        return record

    def _runs(self, data: Any) -> list[RunRecord]:
        return [self._run(item) for item in data]

    def _run_path(self, run_pk: int) -> str:
        try:
            project, run_id = self._run_paths[run_pk]
        except KeyError:
            raise UsageError(f"run {run_pk} was not read through this registry client "
                             f"({self.location}); get it with Api().run(...) first") from None
        return f"/projects/{_q(project)}/runs/{_q(run_id)}"

    def _version_path(self, version_id: int, project: str | None = None) -> str:
        if project is None:
            try:
                project = self._version_projects[version_id]
            except KeyError:
                raise UsageError(
                    f"version {version_id} was not read through this registry client "
                    f"({self.location}); get it with Api().artifact(...) first") from None
        return f"/projects/{_q(project)}/versions/{version_id}"

    def _get(self, path: str, **params: Any) -> Any:
        return self._http.call("GET", path, params=params or None, idempotent=True)

    def _send(self, method: str, path: str, body: Any = None, *, idempotent: bool,
              **params: Any) -> Any:
        return self._http.call(method, path, json=body, params=params or None,
                               idempotent=idempotent)

    # -- the clock ----------------------------------------------------------------------------

    def now(self) -> datetime:
        """The registry clock (tz-aware UTC): ``clock`` when given, else the server's."""
        if self._clock is not None:
            now = self._clock()
            if now.tzinfo is None:
                raise UsageError("the registry clock must return timezone-aware datetimes")
            return now.astimezone(UTC)
        with self._lock:
            if self._offset is None or \
                    time.monotonic() - self._offset_at > CLOCK_REFRESH_SECONDS:
                before = datetime.now(UTC)
                server = datetime.fromisoformat(self._get("/clock")["now"])
                after = datetime.now(UTC)
                if server.tzinfo is None:
                    server = server.replace(tzinfo=UTC)
                self._offset = server - (before + (after - before) / 2)
                self._offset_at = time.monotonic()
            offset = self._offset
        return datetime.now(UTC) + offset

    # -- projects and artifacts ---------------------------------------------------------------

    def projects(self) -> list[str]:
        """The projects this user may read."""
        return [str(p["name"]) for p in self._get("/projects")]

    def artifacts(self, project: str | None = None) -> list[ArtifactSummary]:
        data = self._get("/artifacts" if project is None
                         else f"/projects/{_q(project)}/artifacts")
        return [ArtifactSummary.model_validate(item) for item in data]

    def resolve(self, project: str, name: str, selector: str = LATEST) -> VersionRecord:
        return self._version(self._get(
            f"/projects/{_q(project)}/artifacts/{_q(name)}/versions/{_q(selector)}"))

    def versions(self, project: str, name: str) -> list[VersionRecord]:
        return self._versions(self._get(f"/projects/{_q(project)}/artifacts/{_q(name)}/versions"))

    def log_version(
        self,
        *,
        project: str,
        name: str,
        type: str,
        manifest: Manifest,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        aliases: Sequence[str] = (),
        run_pk: int | None = None,
        ttl: timedelta | Unset | None = UNSET,
    ) -> tuple[VersionRecord, bool]:
        """Log the next version (one request: the manifest travels in its stored form)."""
        body: dict[str, Any] = {
            "type": type,
            "manifest": base64.b64encode(manifest.to_bytes()).decode("ascii"),
            "description": description,
            "metadata": check_json(metadata or {}, "metadata"),
            "aliases": [a for a in aliases if a != LATEST],
        }
        if run_pk is not None:
            run_project, run_id = self._run_paths.get(run_pk, (None, None))
            if run_project is None:
                self._run_path(run_pk)  # raises: unknown run
            if run_project != project:
                raise UsageError(f"a run of project {run_project!r} cannot log a version of "
                                 f"project {project!r} through the registry server")
            body["run_id"] = run_id
        if not isinstance(ttl, Unset):
            body["ttl_seconds"] = _seconds(ttl)
        data = self._send("POST", f"/projects/{_q(project)}/artifacts/{_q(name)}/versions",
                          body, idempotent=False)
        return self._version(data["version"]), bool(data["created"])

    def set_alias(self, version: VersionRecord, alias: str) -> VersionRecord:
        path = self._version_path(version.id, version.project)
        return self._version(self._send("PUT", f"{path}/aliases/{_q(alias)}", idempotent=True))

    def set_protected(self, version: VersionRecord, protected: bool) -> VersionRecord:
        path = self._version_path(version.id, version.project)
        return self._version(self._send("PUT", f"{path}/protected",
                                        {"protected": bool(protected)}, idempotent=True))

    # -- manifests ----------------------------------------------------------------------------

    @contextmanager
    def _spooled(self, digest: str) -> Iterator[IO[bytes]]:
        """The stored bytes of manifest ``digest`` (from a version this client read), in a
        spooled temporary file at 0; :class:`ManifestReader` parses and checks them."""
        found = self._digests.get(digest)
        if found is None:
            raise UsageError(f"manifest {digest[:12]} belongs to no version read through this "
                             f"registry client ({self.location}); read the version first")
        project, version_id = found
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            headers = self._http.download(f"{self._version_path(version_id, project)}/manifest",
                                          spool)
            sent = headers.get("x-reftrack-digest")
            if sent is not None and sent != digest:
                raise ManifestError(f"the registry server {self.location} sent manifest {sent} "
                                    f"for {digest}")
            if spool.tell() == 0:
                raise ManifestError(f"manifest {digest} is missing from {self.location}")
            spool.seek(0)
            yield spool

    # -- lifecycle ----------------------------------------------------------------------------

    def set_ttl(self, version: VersionRecord, ttl: timedelta | None) -> VersionRecord:
        path = self._version_path(version.id, version.project)
        return self._version(self._send("PUT", f"{path}/ttl", {"ttl_seconds": _seconds(ttl)},
                                        idempotent=True))

    def set_project_ttl(self, project: str, ttl: timedelta | None) -> int:
        """Needs a project admin on the server (it can expire every version)."""
        data = self._send("PUT", f"/projects/{_q(project)}/ttl",
                          {"ttl_seconds": _seconds(ttl)}, idempotent=True)
        return int(data.get("versions_governed") or 0)

    def project_ttl(self, project: str) -> timedelta | None:
        seconds = self._get(f"/projects/{_q(project)}/ttl")["ttl_seconds"]
        return None if seconds is None else timedelta(seconds=int(seconds))

    def delete_version(self, version: VersionRecord, *, delete_aliases: bool = False
                       ) -> VersionRecord:
        path = self._version_path(version.id, version.project)
        return self._version(self._send("DELETE", path, idempotent=False,
                                        delete_aliases="true" if delete_aliases else "false"))

    def restore_version(self, project: str, name: str, index: int) -> VersionRecord:
        return self._version(self._send(
            "POST", f"/projects/{_q(project)}/artifacts/{_q(name)}/versions/v{int(index)}/restore",
            idempotent=False))

    def lease_blobs(self, store: str, sha256s: list[str]) -> None:
        """Keep blobs from gc while the version using them is built (needs a token)."""
        for start in range(0, len(sha256s), LEASES_PER_REQUEST):
            self._send("POST", "/blob-leases",
                       {"store": store, "sha256s": sha256s[start:start + LEASES_PER_REQUEST]},
                       idempotent=True)

    # -- garbage collection (server admins; the blobs are deleted by this client) ------------

    def gc_purge(self, grace: timedelta, *, dry_run: bool = False,
                 lease_window: timedelta | None = None) -> PurgeResult:
        window = grace if lease_window is None else lease_window
        data = self._send("POST", "/gc/purge", {
            "grace_seconds": int(grace.total_seconds()),
            "lease_window_seconds": int(window.total_seconds()), "dry_run": dry_run,
        }, idempotent=dry_run)
        return PurgeResult(
            versions=[(str(v["version"]), str(v["reason"])) for v in data["versions"]],
            kept_protected=[str(name) for name in data["kept_protected"]],
            manifests=int(data["manifests"]), stores=[str(s) for s in data["stores"]])

    def gc_claim_blobs(self, store: str, sha256s: list[str], *, lease_window: timedelta,
                       claim_for: timedelta | None = None,
                       dry_run_grace: timedelta | None = None) -> list[str]:
        found: list[str] = []
        for start in range(0, len(sha256s), LEASES_PER_REQUEST):
            data = self._send("POST", "/gc/claims", {
                "store": store, "sha256s": sha256s[start:start + LEASES_PER_REQUEST],
                "lease_window_seconds": int(lease_window.total_seconds()),
                "claim_seconds": None if claim_for is None else
                max(1, int(claim_for.total_seconds())),
                "dry_run_grace_seconds": None if dry_run_grace is None else
                int(dry_run_grace.total_seconds()),
            }, idempotent=True)  # claiming again only renews the claim
            found += [str(sha) for sha in data["sha256s"]]
        return found

    def gc_release_blobs(self, store: str, sha256s: list[str]) -> None:
        for start in range(0, len(sha256s), LEASES_PER_REQUEST):
            self._send("POST", "/gc/release",
                       {"store": store, "sha256s": sha256s[start:start + LEASES_PER_REQUEST]},
                       idempotent=True)

    # -- runs ---------------------------------------------------------------------------------

    def create_run(
        self,
        *,
        project: str,
        run_id: str | None = None,
        name: str | None = None,
        job_type: str | None = None,
        config: dict[str, Any] | None = None,
        group: str | None = None,
        sweep: str | None = None,
        resume: str = "never",
        git_commit: str | None = None,
        git_remote: str | None = None,
        program: str | None = None,
        notes: str | None = None,
    ) -> tuple[RunRecord, bool]:
        """Start or resume a run; the server records the token's user and this host."""
        import socket

        if resume not in ("never", "allow", "must"):
            raise UsageError(f"resume must be 'allow', 'must' or 'never', not {resume!r}")
        if resume == "must" and run_id is None:
            raise UsageError("resume='must' needs the id of the run to resume (id=...)")
        body = {"run_id": run_id, "name": name, "job_type": job_type,
                "config": check_json(config or {}, "config"), "group": group, "sweep": sweep,
                "resume": resume, "git_commit": git_commit, "git_remote": git_remote,
                "program": program, "notes": notes, "host": socket.gethostname()[:256] or None}
        data = self._send("POST", f"/projects/{_q(project)}/runs", body, idempotent=False)
        return self._run(data["run"]), bool(data["resumed"])

    def run(self, project: str, run_id: str) -> RunRecord:
        return self._run(self._get(f"/projects/{_q(project)}/runs/{_q(run_id)}"))

    def runs(self, project: str, filters: Mapping[str, Any] | None = None,
             order: str | None = None) -> list[RunRecord]:
        """Every run of ``project``, oldest first; with ``filters``/``order`` (as
        ``Api().runs`` takes them), only the matching runs, in that order, chosen by the
        server (one request, only the matches travel)."""
        params: dict[str, str] = {}
        if filters:
            try:
                params["filters"] = json.dumps(filters, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise UsageError(f"run filters must be JSON values to go to the registry "
                                 f"server ({exc})") from None
        if order is not None:
            params["order"] = order
        return self._runs(self._get(f"/projects/{_q(project)}/runs", **params))

    def update_summary(self, run_pk: int, values: dict[str, Any]) -> RunRecord:
        return self._run(self._send("PATCH", f"{self._run_path(run_pk)}/summary",
                                    {"values": values}, idempotent=True))

    def log_history(self, run_pk: int, data: dict[str, Any], step: int | None) -> RunRecord:
        return self._run(self._send("POST", f"{self._run_path(run_pk)}/history",
                                    {"data": data, "step": step}, idempotent=False))

    def history(self, run_pk: int) -> list[dict[str, Any]]:
        return list(self._get(f"{self._run_path(run_pk)}/history"))

    def finish_run(self, run_pk: int, state: str) -> RunRecord:
        return self._run(self._send("POST", f"{self._run_path(run_pk)}/finish",
                                    {"state": state}, idempotent=False))

    def record_use(self, run_pk: int, version: VersionRecord) -> None:
        self._send("POST", f"{self._run_path(run_pk)}/inputs",
                   {"project": version.project, "version_id": version.id}, idempotent=True)

    def run_inputs(self, run_pk: int) -> list[VersionRecord]:
        return self._versions(self._get(f"{self._run_path(run_pk)}/inputs"))

    def run_outputs(self, run_pk: int) -> list[VersionRecord]:
        return self._versions(self._get(f"{self._run_path(run_pk)}/outputs"))

    def version_users(self, version_id: int) -> list[RunRecord]:
        """The runs that used the version (those of projects this user may not read are
        left out by the server)."""
        return self._runs(self._get(f"{self._version_path(version_id)}/users"))

    # -- verification results -----------------------------------------------------------------

    def record_results(self, version_id: int, results: Iterable[StoredResult]) -> int:
        """Needs write access to the version's project (:class:`~reftrack.errors.Forbidden`
        for a reader)."""
        path = f"{self._version_path(version_id)}/verification/results"
        stored = 0
        batch: list[dict[str, Any]] = []

        def flush() -> int:
            data = self._send("POST", path, {"results": batch}, idempotent=True)
            return int(data["stored"])

        for r in results:
            batch.append({"path": r.path, "status": r.status, "detail": r.detail,
                          "checked_at": _iso(r.checked_at), "deep": r.deep, "data": r.data})
            if len(batch) >= RESULTS_PER_REQUEST:
                stored += flush()
                batch = []
        if batch:
            stored += flush()
        return stored

    def results(self, version_id: int, *, since: datetime | None = None,
                deep: bool = False, reusable: bool = False,
                paths: Iterable[str] | None = None) -> dict[str, StoredResult]:
        path = f"{self._version_path(version_id)}/verification/results/search"
        query: dict[str, Any] = {"since": _iso(since) if since is not None else None,
                                 "deep": deep, "reusable": reusable}
        asked: list[list[str] | None] = [None]
        if paths is not None:
            every = list(paths)
            asked = [every[i:i + PATHS_PER_REQUEST]
                     for i in range(0, len(every), PATHS_PER_REQUEST)]
        found: dict[str, StoredResult] = {}
        for chunk in asked:
            for item in self._send("POST", path, {**query, "paths": chunk}, idempotent=True):
                found[item["path"]] = StoredResult(
                    path=item["path"], status=item["status"], detail=item["detail"],
                    checked_at=datetime.fromisoformat(item["checked_at"]),
                    deep=bool(item["deep"]), data=dict(item.get("data") or {}))
        return found

    @staticmethod
    def _mark(data: Any) -> VerificationRun | None:
        if data is None:
            return None
        finished = data.get("finished_at")
        return VerificationRun(
            version_id=int(data["version_id"]),
            started_at=datetime.fromisoformat(data["started_at"]),
            finished_at=datetime.fromisoformat(finished) if finished else None,
            deep=bool(data["deep"]), sample=data.get("sample"), seed=data.get("seed"),
            entries=int(data["entries"]))

    def last_verification(self, version_id: int) -> VerificationRun | None:
        return self._mark(self._get(f"{self._version_path(version_id)}/verification/last"))

    def interrupted_verification(self, version_id: int, *, within: timedelta = RESUME_WITHIN
                                 ) -> VerificationRun | None:
        seconds = max(1, int(within.total_seconds()))
        return self._mark(self._get(f"{self._version_path(version_id)}/verification/interrupted",
                                    within_seconds=seconds))

    def start_verification(self, version_id: int, *, deep: bool, sample: float | None,
                           seed: int | None, entries: int,
                           started_at: datetime | None = None) -> VerificationRun:
        """Needs write access (:class:`~reftrack.errors.Forbidden` for a reader)."""
        body = {"deep": deep, "sample": sample, "seed": seed, "entries": entries,
                "started_at": _iso(started_at) if started_at is not None else None}
        mark = self._mark(self._send("POST",
                                     f"{self._version_path(version_id)}/verification/start",
                                     body, idempotent=True))
        if mark is None:  # pragma: no cover - the server always answers the mark
            raise UsageError("the registry server started no verification")
        return mark

    def finish_verification(self, run: VerificationRun) -> None:
        self._send("POST", f"{self._version_path(run.version_id)}/verification/finish",
                   {"started_at": _iso(run.started_at)}, idempotent=True)

    # -- projects: creation, visibility, members, audit (as the token's user) ---------------

    def whoami(self) -> str | None:
        """The name of the token's user (None: anonymous, no token)."""
        user = self._get("/whoami").get("user")
        return None if user is None else str(user)

    def create_project(self, name: str, visibility: Visibility = "private") -> ProjectView:
        """Create ``name``; the token's user becomes its admin. Needs a token
        (:class:`~reftrack.errors.AccessDenied`); a taken name is a :class:`UsageError`,
        whether or not the caller may see that project."""
        body = {"name": check_name(name, "project name"),
                "visibility": check_visibility(visibility)}
        return ProjectView.model_validate(self._send("POST", "/projects", body,
                                                     idempotent=False))

    def project_views(self) -> list[ProjectView]:
        """The projects the caller may read, with their visibility and the caller's role."""
        return [ProjectView.model_validate(item) for item in self._get("/projects")]

    def project(self, name: str) -> ProjectView | None:
        """The project, or None when it does not exist *or* the caller may not read it."""
        try:
            return ProjectView.model_validate(
                self._get(f"/projects/{_q(check_name(name, 'project name'))}"))
        except NotFound:
            return None

    def set_visibility(self, project: str, visibility: Visibility) -> ProjectView:
        """Change the visibility (project admins, server admins; audited)."""
        path = f"/projects/{_q(check_name(project, 'project name'))}/visibility"
        return ProjectView.model_validate(self._send(
            "PUT", path, {"visibility": check_visibility(visibility)}, idempotent=True))

    def members(self, project: str) -> list[MemberRecord]:
        """The members and their roles (shown to members, and server admins)."""
        data = self._get(f"/projects/{_q(check_name(project, 'project name'))}/members")
        return [MemberRecord.model_validate(item) for item in data]

    def set_member(self, project: str, user: str, role: Role) -> MemberRecord:
        """Add ``user`` with ``role``, or change their role (project admins, server admins;
        audited)."""
        path = (f"/projects/{_q(check_name(project, 'project name'))}/members/"
                f"{_q(check_name(user, 'user name'))}")
        return MemberRecord.model_validate(self._send("PUT", path, {"role": check_role(role)},
                                                      idempotent=True))

    def remove_member(self, project: str, user: str) -> Role:
        """Remove ``user`` (project admins, server admins; audited; the last admin stays) and
        return the role they had."""
        path = (f"/projects/{_q(check_name(project, 'project name'))}/members/"
                f"{_q(check_name(user, 'user name'))}")
        # Not repeated (like every delete): a repeat of a removal that was made would say
        # "not a member".
        return check_role(self._send("DELETE", path, idempotent=False)["removed_role"])

    def audit(self, project: str) -> list[AuditRecord]:
        """Who created the project and changed its visibility and members, oldest first
        (project admins, server admins)."""
        data = self._get(f"/projects/{_q(check_name(project, 'project name'))}/audit")
        return [AuditRecord.model_validate(item) for item in data]


AnyRegistry: TypeAlias = Registry | RemoteRegistry
"""A local registry (SQLite, PostgreSQL) or one behind a registry server."""


def open_registry(location: str, *, token: str | None = None,
                  clock: Callable[[], datetime] | None = None) -> AnyRegistry:
    """The registry at ``location``: a :class:`RemoteRegistry` for an ``http(s)://`` server
    URL, else a :class:`~reftrack.registry.Registry` (a path or an SQLAlchemy URL)."""
    if is_server_url(location):
        return RemoteRegistry(location, token, clock=clock)
    return Registry(location, clock=clock)
