"""Tracker with the real wandb package, offline: what reaches W&B, the local log, and failures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import wandb

from harness.tracking import Tracker, decide_mode, default_group, default_project, has_api_key
from tests.wandb_offline import offline_runs, read_offline_run, records

CONFIG = {"variant": "combined", "seed": 1, "tier": "smoke", "knobs": {"noise_sigma": 0.5},
          "model": {"hidden": 32, "heads": ["ctc", "ar"]}}
METRICS = {"ctc/labels/majmin": 0.8, "ar/sequence/ser": 0.125}


@pytest.fixture(autouse=True)
def offline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No key, no user netrc or settings, offline, and nothing from a Slurm job around us."""
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "NETRC", "WANDB_BASE_URL",
                "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / "wandb-config"))
    monkeypatch.delenv("WANDB_DIR", raising=False)  # W&B files go beside the local logs
    monkeypatch.setenv("WANDB_MODE", "offline")


def make_tracker(tmp_path: Path, warned: list[str], **options) -> Tracker:
    options = {"wandb": True, "project": "chords-ablations", "job_id": "s1",
               **options}
    return Tracker(run_dir=tmp_path / "runs", warn=warned.append, **options)


def run_one(tracker: Tracker, name: str, steps: int = 3) -> None:
    log = tracker.start(study="heads", name=name, config=CONFIG)
    for step in range(steps):
        log.log(step, loss=1.0 / (step + 1), lr=0.1)
    log.finish(METRICS)


def test_wandb_dir_decides_where_wandb_writes(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))
    tracker = make_tracker(tmp_path, [])
    run_one(tracker, "a-seed0")
    assert len(offline_runs(tmp_path / "elsewhere")) == 1
    assert offline_runs(tmp_path / "runs") == []
    assert (tmp_path / "runs" / "heads" / "a-seed0" / "steps.jsonl").exists()  # local log stays


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_run_is_an_offline_wandb_run(tmp_path: Path) -> None:
    warned: list[str] = []
    tracker = make_tracker(tmp_path, warned)
    run_one(tracker, "ctc_only-seed1-noise_sigma=0.5")
    run_one(tracker, "combined-seed1-noise_sigma=0.5", steps=300)  # ~95 KB: 3 blocks
    tracker.close()

    paths = offline_runs(tmp_path / "runs")
    assert len(paths) == 2
    runs = {run["name"]: run for run in map(read_offline_run, paths)}
    assert max(file.stat().st_size for path in paths for file in path.glob("*.wandb")) > 2 * 2**15
    assert set(runs) == {"ctc_only-seed1-noise_sigma=0.5", "combined-seed1-noise_sigma=0.5"}
    for name, run in runs.items():
        assert (run["project"], run["group"], run["job_type"]) == (
            "chords-ablations", "ablate-heads_s1", "run")
        assert run["config"] == CONFIG
        local = tmp_path / "runs" / "heads" / name
        assert run["history"] == read_lines(local / "steps.jsonl")
        final = {k: v for k, v in run["summary"].items() if k.startswith("final/")}
        assert final == {f"final/{k}": v for k, v in METRICS.items()}
        assert run["summary"]["status"] == "done"
    assert len(runs["combined-seed1-noise_sigma=0.5"]["history"]) == 300
    assert warned == []


def test_reader_checks_checksums(tmp_path: Path) -> None:
    run_one(make_tracker(tmp_path, []), "a")
    [path] = offline_runs(tmp_path / "runs")
    read_offline_run(path)  # waits until the run is written
    [file] = path.glob("*.wandb")
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    file.write_bytes(data)
    with pytest.raises(ValueError, match="bad checksum"):
        list(records(file))


def test_verdicts_run_holds_the_verdict_table(tmp_path: Path) -> None:
    rows = [
        {"study": "heads", "knobs": {"noise_sigma": 0.5}, "hypothesis": "combined >= ctc_only",
         "status": "supported", "diff": 0.03, "p": 0.01},
        {"study": "heads", "knobs": {"noise_sigma": 1.0, "frames": 9},
         "hypothesis": "combined >= ctc_only", "status": "error", "diff": None, "p": None},
    ]
    warned: list[str] = []
    tracker = make_tracker(tmp_path, warned)
    tracker.log_verdicts(study="heads", rows=rows)

    [path] = offline_runs(tmp_path / "runs")
    run = read_offline_run(path)
    assert (run["name"], run["group"], run["job_type"]) == (
        "heads-verdicts", "ablate-heads_s1", "verdicts")
    assert run["tables"]["verdicts"] == rows
    assert {k: v for k, v in run["summary"].items() if k != "verdicts"} == {
        "verdicts/n": 2, "verdicts/supported": 1, "verdicts/error": 1}
    assert json.loads((tmp_path / "runs" / "heads" / "verdicts.json").read_text()) == rows
    assert warned == []


def test_local_log_needs_no_wandb(tmp_path: Path) -> None:
    tracker = make_tracker(tmp_path, [], wandb=False)
    log = tracker.start(study="heads", name="combined-seed1", config=CONFIG)
    folder = tmp_path / "runs" / "heads" / "combined-seed1"
    running = json.loads((folder / "summary.json").read_text())
    assert (running["status"], running["config"]) == ("running", CONFIG)

    log.log(0, loss=2.0)
    log.log(10, loss=1.5, acc=0.25)
    log.finish(METRICS, status="failed")
    assert read_lines(folder / "steps.jsonl") == [
        {"step": 0, "loss": 2.0}, {"step": 10, "loss": 1.5, "acc": 0.25}]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["metrics"] == METRICS
    assert (summary["study"], summary["name"], summary["status"]) == (
        "heads", "combined-seed1", "failed")
    assert summary["started"] <= summary["finished"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "metadata.json", "steps.jsonl", "summary.json"]
    assert json.loads((folder / "config.json").read_text()) == CONFIG
    assert not (tmp_path / "runs" / "wandb").exists()


