"""The pytest plugin: options, collection of studies, and the summary tables.

Registered through the `pytest11` entry point, so installing the package is enough.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
import inspect
import itertools
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import devices
from harness.core.baseline import SPEC_HELP, Baseline, BaselineError
from harness.core.baseline import resolve as resolve_baseline
from harness.core.inputs import READS
from harness.core.store import StoreError
from harness.core.study import RunSpec, Study
from harness.core.tables import render_text, session_sections, write_markdown
from harness.items import (
    RUN_ARG,
    SESSION_KEY,
    ClaimItem,
    GuardItem,
    HypothesisCollector,
    HypothesisItem,
    hypothesis_collectors,
    study_test,
)
from harness.progress import Progress
from harness.session import AblationSession, StudyCode, new_session_id
from harness.tracking import Tracker, default_project

pytest_plugins = ["harness.fixtures", "harness.launching"]

REAL_TIER = "real"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ablation", "ablation studies (pytest-ablation)")
    group.addoption("--real", action="store_true",
                    help="run the real-data tier of every study (skipped without this flag)")
    group.addoption("--tier", dest="ablation_tier", action="append", metavar="NAME",
                    help="also run the opt-in tier NAME of the studies that declare it "
                         "(opt_in=[...]); repeatable; --real is --tier real")
    group.addoption("--reuse", action="store_true",
                    help="take finished runs with the same code and config fingerprint from the "
                         "results store instead of training them again")
    group.addoption("--ablation-store", metavar="PATH",
                    help="SQLite results store (default: ini ablation_store, else "
                         ".ablation/results.sqlite under the rootdir)")
    group.addoption("--seed-offset", type=int, default=0, metavar="N",
                    help="shift every study's seeds by N (rerun a study on fresh seeds)")
    group.addoption("--summary-md", metavar="PATH",
                    help="also write the result tables and verdicts as Markdown to PATH")
    group.addoption("--no-ablation-tables", action="store_true",
                    help="don't print the result tables at the end of the session")
    group.addoption("--ablation-devices", metavar="LIST",
                    help="GPUs the xdist workers are spread over, e.g. '0,1,3', or 'cpu' "
                         "(default: every GPU the outer CUDA_VISIBLE_DEVICES allows)")
    group.addoption("--workers-per-gpu", type=int, default=1, metavar="N",
                    help="xdist workers sharing one GPU; -n auto starts GPUs x N workers")
    group.addoption("--torch-threads", type=int, metavar="N",
                    help="torch CPU threads per process (default 1, with or without xdist: "
                         "spinning OpenMP threads collapse when anything else uses the cores; "
                         "use -n auto for more cores, see docs/benchmarks.md#contention)")
    group.addoption("--wandb", action="store_true", default=None,
                    help="log every run to W&B (offline unless an API key is configured and "
                         "--wandb-mode online; WANDB_MODE is honoured); also ini ablation_wandb")
    group.addoption("--wandb-project", metavar="NAME",
                    help="W&B project (default: ini ablation_wandb_project, else "
                         "<rootdir name>-ablations, apart from production training)")
    group.addoption("--wandb-mode", choices=("offline", "online", "disabled"),
                    help="W&B mode (default offline; WANDB_MODE wins)")
    group.addoption("--ablation-progress", choices=("auto", "on", "off"), default="auto",
                    help="a progress bar per run (step, loss, ETA) with the session's run count; "
                         "auto: on a terminal without xdist (default)")
    group.addoption("--ablation-baseline", metavar="SPEC",
                    help="compare every guarded metric (study.guard) with a baseline session, "
                         f"paired seed by seed: {SPEC_HELP}; also ini ablation_baseline")
    group.addoption("--ablation-plots", metavar="DIR",
                    help="at the end of the session write its figures (verdicts, paired "
                         "seeds, sweeps, learning curves, grids, screes; as in `python -m "
                         "harness report --html`) as PNG and SVG under DIR; with --wandb they "
                         "are also logged to each study's verdicts run")
    group.addoption("--ablation-baseline-strict", action="store_true",
                    help="a guard whose variant has no run in the baseline fails instead of "
                         "being skipped")
    parser.addini("ablation_baseline", "baseline session for the guards (like "
                  "--ablation-baseline)", default="")
    parser.addini("ablation_store", "SQLite results store, relative to the rootdir",
                  default=".ablation/results.sqlite")
    parser.addini("ablation_wandb", "log every run to W&B (like --wandb)", type="bool",
                  default=False)
    parser.addini("ablation_wandb_project", "W&B project for ablation runs", default="")


def _store_path(config: pytest.Config) -> Path:
    value = config.getoption("ablation_store") or config.getini("ablation_store")
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else config.rootpath / path


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _xdist_workers(config: pytest.Config) -> int:
    """Workers this session starts (0 without xdist); `-n auto` is resolved by now."""
    workers = getattr(config.option, "numprocesses", None) or 0
    return min(workers, getattr(config.option, "maxprocesses", None) or workers)


GPUS_KEY = pytest.StashKey[list[str]]()


def _gpus(config: pytest.Config) -> list[str]:
    """The GPUs to spread workers over, looked up once (controller side: it may count them
    with torch)."""
    if GPUS_KEY not in config.stash:
        config.stash[GPUS_KEY] = _find_gpus(config)
    return config.stash[GPUS_KEY]


def _find_gpus(config: pytest.Config) -> list[str]:
    listed = config.getoption("ablation_devices")
    if listed:
        try:
            return devices.parse_device_list(listed)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return devices.visible_gpus()
    return devices.visible_gpus(detected=devices.detect_gpus())


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ablation: an item of an ablation study (run or hypothesis)")
    config.addinivalue_line("markers", "hypothesis: a hypothesis item of an ablation study")
    config.addinivalue_line("markers", "guard: a guard item, comparing with the baseline session")
    threads = config.getoption("torch_threads")
    if threads is not None and threads < 1:
        raise pytest.UsageError(f"--torch-threads {threads}: give 1 or more threads per process")
    workers = _xdist_workers(config)
    if threads and workers and not _is_worker(config):
        problem = devices.oversubscription(workers, threads, devices.usable_cores())
        if problem:
            config.issue_config_time_warning(pytest.PytestConfigWarning(problem), stacklevel=2)
    if _is_worker(config):
        # pin before anything in this process initialises CUDA
        session_id = config.workerinput["ablation_session"]  # type: ignore[attr-defined]
        worker = config.workerinput["workerid"]  # type: ignore[attr-defined]
        gpu = devices.assign(worker, config.workerinput["ablation_gpus"])  # type: ignore[attr-defined]
        devices.pin("" if gpu is None else gpu, threads or 1)  # no GPU for it: hide them all
        device = "cpu" if gpu is None else "cuda:0"
        label = "cpu" if gpu is None else f"cuda:{gpu}"
    else:
        session_id, worker, gpu = new_session_id(), "main", None
        devices.pin(None, threads or 1)  # see harness.devices: one thread unless asked
        device = label = None  # decided on first use (see harness.fixtures.device)
    store_path = _store_path(config)
    from harness.launching import job_identity  # (imported as a plugin by now: no rewrite warning)

    job = job_identity(config)  # a launched job: the controller's session, its files
    if job is not None:
        session_id, worker = job.session, job.worker
    data_dir = job.data_dir if job is not None else store_path.parent
    session = AblationSession(store_path=store_path, session_id=session_id,
                              rootdir=config.rootpath, reuse=config.getoption("reuse"),
                              seed_offset=config.getoption("seed_offset"), worker=worker,
                              device=device, device_label=label,
                              tracker=_tracker(config, data_dir, session_id,
                                               job.worker if job else None),
                              progress=_progress(config), data_dir=data_dir)
    config.stash[SESSION_KEY] = session
    if job is not None:
        session.stage_gate = job.stage_gate(session.store)
    if _is_worker(config):
        session.opening = config.workerinput["ablation_opening"]  # type: ignore[attr-defined]
        named = config.workerinput["ablation_baseline"]  # type: ignore[attr-defined]
        session.baseline = Baseline(**named) if named else None
    else:
        misplaced = _misplaced_rootdir(config)
        if misplaced:
            raise pytest.UsageError(misplaced)
        plots = config.getoption("ablation_plots") and _missing("matplotlib", "plots",
                                                                "--ablation-plots")
        if plots:
            raise pytest.UsageError(plots)
        session.begin(list(config.invocation_params.args))
        session.baseline = _baseline(config, store_path)
        if store_path.exists():  # a broken store stops the session now, with or without xdist
            try:  # (a store that does not exist yet is created by the first study, or fails then)
                session.store.check()
            except StoreError as exc:
                raise pytest.UsageError(str(exc)) from None


FIGURES_KEY = pytest.StashKey[str]()  # what --ablation-plots did, for the terminal summary
PATH_OPTIONS = ("--ablation-store", "--ablation-baseline", "--summary-md", "--billboard-root",
                "--ablation-plots")


def _misplaced_rootdir(config: pytest.Config) -> str | None:
    """Why the rootdir is wrong, when pytest took a path option's value for a test path.

    pytest finds the rootdir before plugins add their options, so in `pytest --ablation-
    baseline /elsewhere/x.sqlite` the value counts as a test path and can root the session at
    /elsewhere: every study would be named, and its store found, from there. Uses pytest's own
    rootdir logic (a private function: if it moves, the check is skipped).
    """
    args = list(config.invocation_params.args)
    given = [(option, value) for option, value in itertools.pairwise(args)
             if option in PATH_OPTIONS
             and (config.invocation_params.dir / value).exists()]
    if not given:
        return None
    try:
        from _pytest.config.findpaths import determine_setup

        wanted = inspect.signature(determine_setup).parameters
        known = {"inifile": config.option.inifilename, "args": list(config.args),
                 "rootdir_cmd_arg": config.option.rootdir or None,
                 "invocation_dir": config.invocation_params.dir,
                 "override_ini": config.option.override_ini}
        rootdir = determine_setup(**{k: v for k, v in known.items() if k in wanted})[0]
    except Exception:  # pytest's internals moved: no check rather than a wrong one
        return None
    if Path(rootdir) == config.rootpath:
        return None
    option, value = given[0]
    return (f"pytest took the value of {option} ({value}) for a test path and rooted this "
            f"session at {config.rootpath} instead of {rootdir} (it finds the rootdir before "
            f"plugins add their options): write {option}={value}")


def _baseline(config: pytest.Config, store_path: Path) -> Baseline | None:
    """The baseline session named by --ablation-baseline or the ini value, found once (the
    controller's; workers get it resolved)."""
    spec = config.getoption("ablation_baseline") or config.getini("ablation_baseline")
    if not spec:
        return None
    try:
        return resolve_baseline(spec, store=store_path, repo=config.rootpath)
    except BaselineError as exc:
        raise pytest.UsageError(str(exc)) from None


def _tracker(config: pytest.Config, data_dir: Path, session_id: str,
             launched_as: str | None) -> Tracker:
    """Local run logs beside the store (a launched job's: beside the shared one), always; W&B
    runs with --wandb."""
    wandb = config.getoption("wandb")
    wandb = config.getini("ablation_wandb") if wandb is None else wandb
    problem = _missing("wandb", "wandb", "--wandb") if wandb else None
    if problem:
        raise pytest.UsageError(problem)
    project = (config.getoption("wandb_project") or config.getini("ablation_wandb_project")
               or default_project(config.rootpath.name))
    return Tracker(run_dir=data_dir / "runs" / session_id, wandb=wandb,
                   project=project, job_id=session_id, mode=config.getoption("wandb_mode"),
                   launched_as=launched_as)


class _Terminal:
    """A file for progress bars that writes past pytest's output capture, like live logging."""

    def __init__(self, config: pytest.Config) -> None:
        self._capture = config.pluginmanager.getplugin("capturemanager")
        self._stream = sys.stderr  # during pytest_configure capture is suspended: the terminal

    def write(self, text: str) -> int:
        if self._capture is None:
            return self._stream.write(text)
        with self._capture.global_and_fixture_disabled():
            written = self._stream.write(text)
            self._stream.flush()
        return written

    def flush(self) -> None:
        self._stream.flush()


def _missing(module: str, extra: str, what: str) -> str | None:
    """The usage error for a feature whose optional dependency is not installed, or None."""
    if importlib.util.find_spec(module) is not None:
        return None
    return f"{what} needs {module}: pip install 'pytest-ablation[{extra}]'"


def _progress(config: pytest.Config) -> Progress:
    choice = config.getoption("ablation_progress")
    problem = _missing("tqdm", "progress", "--ablation-progress on") if choice == "on" else None
    if problem:
        raise pytest.UsageError(problem)
    enabled = choice == "on" or (choice == "auto" and sys.stderr.isatty()
                                 and not _xdist_workers(config)
                                 and not _is_worker(config)
                                 and importlib.util.find_spec("tqdm") is not None)
    return Progress(enabled=enabled, file=_Terminal(config))


def pytest_collection_finish(session: pytest.Session) -> None:
    """The session's run count for the progress display: runs that will train, not those the
    real tier skips without --real."""
    state = session.config.stash.get(SESSION_KEY, None)
    if state is not None:
        state.progress.total_runs = sum(
            _tier(item) is not None and _opt_in_skip(session.config, item) is None
            for item in session.items if not isinstance(item, ClaimItem))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: every worker shares the session and gets the GPU list to pick from."""
    session = node.config.stash[SESSION_KEY]
    node.workerinput["ablation_session"] = session.session_id
    node.workerinput["ablation_opening"] = session.opening
    node.workerinput["ablation_gpus"] = _gpus(node.config)
    node.workerinput["ablation_baseline"] = (dataclasses.asdict(session.baseline)
                                             if session.baseline else None)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker per visible GPU (x --workers-per-gpu), else one per core."""
    return devices.auto_workers(_gpus(config), config.getoption("workers_per_gpu"),
                                devices.usable_cores())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    study = getattr(metafunc.function, "__ablation_study__", None)
    if study is None:
        return
    module = metafunc.module
    path = metafunc.definition.nodeid.split("::")[0]
    declarations = [line for other in vars(module).values()
                    if isinstance(other, Study) and other.module == module.__file__
                    for line in other.declaration_lines()]
    fixture_files = sorted({inspect.getsourcefile(definitions[-1].func) or "" for definitions in
                            metafunc.definition._fixtureinfo.name2fixturedefs.values()} - {""})
    code = StudyCode(module=os.path.abspath(module.__file__), declarations=tuple(declarations),
                     fixture_files=tuple(fixture_files))
    try:
        metafunc.config.stash[SESSION_KEY].register(
            study, location=f"{path}::{metafunc.function.__name__}", code=code)
    except StoreError as exc:  # nothing can be stored: the session ends after collection
        metafunc.config.stash[SESSION_KEY].store_errors.append(str(exc))
    offset = metafunc.config.getoption("seed_offset")
    params = [pytest.param(spec, id=spec.id, marks=[pytest.mark.ablation])
              for spec in study.runs(seed_offset=offset)]
    metafunc.parametrize(RUN_ARG, params, indirect=True)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest) -> Any:
    """What a fixture reads while it is set up is an input of the runs that use it."""
    with READS.recording():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> pytest.CollectReport:
    """A study declared in a module but never applied to a test function is an error of that
    module: its hypotheses would silently never be decided."""
    report = yield
    if isinstance(collector, pytest.Module) and report.passed:
        module = collector.obj
        orphans = [obj for obj in vars(module).values() if isinstance(obj, Study)
                   and obj.function is None and obj.module == module.__file__]
        if orphans:
            report.outcome = "failed"
            report.longrepr = "\n".join(
                f"{study.where}: this study never decorates a test function, so its runs and "
                f"its {len(study.hypotheses)} hypotheses would never run; apply it to the "
                f"study's body (@study above `def test_...(run):`) or delete it"
                for study in orphans)
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Module | pytest.Class, name: str,
                              obj: Any) -> Any:
    """A study's body becomes its run items (a function pytest calls with the body's fixtures
    and the run) and its claim collectors, whatever the body is called: decorating it with a
    study declares it a test."""
    study = getattr(obj, "__ablation_study__", None)
    if study is None or not inspect.isfunction(obj) or study.function is not obj:
        return None
    test = study_test(study)
    items = list(collector._genfunctions(name, test))  # pytest's own expansion of `test`
    for item in items:
        item.obj = test  # an item would look its function up by name: the body itself
    return items + hypothesis_collectors(collector, name, obj, study)


