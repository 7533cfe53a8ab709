"""The pytest side of harness.launch: `--ablation-launcher slurm|ray` and `--ablation-detach`.

The controller (the pytest session on the login node) collects as usual; before the items run,
it finds the runs its selected items need that neither this session nor (with --reuse) the
store has, submits each as its own job, waits showing the counts, and ingests the results as
rows of this session. Then the ordinary loop runs: run items find their rows done, hypothesis
items decide. A launched job is a pytest session too (`--ablation-job TICKET`): it runs one run
item under the controller's session id against a private store (harness.launch.jobs).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.core.store import Store
from harness.core.study import RunSpec, Study
from harness.items import (
    RUN_ARG,
    SESSION_KEY,
    GuardItem,
    HypothesisItem,
    KnobClaimCollector,
    KnobClaimItem,
)
from harness.launch.controller import Controller, Launcher, LauncherError, Pending, alive
from harness.launch.jobs import JOB_ENV, StageGate, Ticket
from harness.session import AblationSession
from harness.tracking import group_job

LAUNCHERS = ("local", "slurm", "ray")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ablation", "ablation studies (pytest-ablation)")
    group.addoption("--ablation-launcher", choices=LAUNCHERS, metavar="local|slurm|ray",
                    help="run each pending run as its own job: a Slurm job through submitit "
                         "(slurm), or a task on an existing Ray cluster (ray); the session "
                         "waits and decides the hypotheses (default: ini ablation_launcher, "
                         "else local: runs are computed by this session)")
    group.addoption("--ablation-detach", action="store_true",
                    help="with --ablation-launcher slurm: submit the jobs and exit; a later "
                         "`pytest ... --reuse` collects the finished ones and decides when all "
                         "are in")
    group.addoption("--ablation-ray-address", metavar="ADDRESS",
                    help="the Ray cluster to use (default: ini ablation_ray_address, else auto)")
    group.addoption("--ablation-job", metavar="TICKET",
                    help="internal: set by a launcher for the job that executes one run")
    parser.addini("ablation_launcher", "local, slurm or ray (like --ablation-launcher)",
                  default="local")
    parser.addini("ablation_job_cpus", "CPUs per launched run (Slurm cpus-per-task, Ray "
                  "num_cpus)", default="1")
    parser.addini("ablation_job_gpus", "GPUs per launched run (Slurm gpus-per-node, Ray "
                  "num_gpus)", default="0")
    parser.addini("ablation_slurm_partition", "Slurm partition for launched runs (default: "
                  "the cluster's)", default="")
    parser.addini("ablation_slurm_time", "time limit of one run's job, minutes; the job is "
                  "signalled, checkpointed and requeued before it", default="60")
    parser.addini("ablation_slurm_array_parallelism", "most runs' jobs running at once "
                  "(0: submitit's default, 256)", default="0")
    parser.addini("ablation_slurm_signal_delay", "seconds before the time limit at which "
                  "Slurm signals a run's job to requeue it", default="90")
    parser.addini("ablation_slurm_requeues", "requeues of a run's job that hits its time "
                  "limit", default="3")
    parser.addini("ablation_slurm_sbatch", "extra sbatch options, one KEY=VALUE a line "
                  "(e.g. account=ml, qos=low, constraint=a100)", type="linelist", default=[])
    parser.addini("ablation_ray_address", "the Ray cluster's address", default="auto")
    parser.addini("ablation_launch_poll", "seconds between looks at the jobs", default="5")
    parser.addini("ablation_lease_beat", "seconds between a job's lease heartbeats",
                  default="10")
    parser.addini("ablation_lease_stale", "seconds without a heartbeat after which a run's "
                  "lease is taken over", default="60")


@dataclass(frozen=True)
class JobIdentity:
    """Who a launched job's pytest session is: the controller's session, its own job id."""

    ticket: Ticket
    worker: str

    @property
    def session(self) -> str:
        return self.ticket.session

    @property
    def data_dir(self) -> Path:
        return Path(self.ticket.data_dir)

    def stage_gate(self, store: Store) -> StageGate:
        return StageGate(self.ticket, store, self.worker)


def job_identity(config: pytest.Config) -> JobIdentity | None:
    """The identity of this session when it is a launched job, else None."""
    path = config.getoption("ablation_job", None)
    if not path:
        return None
    return JobIdentity(Ticket.read(path), os.environ.get(JOB_ENV, f"pid-{os.getpid()}"))


def _launcher_name(config: pytest.Config) -> str:
    name = config.getoption("ablation_launcher") or config.getini("ablation_launcher")
    if name not in LAUNCHERS:
        raise pytest.UsageError(f"ini ablation_launcher = {name!r}: choose one of "
                                f"{', '.join(LAUNCHERS)}")
    return name


def _number(config: pytest.Config, name: str, kind: type = int) -> Any:
    value = config.getini(name)
    try:
        number = kind(value)
    except ValueError:
        number = -1
    if number < 0:
        raise pytest.UsageError(f"ini {name} = {value!r}: give a number >= 0")
    return number


def _sbatch(config: pytest.Config) -> dict[str, str]:
    found = {}
    for line in config.getini("ablation_slurm_sbatch"):
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise pytest.UsageError(f"ini ablation_slurm_sbatch: {line!r} is not KEY=VALUE "
                                    f"(e.g. account=ml, for sbatch --account=ml)")
        found[key.strip().lstrip("-").replace("-", "_")] = value.strip()
    return found


def pytest_configure(config: pytest.Config) -> None:
    """Refuse a launcher that cannot work here before anything is collected."""
    if hasattr(config, "workerinput") or config.getoption("ablation_job", None):
        return
    name = _launcher_name(config)
    if config.getoption("ablation_detach") and name == "local":
        raise pytest.UsageError("--ablation-detach needs --ablation-launcher slurm (or ini "
                                "ablation_launcher = slurm): there are no jobs to detach from")
    if config.getoption("ablation_detach") and name == "ray":
        raise pytest.UsageError("--ablation-detach works with --ablation-launcher slurm only: "
                                "Ray ends a driver's tasks when the driver exits")
    if name == "local":
        return
    module = {"slurm": "submitit", "ray": "ray"}[name]
    from harness.plugin import _missing

    problem = _missing(module, name, f"--ablation-launcher {name}")
    if problem is None and name == "slurm":
        from harness.launch.slurm import problem as slurm_problem

        problem = slurm_problem()
    if problem:
        raise pytest.UsageError(problem)
    for option in ("ablation_job_cpus", "ablation_job_gpus", "ablation_slurm_time",
                   "ablation_slurm_array_parallelism", "ablation_slurm_requeues",
                   "ablation_slurm_signal_delay"):
        _number(config, option)
    for option in ("ablation_launch_poll", "ablation_lease_beat", "ablation_lease_stale"):
        _number(config, option, float)
    _sbatch(config)


def _launcher(config: pytest.Config, spool: Path) -> Launcher:
    name = _launcher_name(config)
    cpus, gpus = _number(config, "ablation_job_cpus"), _number(config, "ablation_job_gpus")
    if name == "slurm":
        from harness.launch.slurm import SlurmLauncher

        return SlurmLauncher(spool / "submitit", partition=config.getini(
            "ablation_slurm_partition"), cpus=cpus, gpus=gpus,
            minutes=_number(config, "ablation_slurm_time"),
            parallelism=_number(config, "ablation_slurm_array_parallelism"),
            signal_delay=_number(config, "ablation_slurm_signal_delay"),
            requeues=_number(config, "ablation_slurm_requeues"), sbatch=_sbatch(config))
    from harness.launch.ray_tasks import RayLauncher

    address = config.getoption("ablation_ray_address") or config.getini("ablation_ray_address")
    return RayLauncher(address, cpus=cpus, gpus=gpus)


def _runs_of(item: pytest.Item, seed_offset: int) -> Iterator[tuple[Study, RunSpec, str]]:
    """The runs an item needs, with the node id of each run's item."""
    spec = getattr(getattr(item, "callspec", None), "params", {}).get(RUN_ARG)
    if isinstance(spec, RunSpec):
        yield item.obj.__ablation_study__, spec, item.nodeid  # type: ignore[attr-defined]
        return
    if not isinstance(item, HypothesisItem | GuardItem | KnobClaimItem):
        return
    parent: Any = item.parent
    study: Study = parent.study
    if isinstance(item, GuardItem) and item.config.stash[SESSION_KEY].baseline is None:
        return  # skipped without a baseline: needs no run
    members = parent.members if isinstance(parent, KnobClaimCollector) else [parent.knobs]
    variants = study.hypothesis_variants() if isinstance(item, HypothesisItem) \
        else [item.variant]
    function = parent.name.partition("[")[0]
    for knobs in members:
        for run in study.runs(parent.tier, knobs, variants, seed_offset=seed_offset):
            yield study, run, f"{parent.parent.nodeid}::{function}[{run.id}]"


