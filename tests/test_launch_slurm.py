"""--ablation-launcher slurm on a real Slurm (tests/slurm_cluster.py: two nodes, two slurmd on
this host, offering 3 CPUs each, so six runs' jobs run at once): every run is its own job,
computed once, ingested, and the verdicts equal a local run's; a cancelled job fails its run
(job id, log tail) while the others finish, and a rerun completes it; a requeued job resumes
from its checkpoint; detach + --reuse.

Needs root, Debian's Slurm and submitit; skipped otherwise. Select with `-m slurm`.
"""

from __future__ import annotations

import importlib.util
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.launch_project import (
    RUNS,
    computed,
    environment,
    events,
    local_verdicts,
    make_project,
    pytest_command,
    run_pytest,
    stage_computed,
    store_rows,
)
from tests.slurm_cluster import Cluster, started_or_skip

pytestmark = pytest.mark.slurm

SLOW = RUNS[4]  # better-seed1


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if importlib.util.find_spec("submitit") is None:
        pytest.skip("submitit not installed: pip install 'pytest-ablation[slurm]'")
    yield from started_or_skip(tmp_path_factory.mktemp("slurm"), timeout=30, cpus=3, nodes=2)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> list[tuple]:
    return local_verdicts(tmp_path_factory.mktemp("local"))


def test_each_run_is_its_own_job_computed_once_and_verdicts_equal_local(
        cluster: Cluster, tmp_path: Path, local: list[tuple]) -> None:
    project = make_project(tmp_path / "project")
    log = project / "toy.log"
    out = run_pytest(project, environment(log, {**cluster.env, "TOY_STAGE_DELAY": "1"}),
                     "--ablation-launcher", "slurm")
    assert out.returncode == 0, out.stdout + out.stderr + cluster.log_tail()
    assert "6 submitted" in out.stdout and "6 done, 0 failed" in out.stdout, out.stdout
    assert "7 passed" in out.stdout, out.stdout
    assert computed(log) == {run: 1 for run in RUNS}  # each body ran once
    assert stage_computed(log) == {0: 1, 1: 1, 2: 1}  # a stage two jobs share: once
    runs, verdicts = store_rows(project / ".ablation" / "results.sqlite")
    assert [r[2] for r in runs] == ["done"] * 6
    jobs = {r[3] for r in runs}
    assert len(jobs) == 6 and all(re.fullmatch(r"slurm-\d+_\d", j) for j in jobs), jobs
    assert {e["job"] for e in events(log)} == jobs  # and it ran inside that job
    assert {e["node"] for e in events(log)} == {"n1", "n2"}  # on both nodes
    assert verdicts == local  # same statuses, differences and p-values


def test_a_hypothesis_selected_alone_gets_the_runs_it_needs_as_jobs(
        cluster: Cluster, tmp_path: Path, local: list[tuple]) -> None:
    project = make_project(tmp_path / "project")
    log = project / "toy.log"
    out = run_pytest(project, environment(log, cluster.env), "--ablation-launcher", "slurm",
                     "-m", "hypothesis")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "6 done, 0 failed" in out.stdout and "1 passed, 6 deselected" in out.stdout, \
        out.stdout
    assert computed(log) == {run: 1 for run in RUNS} and all(e["job"] for e in events(log))
    assert store_rows(project / ".ablation" / "results.sqlite")[1] == local


