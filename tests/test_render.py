"""Rich output: progress bars draw on a terminal and never on a pipe."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

import reftrack
from reftrack.render import RichProgress, make_console, size_text


def terminal() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=True, width=100), buffer


def test_progress_bars_draw_for_listing_verifying_and_downloading(bucket: str, put: Any,
                                                                  tmp_path: Any) -> None:
    for i in range(3):
        put(bucket, f"d/{i}", b"x" * 100)
    console, buffer = terminal()
    progress = RichProgress(console)
    assert progress.enabled
    with reftrack.init(project="p") as run:
        art = reftrack.Artifact("ds", type="dataset")
        art.add_reference(f"s3://{bucket}/d/", progress=progress)
        run.log_artifact(art)
    art.verify(progress=progress)
    art.download(tmp_path / "out", progress=progress)
    drawn = buffer.getvalue()
    assert "listing s3://test-bucket/d/" in drawn
    assert "verifying" in drawn and "downloading" in drawn
    assert progress._bar is None  # every phase was finished


def test_no_progress_on_a_pipe() -> None:
    buffer = io.StringIO()
    progress = RichProgress(Console(file=buffer))
    assert not progress.enabled
    progress.start("verifying", total=3)
    progress.advance(3)
    progress.finish()
    assert buffer.getvalue() == ""


def test_sizes_and_wide_pipes(monkeypatch: Any) -> None:
    assert [size_text(n) for n in (None, 0, 1023, 1024, 5 * 1024**3)] == [
        "-", "0 B", "1023 B", "1.0 KiB", "5.0 GiB"]
    monkeypatch.delenv("COLUMNS", raising=False)
    assert make_console().width >= 200  # tables on a pipe are never truncated