Settings = dict[tuple[str, str, Any], tuple[Study, str]]  # adaptive ones: study, item prefix


def _lacks(session: AblationSession, study: Study, spec: RunSpec) -> bool:
    """Whether the session lacks the run, after --reuse adopted what the store has."""
    if session.coordinator.reuse:
        session.coordinator.adopt_stored(spec, session.fingerprint(study, spec),
                                         session.why_stale(study, spec))
    return session.store.get(session.session_id, spec) is None


def pending_runs(items: list[pytest.Item], session: AblationSession
                 ) -> tuple[list[Pending], Settings]:
    """Runs the selected items need that this session lacks: those are submitted (skipped
    items need none). Of an adaptive seed budget only the first look's seeds (`next_look`
    finds the later looks' from them), and its settings are returned too."""
    found: dict[str, Pending] = {}
    adaptive: Settings = {}
    for item in items:
        if item.get_closest_marker("skip"):
            continue
        for study, spec, nodeid in _runs_of(item, session.seed_offset):
            if study.budget_at(spec.tier) is not None:
                adaptive[(study.name or "", spec.tier, spec.knobs)] = (
                    study, nodeid.rpartition("[")[0])
            if spec.key in found or \
                    spec.seed - session.seed_offset not in study.fixed_seeds_at(spec.tier):
                continue
            if _lacks(session, study, spec):
                found[spec.key] = Pending(spec, nodeid, session.fingerprint(study, spec))
    return list(found.values()), adaptive