def _job_of(project: Path, run: str, timeout: float = 60,
            cluster: Cluster | None = None) -> str:
    """The job id of `run` once its body has started (and checkpointed a step). With
    `cluster`, jobs requeued meanwhile are started at once (see _release_held)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cluster is not None:
            _release_held(cluster)
        started = [e for e in events(project / "toy.log") if e["run"] == run]
        ckpt = list((project / ".ablation" / "checkpoints").rglob(f"{run}-*.pt"))
        if started and ckpt:
            return started[-1]["job"].removeprefix("slurm-")
        time.sleep(0.2)
    raise AssertionError(f"{run} never started; the toy's events: {events(project / 'toy.log')}")


Start = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def start(cluster: Cluster) -> Iterator[Start]:
    """`start(project, *args, **env)`: a controller session in the background, SLOW training
    8 steps of 1 s unless `env` says otherwise; killed if a test leaves it running."""
    started: list[subprocess.Popen[str]] = []

    def controller(project: Path, *args: str, **env: str) -> subprocess.Popen[str]:
        variables = {**cluster.env, "TOY_SLOW": SLOW, "TOY_STEPS": "8", "TOY_DELAY": "1", **env}
        started.append(subprocess.Popen(
            pytest_command("--ablation-launcher", "slurm", *args), cwd=project,
            env=environment(project / "toy.log", variables), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True))
        return started[-1]

    yield controller
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_a_cancelled_job_fails_its_run_with_job_id_and_log_tail_and_a_rerun_completes(
        cluster: Cluster, start: Start, tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    controller = start(project)
    job = _job_of(project, SLOW)
    assert cluster.run("scancel", job).returncode == 0
    out, _ = controller.communicate(timeout=120)
    assert controller.returncode == 1, out
    assert "5 done, 1 failed" in out, out
    runs, _ = store_rows(project / ".ablation" / "results.sqlite")
    failed = [r for r in runs if r[2] == "failed"]
    assert [(r[0], r[1]) for r in failed] == [("better", 1)]
    assert f"job slurm-{job}: the job ended without a result" in failed[0][5]
    assert f"{SLOW}" in failed[0][5] and "=== job" in failed[0][5]  # the log's tail
    assert computed(project / "toy.log") == {run: 1 for run in RUNS if run != SLOW}

    rerun = run_pytest(project, environment(project / "toy.log", cluster.env),
                       "--ablation-launcher", "slurm", "--reuse")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "1 submitted" in rerun.stdout and "7 passed" in rerun.stdout, rerun.stdout
    assert computed(project / "toy.log") == {run: 1 for run in RUNS}
    starts = [e["step"] for e in events(project / "toy.log")
              if e["run"] == SLOW and e["event"] == "start"]
    assert starts[0] == 0 and starts[1] > 0  # the rerun resumed from the checkpoint


def test_a_requeued_job_resumes_from_its_checkpoint_and_the_results_are_complete(
        cluster: Cluster, start: Start, tmp_path: Path, local: list[tuple]) -> None:
    project = make_project(tmp_path / "project")
    controller = start(project)
    job = _job_of(project, SLOW)
    requeue = cluster.run("scontrol", "requeue", job)
    assert requeue.returncode == 0, requeue.stderr
    _release(cluster, job)
    out, _ = controller.communicate(timeout=180)
    assert controller.returncode == 0, out + cluster.log_tail()
    assert "6 done, 0 failed" in out, out
    assert computed(project / "toy.log") == {run: 1 for run in RUNS}
    starts = [e for e in events(project / "toy.log")
              if e["run"] == SLOW and e["event"] == "start"]
    assert len(starts) == 2 and starts[0]["step"] == 0 and starts[1]["step"] > 0, starts
    assert starts[0]["job"] == starts[1]["job"] == f"slurm-{job}"  # the same job, requeued
    runs, verdicts = store_rows(project / ".ablation" / "results.sqlite")
    assert [r[2] for r in runs] == ["done"] * 6 and verdicts == local


def test_a_job_signalled_before_its_time_limit_is_requeued_and_resumes(
        cluster: Cluster, start: Start, tmp_path: Path, local: list[tuple]) -> None:
    """submitit's own path: a 2-minute limit, USR2 75 s before it (slurmctld looks every
    30 s, so it comes 45 to 75 s in: time for a job to start on a loaded 2-core machine); the
    job is requeued and resumes from its checkpoint, as often as its ~80 s of training need
    (each incarnation may be signalled again)."""
    project = make_project(tmp_path / "project")
    log = project / "toy.log"
    controller = start(project, "-o", "ablation_slurm_time=2", "-o",
                       "ablation_slurm_signal_delay=75", "-o", "ablation_slurm_requeues=10",
                       TOY_STEPS="400", TOY_DELAY="0.2")
    # under load a job may be signalled before its body starts: it is requeued, and held
    job = _job_of(project, SLOW, timeout=240, cluster=cluster)
    deadline = time.monotonic() + 420
    while controller.poll() is None and time.monotonic() < deadline:
        _release_held(cluster)  # requeued by submitit: start it now (see _release)
        time.sleep(0.5)
    out, _ = controller.communicate(timeout=10)
    assert controller.returncode == 0, out + cluster.log_tail()
    starts = [e for e in events(log) if e["run"] == SLOW and e["event"] == "start"]
    steps = [e["step"] for e in starts]
    assert len(starts) >= 2 and steps[0] == 0 and steps == sorted(set(steps)), starts
    assert {e["job"] for e in starts} == {f"slurm-{job}"}  # one job, requeued
    submitit_log = next((project / ".ablation" / "spool" / "submitit").glob(f"{job}_*log.err"))
    assert "Caught signal SIGUSR2" in submitit_log.read_text()
    # every job of the array has the 2-minute limit: under load a fast run's job can be
    # signalled after its body ended and before its result was published; requeued, it
    # computes again. Computing under preemption is at least once; storing is exactly once.
    assert set(computed(log)) == set(RUNS)
    runs, verdicts = store_rows(project / ".ablation" / "results.sqlite")
    assert sorted(r[:3] for r in runs) == sorted((v, s, "done") for v in ("base", "better")
                                                 for s in range(3))  # each stored once
    assert verdicts == local


def _release_held(cluster: Cluster) -> None:
    """Start every job that Slurm holds back after a requeue (reason BeginTime) now."""
    for line in cluster.run("squeue", "-h", "-o", "%i %r").stdout.splitlines():
        job, _, reason = line.partition(" ")
        if reason.strip() == "BeginTime":
            cluster.run("scontrol", "update", f"JobId={job}", "StartTime=now")


def _release(cluster: Cluster, job: str, timeout: float = 60) -> None:
    """Slurm holds a requeued job back ~2 minutes (reason BeginTime): start it now instead,
    once it is back in the queue (an update before that has no effect)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reason = cluster.run("squeue", "-h", "-j", job, "-o", "%r").stdout.strip()
        if reason == "BeginTime":
            assert cluster.run("scontrol", "update", f"JobId={job}",
                               "StartTime=now").returncode == 0
            return
        time.sleep(0.2)
    raise AssertionError(f"job {job} never came back to the queue after its requeue")


