"""The controller's side: tickets for the pending runs, submission, waiting, ingesting.

Runs only on the host of the shared store (the login node): it alone writes the store; jobs
hand their rows back through the spool (harness.launch.spool).
"""

from __future__ import annotations

import dataclasses
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.core.store import Store, utc_now
from harness.launch.jobs import Ticket
from harness.launch.spool import Spool, entry_name


class LauncherError(RuntimeError):
    """The engine cannot tell where the jobs stand any more: waiting ends (they may still run)."""


class Launcher(Protocol):
    """A cluster engine (harness.launch.slurm, harness.launch.ray_tasks)."""

    name: str

    def submit(self, tickets: Sequence[str]) -> list[str]: ...

    def states(self, jobs: Sequence[str]) -> dict[str, str]: ...

    def error(self, job: str) -> str | None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Pending:
    """A run the session needs and nobody has made: what its ticket is built from."""

    spec: Any  # a RunSpec
    nodeid: str  # its run item
    fingerprint: str
    known: tuple[dict, ...] = ()  # finished rows its item reads first (Ticket.known)


@dataclass
class Tally:
    """Where the submitted runs stand; `latency` is submit -> ingested, per run."""

    submitted: int = 0
    queued: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    latency: list[float] = dataclasses.field(default_factory=list)

    def line(self, launcher: str) -> str:
        return (f"ablation launcher {launcher}: {self.submitted} submitted, {self.queued} queued, "
                f"{self.running} running, {self.done} done, {self.failed} failed")

    def summary(self, launcher: str, seconds: float) -> str:
        median = statistics.median(self.latency) if self.latency else float("nan")
        return (f"ablation launcher {launcher}: {self.done} done, {self.failed} failed of "
                f"{self.submitted} runs in {seconds:.1f} s; submit -> ingested median "
                f"{median:.2f} s per run")


def spec_row(spec: Any) -> dict:
    """The identity columns of a run's row."""
    return {"key": spec.key, "study": spec.study, "tier": spec.tier, "knobs": dict(spec.knobs),
            "variant": spec.variant, "seed": spec.seed, "config": dict(spec.config),
            "kind": spec.kind}


def failed_row(ticket: Ticket, job: str, error: str) -> dict:
    """The row of a run whose job ended without handing back a result."""
    now = utc_now()
    return {**ticket.spec, "fingerprint": ticket.fingerprint, "status": "failed",
            "metrics": {}, "failures": [], "error": error, "source": "run", "host": "?",
            "pid": 0, "worker": job, "device": "", "started_at": now, "finished_at": now,
            "versions": {}}


