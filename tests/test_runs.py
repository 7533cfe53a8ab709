"""RunCoordinator and provenance with real processes: each run is computed once per session."""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import random
import re
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from harness.core import provenance
from harness.core.runs import Computed, RunCoordinator, RunFailed
from harness.core.store import Owner, Store
from tests.specs import Spec

SPAWN = multiprocessing.get_context("spawn")




def counted(counter: Path, spec: Spec, seconds: float = 0.0) -> Computed:
    """A compute that logs each call to `counter`; the random draw differs between calls."""
    with open(counter, "a") as log:
        log.write(f"{spec.seed}\n")
    time.sleep(seconds)
    return Computed({"seed": float(spec.seed), "draw": random.random()})


def calls(counter: Path) -> list[int]:
    return sorted(map(int, counter.read_text().split())) if counter.exists() else []


def coordinator(path: Path, session: str = "s1", **options) -> RunCoordinator:
    return RunCoordinator(Store(path), session, Owner.current(f"w{os.getpid()}"),
                          poll_interval=0.01, **options)


def must_not_run() -> Computed:
    raise AssertionError("computed a run that should have been taken from the store")


def obtain_all(path: Path, seeds: list[int], counter: Path, barrier, out: Path) -> None:
    """Child process: obtain the runs of `seeds` (in this order) and write their metrics."""
    runs = coordinator(path)
    barrier.wait()
    metrics = {}
    for seed in seeds:
        spec = Spec(seed=seed)
        compute = functools.partial(counted, counter, spec, 0.05)
        metrics[seed] = runs.obtain(spec, fingerprint="fp", compute=compute).metrics
    out.write_text(json.dumps(metrics, sort_keys=True))


def finish_one_then_hang(path: Path, started: Path) -> None:
    """Child process: finish seed 0, then get killed while computing seed 1."""
    runs = coordinator(path)
    runs.obtain(Spec(seed=0), fingerprint="fp", compute=lambda: Computed({"acc": 1.0}))

    def hang() -> Computed:
        started.touch()
        time.sleep(60)
        raise AssertionError("should have been killed")

    runs.obtain(Spec(seed=1), fingerprint="fp", compute=hang)


def test_concurrent_processes_compute_each_run_once(tmp_path):
    db, counter, seeds = tmp_path / "results.db", tmp_path / "calls", [0, 1, 2]
    Store(db).close()
    barrier = SPAWN.Barrier(4)
    procs = [SPAWN.Process(target=obtain_all, args=(db, seeds[i % 3:] + seeds[:i % 3], counter,
                                                   barrier, tmp_path / f"out{i}.json"))
             for i in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0] * 4
    assert calls(counter) == seeds
    outputs = {(tmp_path / f"out{i}.json").read_text() for i in range(4)}
    assert len(outputs) == 1  # every process got the metrics of the one computation
    assert [r.status for r in Store(db).runs("s1")] == ["done"] * 3


def test_a_killed_owner_leaves_finished_runs_intact(tmp_path):
    db, counter, started = tmp_path / "results.db", tmp_path / "calls", tmp_path / "started"
    child = SPAWN.Process(target=finish_one_then_hang, args=(db, started))
    child.start()
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    child.kill()  # SIGKILL while it holds the claim on seed 1
    child.join()

    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store = Store(db)
    assert [(r.seed, r.status, r.pid) for r in store.runs()] == [
        (0, "done", child.pid), (1, "running", child.pid)]
    runs = coordinator(db)
    assert runs.obtain(Spec(seed=0), fingerprint="fp", compute=must_not_run).metrics == {
        "acc": 1.0}
    # the killed run is failed once in its session, not trained again (it may kill again)
    with pytest.raises(RunFailed, match=f"died before it finished \\(pid {child.pid}"):
        runs.obtain(Spec(seed=1), fingerprint="fp", compute=must_not_run)
    retried = coordinator(db, "s2").obtain(Spec(seed=1), fingerprint="fp",
                                           compute=lambda: counted(counter, Spec(seed=1)))
    assert (retried.status, retried.pid, calls(counter)) == ("done", os.getpid(), [1])
    assert len(store.runs()) == 3


@pytest.mark.parametrize("outcome", ["done", "failed"])
def test_waits_for_a_live_owner(tmp_path, outcome):
    db = tmp_path / "results.db"
    live = Owner(provenance.host(), os.getppid(), "gw1")  # alive, and not this process
    _, row = Store(db).claim("s1", Spec(), fingerprint="fp", owner=live, config={})

    def settle() -> None:  # the other owner finishes while we wait
        time.sleep(0.1)
        with Store(db) as other:
            if outcome == "done":
                other.finish(row.id, metrics={"acc": 0.9}, failures=[], duration=0.1,
                             device="cpu", versions={}, git_commit=None)
            else:
                other.fail(row.id, error="ValueError: theirs", duration=0.1)

    threading.Thread(target=settle).start()
    runs = coordinator(db)
    if outcome == "done":
        assert runs.obtain(Spec(), fingerprint="fp", compute=must_not_run).metrics == {"acc": 0.9}
    else:
        with pytest.raises(RunFailed, match="theirs"):
            runs.obtain(Spec(), fingerprint="fp", compute=must_not_run)


