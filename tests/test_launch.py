"""harness.launch without a cluster: leases, the spool, ingesting exactly once, two jobs for one
run, and the usage errors of the launcher options. (Real Slurm and Ray: test_launch_slurm.py,
test_launch_ray.py.)"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.core.stages import StageSpec
from harness.core.store import Store
from harness.launch.controller import Controller, LauncherError, spec_row
from harness.launch.jobs import Ticket
from harness.launch.spool import Lease, Spool, entry_name, write_json
from harness.tracking import Tracker, default_group
from tests.launch_project import RUNS, computed, environment, make_project
from tests.specs import Spec


def test_a_lease_is_held_by_one_job_until_released(tmp_path: Path) -> None:
    path = tmp_path / "leases" / "run.json"
    first, second = Lease(path, "slurm-1_0", beat=0.1), Lease(path, "slurm-2_0", beat=0.1)
    assert first.acquire() is None
    holder = second.acquire()
    assert holder is not None and holder["job"] == "slurm-1_0"
    time.sleep(0.35)  # the heartbeat keeps it fresh
    assert json.loads(path.read_text())["beat"] > time.time() - 0.3
    first.release()
    assert not path.exists()
    assert second.acquire() is None
    second.release()


def test_a_stale_lease_or_one_of_the_same_requeued_job_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    write_json(path, {"job": "slurm-1_0", "host": "gone", "pid": 1, "token": "t",
                      "beat": time.time() - 100})
    taker = Lease(path, "slurm-2_0", stale_after=60)
    assert taker.acquire() is None  # no beat for 100 s: its holder is presumed dead
    assert json.loads(path.read_text())["job"] == "slurm-2_0"
    requeued = Lease(path, "slurm-2_0")  # the same job after a requeue: its own lease
    assert requeued.acquire() is None
    taker.release()  # no longer ours: left alone
    assert json.loads(path.read_text())["token"] == requeued.holder["token"]
    requeued.release()


def test_a_half_written_result_is_never_read(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "s1")
    (spool.folder / "results").mkdir(parents=True)
    (spool.folder / "results" / ".run.json.1234.tmp").write_text('{"trunc')  # a killed writer
    assert spool.names("results") == []
    spool.write("results", "run", {"a": 1})
    assert spool.names("results") == ["run"] and spool.read("results", "run") == {"a": 1}


def _row(spec: object, **values: object) -> dict:
    return {**spec_row(spec), "fingerprint": "f1", "status": "done", "metrics": {"acc": 1.0},
            "failures": [], "error": None, "source": "run", "host": "node7", "pid": 42,
            "worker": "slurm-9_0", "device": "cpu", "started_at": "t", "finished_at": "t",
            "versions": {}, "stages": [], **values}


def _ticket(spool: Spool, spec: object, fingerprint: str = "f1") -> str:
    name = entry_name(spec.key, spec.id)  # type: ignore[attr-defined]
    ticket = Ticket(name=name, spool=str(spool.root), session=spool.session,
                    key=spec.key, spec=spec_row(spec), nodeid="t.py::t[x]",  # type: ignore[attr-defined]
                    fingerprint=fingerprint, rootdir=".", data_dir=".", python=sys.executable,
                    args=[], group="g")
    spool.write("tickets", name, dataclasses.asdict(ticket))
    return name


def test_a_result_is_ingested_once_with_its_stage_rows(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.sqlite")
    store.begin_session("s1", argv=[], meta={})
    spool = Spool(tmp_path / "spool", "s1")
    run, stage = Spec(), StageSpec("heads", "synthetic", "train", 0, {"lr": 0.01})
    name = _ticket(spool, run)
    stage_row = {**_row(stage), "id": 7, "kind": "stage", "artifact": "stages/x"}
    spool.write("results", name, {"job": "slurm-9_0", "run": _row(
        run, stages=[{"name": "train", "row": 7, "computed": True}]), "stages": [stage_row]})
    controller = Controller(store, spool.root, "s1", None)
    assert controller.ingest(spool) == [name]
    assert controller.ingest(spool) == []  # moved to ingested/: never twice
    spool.write("results", name, spool.read("ingested", name))  # even if it came back
    controller.ingest(spool)
    rows = store.runs("s1")
    assert len(rows) == 1 and rows[0].worker == "slurm-9_0" and rows[0].host == "node7"
    stages = store.runs("s1", kind="stage")
    assert rows[0].stages[0]["row"] == stages[0].id  # points at the session's stage row


def test_a_result_made_from_other_code_fails_its_run(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.sqlite")
    spool = Spool(tmp_path / "spool", "s1")
    run = Spec(seed=1)
    name = _ticket(spool, run, fingerprint="f0")
    spool.write("results", name, {"job": "slurm-3_1", "run": _row(run)})
    Controller(store, spool.root, "s1", None).ingest(spool)
    (row,) = store.runs("s1")
    assert row.status == "failed" and "submitted as f0" in (row.error or "")


def _toy_ticket(project: Path, variant: str, seed: int) -> tuple[Spool, list[str]]:
    """A ticket for one run of the toy project, by hand; the command that runs it as a job."""
    spool = Spool(project / ".ablation" / "spool", "20260101-000000-abcdef")
    spec = Spec(study="ablation_tests/test_toy.py::test_toy", knobs=(("noise", 0.1),),
                variant=variant, seed=seed)
    ticket = Ticket(name="run", spool=str(spool.root), session=spool.session, key=spec.key,
                    spec={}, nodeid=f"ablation_tests/test_toy.py::test_toy[{spec.id}]",
                    fingerprint="?", rootdir=str(project), data_dir=str(project / ".ablation"),
                    python=sys.executable, args=["--rootdir", str(project)], group="g")
    spool.write("tickets", "run", dataclasses.asdict(ticket))
    return spool, [sys.executable, "-m", "harness.launch.jobs", str(spool.path("tickets", "run"))]


def test_two_jobs_for_one_run_compute_it_once(tmp_path: Path) -> None:
    """Both start at once; the one without the lease leaves; a third finds the result."""
    project = make_project(tmp_path / "project")
    slow = RUNS[4]
    spool, command = _toy_ticket(project, "better", 1)
    env = environment(project / "toy.log", {"TOY_SLOW": slow, "TOY_STEPS": "3",
                                            "TOY_DELAY": "0.5"})
    jobs = [subprocess.Popen(command, env={**env, "SLURM_JOB_ID": str(i)}, cwd=project,
                             stdout=subprocess.PIPE, text=True) for i in (1, 2)]
    said = sorted(job.communicate(timeout=120)[0].strip() for job in jobs)
    assert said[0].startswith("held by slurm-") and said[1] == "result written", said
    again = subprocess.run(command, env=env, cwd=project, capture_output=True, text=True)
    assert again.stdout.strip() == "finished before: nothing to do"
    assert computed(project / "toy.log") == {slow: 1}
    result = spool.read("results", "run")
    assert result["run"]["status"] == "done" and result["run"]["worker"] == result["job"]


def test_a_body_that_raises_fails_its_run_with_the_job_id_and_the_log_tail(
        tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    spool, command = _toy_ticket(project, "base", 2)
    env = environment(project / "toy.log", {"TOY_FAIL": RUNS[2], "SLURM_JOB_ID": "77"})
    assert subprocess.run(command, env=env, cwd=project, capture_output=True,
                          text=True).stdout.strip() == "result written"
    run = spool.read("results", "run")["run"]
    assert run["status"] == "failed" and run["worker"] == "slurm-77"
    error = run["error"]
    assert error.startswith("job slurm-77: ") and "RuntimeError: the toy body failed" in error
    assert "the end of its log" in error and "1 failed in" in error  # pytest's own words


def test_a_launched_run_keeps_the_controllers_wandb_group_and_carries_its_job_id(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "4711")  # the run's own job
    monkeypatch.setenv("ABLATION_GROUP_JOB", "4700")  # the controller's, handed over
    assert default_group("heads") == "ablate-heads_4700"
    tracker = Tracker(run_dir=tmp_path, launched_as="slurm-4711")
    log = tracker.start(study="heads", name="r", config={"lr": 0.1})
    log.finish({}, status="done")
    assert json.loads((log.path / "config.json").read_text()) == {"lr": 0.1,
                                                                  "ablation_job": "slurm-4711"}


class _Requeued:
    """An engine whose one job is unlisted for a moment at each of its requeues (as squeue may
    show a job between its incarnations), then hands back its result."""

    name = "scripted"

    def __init__(self, spool: Spool, name: str, result: dict) -> None:
        self.spool, self.entry, self.result = spool, name, result
        self.script = ["running", "ended", "queued", "running", "ended", "running"]

    def states(self, jobs: list[str]) -> dict[str, str]:
        state = self.script.pop(0) if self.script else "ended"
        if not self.script and not self.spool.names("results"):
            self.spool.write("results", self.entry, self.result)
        return dict.fromkeys(jobs, state)

    def error(self, job: str) -> None:
        return None


def test_a_job_unlisted_for_moments_across_requeues_is_not_failed(tmp_path: Path) -> None:
    """The grace before a job that squeue stops listing counts as dead restarts when it is
    listed again: its gaps across several requeues added up and failed a live run."""
    store = Store(tmp_path / "results.sqlite")
    store.begin_session("s1", argv=[], meta={})
    spool = Spool(tmp_path / "spool", "s1")
    run = Spec()
    name = _ticket(spool, run)
    engine = _Requeued(spool, name, {"job": "slurm-9_0", "run": _row(run)})
    controller = Controller(store, spool.root, "s1", engine, report=lambda line: None,
                            poll=0.01, grace=0.015)
    tally = controller.wait({name: "slurm-9_0"})
    assert (tally.failed, [r.status for r in store.runs("s1")]) == (0, ["done"])


def test_a_squeue_that_keeps_failing_ends_the_wait_instead_of_hanging(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slurm = pytest.importorskip("harness.launch.slurm", reason="submitit not installed")
    monkeypatch.setenv("PATH", str(tmp_path))  # no squeue
    launcher = slurm.SlurmLauncher(tmp_path)
    assert launcher.states(["slurm-1_0"]) == {"slurm-1_0": "queued"}  # a hiccup: nothing ended
    monkeypatch.setattr(slurm, "SQUEUE_PATIENCE_S", 0.0)
    time.sleep(0.01)
    with pytest.raises(LauncherError, match=r"squeue has failed for 0 s .* may still run"):
        launcher.states(["slurm-1_0"])


@pytest.mark.parametrize(("args", "ini", "message"), [
    (["--ablation-detach"], "", "--ablation-detach needs --ablation-launcher slurm"),
    (["--ablation-launcher", "ray", "--ablation-detach"], "",
     "Ray ends a driver's tasks when the driver exits"),
    (["--ablation-launcher", "slurm"], "", "sbatch and squeue not found on PATH"),
    (["--ablation-launcher", "ray"], "ablation_job_gpus = two",
     "ini ablation_job_gpus = 'two': give a number >= 0"),
    ([], "ablation_launcher = kubernetes", "choose one of local, slurm, ray"),
])
def test_launcher_options_that_cannot_work_are_refused_up_front(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args: list[str], ini: str,
        message: str) -> None:
    if "submitit" not in sys.modules and "slurm" in args:
        pytest.importorskip("submitit")
    if "ray" in args and "--ablation-detach" not in args:
        pytest.importorskip("ray")
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))  # no Slurm clients
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
