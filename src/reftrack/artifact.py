"""Artifact: a named, typed collection of references; once logged, one immutable version."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .backends import ObjectStat
from .blobs import BlobStore, absolute_local_path
from .context import Context
from .errors import NotFound, ObjectNotFound, UsageError
from .manifest import EntryList, Manifest, ManifestEntry, ManifestSource
from .progress import NullProgress, Progress
from .references import hash_rows, reference_object, reference_prefix
from .registry import VersionRecord, check_json, check_name
from .registry.store import UNSET, Unset
from .settings import Settings
from .transfer import DownloadReport, download_manifest
from .uri import check_entry_path, parse_uri
from .verify import VerifyReport, check_sample, verify_manifest
from .verify_logged import verify_logged

if TYPE_CHECKING:
    from .lineage import Direction, LineageGraph, SourceVersion
    from .protection import ProtectReport
    from .run import Run

__all__ = ["Artifact", "DownloadPath"]



class DownloadPath(str):
    """The directory an artifact was downloaded to (a ``str``, as in W&B), with the
    per-file ``report`` attached."""

    report: DownloadReport

    def __new__(cls, path: str, report: DownloadReport) -> DownloadPath:
        made = super().__new__(cls, path)
        made.report = report
        return made


class Artifact:
    """A collection of references to objects in buckets.

    Build one, add references, log it from a run::

        art = reftrack.Artifact("images", type="dataset")
        art.add_reference("s3://bucket/images/")
        run.log_artifact(art, aliases=["raw"])

    A logged artifact (from ``run.log_artifact``, ``run.use_artifact`` or
    ``Api().artifact("project/name:v0")``) is immutable: ``manifest``, ``version``,
    ``aliases``, ``download()``, ``verify()``.
    """

    def __init__(
        self,
        name: str,
        type: str,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        settings: Settings | None = None,
    ) -> None:
        self._name = check_name(name, "artifact name")
        self._type = check_name(type, "artifact type")
        if description is not None and not isinstance(description, str):
            raise UsageError(f"description must be a string, not {type(description).__name__}")
        self._description = description
        if metadata is not None and not isinstance(metadata, dict):
            raise UsageError(f"metadata must be a dict, not {metadata.__class__.__name__}")
        self._metadata: dict[str, Any] = check_json(metadata or {}, "metadata")
        self._ctx = Context(settings)
        self._manifest: Manifest | None = Manifest()
        self._record: VersionRecord | None = None
        self._ttl: timedelta | Unset | None = UNSET
        self.new_version: bool | None = None
        """After logging: True when a new version was created, False when an identical
        version already existed and was returned."""

    @classmethod
    def _from_record(
        cls, ctx: Context, record: VersionRecord, manifest: Manifest | None = None
    ) -> Artifact:
        art = cls.__new__(cls)
        art._name = record.name
        art._type = record.type
        art._description = record.description
        art._metadata = dict(record.metadata)
        art._ctx = ctx
        art._manifest = manifest
        art._record = record
        art._ttl = UNSET
        art.new_version = None
        return art

    def _bind(self, ctx: Context, record: VersionRecord, created: bool) -> None:
        """Become the logged version ``record``."""
        self._ctx = ctx
        self._record = record
        self._description = record.description
        self._metadata = dict(record.metadata)
        self.new_version = created
        if not created:
            self._manifest = None  # the existing version's manifest (same digest) is loaded

    # -- identity -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """``name:vN`` once logged (as in W&B), the plain name before."""
        return f"{self._name}:{self.version}" if self._record else self._name

    @property
    def base_name(self) -> str:
        """The artifact's name without a version."""
        return self._name

    @property
    def type(self) -> str:
        return self._type

    @property
    def description(self) -> str | None:
        return self._description

    @description.setter
    def description(self, value: str | None) -> None:
        self._require_unlogged("change the description of")
        self._description = value

    @property
    def metadata(self) -> dict[str, Any]:
        """A dict; editable before logging, a copy afterwards."""
        return self._metadata if self._record is None else dict(self._metadata)

    @metadata.setter
    def metadata(self, value: dict[str, Any]) -> None:
        self._require_unlogged("change the metadata of")
        if not isinstance(value, dict):
            raise UsageError(f"metadata must be a dict, not {type(value).__name__}")
        self._metadata = check_json(value, "metadata")

    @property
    def ttl(self) -> timedelta | None:
        """How long the version lives after it was logged (None: forever). Set it before or
        after logging (``artifact.ttl = timedelta(days=30)``; ``None`` to keep it forever,
        whatever the project default); unset, the project's default ttl applies."""
        if self._record is not None:
            return self._record.ttl
        return None if isinstance(self._ttl, Unset) else self._ttl

    @ttl.setter
    def ttl(self, value: timedelta | None) -> None:
        if value is not None and (not isinstance(value, timedelta)
                                  or value < timedelta(seconds=1)):
            raise UsageError(f"ttl must be a timedelta of at least one second or None, "
                             f"not {value!r}")
        if self._record is None:
            self._ttl = value
        else:
            self._record = self._ctx.registry.set_ttl(self._record, value)

    @property
    def expires_at(self) -> datetime | None:
        """When a logged version expires (None: never)."""
        return self._record.expires_at if self._record else None

    @property
    def protected(self) -> bool:
        """True while an Object Lock legal hold protects every pinned object."""
        return bool(self._record and self._record.protected)

    def delete(self, delete_aliases: bool = False) -> None:
        """Soft-delete this version: it disappears from queries at once, can be restored
        (``Api().restore(...)``, ``reftrack restore``) until ``gc`` purges it after the grace
        period. Refused while user aliases point at it unless ``delete_aliases=True``;
        ``latest`` moves to the newest remaining version. Referenced bucket objects are never
        touched."""
        if not isinstance(delete_aliases, bool):
            raise UsageError(f"delete_aliases must be True or False, not {delete_aliases!r}")
        self._record = self._ctx.registry.delete_version(self._logged(),
                                                         delete_aliases=delete_aliases)

    @property
    def is_logged(self) -> bool:
        return self._record is not None

    def _logged(self) -> VersionRecord:
        if self._record is None:
            raise UsageError(
                f"artifact {self._name!r} is not logged yet; log it with run.log_artifact(...)"
            )
        return self._record

    @property
    def version(self) -> str:
        return self._logged().version

    @property
    def project(self) -> str:
        return self._logged().project

    @property
    def qualified_name(self) -> str:
        """``project/name:vN``."""
        return self._logged().qualified_name

    @property
    def aliases(self) -> list[str]:
        return list(self._record.aliases) if self._record else []

    @property
    def created_at(self) -> datetime:
        return self._logged().created_at

    @property
    def digest(self) -> str:
        """The manifest digest (SHA-256 of the canonical entries)."""
        return self._record.digest if self._record else self.manifest.digest

    @property
    def size(self) -> int:
        return self._record.size if self._record else self.manifest.size

    @property
    def file_count(self) -> int:
        return self._record.entry_count if self._record else len(self.manifest)

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            self._manifest = self._ctx.registry.load_manifest(self._logged().digest)
        return self._manifest

    def get_entry(self, path: str) -> ManifestEntry:
        try:
            return self.manifest.entries[path]
        except KeyError:
            raise NotFound(f"{self._label()} has no entry {path!r}") from None

    def _label(self) -> str:
        return self._record.qualified_name if self._record else self._name

    def __repr__(self) -> str:
        return f"<Artifact {self._label()} ({self._type}, {self.file_count} entries)>"

    def _require_unlogged(self, action: str) -> None:
        if self._record is not None:
            raise UsageError(
                f"cannot {action} {self._record.qualified_name}: a logged version is immutable; "
                "build a new Artifact with the same name to log the next version"
            )

    # -- references ---------------------------------------------------------------------------

    def add_reference(
        self,
        uri: str,
        name: str | None = None,
        checksum: bool = True,
        max_objects: int | None = None,
        *,
        server_checksums: bool = False,
        progress: Progress | None = None,
    ) -> EntryList:
        """Reference an object or every object under a prefix, without copying anything.

        - ``s3://b/key`` or ``s3://b/key?versionId=...``: that object, that exact version;
          ``gs://b/key`` or ``gs://b/key#generation`` likewise for GCS;
        - ``s3://b/prefix/`` (or ``s3://b/prefix`` when no such object exists): every current
          object under ``prefix/``, from a bulk listing (one request per 1000 versions);
          ``gs://`` prefixes likewise;
        - a local file or directory (``/abs``, ``./rel``, ``file:///abs``): size, mtime and
          sha256 of every file (a directory is walked; symlinks must stay inside it);
        - ``https://host/path``: ETag, Last-Modified, size (HEAD) and sha256 (one GET);
        - ``checksum=False`` records the URIs only (no version id, ETag, size or hash);
        - the store's own checksums are recorded when it reports them: GCS md5/crc32c, and the
          S3 checksums (sha256, crc32, crc64nvme...) of a single object (its HEAD asks for them);
          ``server_checksums=True`` fetches them for an S3 prefix too, at one HEAD per object
          (listings name the algorithm, not the value); ``verify(deep=True)`` then compares
          them with the server's without reading the bytes;
        - more than ``max_objects`` objects is an error, never a silent truncation.

        Returns the entries added (a sequence of :class:`ManifestEntry`).
        """
        self._require_unlogged("add references to")
        if not isinstance(checksum, bool):
            raise UsageError(f"checksum must be True or False, not {checksum!r}")
        if not isinstance(server_checksums, bool):
            raise UsageError(f"server_checksums must be True or False, not {server_checksums!r}")
        if server_checksums and not checksum:
            raise UsageError("server_checksums=True needs checksum=True: with checksum=False "
                             "only the URIs are recorded")
        limit = self._ctx.settings.max_objects if max_objects is None else max_objects
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise UsageError(f"max_objects must be a whole number of at least 1, not {limit!r}")
        if name is not None:
            check_entry_path(name, what="name")
        ref = parse_uri(uri)
        backend = self._ctx.backends.for_uri(ref)
        progress = progress or NullProgress()

        stat: ObjectStat | None = None
        hint = ""
        if ref.version_id is not None:
            try:
                stat = backend.stat(ref)
            except ObjectNotFound as exc:
                raise ObjectNotFound(
                    f"cannot reference {ref}: {exc}", str(ref), delete_marker=exc.delete_marker
                ) from exc
        elif not ref.is_dir_like:
            try:
                stat = backend.stat(ref)
            except ObjectNotFound as exc:
                if not backend.can_scan:
                    raise ObjectNotFound(f"cannot reference {ref}: {exc}", str(ref)) from exc
                if exc.delete_marker:
                    hint = f" ({ref} itself is deleted: its current version is a delete marker)"
        if stat is not None:
            rows, source = reference_object(backend, stat, name, checksum)
        else:
            prefix = ref if ref.is_dir_like else ref.child(ref.key + "/")
            rows, source = reference_prefix(
                backend, prefix, name, checksum, limit, progress, original=ref, hint=hint,
                server_checksums=server_checksums,
            )
        if checksum and backend.hashes_content:
            rows = hash_rows(backend, rows, progress, self._ctx.settings.concurrency)
        self.manifest.add_rows(rows)
        self.manifest.sources.append(source)
        return EntryList(rows)

    # -- managed files ------------------------------------------------------------------------

    def add_file(
        self,
        local_path: str | os.PathLike[str],
        name: str | None = None,
        *,
        progress: Progress | None = None,
    ) -> ManifestEntry:
        """Copy a local file into the blob store and add it as ``name`` (default: its file
        name). Unlike :meth:`add_reference`, the bytes are kept: ``download()`` works after
        the original is changed or deleted.

        Files are stored once per content (by SHA-256), in ``Settings.blob_store`` /
        ``REFTRACK_BLOB_STORE`` or else the ``blobs/`` directory next to the registry; a file
        the store already holds is not stored again. Returns the entry added.
        """
        self._require_unlogged("add files to")
        path = absolute_local_path(local_path, "add_file")
        if os.path.isdir(path):
            raise UsageError(f"{path} is a directory; use add_dir({str(local_path)!r}) for "
                             "directories")
        if not os.path.lexists(path):
            raise ObjectNotFound(f"cannot add {path}: no such file", f"file://{path}")
        entry_path = check_entry_path(name, what="name") if name is not None else \
            check_entry_path(os.path.basename(path), what=f"the file name of {path}")
        store = BlobStore.from_settings(self._ctx.settings, self._ctx.backends,
                                       lease=self._lease_blobs)
        blob = store.put_many([path], progress)[0]
        entry = blob.entry(entry_path)
        self.manifest.add_all([entry])
        self.manifest.sources.append(ManifestSource(
            uri=parse_uri(path).base, kind="managed", name=name, entries=1, listed=1,
            versioning=store.versioning(),
        ))
        return entry

    def add_dir(
        self,
        local_path: str | os.PathLike[str],
        name: str | None = None,
        *,
        progress: Progress | None = None,
    ) -> list[ManifestEntry]:
        """Copy every file under a local directory into the blob store (see
        :meth:`add_file`); entry paths are relative to the directory, under ``name/`` when
        given. Symlinks follow the rule of local references: only inside the directory.
        Returns the entries added."""
        self._require_unlogged("add files to")
        path = absolute_local_path(local_path, "add_dir")
        if os.path.isfile(path):
            raise UsageError(f"{path} is a file; use add_file({str(local_path)!r}) for files")
        if name is not None:
            check_entry_path(name, what="name")
        root = parse_uri(path)
        files = list(self._ctx.backends.for_scheme("file").scan(root))
        if not files:
            raise ObjectNotFound(f"cannot add {path}: the directory holds no files", root.base)
        paths = []
        for stat in files:
            rel = stat.key[len(root.key.rstrip("/")) + 1:]
            paths.append(check_entry_path(f"{name}/{rel}" if name else rel,
                                          what=f"{stat.key!r} gives entry path"))
        store = BlobStore.from_settings(self._ctx.settings, self._ctx.backends,
                                       lease=self._lease_blobs)
        blobs = store.put_many([stat.key for stat in files], progress)
        entries = [blob.entry(entry_path) for blob, entry_path in zip(blobs, paths, strict=True)]
        self.manifest.add_all(entries)
        self.manifest.sources.append(ManifestSource(
            uri=root.base.rstrip("/") + "/", kind="managed", name=name, entries=len(entries),
            listed=len(files), versioning=store.versioning(),
        ))
        return entries

    # -- using a logged version -------------------------------------------------------------

    def download(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        concurrency: int | None = None,
        progress: Progress | None = None,
    ) -> DownloadPath:
        """Fetch every entry's pinned version into ``root`` (default
        ``./artifacts/<name>:<version>``) and return the directory.

        Each file is checked (version, ETag, size; MD5 for single-part ETags) and renamed into
        place only when correct; files already present and correct are skipped. Raises
        :class:`~reftrack.errors.DownloadFailed` naming the entries that could not be fetched.
        """
        if root is None:
            root = os.path.join("artifacts", self.name)
        report = download_manifest(
            self.manifest,
            root,
            self._ctx.backends,
            concurrency=concurrency or self._ctx.settings.concurrency,
            progress=progress,
            label=self._label(),
        )
        return DownloadPath(report.root, report)

    def verify(
        self,
        *,
        deep: bool = False,
        concurrency: int | None = None,
        progress: Progress | None = None,
        since: timedelta | None = None,
        sample: float | None = None,
        seed: int | None = None,
        resume: bool = True,
    ) -> VerifyReport:
        """Re-check every reference against its store; see :class:`VerifyReport`.

        ``deep=True`` also checks content against the recorded checksums (S3 checksums are
        asked of the server without reading bytes; other entries' pinned bytes are streamed
        and hashed, one GET each). Without it, local files are re-hashed only
        when their size or mtime changed, HTTP resources only when their ETag/Last-Modified
        changed, and bucket objects are judged by their metadata.

        A logged version keeps each entry's latest result in the registry, with the time it
        was checked, stored in batches as the verification goes. ``since`` (a timedelta):
        entries checked less than ``since`` ago are not checked again, their stored result is
        reused (``entry.reused``; a failing one still fails; ``unreachable`` results are
        always re-checked, and with ``deep`` only deep results count). ``resume`` (default):
        when the last verification of this version was interrupted (Ctrl-C, a crash) less
        than 24 hours ago, what it checked is reused (``report.resumed_from``); False checks
        everything again. ``sample`` (0 < f <= 1): check ``ceil(f * N)`` entries chosen at
        random with ``seed`` (random and reported when None; resuming an interrupted sample
        of the same size reuses its seed); the report is a sample (``report.sampled``),
        never a full verification.

        A logged version whose manifest is not loaded here is streamed from the registry
        and verified a window of entries at a time, so memory does not grow with its size;
        a report of more than ``reftrack.verify.KEEP_ALL`` entries then lists only those
        that are not ``ok`` (``report.omitted_ok`` counts the others, whose results are in
        the registry). A stored manifest that turns out corrupt (its entries do not hash to
        its digest) raises :class:`~reftrack.errors.ManifestError`.
        """
        if not isinstance(deep, bool):
            raise UsageError(f"deep must be True or False, not {deep!r}")
        if not isinstance(resume, bool):
            raise UsageError(f"resume must be True or False, not {resume!r}")
        if since is not None and (not isinstance(since, timedelta) or since <= timedelta(0)):
            raise UsageError(f"since must be a positive datetime.timedelta or None, "
                             f"not {since!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise UsageError(f"seed must be a whole number, not {seed!r}")
        sample = check_sample(sample)
        if self._record is None:
            if since is not None:
                raise UsageError(f"artifact {self._name!r} is not logged yet: results are "
                                 "kept per logged version, so `since` needs a logged one")
            return verify_manifest(
                self.manifest, self._ctx.backends, artifact=self._label(),
                concurrency=concurrency or self._ctx.settings.concurrency, progress=progress,
                deep=deep, sample=sample, seed=seed,
            )
        return verify_logged(
            self._ctx.registry, self._record.id, self._ctx.backends,
            manifest=self._manifest, digest=self._logged().digest, label=self._label(),
            protected=self.protected, concurrency=concurrency or self._ctx.settings.concurrency,
            progress=progress, deep=deep, since=since, sample=sample, seed=seed, resume=resume,
        )

    # -- lineage ------------------------------------------------------------------------------

    def logged_by(self) -> Run | None:
        """The run that logged this version (None for a version logged outside a run)."""
        from .run import Run

        record = self._logged()
        if record.run_id is None:
            return None
        return Run(self._ctx, self._ctx.registry.run(record.project, record.run_id))

    def used_by(self) -> list[Run]:
        """Every run that used this version as an input, oldest first."""
        from .run import Run

        return [Run(self._ctx, r) for r in self._ctx.registry.version_users(self._logged().id)]

    def _lease_blobs(self, store: str, sha256s: list[str]) -> None:
        """Opens the registry only when blobs are actually stored (after the store checks);
        waits while a gc is deleting some of them (see :mod:`reftrack.lifecycle`)."""
        from .lifecycle import lease_blobs

        lease_blobs(self._ctx.registry, store, sha256s)

    def lineage(
        self, direction: Direction = "both", depth: int | None = None
    ) -> LineageGraph:
        """The lineage graph around this version (``"upstream"``: what it is built on;
        ``"downstream"``: what was built from it), ``depth`` edges deep (None: all)."""
        from .lineage import walk

        return walk(self._ctx.registry, self._logged(), direction=direction, depth=depth)

    def sources(self) -> list[SourceVersion]:
        """The source data this version is built on, transitively, each with its pinned
        references (``source.references(...)``; see :mod:`reftrack.lineage`)."""
        from .lineage import sources

        return sources(self._ctx.registry, self._logged())

    # -- protection (S3 Object Lock legal holds) --------------------------------------------

    def protect(
        self, *, concurrency: int | None = None, progress: Progress | None = None
    ) -> ProtectReport:
        """Place an S3 Object Lock legal hold on every pinned object version, so that no one
        and no lifecycle rule can delete them, and mark the version ``protected``.

        Refuses (``UsageError``, before any hold is placed) entries that are not S3 objects
        or have no version id, and buckets without Object Lock. Raises
        :class:`~reftrack.protection.ProtectionFailed` (with the report) when some holds
        could not be placed; the version is then not marked protected."""
        from .protection import ProtectionFailed, set_version_holds

        report, self._record = set_version_holds(
            self._logged(), self.manifest, self._ctx.backends, self._ctx.registry, on=True,
            concurrency=concurrency or self._ctx.settings.concurrency, progress=progress,
        )
        if report.failed:
            raise ProtectionFailed(report)
        return report

    def unprotect(
        self, *, concurrency: int | None = None, progress: Progress | None = None
    ) -> ProtectReport:
        """Remove the legal hold from every pinned object version and clear ``protected``
        (refusals and failures as for :meth:`protect`)."""
        from .protection import ProtectionFailed, set_version_holds

        report, self._record = set_version_holds(
            self._logged(), self.manifest, self._ctx.backends, self._ctx.registry, on=False,
            concurrency=concurrency or self._ctx.settings.concurrency, progress=progress,
        )
        if report.failed:
            raise ProtectionFailed(report)
        return report