def test_detach_then_reuse_collects_the_jobs_and_decides(
        cluster: Cluster, tmp_path: Path, local: list[tuple]) -> None:
    project = make_project(tmp_path / "project")
    env = environment(project / "toy.log", {**cluster.env, "TOY_SLOW": SLOW, "TOY_STEPS": "4"})
    out = run_pytest(project, env, "--ablation-launcher", "slurm", "--ablation-detach")
    assert out.returncode == 0 and "detached: 6 runs submitted" in out.stdout + out.stderr, \
        out.stdout + out.stderr
    early = run_pytest(project, env, "--reuse")  # the slow run is still out
    assert early.returncode == pytest.ExitCode.INTERRUPTED, early.stdout + early.stderr
    assert f"test_toy[{SLOW}]" in early.stdout and "still queued or running" in early.stdout
    status = subprocess.run([sys.executable, "-m", "harness.launch", "status"], cwd=project,
                            env=env, capture_output=True, text=True)
    assert status.returncode == 3 and f"test_toy[{SLOW}]" in status.stdout, status
    deadline = time.monotonic() + 120
    while computed(project / "toy.log").get(SLOW) != 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)  # the job writes its result after the body
    status = subprocess.run([sys.executable, "-m", "harness.launch", "status"], cwd=project,
                            env=env, capture_output=True, text=True)
    assert status.returncode == 0 and "every launched run is in" in status.stdout, status
    late = run_pytest(project, env, "--reuse")
    assert late.returncode == 0 and "7 passed" in late.stdout, late.stdout + late.stderr
    assert computed(project / "toy.log") == {run: 1 for run in RUNS}
    runs, verdicts = store_rows(project / ".ablation" / "results.sqlite")
    assert verdicts == local and [r[2] for r in runs] == ["done"] * 6