class Controller:
    """Submits a session's pending runs through a launcher and ingests what comes back."""

    def __init__(self, store: Store, spool_root: Path, session: str, launcher: Launcher | None,
                 *, report: Callable[[str], None] = print, poll: float = 5.0,
                 grace: float = 10.0) -> None:
        self.store, self.spool_root, self.session = store, Path(spool_root), session
        self.spool = Spool(self.spool_root, session)
        self.launcher = launcher
        self.report, self.poll, self.grace = report, poll, grace

    def tickets(self, pending: Sequence[Pending], **common: Any) -> list[str]:
        """Write a ticket per pending run (`common`: Ticket's shared fields); their names."""
        names = []
        for run in pending:
            name = entry_name(run.spec.key, run.spec.id)
            ticket = Ticket(name=name, spool=str(self.spool_root), session=self.session,
                            key=run.spec.key, spec=spec_row(run.spec), nodeid=run.nodeid,
                            fingerprint=run.fingerprint, known=list(run.known), **common)
            self.spool.write("tickets", name, dataclasses.asdict(ticket))
            names.append(name)
        return names

    def submit(self, names: Sequence[str]) -> dict[str, str]:
        """Submit the tickets; name -> job id, also kept in the spool (for a later session)."""
        assert self.launcher is not None
        submitted = time.time()
        jobs = self.launcher.submit([str(self.spool.path("tickets", n)) for n in names])
        for name, job in zip(names, jobs, strict=True):
            self.spool.write("jobs", name, {"job": job, "launcher": self.launcher.name,
                                            "submitted": submitted})
        return dict(zip(names, jobs, strict=True))

    def wait(self, jobs: dict[str, str]) -> Tally:
        """Until every submitted run is ingested or failed, reporting the counts as they
        change. A job that ended without a result (killed, cancelled, out of memory, node
        lost) gives a failed row holding its job id and the tail of its log."""
        assert self.launcher is not None
        start, tally, shown = time.monotonic(), Tally(submitted=len(jobs)), ""
        open_ = dict(jobs)
        ended_since: dict[str, float] = {}
        while open_:
            states = self.launcher.states(list(open_.values()))  # before looking for results
            for name in self.ingest(self.spool, list(open_), tally):
                open_.pop(name)
            now = time.monotonic()
            for name, job in list(open_.items()):
                if states.get(job) != "ended":  # listed (again): a requeue can pass through
                    ended_since.pop(name, None)  # moments squeue does not list it
                    continue
                ended_since.setdefault(name, now)
                why = self.launcher.error(job)
                if why or now - ended_since[name] >= self.grace:  # a result may lag (NFS)
                    self.fail(self.spool, name, job, why or "the job ended without a result "
                              "(cancelled, killed, out of memory or its node lost)")
                    tally.failed += 1
                    open_.pop(name)
            counts = Counter(states.get(job) for job in open_.values())
            tally.queued, tally.running = counts["queued"], counts["running"] + counts["ended"]
            line = tally.line(self.launcher.name)
            if line != shown:
                self.report(line)
                shown = line
            if open_:
                time.sleep(self.poll)
        self.report(tally.summary(self.launcher.name, time.monotonic() - start))
        return tally

    def ingest(self, spool: Spool, names: Sequence[str] | None = None,
               tally: Tally | None = None) -> list[str]:
        """Store the results waiting in `spool` (of `names`, else all) as rows of its session,
        each once: the row goes in first (a second insert is a no-op), then the file moves
        to ingested/. A result made from other code than its ticket's fails the run."""
        done = []
        for name in spool.names("results") if names is None else names:
            result = spool.read("results", name)
            ticket = spool.read("tickets", name)
            if result is None or ticket is None:
                continue
            run = result.get("run")
            if run is None:
                run = failed_row(Ticket(**ticket), result["job"], result["error"])
            elif run["fingerprint"] != ticket["fingerprint"]:
                run = failed_row(Ticket(**ticket), result["job"], (
                    f"job {result['job']} computed the run with fingerprint {run['fingerprint']}"
                    f", but it was submitted as {ticket['fingerprint']}: the study's code or "
                    f"config changed in between; rerun the session"))
            _, row = self.store.ingest(spool.session, run, result.get("stages", []))
            spool.mark_ingested(name)
            done.append(name)
            if tally is not None:
                tally.done += row.status == "done"
                tally.failed += row.status == "failed"
                job = spool.read("jobs", name)
                if job:
                    tally.latency.append(time.time() - job["submitted"])
        return done

    def fail(self, spool: Spool, name: str, job: str, why: str) -> None:
        """Store the run of `name` as failed: `why`, its job id and the end of its log."""
        ticket = Ticket(**spool.read("tickets", name))
        error = (f"job {job}: {why}; the end of its log ({spool.path('logs', name)}):\n"
                 f"{spool.log_tail(name)}")
        row = failed_row(ticket, job, error)
        self.store.ingest(spool.session, row)
        spool.write("ingested", name, {"job": job, "run": row})  # finished: never again

    def earlier(self, alive: Callable[[list[str]], dict[str, str]] | None) -> list[str]:
        """Collect what detached jobs of earlier sessions finished (into their sessions, where
        --reuse finds them); jobs that ended without a result fail their runs. Returns one
        line per run still queued or running (per `alive`, job id -> state)."""
        still = []
        for session in Spool.sessions(self.spool_root):
            if session == self.session or not self.store.has_session(session):
                continue
            spool = Spool(self.spool_root, session)
            self.ingest(spool)
            waiting = {name: spool.read("jobs", name)["job"] for name in spool.names("jobs")
                       if not spool.finished(name)}
            states = alive(list(waiting.values())) if alive and waiting else {}
            for name, job in waiting.items():
                state = states.get(job, "unknown")
                if state == "ended":
                    self.fail(spool, name, job, "the job ended without a result")
                else:
                    still.append(f"{spool.read('tickets', name)['nodeid']} (session {session}):"
                                 f" job {job} {state}")
        return still


def alive(jobs: Sequence[str]) -> dict[str, str]:
    """Job id -> "queued" | "running" | "ended" for the jobs of earlier sessions: Slurm's
    from squeue ("unknown" without it), Ray's ended with their driver."""
    states = {job: "ended" for job in jobs if job.startswith("ray-")}
    slurm = [job for job in jobs if job.startswith("slurm-")]
    if slurm and shutil.which("squeue"):
        from harness.launch.slurm import slurm_states

        found = slurm_states(slurm)
        states.update(found if isinstance(found, dict) else dict.fromkeys(slurm, "unknown"))
    return states