def test_reports_the_run_failed_when_its_owner_dies_while_waiting(tmp_path):
    db = tmp_path / "results.db"
    holder = subprocess.Popen(["sleep", "0.2"])  # stays a zombie until waited: still dead
    Store(db).claim("s1", Spec(), fingerprint="fp", owner=Owner(provenance.host(), holder.pid,
                                                                "gw1"), config={})
    with pytest.raises(RunFailed, match="died before it finished"):
        coordinator(db).obtain(Spec(), fingerprint="fp", compute=must_not_run)
    holder.wait()


def test_a_failure_propagates_once_then_raises_run_failed(tmp_path):
    db, attempts = tmp_path / "results.db", []

    def broken() -> Computed:
        attempts.append(1)
        raise ValueError("boom")

    runs = coordinator(db)
    with pytest.raises(ValueError, match="boom"):
        runs.obtain(Spec(), fingerprint="fp", compute=broken)
    for again in (runs, coordinator(db)):
        with pytest.raises(RunFailed, match=f"{re.escape(Spec().id)} already failed") as failed:
            again.obtain(Spec(), fingerprint="fp", compute=broken)
        assert failed.value.spec_id == Spec().id and "ValueError: boom" in failed.value.error
    assert attempts == [1]
    assert coordinator(db, "s2").obtain(Spec(), fingerprint="fp", compute=lambda: Computed(
        {"acc": 1.0})).status == "done"  # a new session tries again


def test_results_that_cannot_be_stored_fail_the_run(tmp_path):
    runs = coordinator(tmp_path / "results.db")
    with pytest.raises(ValueError, match="could not convert"):
        runs.obtain(Spec(), fingerprint="fp", compute=lambda: Computed({"acc": "high"}))
    assert runs.store.get("s1", Spec()).status == "failed"  # not left "running" for others


def test_an_interrupted_compute_releases_its_claim(tmp_path):
    class Skipped(BaseException):  # like pytest.skip's exception: not an Exception
        pass

    def skip() -> Computed:
        raise Skipped

    runs = coordinator(tmp_path / "results.db")
    with pytest.raises(Skipped):
        runs.obtain(Spec(), fingerprint="fp", compute=skip)
    assert runs.store.get("s1", Spec()) is None
    rerun = runs.obtain(Spec(), fingerprint="fp", compute=lambda: Computed({"acc": 1.0}))
    assert rerun.status == "done"


def test_reuse_takes_the_newest_stored_run_that_is_not_stale(tmp_path):
    db, counter = tmp_path / "results.db", tmp_path / "calls"
    older = coordinator(db, "s1").obtain(Spec(), fingerprint="fp",
                                         compute=lambda: counted(counter, Spec()))
    newer = coordinator(db, "s2").obtain(Spec(), fingerprint="fp",
                                         compute=lambda: counted(counter, Spec()))
    reused = coordinator(db, "s3", reuse=True).obtain(Spec(), fingerprint="fp2",
                                                      compute=must_not_run)
    assert (reused.source, reused.reused_from, reused.metrics, reused.fingerprint) == (
        "store", newer.id, newer.metrics, "fp2")  # under this session's fingerprint
    assert coordinator(db, "s3", reuse=True).obtain(Spec(), fingerprint="fp2",
                                                    compute=must_not_run) == reused
    # the newest is stale, the older one is not: the older one is reused
    skip_newer = coordinator(db, "s4", reuse=True).obtain(
        Spec(), fingerprint="fp", compute=must_not_run,
        why_stale=lambda row: "x.py changed" if row.id == newer.id else None)
    assert skip_newer.reused_from == older.id
    # all stale: computed, and the row says why, naming the newest stored run
    changed = coordinator(db, "s5", reuse=True).obtain(
        Spec(), fingerprint="fp", compute=lambda: counted(counter, Spec()),
        why_stale=lambda row: f"x.py changed ({row.id})")
    assert changed.source == "run"
    assert changed.note == f"x.py changed ({newer.id}) since run #{newer.id} of session s2"
    fresh = coordinator(db, "s6").obtain(Spec(), fingerprint="fp",
                                         compute=lambda: counted(counter, Spec()))
    assert (fresh.source, fresh.note) == ("run", None)  # without --reuse: no note
    assert calls(counter) == [0, 0, 0, 0]


def test_records_provenance(tmp_path):
    row = coordinator(tmp_path / "results.db").obtain(
        Spec(config={"lr": 0.1}), fingerprint="fp", compute=lambda: Computed({"acc": 1}),
        device="cuda")
    assert {"numpy", "pytest"} <= set(row.versions) and "not-installed" not in row.versions
    assert (row.device, row.config, row.metrics) == ("cuda", {"lr": 0.1}, {"acc": 1.0})
    assert row.duration >= 0 and row.worker == f"w{os.getpid()}"


def test_git_commit(tmp_path):
    assert provenance.git_commit(tmp_path) is None
    assert provenance.git_commit(tmp_path / "missing") is None

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                       check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "f.txt").write_text("1")
    git("add", "f.txt")
    git("commit", "-qm", "init")
    head = provenance.git_commit(tmp_path)
    assert len(head) == 40
    (tmp_path / "untracked.txt").write_text("")
    assert provenance.git_commit(tmp_path) == head
    (tmp_path / "f.txt").write_text("2")
    assert provenance.git_commit(tmp_path) == head + "+dirty"


def test_package_versions_leave_out_missing_packages():
    assert provenance.package_versions(["numpy", "surely-not-installed"]) == {
        "numpy": __import__("numpy").__version__}