def test_close_marks_unfinished_runs_aborted(tmp_path: Path) -> None:
    tracker = make_tracker(tmp_path, [])
    tracker.start(study="heads", name="crashed", config=CONFIG).log(0, loss=1.0)
    tracker.close()
    summary = json.loads((tmp_path / "runs" / "heads" / "crashed" / "summary.json").read_text())
    assert summary["status"] == "aborted"
    [run] = map(read_offline_run, offline_runs(tmp_path / "runs"))
    assert run["summary"]["status"] == "aborted"


@pytest.mark.parametrize("breakage", ["invalid project name", "wandb not installed"])
def test_init_failure_warns_once_and_keeps_local_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, breakage: str) -> None:
    options = {}
    if breakage == "invalid project name":
        options["project"] = "bad/project"  # wandb itself refuses it in init
    else:
        monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    calls = []
    real_init = wandb.init
    monkeypatch.setattr(wandb, "init", lambda **kw: calls.append(kw) or real_init(**kw))
    warned: list[str] = []
    tracker = make_tracker(tmp_path, warned, **options)
    run_one(tracker, "a")
    run_one(tracker, "b")
    tracker.log_verdicts(study="heads", rows=[{"status": "supported"}])

    assert len(warned) == 1
    assert "wandb.init failed" in warned[0] and "still stored" in warned[0]
    assert len(calls) == (1 if breakage == "invalid project name" else 0)  # never retried
    for name in "ab":
        summary = json.loads((tmp_path / "runs" / "heads" / name / "summary.json").read_text())
        assert summary["metrics"] == METRICS
    assert (tmp_path / "runs" / "heads" / "verdicts.json").exists()
    assert offline_runs(tmp_path / "runs") == []


def test_log_failure_mid_run_switches_wandb_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    warned: list[str] = []
    tracker = make_tracker(tmp_path, warned)
    log = tracker.start(study="heads", name="a", config=CONFIG)
    run = log.wandb_run

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(run, "log", broken)
    log.log(0, loss=1.0)
    log.log(1, loss=0.5)
    log.finish(METRICS)
    run_one(tracker, "b")
    monkeypatch.undo()
    run.finish()

    assert len(warned) == 1 and "wandb.log failed (OSError: disk full)" in warned[0]
    assert read_lines(tmp_path / "runs" / "heads" / "a" / "steps.jsonl")[-1] == {
        "step": 1, "loss": 0.5}
    assert json.loads((tmp_path / "runs" / "heads" / "b" / "summary.json").read_text())[
        "status"] == "done"
    assert len(offline_runs(tmp_path / "runs")) == 1  # run "b" did not go to W&B


def test_wandb_mode_disabled_writes_only_the_local_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    warned: list[str] = []
    tracker = make_tracker(tmp_path, warned, mode="online")
    run_one(tracker, "a")
    tracker.log_verdicts(study="heads", rows=[{"status": "supported"}])
    assert tracker.mode == "disabled"
    assert (tmp_path / "runs" / "heads" / "a" / "summary.json").exists()
    assert not (tmp_path / "runs" / "wandb").exists()
    assert warned == []


@pytest.mark.parametrize("requested", [None, "online"])
def test_without_a_key_runs_go_offline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, requested: str | None) -> None:
    monkeypatch.delenv("WANDB_MODE")
    warned: list[str] = []
    tracker = make_tracker(tmp_path, warned, mode=requested)
    run_one(tracker, "a")
    assert tracker.mode == "offline"
    assert len(offline_runs(tmp_path / "runs")) == 1
    assert len(warned) == (1 if requested else 0)
    assert all("no API key" in message for message in warned)


@pytest.mark.parametrize("source", [None, "WANDB_API_KEY", "netrc"])
def test_has_api_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str | None) -> None:
    key = "k" * 40
    if source == "WANDB_API_KEY":
        monkeypatch.setenv("WANDB_API_KEY", key)
    elif source == "netrc":
        host = wandb.setup().settings.base_url.split("://")[1]
        (tmp_path / "netrc").write_text(f"machine {host}\n  login user\n  password {key}\n")
        monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert has_api_key() is (source is not None)


def must_not_ask() -> bool:
    raise AssertionError("the key only matters when online is asked for without WANDB_MODE")


@pytest.mark.parametrize(("requested", "env", "key", "expected"), [
    (None, None, None, "offline"),
    ("offline", None, None, "offline"),
    ("disabled", None, None, "disabled"),
    ("online", None, True, "online"),
    ("online", None, False, "offline"),
    (None, "", None, "offline"),
    (None, "online", None, "online"),
    ("online", "offline", None, "offline"),
    ("offline", "disabled", None, "disabled"),
])
def test_decide_mode(requested: str | None, env: str | None, key: bool | None,
                     expected: str) -> None:
    has_key = must_not_ask if key is None else lambda: key
    assert decide_mode(requested, env, has_key) == expected


def test_default_group_and_project(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_group("heads", "s1") == "ablate-heads_s1"
    assert default_group("heads") == "ablate-heads"
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert default_group("heads", "s1") == "ablate-heads_4242"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4200")
    assert default_group("heads", "s1") == "ablate-heads_4200"
    assert default_project("chords") == "chords-ablations"
    assert default_project("suite/chords:v2") == "suite-chords-v2-ablations"
