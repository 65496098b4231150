"""Registry tables (SQLAlchemy Core). Only ``registry/`` writes SQL."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

SCHEMA_VERSION = 1

metadata = MetaData()

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
    Column("name", String(128), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("type", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
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
    Column("id", String(64), nullable=False),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("name", String(256)),
    Column("job_type", String(128)),
    Column("config", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("host", String(256)),
    Column("user", String(256)),
    UniqueConstraint("project_id", "id", name="uq_run_id"),
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
    UniqueConstraint("artifact_id", "idx", name="uq_version_index"),
    UniqueConstraint("artifact_id", "manifest_digest", name="uq_version_digest"),
)

aliases = Table(
    "aliases",
    metadata,
    Column("artifact_id", Integer, ForeignKey("artifacts.id"), primary_key=True),
    Column("alias", String(128), primary_key=True),
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