def test_a_submission_that_slurm_refuses_is_a_usage_error_naming_why(
        cluster: Cluster, tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    out = run_pytest(project, environment(project / "toy.log", cluster.env),
                     "--ablation-launcher", "slurm", "-o", "ablation_slurm_partition=nope")
    assert out.returncode == pytest.ExitCode.USAGE_ERROR, out.stdout + out.stderr
    assert "--ablation-launcher slurm: submitting 6 runs failed" in out.stdout + out.stderr
    assert "invalid partition" in (out.stdout + out.stderr).lower()


ADAPTIVE = {"seeds": '{"min": 2, "max": 6, "batch": 2}', "noise": "0.5"}  # settled at look 2


def test_an_adaptive_budget_submits_each_needed_look_as_a_wave_and_no_more(
        cluster: Cluster, tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", **ADAPTIVE)
    log = project / "toy.log"
    out = run_pytest(project, environment(log, cluster.env), "--ablation-launcher", "slurm")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("submitted 4 runs as jobs") == 2, out.stdout  # looks 1 and 2
    assert "SUPPORTED (look 2/3, 4 seeds)" in out.stdout, out.stdout
    assert computed(log) == {f"synthetic-noise=0.5-{v}-seed{s}": 1 for v in ("base", "better")
                             for s in range(4)}  # once each; seeds 4, 5 not needed: not run
    assert all(e["job"] for e in events(log))  # every run in a job, none in the session
    assert store_rows(project / ".ablation" / "results.sqlite")[1] == local_verdicts(
        tmp_path / "local", **ADAPTIVE)


def test_a_detached_adaptive_study_gets_its_later_looks_as_jobs_in_the_next_session(
        cluster: Cluster, tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", **ADAPTIVE)
    log = project / "toy.log"
    env = environment(log, cluster.env)
    out = run_pytest(project, env, "--ablation-launcher", "slurm", "--ablation-detach")
    assert out.returncode == 0 and "submitted 4 runs" in out.stdout, out.stdout + out.stderr
    deadline = time.monotonic() + 120
    while subprocess.run([sys.executable, "-m", "harness.launch", "status"], cwd=project,
                         env=env, capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, "the first look's jobs never finished"
        time.sleep(1)
    later = run_pytest(project, env, "--ablation-launcher", "slurm", "--reuse")
    assert later.returncode == 0, later.stdout + later.stderr
    assert later.stdout.count("submitted 4 runs") == 1, later.stdout  # look 2 only
    assert computed(log) == {f"synthetic-noise=0.5-{v}-seed{s}": 1 for v in ("base", "better")
                             for s in range(4)} and all(e["job"] for e in events(log))


def test_a_launched_run_logs_to_the_controllers_wandb_group_with_its_job_id(
        cluster: Cluster, tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    from tests.wandb_offline import offline_runs, read_offline_run

    project = make_project(tmp_path / "project")
    out = run_pytest(project, environment(project / "toy.log", cluster.env),
                     "--ablation-launcher", "slurm", "--wandb", "--wandb-mode", "offline",
                     "-k", "base and seed0")
    assert out.returncode == 0 and "1 done, 0 failed" in out.stdout, out.stdout + out.stderr
    with sqlite3.connect(project / ".ablation" / "results.sqlite") as db:
        session, job = db.execute("SELECT session, worker FROM runs WHERE kind = 'run'").fetchone()
    (run,) = offline_runs(project / ".ablation" / "runs" / session)
    logged = read_offline_run(run)
    assert logged["group"] == f"ablate-ablation_tests/test_toy.py::test_toy_{session}"
    assert logged["config"]["ablation_job"] == job and job.startswith("slurm-")