def _tier(item: pytest.Item) -> str | None:
    if isinstance(item, ClaimItem):
        return item.parent.tier  # type: ignore[union-attr]
    spec = getattr(getattr(item, "callspec", None), "params", {}).get(RUN_ARG)
    return spec.tier if isinstance(spec, RunSpec) else None


def _opt_in_skip(config: pytest.Config, item: pytest.Item) -> str | None:
    """Why an item of an opt-in tier is skipped (the real tier, and a study's `opt_in`
    tiers, run only when asked for), or None."""
    tier = _tier(item)
    if tier is None:
        return None
    study = item.parent.study if isinstance(item, ClaimItem) else \
        getattr(getattr(item, "obj", None), "__ablation_study__", None)  # type: ignore[union-attr]
    opt_in = {REAL_TIER, *getattr(study, "opt_in", ())}
    chosen = set(config.getoption("ablation_tier") or ()) | (
        {REAL_TIER} if config.getoption("real") else set())
    if tier not in opt_in or tier in chosen:
        return None
    if tier == REAL_TIER:
        return "real-data tier: run it with --real"
    return f"opt-in tier {tier!r}: run it with --tier {tier}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Hypotheses run after the runs they read; opt-in tiers (real, a study's `opt_in`) run
    only under --real or --tier NAME. A store
    that failed during collection ends the session here (an xdist worker's items fail)."""
    state = config.stash.get(SESSION_KEY, None)
    if state is not None and state.store_errors and not _is_worker(config):
        pytest.exit("no run can be stored: see 'ablation results store error' above",
                    returncode=pytest.ExitCode.USAGE_ERROR)
    items.sort(key=lambda item: isinstance(item, ClaimItem))
    for item in items:
        reason = _opt_in_skip(config, item)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Stop the session after a run that could not be stored: no later one could be either."""
    state = item.config.stash.get(SESSION_KEY, None)
    if state is not None and state.store_errors:
        item.session.shouldstop = state.store_errors[0]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if _is_worker(config):
        return
    session = config.stash[SESSION_KEY]
    if not session.store.exists() and not session.store_errors:
        return  # no study anywhere, ever: nothing to show
    try:
        sections = [] if session.store_errors else session_sections(
            session.store, session.session_id, session.store.study_options(session.session_id))
    except StoreError as exc:
        session.store_errors.append(str(exc))
    if session.store_errors:
        terminalreporter.write_sep("=", "ablation results store error", red=True)
        for error in dict.fromkeys(session.store_errors):
            terminalreporter.write_line(error)
        return
    if not sections:
        return
    if not config.getoption("no_ablation_tables"):
        terminalreporter.write_sep("=", "ablation results")
        terminalreporter.write_line(render_text(sections))
    if config.getoption("summary_md"):
        path = write_markdown(sections, Path(config.getoption("summary_md")))
        terminalreporter.write_line(f"ablation tables written to {path}")
    if FIGURES_KEY in config.stash:
        terminalreporter.write_line(config.stash[FIGURES_KEY])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Workers close their W&B runs; the controller logs the verdicts and closes the session."""
    state = session.config.stash.get(SESSION_KEY, None)
    if state is None:
        return
    if not _is_worker(session.config) and state.store.exists():
        try:
            verdicts = state.store.verdicts(state.session_id)
            images = _write_plots(session.config, state)
            for study in dict.fromkeys(v["study"] for v in verdicts):
                state.tracker.log_verdicts(study=study,
                                           rows=[v for v in verdicts if v["study"] == study],
                                           images=images.get(study, []))
            state.store.end_session(state.session_id, exitstatus=int(exitstatus))
        except StoreError as exc:
            state.store_errors.append(str(exc))
    if state.store_errors and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR  # results were lost: never green
    state.tracker.close()


def _write_plots(config: pytest.Config, state: AblationSession) -> dict[str, list[Path]]:
    """--ablation-plots: the session's figures as files; study -> its PNG files. A figure
    that cannot be written costs a line in the summary, never the session's results."""
    folder = config.getoption("ablation_plots")
    if not folder:
        return {}
    from harness.core.plots import section_plots, write_plots

    try:
        options = state.store.study_options(state.session_id)
        sections = session_sections(state.store, state.session_id, options)
        plots = section_plots(state.store, state.session_id, sections, options)
        written = write_plots(sections, plots, Path(folder))
    except OSError as exc:  # a full disk, a folder we may not write
        reason = exc.strerror or exc
        config.stash[FIGURES_KEY] = (
            f"--ablation-plots {folder}: the figures could not be written ({reason}); the "
            "results are in the store: `python -m harness report --plots DIR` draws them later")
        return {}
    count = sum(map(len, written.values()))
    config.stash[FIGURES_KEY] = f"ablation figures: {count} files under {folder}"
    return {study: [p for p in files if p.suffix == ".png"] for study, files in written.items()}


def pytest_unconfigure(config: pytest.Config) -> None:
    """Close this process's store connection. An xdist worker exits right after: freezing what
    is alive spares the interpreter's final garbage collections over torch's many objects (the
    worker's exit, which the controller waits for, went from ~0.6 s to ~0.2 s here)."""
    state = config.stash.get(SESSION_KEY, None)
    if state is not None:
        state.store.close()
    if _is_worker(config):
        gc.freeze()


__all__ = ["GuardItem", "HypothesisCollector", "HypothesisItem"]
