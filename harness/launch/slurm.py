"""Slurm jobs through submitit: one array task per run, requeued on preemption or time limit.

submitit writes the sbatch script, pickles our callable for the job (our own submission: only
results come back, as JSON through the spool) and, since the callable is Checkpointable,
requeues a job that Slurm signals before its time limit or preempts. Job states come from
squeue, which needs no accounting database (sacct does).
"""

from __future__ import annotations

import getpass
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import submitit

from harness.launch.controller import LauncherError
from harness.launch.jobs import run_ticket

SQUEUE_PATIENCE_S = 120.0
QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "SUSPENDED",
          "RESV_DEL_HOLD", "SPECIAL_EXIT", "RESIZING"}


class SlurmJob(submitit.helpers.Checkpointable):
    """The job's callable. Checkpointable: on the signal before the time limit (or a
    preemption) submitit requeues the job with the same ticket; the requeued job takes its own
    lease back and the run resumes from the checkpoint its body wrote."""

    def __call__(self, ticket: str) -> str:
        return run_ticket(ticket)


class SlurmLauncher:
    """Submits tickets as one Slurm job array (settings from the ini values)."""

    name = "slurm"

    def __init__(self, folder: Path, *, partition: str = "", cpus: int = 1, gpus: int = 0,
                 minutes: int = 60, parallelism: int = 0, requeues: int = 3,
                 signal_delay: int = 90, sbatch: Mapping[str, str] | None = None) -> None:
        self.folder = Path(folder)
        self.requeues = requeues
        self._failing_since: float | None = None
        self.parameters: dict = {"job_name": "ablation-run", "time": minutes,
                                 "signal_delay_s": signal_delay,
                                 "cpus_per_task": cpus, "ntasks_per_node": 1,
                                 "additional_parameters": dict(sbatch or {})}
        if partition:
            self.parameters["partition"] = partition
        if gpus:
            self.parameters["gpus_per_node"] = gpus
        if parallelism:
            self.parameters["array_parallelism"] = parallelism

    def submit(self, tickets: Sequence[str]) -> list[str]:
        """Submit one array task per ticket; their job ids, in order."""
        executor = submitit.SlurmExecutor(folder=self.folder, max_num_timeout=self.requeues)
        executor.update_parameters(**self.parameters)
        jobs = executor.map_array(SlurmJob(), list(tickets))
        return [f"slurm-{job.job_id}" for job in jobs]

    def states(self, jobs: Sequence[str]) -> dict[str, str]:
        """`queued` or `running` for each job squeue lists; jobs it no longer lists ended.
        While squeue fails (slurmctld busy or restarting) nothing has ended, for up to
        SQUEUE_PATIENCE_S; then the wait ends with a LauncherError (the jobs may still run)."""
        found = slurm_states(jobs)
        if isinstance(found, dict):
            self._failing_since = None
            return found
        self._failing_since = self._failing_since or time.monotonic()
        if time.monotonic() - self._failing_since > SQUEUE_PATIENCE_S:
            raise LauncherError(f"squeue has failed for {SQUEUE_PATIENCE_S:.0f} s ({found}): "
                                "the jobs may still run; `python -m harness.launch status` or "
                                "`pytest ... --reuse` collects them later")
        return {job: "queued" for job in jobs}

    def error(self, job: str) -> str | None:
        return None  # Slurm does not say why: the run's log does

    def close(self) -> None:
        """Nothing is held open: jobs outlive this process (which is what detach uses)."""


def slurm_states(jobs: Sequence[str]) -> dict[str, str] | str:
    """Job id -> "queued" | "running" | "ended", from one squeue of this user's jobs; or why
    squeue failed (then nothing can be said)."""
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T"],
                             capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        return "no answer within 60 s"
    except OSError as exc:  # squeue gone from PATH
        return str(exc)
    if out.returncode != 0:
        return out.stderr.strip() or f"exit code {out.returncode}"
    listed = dict(line.split("|", 1) for line in out.stdout.split() if "|" in line)
    states = {}
    for job in jobs:
        state = listed.get(job.removeprefix("slurm-"))
        states[job] = "ended" if state is None else "queued" if state in QUEUED else "running"
    return states


def problem() -> str | None:
    """Why jobs cannot be submitted from here, or None."""
    missing = [p for p in ("sbatch", "squeue") if shutil.which(p) is None]
    if missing:
        return (f"{' and '.join(missing)} not found on PATH: run pytest on a Slurm login node "
                f"(or load Slurm's module) for --ablation-launcher slurm")
    return None