class _Missing(Exception):
    """The runs a look needs that the session lacks: where a walk of the looks stops."""

    def __init__(self, specs: list[RunSpec]) -> None:
        super().__init__(f"{len(specs)} runs missing")
        self.specs = specs


def next_look(adaptive: Settings, session: AblationSession) -> list[Pending]:
    """The runs of the next look of each adaptive setting that the runs so far leave
    undecided: the looks are walked as the hypothesis items will walk them (the stopping rule
    of harness.core.verdicts), so the jobs compute what the session would, no more."""
    from harness.core.verdicts import stopping_look

    found = []
    for (_, tier, knobs), (study, prefix) in adaptive.items():
        variants = study.hypothesis_variants()

        def obtain(seeds: Sequence[int], study: Study = study, tier: str = tier,
                   knobs: Any = knobs, variants: list[str] = variants) -> dict:
            specs = [study.spec(tier, knobs, v, s) for v in variants for s in seeds]
            missing = [spec for spec in specs if _lacks(session, study, spec)]
            if missing:
                raise _Missing(missing)
            runs = {}
            for spec in specs:
                row = session.store.get(session.session_id, spec)
                runs[spec.variant, spec.seed] = row.metrics if row and row.status == "done" \
                    else "the run failed"
            return runs

        try:
            stopping_look(study, tier, session.seeds(study, tier), obtain)
        except _Missing as missing:
            # a later look's run item first walks the earlier looks: its job gets their rows
            known = tuple(dataclasses.asdict(row) for row in session.store.runs(
                session.session_id, study=study.name) if row.status == "done"
                and (row.tier, row.knobs) == (tier, dict(knobs)))
            found += [Pending(spec, f"{prefix}[{spec.id}]", session.fingerprint(study, spec),
                              known) for spec in missing.specs]
    return found


