"""JUnit XML for CI systems (``reftrack verify --junit FILE``).

One ``<testsuite>`` per verified version (named ``project/name:vN``), one ``<testcase>`` per
entry checked or reused (``name`` = the entry path, ``classname`` = the version):

- ``ok``, ``moved``, ``deleted`` pass; drift is described in the testcase's ``<system-out>``
  (``ok`` testcases carry no text, so a large version gives a file of moderate size);
- ``version_missing``, ``changed``, ``corrupt`` are ``<failure type="STATUS">`` with the detail;
- ``unreachable`` is an ``<error type="unreachable">``: the entry could not be checked, which
  is not a test failure but not a pass either (exit code 3).

Entries a sample left out are not listed (a 1% sample of a million entries stays small): the
suite's properties say ``sampled``, ``seed``, ``total`` and ``checked``. A verification of more
than ``reftrack.verify.KEEP_ALL`` entries lists only those that are not ``ok``: the ``ok``
ones still count in ``tests`` (they passed), and the properties ``omitted_ok`` /
``omitted_reused_ok`` and the suite's ``<system-out>`` say how many are not listed. Results
reused from an earlier verification (``--since``, resuming) are listed with their result and a
``reused`` property and ``checked_at``. Characters XML 1.0 cannot carry (control characters in
a key) are written as ``\\xNN``. The file is written atomically (a temporary file renamed into
place).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from .errors import UsageError
from .verify import FAILING, Status, VerifyReport

__all__ = ["junit_xml", "write_junit"]

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: object) -> str:
    """``value`` as text XML 1.0 can carry (control characters and lone surrogates escaped)."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return _text(value)


def _counts(report: VerifyReport) -> tuple[int, int, int]:
    tests = len(report.entries) + report.omitted
    failures = sum(1 for e in report.entries if e.status in FAILING)
    errors = sum(1 for e in report.entries if e.status is Status.UNREACHABLE)
    return tests, failures, errors


def _suite(report: VerifyReport) -> ET.Element:
    name = _text(report.artifact or f"manifest {report.digest[:12]}")
    tests, failures, errors = _counts(report)
    suite = ET.Element("testsuite", {
        "name": name, "tests": str(tests), "failures": str(failures), "errors": str(errors),
        "skipped": "0", "timestamp": report.checked_at.strftime("%Y-%m-%dT%H:%M:%S"),
        "hostname": _text(socket.gethostname()),
    })
    properties = ET.SubElement(suite, "properties")
    for key, value in (
        ("digest", report.digest), ("deep", report.deep), ("requests", report.requests),
        ("total", report.total), ("checked", report.checked), ("reused", report.reused),
        ("sampled", report.sampled), ("seed", report.seed),
        ("reused_since", report.reused_since), ("resumed_from", report.resumed_from),
        ("exit_code", report.exit_code),
        ("omitted_ok", report.omitted_ok if report.omitted else None),
        ("omitted_reused_ok", report.omitted_reused_ok if report.omitted else None),
    ):
        if value is not None:
            ET.SubElement(properties, "property", {"name": key, "value": _value(value)})
    for entry in report.entries:
        case = ET.SubElement(suite, "testcase", {"name": _text(entry.path), "classname": name})
        if entry.reused:
            props = ET.SubElement(case, "properties")
            ET.SubElement(props, "property", {"name": "reused", "value": "true"})
            if entry.checked_at is not None:
                ET.SubElement(props, "property", {"name": "checked_at",
                                                  "value": entry.checked_at.isoformat()})
        when = (f" (result reused from the check at {entry.checked_at:%Y-%m-%d %H:%M:%S} UTC)"
                if entry.reused and entry.checked_at else "")
        message = _text(f"{entry.status.value}: {entry.detail}{when}")
        if entry.status in FAILING:
            failure = ET.SubElement(case, "failure", {"type": entry.status.value,
                                                      "message": message})
            failure.text = _text(f"{entry.uri}\n{message}")
        elif entry.status is Status.UNREACHABLE:
            error = ET.SubElement(case, "error", {"type": entry.status.value,
                                                  "message": message})
            error.text = _text(f"{entry.uri}\n{message}")
        elif entry.status is not Status.OK:  # drift: passes, but say what moved
            out = ET.SubElement(case, "system-out")
            out.text = _text(f"{entry.uri}\n{message}")
    notes = []
    if report.sampled is not None:
        notes.append(f"a {report.sampled * 100:g}% sample (seed {report.seed}): {tests} of "
                     f"{report.total} entries; not a full verification")
    if report.omitted:
        notes.append(f"{report.omitted} ok entries passed but are not listed as testcases "
                     f"({report.omitted_ok} checked now, {report.omitted_reused_ok} reused): "
                     "a large verification lists only the entries that are not ok; every "
                     "result is kept in the registry")
    if notes:
        out = ET.SubElement(suite, "system-out")
        out.text = "\n".join(notes)
    return suite


def junit_xml(reports: Sequence[VerifyReport]) -> bytes:
    """The JUnit XML document (UTF-8) for ``reports``."""
    root = ET.Element("testsuites", {"name": "reftrack verify"})
    totals = [0, 0, 0]
    for report in reports:
        root.append(_suite(report))
        totals = [a + b for a, b in zip(totals, _counts(report), strict=True)]
    root.set("tests", str(totals[0]))
    root.set("failures", str(totals[1]))
    root.set("errors", str(totals[2]))
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


def write_junit(reports: Sequence[VerifyReport], path: str | os.PathLike[str]) -> Path:
    """Write the JUnit XML for ``reports`` to ``path`` atomically; returns the path."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise UsageError(f"cannot write JUnit XML to {target}: it is a directory; give a file "
                         "name")
    if not target.parent.is_dir():
        raise UsageError(f"cannot write JUnit XML to {target}: the directory {target.parent} "
                         "does not exist")
    data = junit_xml(reports)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                   dir=target.parent)
    except OSError as exc:
        raise UsageError(f"cannot write JUnit XML to {target}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o644)  # mkstemp makes 0600: a report is for others too
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise UsageError(f"cannot write JUnit XML to {target}: {exc.strerror}") from exc
        raise
    return target
