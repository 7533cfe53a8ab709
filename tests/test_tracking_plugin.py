"""--wandb through the plugin: real wandb offline, real xdist workers, files read back."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from harness.core.paths import component
from tests.wandb_offline import offline_runs, read_offline_run

STUDY = """
from harness import ablation

study = ablation(variants={"base": {"lr": 0.1}, "better": {"lr": 0.2}}, seeds=2,
                 tiers={"synthetic": {"noise": [0.5]}})

@study
def test_tracked(run, log):
    for step in range(3):
        log(step, loss=1.0 / (step + 1))
    lr = run.config["lr"]
    return {"model": {"labels": {"acc": 0.5 + lr + 0.01 * run.seed * (1 + lr)}}}

study.expect("better > base", metric="model/labels/acc")
"""
NAME = "test_tracked.py::test_tracked"  # the study, named after where it lives
FOLDER = component(NAME)  # its run logs' folder


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("WANDB_API_KEY", "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _session_dirs(pytester: pytest.Pytester) -> list[Path]:
    db = sqlite3.connect(pytester.path / ".ablation" / "results.sqlite")
    sessions = [row[0] for row in db.execute("SELECT session FROM sessions ORDER BY started_at")]
    return [pytester.path / ".ablation" / "runs" / s for s in sessions]


def test_every_run_is_one_wandb_run_with_final_metrics(pytester: pytest.Pytester,
                                                       offline: None) -> None:
    pytester.makepyfile(test_tracked=STUDY)
    result = pytester.runpytest_subprocess("-n", "2", "--wandb", "--wandb-project", "chords")
    result.assert_outcomes(passed=5)
    [session_dir] = _session_dirs(pytester)
    runs = [read_offline_run(p) for p in offline_runs(session_dir)]
    by_name = {run["name"]: run for run in runs}
    assert set(by_name) == {"base-seed0-noise=0.5", "base-seed1-noise=0.5",
                            "better-seed0-noise=0.5", "better-seed1-noise=0.5",
                            f"{NAME}-verdicts"}
    group = f"ablate-{NAME}_{session_dir.name}"
    for name, run in by_name.items():
        assert (run["project"], run["group"]) == ("chords", group), name
    run = by_name["better-seed1-noise=0.5"]
    assert run["config"] == {"lr": 0.2, "noise": 0.5, "seed": 1, "tier": "synthetic",
                             "variant": "better"}
    assert [h["loss"] for h in run["history"]] == [1.0, 0.5, 1.0 / 3]
    assert run["summary"]["final/model/labels/acc"] == pytest.approx(0.712)
    assert by_name[f"{NAME}-verdicts"]["tables"]["verdicts"][0]["status"] == "supported"
    local = session_dir / FOLDER / "better-seed1-noise=0.5"
    assert json.loads((local / "summary.json").read_text())["status"] == "done"
    assert len((local / "steps.jsonl").read_text().splitlines()) == 3


def test_runs_taken_from_the_store_are_not_logged_again(pytester: pytest.Pytester,
                                                        offline: None) -> None:
    pytester.makepyfile(test_tracked=STUDY)
    pytester.runpytest_subprocess("--wandb").assert_outcomes(passed=5)
    pytester.runpytest_subprocess("--wandb", "--reuse").assert_outcomes(passed=5)
    first, second = _session_dirs(pytester)
    assert len(offline_runs(first)) == 5
    names = [read_offline_run(p)["name"] for p in offline_runs(second)]
    assert names == [f"{NAME}-verdicts"]


def test_without_wandb_only_local_logs_are_written(pytester: pytest.Pytester,
                                                   offline: None) -> None:
    pytester.makepyfile(test_tracked=STUDY)
    pytester.runpytest_subprocess().assert_outcomes(passed=5)
    [session_dir] = _session_dirs(pytester)
    assert not (session_dir / "wandb").exists()
    assert len(list(session_dir.glob(f"{FOLDER}/*/steps.jsonl"))) == 4


def test_wandb_dir_is_honoured(pytester: pytest.Pytester, offline: None,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = pytester.path / "wandb-files"
    monkeypatch.setenv("WANDB_DIR", str(elsewhere))
    pytester.makepyfile(test_tracked=STUDY)
    pytester.runpytest_subprocess("--wandb").assert_outcomes(passed=5)
    [session_dir] = _session_dirs(pytester)
    assert len(offline_runs(elsewhere)) == 5
    assert not (session_dir / "wandb").exists()
    assert len(list(session_dir.glob(f"{FOLDER}/*/steps.jsonl"))) == 4  # local logs stay


def test_a_failing_wandb_never_costs_results(pytester: pytest.Pytester, offline: None) -> None:
    pytester.makepyfile(test_tracked=STUDY)
    # a project name W&B refuses: init fails, once, with one warning; every run is still stored
    result = pytester.runpytest_subprocess("--wandb", "--wandb-project", "bad/name", "-W",
                                           "always")
    result.assert_outcomes(passed=5, warnings=1)
    result.stdout.fnmatch_lines(["*W&B tracking switched off for this session: wandb.init failed*"])
    db = sqlite3.connect(pytester.path / ".ablation" / "results.sqlite")
    assert db.execute("SELECT count(*) FROM runs WHERE status = 'done'").fetchone()[0] == 4


def test_run_folder_holds_config_metadata_steps_and_summary(pytester: pytest.Pytester,
                                                            offline: None) -> None:
    pytester.makepyfile(test_tracked=STUDY)
    pytester.runpytest_subprocess().assert_outcomes(passed=5)
    [session_dir] = _session_dirs(pytester)
    folder = session_dir / FOLDER / "base-seed1-noise=0.5"
    assert json.loads((folder / "config.json").read_text())["seed"] == 1
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["run"] == "synthetic-noise=0.5-base-seed1"
    assert metadata["device"] == "cpu" and "pytest" in metadata["versions"]
    assert {"host", "git_commit", "fingerprint", "started", "session"} <= set(metadata)


CHECKPOINTED = """
from harness import ablation

study = ablation(variants={"a": {}}, seeds=1)

@study
def test_ckpt(run, checkpoint):
    start = int(checkpoint.read_text()) if checkpoint.exists() else 0
    for step in range(start, 10):
        checkpoint.write_text(str(step))
        if step == 4 and not (checkpoint.parent / "interrupted").exists():
            (checkpoint.parent / "interrupted").touch()
            raise KeyboardInterrupt  # the job dies mid-training
    return {"started_at": float(start)}
"""


def test_checkpoint_survives_an_interrupted_session(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_ckpt=CHECKPOINTED)
    first = pytester.runpytest_subprocess()
    assert first.ret == pytest.ExitCode.INTERRUPTED
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    folder = pytester.path / ".ablation" / "checkpoints" / component("test_ckpt.py::test_ckpt")
    [path] = folder.glob("default-a-seed0-*.pt")
    assert path.read_text() == "9"
    db = sqlite3.connect(pytester.path / ".ablation" / "results.sqlite")
    [(metrics,)] = db.execute("SELECT metrics FROM runs WHERE status = 'done'").fetchall()
    assert json.loads(metrics) == {"started_at": 4.0}  # resumed, not restarted
