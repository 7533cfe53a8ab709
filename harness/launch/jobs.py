"""What one job executes: the pytest item of exactly one run, in the controller's checkout.

The job runs `python -m pytest <the run's node id> --ablation-job <ticket>` in the same
rootdir with the same interpreter, so the run gets the same fixtures and the same fingerprint
as in a local session. Its results store is private and on node-local disk (SQLite never
crosses hosts); checkpoints, stage values and run logs go to the shared folder beside the
controller's store, so a requeued job resumes from the checkpoint its first incarnation left.
When pytest is done, the run's row (and the rows of the stages it computed) go to the spool as
one JSON file; the controller ingests them into the shared store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.store import RunRecord, SpecLike, Store
from harness.launch.spool import Lease, Spool, entry_name, read_json

JOB_ENV = "ABLATION_JOB_ID"  # the job id, handed to the job's pytest (its rows' worker)
GROUP_ENV = "ABLATION_GROUP_JOB"  # the controller's W&B group suffix (harness.tracking)


@dataclass(frozen=True)
class Ticket:
    """Everything a job needs to run one run, written by the controller as JSON."""

    name: str  # the run's entry in the spool
    spool: str  # the spool root (spool/ beside the shared store)
    session: str  # the controller's session: the job's rows belong to it
    key: str
    spec: dict  # study, tier, knobs, variant, seed, config, kind: for a failed row
    nodeid: str  # the run item's pytest node id
    fingerprint: str  # what the controller computed: a job that differs is refused
    rootdir: str
    data_dir: str  # the folder of the shared store: checkpoints, stages, run logs
    python: str
    args: list[str]  # the controller's options the run depends on (seed offset, tiers, ...)
    group: str  # the controller's W&B group suffix (its Slurm job id or session id)
    beat: float = 10.0  # lease heartbeat, seconds
    stale_after: float = 60.0
    # finished rows of the session the run's item reads before it runs: an adaptive budget's
    # earlier looks, which decide whether this later-look run is needed at all
    known: list[dict] = dataclasses.field(default_factory=list)

    @classmethod
    def read(cls, path: str | os.PathLike) -> Ticket:
        data = read_json(Path(path))
        if data is None:
            raise FileNotFoundError(f"no job ticket at {path}")
        return cls(**data)

    @property
    def session_spool(self) -> Spool:
        """The spool folder of the ticket's session."""
        return Spool(Path(self.spool), self.session)


