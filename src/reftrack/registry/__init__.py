"""The metadata store (SQLAlchemy Core): SQLite by default, PostgreSQL by URL."""

from .names import ArtifactPath, check_alias, check_json, check_name, parse_artifact_path
from .records import ArtifactSummary, RunRecord, VersionRecord
from .store import Registry

__all__ = [
    "ArtifactPath",
    "ArtifactSummary",
    "Registry",
    "RunRecord",
    "VersionRecord",
    "check_alias",
    "check_json",
    "check_name",
    "parse_artifact_path",
]
