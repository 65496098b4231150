"""Registry tables (SQLAlchemy Core). Only ``registry/`` writes SQL."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

SCHEMA_VERSION = 5
"""1: the S3 release. 2: runs gain group, sweep, summary, git commit/remote and program, and
per-step metrics live in ``run_history``. 3: versions gain ttl, soft deletion and protection,
projects a default ttl, and ``blob_leases`` protects blobs of versions being logged from GC.
4: ``verify_results`` keeps the latest verification result of every entry of a version, and
``verify_runs`` the last verification of each version (to resume an interrupted one).
5: ``blob_claims`` holds the managed blobs a ``gc`` is deleting, which nothing may lease
meanwhile (a reftrack that predates it would not respect the claims, so it must not open a
registry that has them), and ``blob_stores`` every blob store gc has seen (it keeps looking
there once no manifest names it); team mode's tokens gain an expiry and users can be
disabled.
An older registry is upgraded in place when opened (columns added, new tables created,
nothing rewritten)."""

metadata = MetaData()


def _name(length: int = 128) -> String:
    """A name column (project, artifact, alias): compared and sorted by code point on both
    databases, SQLite's BINARY and PostgreSQL's "C" collation, whatever the locale the
    PostgreSQL database was created with (``ls`` lists in the same order on both)."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