def job_id() -> str:
    """This job's id: `slurm-<job>[_<task>]` inside Slurm, else `pid-<pid>` (Ray passes its own)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"slurm-{array}_{task}"
    if os.environ.get("SLURM_JOB_ID"):
        return f"slurm-{os.environ['SLURM_JOB_ID']}"
    return f"pid-{os.getpid()}"


def run_ticket(path: str, job: str | None = None) -> str:
    """Execute the run of the ticket at `path` unless it is finished or another live job holds
    it; returns what happened, in a few words (the engines log it)."""
    ticket = Ticket.read(path)
    job = job or job_id()
    spool = ticket.session_spool
    if spool.finished(ticket.name):
        return "finished before: nothing to do"
    lease = Lease(spool.path("leases", ticket.name), job, beat=ticket.beat,
                  stale_after=ticket.stale_after)
    with lease.held() as other:
        if other is not None:
            return f"held by {other.get('job')} on {other.get('host')}: nothing to do"
        if spool.finished(ticket.name):  # finished just before we took the lease
            return "finished before: nothing to do"
        scratch = os.environ.get("SLURM_TMPDIR") or os.environ.get("TMPDIR")
        with tempfile.TemporaryDirectory(prefix="ablation-job-", dir=scratch) as tmp:
            store = Path(tmp) / "results.sqlite"
            if ticket.known:
                with Store(store) as private:
                    for row in ticket.known:
                        private.ingest(ticket.session, row)
            code = _pytest(ticket, path, store, job)
            if code < 0:  # killed by a signal (requeue, scancel, preemption): no result; a
                return f"pytest killed by signal {-code}"  # requeued job resumes the run
            spool.write("results", ticket.name, export(ticket, store, job, code))
    return "result written"


def _pytest(ticket: Ticket, path: str, store: Path, job: str) -> int:
    """Run the run's item; its output goes to the run's log in the spool (appended)."""
    log = ticket.session_spool.path("logs", ticket.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [ticket.python, "-m", "pytest", ticket.nodeid, "-p", "no:cacheprovider",
               "--ablation-store", str(store), "--ablation-job", path,
               "--no-ablation-tables", "--ablation-progress", "off", *ticket.args]
    env = {**os.environ, JOB_ENV: job, GROUP_ENV: ticket.group}
    with open(log, "a") as out:
        out.write(f"=== job {job} on {os.uname().nodename}: {' '.join(command)}\n")
        out.flush()
        # the engine's own signal (submitit's USR2 before a time limit) is for this process,
        # which requeues the job; pytest keeps running (and checkpointing) until it is killed
        return subprocess.run(command, cwd=ticket.rootdir, env=env, stdout=out,
                              stderr=subprocess.STDOUT,
                              preexec_fn=lambda: signal.signal(signal.SIGUSR2, signal.SIG_IGN),
                              check=False).returncode


def export(ticket: Ticket, store_path: Path, job: str, code: int) -> dict[str, Any]:
    """The job's result: the run's row and the rows of the stages it used, as JSON."""
    spool = ticket.session_spool
    rows: list[RunRecord] = []
    if store_path.exists():
        with Store(store_path, readonly=True) as store:
            rows = store.runs(ticket.session, kind="run") + store.runs(ticket.session,
                                                                       kind="stage")
    run = next((r for r in rows if r.key == ticket.key), None)
    result: dict[str, Any] = {"name": ticket.name, "key": ticket.key, "job": job,
                              "returncode": code, "run": None, "stages": []}
    if run is None or run.status == "running":
        result["error"] = (f"job {job}: pytest exited with code {code} without a result for "
                           f"the run; the end of its log "
                           f"({spool.path('logs', ticket.name)}):\n{spool.log_tail(ticket.name)}")
        return result
    result["run"] = dataclasses.asdict(run)
    used = {u.get("row") for u in run.stages}
    result["stages"] = [dataclasses.asdict(r) for r in rows
                        if r.kind == "stage" and r.id in used and r.status == "done"]
    if run.status == "failed":
        result["run"]["error"] = (f"job {job}: {run.error}\nthe end of its log "
                                  f"({spool.path('logs', ticket.name)}):\n"
                                  f"{spool.log_tail(ticket.name)}")
    return result


class StageGate:
    """A stage that several runs share is computed once per session, also when their jobs run
    at once on other hosts: in a job, a stage another job published is taken from the spool;
    one that another job computes now (it holds the stage's lease) is waited for; one
    computed here is published for the others (its value is in the shared stages/ folder)."""

    def __init__(self, ticket: Ticket, store: Store, job: str, poll: float = 0.5) -> None:
        self.spool, self.store, self.session = ticket.session_spool, store, ticket.session
        self.job, self.poll = job, poll
        self.beat, self.stale_after = ticket.beat, ticket.stale_after

    def _take(self, name: str, fingerprint: str) -> bool:
        """Adopt the published stage row into the job's store; whether there was one."""
        row = self.spool.read("stages", name)
        if row is None or row["fingerprint"] != fingerprint:
            return False
        self.store.ingest(self.session, row)
        return True

    @contextlib.contextmanager
    def __call__(self, spec: SpecLike, fingerprint: str) -> Iterator[None]:
        name = entry_name(spec.key, spec.id)
        lease = None
        while not self._take(name, fingerprint):
            lease = Lease(self.spool.path("leases", f"stage-{name}"), self.job, beat=self.beat,
                          stale_after=self.stale_after)
            if lease.acquire() is None:
                if not self._take(name, fingerprint):  # published just before we took it
                    break
                lease.release()
            lease = None
            time.sleep(self.poll)
        try:
            yield
        finally:
            if lease is not None:
                row = self.store.get(self.session, spec)
                if row is not None and row.status == "done":
                    self.spool.write("stages", name, dataclasses.asdict(row))
                lease.release()


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.launch.jobs TICKET`: run one ticket by hand (or from any engine)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m harness.launch.jobs TICKET.json", file=sys.stderr)
        return 2
    print(run_ticket(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
