"""reftrack: track large datasets in place in cloud buckets.

An artifact version is a manifest of references (URI, version id, ETag, size) to objects
that stay where they are. Verify them later, download exactly the bytes they pinned, and
follow the runs that produced and used them::

    import reftrack

    with reftrack.init(project="demo", job_type="ingest") as run:
        art = reftrack.Artifact("images", type="dataset")
        art.add_reference("s3://my-bucket/images/")
        run.log_artifact(art, aliases=["raw"])

    art = reftrack.Api().artifact("demo/images:latest")
    report = art.verify()
    art.download("./images")
"""

from importlib import metadata as _metadata

from .api import Api
from .artifact import Artifact, DownloadPath
from .bucketrules import BucketWarning
from .errors import (
    AccessDenied,
    BackendError,
    BucketAccessDenied,
    BucketNotFound,
    DownloadFailed,
    IntegrityError,
    InvalidURIError,
    ManifestError,
    MissingBackend,
    NotFound,
    ObjectNotFound,
    ReftrackError,
    UsageError,
)
from .lifecycle import GCReport
from .lineage import LineageGraph, PinnedReference, SourceVersion
from .manifest import EntryChange, Manifest, ManifestDiff, ManifestEntry
from .protection import ProtectionFailed, ProtectReport
from .run import Run, Summary, current_run, finish, init, log, log_artifact, use_artifact
from .settings import Settings
from .transfer import DownloadReport
from .verify import EntryResult, Status, VerifyReport

# ``reftrack.run`` is the current run (None outside ``init()``), as ``wandb.run`` is; the
# module of the same name stays importable with ``from reftrack.run import ...``.
del globals()["run"]


def __getattr__(name: str) -> object:
    if name == "run":
        return current_run()
    raise AttributeError(f"module 'reftrack' has no attribute {name!r}")


try:
    __version__ = _metadata.version("reftrack")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "AccessDenied",
    "Api",
    "Artifact",
    "BackendError",
    "BucketAccessDenied",
    "BucketNotFound",
    "BucketWarning",
    "DownloadFailed",
    "DownloadPath",
    "DownloadReport",
    "EntryChange",
    "EntryResult",
    "GCReport",
    "IntegrityError",
    "InvalidURIError",
    "LineageGraph",
    "Manifest",
    "ManifestDiff",
    "ManifestEntry",
    "ManifestError",
    "MissingBackend",
    "NotFound",
    "ObjectNotFound",
    "PinnedReference",
    "ProtectReport",
    "ProtectionFailed",
    "ReftrackError",
    "Run",
    "Settings",
    "SourceVersion",
    "Status",
    "Summary",
    "UsageError",
    "VerifyReport",
    "__version__",
    "current_run",
    "finish",
    "init",
    "log",
    "log_artifact",
    "use_artifact",
]
