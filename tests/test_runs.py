"""Runs as W&B users drive them: the current run, resume, summary and history, groups,
sweeps and filters, git facts. Local-file references keep these tests off any server."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import reftrack
from reftrack.errors import NotFound, UsageError

# Every test here runs on an SQLite and on a PostgreSQL registry (pg_fixtures.py).
pytestmark = pytest.mark.usefixtures("each_registry")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    (root / "a.txt").write_bytes(b"alpha")
    return root


def test_current_run_and_module_level_calls(data: Path) -> None:
    assert reftrack.run is None
    with pytest.raises(UsageError, match=r"reftrack.init\(\) first"):
        reftrack.log_artifact(str(data), name="x", type="dataset")
    with reftrack.init(project="w", job_type="ingest") as run:
        assert reftrack.run is run and reftrack.current_run() is run
        art = reftrack.Artifact("raw", type="dataset")
        art.add_reference(str(data))
        logged = reftrack.log_artifact(art, aliases=["first"])
        reftrack.log({"rows": 1})
    assert reftrack.run is None and run.state == "finished"
    with reftrack.init(project="w", job_type="train") as trainer:
        used = reftrack.use_artifact("raw:first")
        assert used.qualified_name == logged.qualified_name == "w/raw:v0"
    assert [r.id for r in used.used_by()] == [trainer.id]
    reftrack.finish()  # no current run: nothing to do


def test_resume_semantics(data: Path) -> None:
    with reftrack.init(project="w", id="job-1", config={"lr": 0.1}) as run:
        run.summary["loss"] = 0.5
    assert run.state == "finished"
    with pytest.raises(UsageError, match="already exists"):
        reftrack.init(project="w", id="job-1")
    with pytest.raises(UsageError, match="already exists"):
        reftrack.init(project="w", id="job-1", resume="never")
    with pytest.raises(NotFound, match="cannot be resumed"):
        reftrack.init(project="w", id="nope", resume="must")
    with pytest.raises(UsageError, match="resume must be"):
        reftrack.init(project="w", id="job-1", resume="sometimes")  # type: ignore[arg-type]
    with reftrack.init(project="w", id="job-1", resume="allow", config={"epochs": 3}) as again:
        assert again.resumed and again.state == "running"
        assert again.config == {"lr": 0.1, "epochs": 3} and again.summary["loss"] == 0.5
        out = again.log_artifact(str(data), name="late", type="dataset")
    assert out.logged_by().id == "job-1"  # logged as the output of a run that ended earlier
    with reftrack.init(project="w", id="fresh", resume=True) as new:
        assert not new.resumed
    with reftrack.init(project="w", id="job-1", resume="must") as must:
        assert must.resumed


def test_summary_and_history() -> None:
    with reftrack.init(project="w", job_type="train") as run:
        run.log({"loss": 1.0, "acc": 0.5})
        run.log({"loss": 0.4})
        run.log({"acc": 0.9}, step=5)
        run.summary["best_acc"] = 0.9
        run.summary.update({"note": "ok"})
        with pytest.raises(UsageError, match="before the last logged step"):
            run.log({"x": 1}, step=2)
        with pytest.raises(UsageError, match="finite"):
            run.log({"loss": float("nan")})
        with pytest.raises(UsageError, match="dict"):
            run.log([1, 2])  # type: ignore[arg-type]
    fetched = reftrack.Api().run(f"w/{run.id}")
    assert dict(fetched.summary) == {"loss": 0.4, "acc": 0.9, "best_acc": 0.9, "note": "ok"}
    assert fetched.summary.get("missing", 7) == 7 and "acc" in fetched.summary
    assert fetched.history() == [{"_step": 0, "loss": 1.0, "acc": 0.5},
                                 {"_step": 1, "loss": 0.4}, {"_step": 5, "acc": 0.9}]
    with pytest.raises(UsageError, match="is finished"):
        fetched.log({"late": 1})
    fetched.summary["final"] = True  # a summary can be completed after the run, as in W&B
    assert reftrack.Api().run(f"w/{run.id}").summary["final"] is True


def test_runs_filters_order_and_sweep_best_run(data: Path) -> None:
    for i, (lr, acc) in enumerate([(0.1, 0.7), (0.01, 0.9), (0.001, 0.8)]):
        with reftrack.init(project="w", job_type="train", sweep="sw1", group="grid",
                           config={"lr": lr}, name=f"trial-{i}") as run:
            run.log({"val_acc": acc})
            model = reftrack.Artifact("model", type="model", metadata={"arch": "mlp"})
            model.add_reference(str(data), name=f"trial-{i}")
            run.log_artifact(model)
    with reftrack.init(project="w", job_type="eval"):
        pass

    api = reftrack.Api()
    # The README recipe: the artifacts of the best run of a sweep, by val_acc.
    best = api.sweep("w/sw1").best_run("val_acc")
    models = [a.qualified_name for a in best.logged_artifacts()]
    assert best.name == "trial-1" and models == ["w/model:v1"]

    assert [r.name for r in api.runs("w", {"summary.val_acc": {"$gt": 0.75}})] == \
        ["trial-1", "trial-2"]
    assert [r.name for r in api.runs("w", {"config.lr": 0.1})] == ["trial-0"]
    assert [r.name for r in api.runs("w", order="-summary.val_acc")][:3] == \
        ["trial-1", "trial-2", "trial-0"]
    assert len(api.runs("w", {"job_type": "train", "group": "grid"})) == 3
    assert [r.job_type for r in api.runs("w", {"$or": [{"job_type": "eval"},
                                                        {"config.lr": 0.001}]})] == \
        ["train", "eval"]
    assert len(api.runs("w", {"summary.val_acc": {"$exists": False}})) == 1
    with pytest.raises(UsageError, match="unknown run field"):
        api.runs("w", {"colour": "red"})
    with pytest.raises(UsageError, match="unknown filter operator"):
        api.runs("w", {"state": {"$regex": "fin"}})
    with pytest.raises(NotFound):
        api.sweep("w/no-such-sweep")
    versions = api.artifacts("model", "w/model")
    assert [v.version for v in versions] == ["v0", "v1", "v2"]
    assert api.artifact("w/model:latest").version == "v2"  # latest = newest checkpoint
    with pytest.raises(UsageError, match="of type"):
        api.artifacts("dataset", "w/model")


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_commit_user_host_and_program(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    script = repo / "train.py"
    script.write_text("print('train')\n")

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], check=True, text=True,
                              capture_output=True).stdout.strip()

    git("init", "-q")
    git("-c", "user.email=t@example.com", "-c", "user.name=t", "add", "train.py")
    git("-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "x")
    git("remote", "add", "origin", "https://user:token123@example.com/team/repo.git")
    monkeypatch.setattr(sys, "argv", [str(script)])
    with reftrack.init(project="w") as run:
        pass
    assert run.git_commit == git("rev-parse", "HEAD")
    assert run.git_remote == "https://example.com/team/repo.git"  # the token is never kept
    assert run.program == str(script) and run.user and run.host
    monkeypatch.setattr(sys, "argv", ["-c"])
    with reftrack.init(project="w") as outside:
        assert outside.program is None


def test_longer_loops_are_refused_too(data: Path) -> None:
    """A logs a; B uses a and logs b; A (still open) using b would close a loop."""
    a_run = reftrack.init(project="w", job_type="a")
    a = a_run.log_artifact(str(data), name="a", type="dataset")
    with reftrack.init(project="w", job_type="b") as b_run:
        b_run.use_artifact("a:v0")
        (data / "b.txt").write_bytes(b"b")
        b = b_run.log_artifact(str(data / "b.txt"), name="b", type="dataset")
    with pytest.raises(UsageError, match="must not loop"):
        a_run.use_artifact(b)
    a_run.finish()
    assert a.used_by()[0].job_type == "b"


def test_save_code_logs_the_script_as_a_used_code_artifact(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           ) -> None:
    script = tmp_path / "train.py"
    script.write_text("print('v1')\n")
    monkeypatch.setattr(sys, "argv", [str(script), "--epochs", "3"])
    with reftrack.init(project="w", job_type="train", save_code=True) as run:
        pass
    code = run.used_artifacts()
    assert [(a.base_name, a.type) for a in code] == [("source-train.py", "code")]
    entry = code[0].manifest.entries["train.py"]
    assert entry.checksums is not None and "sha256" in entry.checksums
    assert code[0].logged_by() is None  # logged outside the run: the run only uses it
    script.unlink()
    out = code[0].download(tmp_path / "got")  # managed: the copy outlives the script
    assert (Path(out) / "train.py").read_text() == "print('v1')\n"
    with pytest.raises(UsageError, match="save_code"):
        reftrack.init(project="w", job_type="train", save_code=True)  # the script is gone
    assert [r.job_type for r in reftrack.Api().runs("w")] == ["train"]  # no half-made run


def test_save_code_without_a_script_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["-c"])
    with pytest.raises(UsageError, match="save_code"):
        reftrack.init(project="w", save_code=True)
    assert reftrack.run is None


def test_lineage_from_artifacts_and_runs_public_api(data: Path) -> None:
    with reftrack.init(project="w", job_type="ingest"):
        raw = reftrack.log_artifact(str(data), name="raw", type="dataset")
    with reftrack.init(project="w", job_type="train") as trainer:
        reftrack.use_artifact("raw:latest")
        (data / "m.bin").write_bytes(b"weights")
        model = reftrack.log_artifact(str(data / "m.bin"), name="model", type="model")
    graph = model.lineage("upstream")
    kinds = sorted(n.kind for n in graph.nodes)
    assert kinds == ["run", "run", "version", "version"] and not graph.truncated
    assert "digraph" in graph.to_dot() and graph.to_mermaid().startswith(("flowchart", "graph"))
    names = [s.qualified_name for s in model.sources()]
    assert names == [raw.qualified_name]
    for source in model.sources():  # the README recipe, public API only
        paths = [e.path for e in reftrack.Api().artifact(source.qualified_name).manifest]
        assert paths == ["a.txt"]
    down = trainer.lineage("downstream")
    assert [n.id for n in down.nodes if n.kind == "version"] == ["version:w/model:v0"]
    logged_by = model.logged_by()
    assert logged_by is not None and [a.qualified_name for a in logged_by.logged_artifacts()] \
        == ["w/model:v0"]
