"""Real xdist workers: every run trained once per session, and a worker killed with -9 loses
nothing that finished."""

from __future__ import annotations

import collections
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

STUDY = """
import os, pathlib, random, time
from harness import ablation

study = ablation(variants={"a": {}, "b": {"gain": 0.3}, "c": {"gain": 0.1}}, seeds=3,
                 tiers={"synthetic": {"noise": [0.1, 0.2]}})

@study
def test_k(run):
    with open(os.environ["TRAININGS"], "a") as f:
        f.write(run.id + "\\n")
    victim = pathlib.Path(os.environ.get("VICTIM", "/nonexistent/x"))
    if run.id == "synthetic-noise=0.1-b-seed1" and not victim.exists() and victim.parent.exists():
        victim.write_text(str(os.getpid()))
        time.sleep(120)  # killed here
    time.sleep(0.05)
    rng = random.Random(run.seed)
    own = random.Random(f"{run.seed}-{run.variant}").gauss(0, 0.01)
    return {"acc": 0.5 + run.config.get("gain", 0.0) + rng.gauss(0, run.config["noise"] / 10)
                   + own}
"""
HYPOTHESES = """
study.expect("b > a", metric="acc")
study.expect("c > a", metric="acc")
"""


def trainings(path: Path) -> collections.Counter:
    return collections.Counter(path.read_text().split()) if path.exists() else collections.Counter()


def test_each_run_is_trained_once_even_when_hypotheses_race_the_runs(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    log = pytester.path / "trainings.txt"
    monkeypatch.setenv("TRAININGS", str(log))
    pytester.makepyfile(test_k=STUDY + HYPOTHESES)
    # -p no:randomly keeps order; --dist load sends hypotheses while runs are still in flight
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=18 + 4)
    counts = trainings(log)
    assert len(counts) == 18 and set(counts.values()) == {1}, counts


def test_a_hypothesis_landing_first_waits_for_runs_in_flight(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    log = pytester.path / "trainings.txt"
    monkeypatch.setenv("TRAININGS", str(log))
    pytester.makepyfile(test_k=STUDY + HYPOTHESES)
    # only hypotheses selected: both workers compute the same runs concurrently, each once
    result = pytester.runpytest_subprocess("-n", "2", "-m", "hypothesis", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    counts = trainings(log)
    assert len(counts) == 18 and set(counts.values()) == {1}, counts


def session_with_a_killed_worker(pytester: pytest.Pytester,
                                 env: dict[str, str]) -> tuple[int, str]:
    """`pytest -n 2` in which the worker training `synthetic-noise=0.1-b-seed1` is killed with
    -9 mid-run (the study writes its pid to $VICTIM); pytest's exit status and output."""
    victim = Path(env["VICTIM"])
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider",
                             "-p", "no:randomly"], cwd=pytester.path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not victim.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(int(victim.read_text()), signal.SIGKILL)
    output, _ = proc.communicate(timeout=120)
    return proc.returncode, output


def test_worker_killed_mid_run_loses_nothing_and_reuse_trains_only_the_missing_run(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(test_k=STUDY)  # no hypotheses: nothing else recomputes the lost run
    log, victim = tmp_path / "trainings.txt", tmp_path / "victim.pid"
    env = {**os.environ, "TRAININGS": str(log), "VICTIM": str(victim)}
    store = pytester.path / ".ablation" / "results.sqlite"
    returncode, output = session_with_a_killed_worker(pytester, env)
    assert "crashed" in output, output
    assert returncode == 1, output  # the killed item fails; the session goes on

    db = sqlite3.connect(store)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    status = dict(db.execute("SELECT variant || '-' || seed || '-' || knobs, status FROM runs"))
    done = [k for k, s in status.items() if s == "done"]
    assert len(done) == 17, status  # the replacement worker finished every other run

    before = trainings(log)
    env.pop("VICTIM")
    rerun = subprocess.run([sys.executable, "-m", "pytest", "--reuse", "-p", "no:cacheprovider"],
                           cwd=pytester.path, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout
    assert trainings(log) - before == collections.Counter(["synthetic-noise=0.1-b-seed1"])


ROOT = Path(__file__).resolve().parents[1]


def _stored_metrics(store: Path) -> dict[str, str]:
    db = sqlite3.connect(store)
    return dict(db.execute("SELECT key, metrics FROM runs WHERE status = 'done'"))


def test_chord_metrics_are_bitwise_equal_with_and_without_xdist(tmp_path: Path) -> None:
    """The real chord model (controls study, 9 runs): default threads in both modes."""
    stores = {}
    for workers in ("0", "2"):
        stores[workers] = tmp_path / f"n{workers}.sqlite"
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "ablation_tests", "-k", "test_chord_controls",
             "-n", workers, "-p", "no:cacheprovider", "-q", "--no-ablation-tables",
             "--ablation-store", str(stores[workers])],
            cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-3000:]
    serial, parallel = (_stored_metrics(stores[w]) for w in ("0", "2"))
    assert len(serial) == 9
    assert serial == parallel  # the JSON text: every float to the last bit


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["no-xdist", "xdist"])
def test_a_session_without_studies_leaves_no_store(pytester: pytest.Pytester,
                                                    workers: list[str]) -> None:
    """The plugin loads in every pytest run of the environment: it stays out of the way."""
    pytester.makepyfile(test_plain="def test_x():\n    assert True\n")
    pytester.runpytest_subprocess(*workers, "-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert not (pytester.path / ".ablation").exists()


def test_the_session_row_is_the_controllers_whoever_writes_it(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAININGS", str(pytester.path / "trainings.txt"))
    pytester.makepyfile(test_k=STUDY)
    pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider").assert_outcomes(passed=18)
    # every process closed its connection (workers freeze their objects before exiting)
    assert sorted(p.name for p in (pytester.path / ".ablation").glob("results.sqlite*")) == [
        "results.sqlite"]
    db = sqlite3.connect(pytester.path / ".ablation" / "results.sqlite")
    (argv, started, finished, exitstatus), = db.execute(
        "SELECT argv, started_at, finished_at, exitstatus FROM sessions").fetchall()
    first_run = db.execute("SELECT min(started_at) FROM runs").fetchone()[0]
    assert '"-n", "2"' in argv and started < first_run < finished and exitstatus == 0


def test_a_run_whose_worker_was_killed_fails_once_and_is_not_trained_again(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    """The hypotheses that need the killed run report it: training it again on another worker
    would likely kill that one too (a crash, out of memory, a thread-method timeout)."""
    pytester.makepyfile(test_k=STUDY + HYPOTHESES)
    log, victim = tmp_path / "trainings.txt", tmp_path / "victim.pid"
    env = {**os.environ, "TRAININGS": str(log), "VICTIM": str(victim)}
    returncode, output = session_with_a_killed_worker(pytester, env)
    assert returncode == 1, output
    assert trainings(log)["synthetic-noise=0.1-b-seed1"] == 1, output
    assert "died before it finished" in output, output
    failed = re.findall(r"^FAILED (\S+)", output, re.M)  # the crashed item, b > a at 0.1
    assert failed == ["test_k.py::test_k[synthetic-noise=0.1-b-seed1]",
                      "test_k.py::test_k[synthetic-noise=0.1]::b>a[acc]"], output
