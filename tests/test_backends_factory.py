"""Which backend serves which scheme, and what happens when an optional extra is missing."""

from __future__ import annotations

import sys

import pytest

import reftrack
from reftrack.backends import Backends
from reftrack.errors import MissingBackend
from reftrack.settings import Settings


def test_every_scheme_has_a_backend_with_declared_capabilities() -> None:
    backends = Backends(Settings())
    expected = {"s3": (True, True, False), "gs": (True, True, False),
                "file": (False, True, True), "http": (False, False, True),
                "https": (False, False, True)}
    for scheme, (versions, scan, hashes) in expected.items():
        backend = backends.for_scheme(scheme)
        assert backend.scheme == scheme
        assert (backend.keeps_versions, backend.can_scan, backend.hashes_content) == (
            versions, scan, hashes)
        assert backends.for_scheme(scheme) is backend  # made once


def test_missing_gcsfs_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "gcsfs" or m.startswith("gcsfs.")] + ["gcsfs"]:
        monkeypatch.setitem(sys.modules, name, None)  # what a machine without the extra has
    monkeypatch.delitem(sys.modules, "reftrack.backends.gcs", raising=False)
    with pytest.raises(MissingBackend, match=r"pip install 'reftrack\[gcs\]'") as info:
        reftrack.Artifact("x", type="dataset").add_reference("gs://some-bucket/data/")
    assert info.value.exit_code == 2
