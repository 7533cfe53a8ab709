"""Ray tasks on an existing Ray cluster: one task per run, retried by Ray if its worker dies.

Ray ends a driver's tasks when the driver exits, so there is no detaching here.
"""

from __future__ import annotations

from collections.abc import Sequence

import ray

from harness.launch.jobs import run_ticket


def _task(ticket: str) -> str:
    """What a Ray worker executes; its task id (kept on Ray's retries) is the job id."""
    return run_ticket(ticket, job=f"ray-{ray.get_runtime_context().get_task_id()[:16]}")


class RayLauncher:
    """Submits tickets as tasks of the Ray cluster at `address` ("auto": the local one)."""

    name = "ray"

    def __init__(self, address: str = "auto", *, cpus: float = 1, gpus: float = 0,
                 retries: int = 3) -> None:
        self.address = address
        self.options = {"num_cpus": cpus, "num_gpus": gpus, "max_retries": retries}
        self._refs: dict[str, ray.ObjectRef] = {}
        self._errors: dict[str, str] = {}

    def submit(self, tickets: Sequence[str]) -> list[str]:
        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False, logging_level="warning")
        remote = ray.remote(**self.options)(_task)
        jobs = []
        for ticket in tickets:
            ref = remote.remote(ticket)
            job = f"ray-{ref.task_id().hex()[:16]}"
            self._refs[job] = ref
            jobs.append(job)
        return jobs

    def states(self, jobs: Sequence[str]) -> dict[str, str]:
        """Tasks whose result is ready ended (an error is kept for `error`); the others run or
        wait for a worker (Ray does not tell these apart cheaply)."""
        refs = [self._refs[job] for job in jobs if job in self._refs]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0) if refs else ([], [])
        ended = {ref.task_id().hex()[:16] for ref in ready}
        states = {}
        for job in jobs:
            if job not in self._refs:
                states[job] = "ended"  # submitted by an earlier driver: Ray ended it with it
            elif job.removeprefix("ray-") in ended:
                states[job] = "ended"
                try:
                    ray.get(self._refs[job])
                except Exception as exc:  # the task raised, or its worker died past retries
                    self._errors[job] = f"{type(exc).__name__}: {exc}"
            else:
                states[job] = "running"
        return states

    def error(self, job: str) -> str | None:
        return self._errors.get(job)

    def close(self) -> None:
        if ray.is_initialized():
            ray.shutdown()