meta = Table(
    "reftrack_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

projects = Table(
    "projects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", _name(), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("default_ttl_seconds", BigInteger),  # schema 3
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("name", _name(), nullable=False),
    Column("type", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # schema 3: the highest version index ever given, so that numbers purged by gc are
    # never given again (None in older registries: the highest remaining index is used)
    Column("last_index", Integer),
    UniqueConstraint("project_id", "name", name="uq_artifact_name"),
)

manifests = Table(
    "manifests",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("schema_version", Integer, nullable=False),
    Column("entry_count", BigInteger, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("stored_bytes", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# The gzip JSON Lines of a manifest, split in chunks so that neither writing nor reading
# needs the whole manifest as one value.
manifest_chunks = Table(
    "manifest_chunks",
    metadata,
    Column("digest", String(64), ForeignKey("manifests.digest"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("id", String(128), nullable=False),  # run ids are names (1-128 characters)
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("name", Text),  # free text
    Column("job_type", String(128)),
    Column("config", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("host", String(256)),
    Column("user", String(256)),
    # schema 2 (added to version-1 registries by Registry._migrate):
    Column("group_name", String(128)),
    Column("sweep", String(128)),
    Column("summary", JSON),
    Column("git_commit", String(64)),
    Column("git_remote", Text),
    Column("program", Text),
    Column("notes", Text),
    UniqueConstraint("project_id", "id", name="uq_run_id"),
)

# Columns added after schema 1, by table: what an older registry gets on upgrade.
ADDED_COLUMNS = {
    "runs": ("group_name", "sweep", "summary", "git_commit", "git_remote", "program", "notes"),
    "versions": ("ttl_seconds", "ttl_set", "expires_at", "deleted_at", "protected"),
    "projects": ("default_ttl_seconds",),
    "artifacts": ("last_index",),
    "users": ("disabled_at",),
    "api_tokens": ("expires_at",),
}

# ``run.log({...})``: one row per step; the run's summary keeps the last value per key.
run_history = Table(
    "run_history",
    metadata,
    Column("run_pk", Integer, ForeignKey("runs.pk"), primary_key=True),
    Column("step", Integer, primary_key=True),
    Column("data", JSON, nullable=False),
    Column("logged_at", DateTime(timezone=True), nullable=False),
)

versions = Table(
    "versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("artifact_id", Integer, ForeignKey("artifacts.id"), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("manifest_digest", String(64), ForeignKey("manifests.digest"), nullable=False),
    Column("description", Text),
    Column("metadata", JSON, nullable=False),
    Column("run_pk", Integer, ForeignKey("runs.pk")),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # schema 3: None = no ttl of its own (the project's default applies)
    Column("ttl_seconds", BigInteger),
    Column("ttl_set", Boolean),  # True when ttl_seconds was set explicitly (None = "never")
    Column("expires_at", DateTime(timezone=True)),  # created_at + the ttl in force, or None
    Column("deleted_at", DateTime(timezone=True)),  # soft deletion, restorable for a grace
    Column("protected", Boolean),  # an Object Lock legal hold is on every pinned object
    UniqueConstraint("artifact_id", "idx", name="uq_version_index"),
    UniqueConstraint("artifact_id", "manifest_digest", name="uq_version_digest"),
)

aliases = Table(
    "aliases",
    metadata,
    Column("artifact_id", Integer, ForeignKey("artifacts.id"), primary_key=True),
    Column("alias", _name(), primary_key=True),
    Column("version_id", Integer, ForeignKey("versions.id"), nullable=False),
)

# Input edges of the lineage graph: a run used a version. (Output edges are versions.run_pk.)
run_inputs = Table(
    "run_inputs",
    metadata,
    Column("run_pk", Integer, ForeignKey("runs.pk"), primary_key=True),
    Column("version_id", Integer, ForeignKey("versions.id"), primary_key=True),
    Column("used_at", DateTime(timezone=True), nullable=False),
)

# A blob that ``add_file`` stored or found, for a version not committed yet: GC keeps leased
# blobs (see lifecycle.py) so that a concurrent ``gc`` never deletes what a log is about to use.
blob_leases = Table(
    "blob_leases",
    metadata,
    Column("store", String(1024), primary_key=True),
    Column("sha256", String(64), primary_key=True),
    Column("leased_at", DateTime(timezone=True), nullable=False),
)

# Blobs a ``gc`` found unreferenced and is deleting (schema 5): ``lease_blobs`` refuses them
# until the gc releases its claim or the claim expires (``expires_at``), so that a log never
# reuses a blob that is about to disappear. Over a registry server the gc client deletes the
# blobs itself (with its own credentials), after the server's transaction ended.
blob_claims = Table(
    "blob_claims",
    metadata,
    Column("store", String(1024), primary_key=True),
    Column("sha256", String(64), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

# Every blob store a gc found named by a manifest or a lease (schema 5): gc keeps listing it
# after the last manifest naming it was purged, so that blobs a gc could not delete then
# (an error, a claim that ran out) are deleted by the next one.
blob_stores = Table(
    "blob_stores",
    metadata,
    Column("store", String(1024), primary_key=True),
)

# Which content-addressed blobs (managed files) a stored manifest references: what ``gc`` must
# keep. Filled when the manifest is stored; ``store`` is the blob store's root URI.
manifest_blobs = Table(
    "manifest_blobs",
    metadata,
    Column("digest", String(64), ForeignKey("manifests.digest"), primary_key=True),
    Column("store", String(1024), primary_key=True),
    Column("sha256", String(64), primary_key=True),
)

# The latest verification result of each entry of a version (``reftrack verify --since``,
# resuming an interrupted verification). ``data`` holds the rest of the result (the URI,
# the recorded and current version id, ETag and size) as JSON. Purged with the version.
verify_results = Table(
    "verify_results",
    metadata,
    Column("version_id", Integer, ForeignKey("versions.id"), primary_key=True),
    Column("path", Text, primary_key=True),
    Column("status", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Column("checked_at", DateTime(timezone=True), nullable=False),
    Column("deep", Boolean, nullable=False),
    Column("data", JSON, nullable=False),
)

# The last verification started on each version: ``finished_at`` stays empty when it was
# interrupted (Ctrl-C, a crash), so that the next one can resume it.
verify_runs = Table(
    "verify_runs",
    metadata,
    Column("version_id", Integer, ForeignKey("versions.id"), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("deep", Boolean, nullable=False),
    Column("sample", Float),
    Column("seed", BigInteger),
    Column("entries", BigInteger, nullable=False),
)
from . import team_schema  # noqa: E402, F401
