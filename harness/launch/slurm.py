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
from collections.abc import Mapping, Sequence
from pathlib import Path

import submitit

from harness.launch.jobs import run_ticket

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
        """`queued` or `running` for each job squeue lists; jobs it no longer lists ended."""
        return slurm_states(jobs)

    def error(self, job: str) -> str | None:
        return None  # Slurm does not say why: the run's log does

    def close(self) -> None:
        """Nothing is held open: jobs outlive this process (which is what detach uses)."""


def slurm_states(jobs: Sequence[str]) -> dict[str, str]:
    """Job id -> "queued" | "running" | "ended", from one squeue of this user's jobs."""
    out = subprocess.run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T"],
                         capture_output=True, text=True, timeout=60, check=False)
    if out.returncode != 0:  # slurmctld busy or down: say nothing ended rather than guess
        return {job: "queued" for job in jobs}
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