def _job_args(config: pytest.Config) -> list[str]:
    """The controller's options that a run's job needs to be the same run."""
    option = config.option
    args = ["--rootdir", str(config.rootpath)]
    if config.inipath:
        args += ["-c", str(config.inipath)]
    for value in option.override_ini or ():
        args += ["-o", value]
    if option.seed_offset:
        args += ["--seed-offset", str(option.seed_offset)]
    for tier in option.ablation_tier or ():
        args += ["--tier", tier]
    if option.real:
        args.append("--real")
    if option.torch_threads:
        args += ["--torch-threads", str(option.torch_threads)]
    tracker = config.stash[SESSION_KEY].tracker
    if tracker.enabled:
        args += ["--wandb", "--wandb-project", tracker.project, "--wandb-mode", tracker.mode]
    if config.pluginmanager.hasplugin("xdist"):
        args += ["-n", "0"]  # one run: no workers, whatever the ini's addopts say
    invocation = list(config.invocation_params.args)
    for flag, value in itertools.pairwise(invocation):
        if flag == "-p" and value not in ("xdist", "no:cacheprovider"):
            args += ["-p", value]
    return args


def _report(config: pytest.Config) -> Any:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    return reporter.write_line if reporter else print


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """Under a launcher, make the pending runs as jobs before the items run (see the module's
    doc); in any session, first collect what detached jobs of earlier sessions finished."""
    config = session.config
    if hasattr(config, "workerinput") or config.getoption("ablation_job", None) \
            or session.testsfailed or config.option.collectonly:
        return
    state = config.stash.get(SESSION_KEY, None)
    spool = None if state is None else state.data_dir / "spool"
    if state is None or not (spool.is_dir() or _launcher_name(config) != "local"):
        return
    report = _report(config)
    name = _launcher_name(config)
    launcher = None if name == "local" else _launcher(config, spool)
    controller = Controller(state.store, spool, state.session_id, launcher, report=report,
                            poll=_number(config, "ablation_launch_poll", float))
    still = controller.earlier(alive) if state.store.exists() else []
    if launcher is None and not still:
        return
    pending, adaptive = pending_runs(session.items, state)
    if still:
        report(f"ablation launcher: {len(still)} runs of earlier sessions are still queued "
               f"or running as jobs:")
        for line in still:
            report(f"  {line}")
        if pending:
            pytest.exit(f"{len(pending)} runs are missing and {len(still)} jobs of earlier "
                        "sessions are still out: rerun when they are in (pytest ... --reuse)",
                        returncode=pytest.ExitCode.INTERRUPTED)
    if launcher is None:
        return
    pending = pending or next_look(adaptive, state)  # a first look made earlier (--reuse)
    if not pending:
        return
    try:
        while pending:  # one wave, then (adaptive budgets) each further look that is needed
            jobs = _submit(config, controller, pending)
            if config.getoption("ablation_detach"):
                pytest.exit(f"detached: {len(jobs)} runs submitted; `pytest <same arguments> "
                            "--reuse` collects them and decides the hypotheses when all are "
                            "in", returncode=pytest.ExitCode.OK)
            try:
                controller.wait(jobs)
            except LauncherError as exc:
                pytest.exit(str(exc), returncode=pytest.ExitCode.INTERRUPTED)
            pending = next_look(adaptive, state)
    finally:
        launcher.close()


def _submit(config: pytest.Config, controller: Controller, pending: list[Pending]
            ) -> dict[str, str]:
    """Tickets for `pending`, submitted; name -> job id. A refused submission ends the
    session with the engine's reason."""
    state = config.stash[SESSION_KEY]
    names = controller.tickets(
        pending, rootdir=str(config.rootpath), data_dir=str(state.data_dir),
        python=sys.executable, args=_job_args(config), group=group_job(state.session_id) or "",
        beat=_number(config, "ablation_lease_beat", float),
        stale_after=_number(config, "ablation_lease_stale", float))
    name = _launcher_name(config)
    try:
        jobs = controller.submit(names)
    except Exception as exc:  # sbatch refused (partition, account, ...), no Ray there
        pytest.exit(f"--ablation-launcher {name}: submitting {len(names)} runs failed: "
                    f"{type(exc).__name__}: {exc}".strip(), returncode=pytest.ExitCode.USAGE_ERROR)
    _report(config)(f"ablation launcher {name}: submitted {len(jobs)} runs as jobs "
                    f"{_span(list(jobs.values()))}; spool {controller.spool.folder}")
    return jobs


def _span(jobs: list[str]) -> str:
    return jobs[0] if len(jobs) == 1 else f"{jobs[0]} .. {jobs[-1]}"
