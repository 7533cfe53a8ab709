"""pytest items of a study: the run context behind each run item, and hypothesis items.

A hypothesis item needs every run of its tier and knob setting. Runs already made in this
session (or, with `--reuse`, in the store) are read; the others are computed right there by
calling the study's test body with its fixtures, so `-k` can select a hypothesis alone.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pytest

from harness.core.inputs import READS
from harness.core.runs import RunFailed
from harness.core.store import RunRecord, StoreError
from harness.core.study import RUN_ARG, RUN_VALUES, Hypothesis, Knobs, RunSpec, Study, setting_id
from harness.session import AblationSession

if TYPE_CHECKING:  # the statistics (numpy, scipy) load when a hypothesis is decided
    from harness.core.verdicts import RunMetrics

SESSION_KEY = pytest.StashKey[AblationSession]()


class RunAborted(Exception):
    """The body was failed by pytest itself (`pytest.fail`, or a `--timeout` that fired): the
    run is stored as failed once, so that no other item trains it again."""


class StepLog:
    """`run.log(step, loss=0.3)`: per-step metrics to the run log, W&B and the progress bar;
    `run.log.steps(1000)` declares the step budget, for the progress bar's ETA."""

    def __init__(self, run: Run) -> None:
        self._run = run

    def __call__(self, step: int, **values: float) -> None:
        if self._run._log is not None:
            self._run._log.log(step, **values)
        self._run._session.progress.update(step, values)

    def steps(self, total: int) -> None:
        self._run._session.progress.steps(total)


class Run:
    """The run a study's body makes: its `run` argument, and `ablation_run` for fixtures.

        run.variant, run.seed, run.tier, run.id   # what is being run
        run.config, run.knobs                     # merged config (a copy), knob values
        run.device, run.checkpoint                # torch device, a path to resume from
        run.log(step, loss=0.3)                   # per-step metrics
    """

    def __init__(self, session: AblationSession, study: Study, spec: RunSpec) -> None:
        self._session, self._study, self.spec = session, study, spec
        self.config: dict[str, Any] = copy.deepcopy(dict(spec.config))
        self.knobs: Mapping[str, Any] = MappingProxyType(dict(spec.knobs))
        self.log = StepLog(self)
        self._computing = False
        self._log = None

    variant = property(lambda self: self.spec.variant, doc="The variant's name.")
    seed = property(lambda self: self.spec.seed,
                    doc="The seed, shared by every variant: same init, same data.")
    tier = property(lambda self: self.spec.tier, doc='The tier: "synthetic", "real", ...')
    id = property(lambda self: self.spec.id, doc="synthetic-noise=0.5-combined-seed1")

    @property
    def device(self) -> str:
        """`cuda:0` on a GPU-pinned xdist worker, else `cuda` when a GPU is visible, else
        `cpu`; the store records the physical GPU."""
        return self._session.device

    @functools.cached_property
    def checkpoint(self) -> Path:
        """A path for this run's training checkpoint, beside the store, that survives the
        session: an interrupted run resumes from it in the next session as long as code and
        config are unchanged. The folder exists; the file is the body's to write."""
        return self._session.checkpoint_path(self._study, self.spec)

    def value(self, name: str) -> Any:
        """What a body parameter named `name` (one of RUN_VALUES) receives."""
        return self if name == "run" else getattr(self, name)

    def __repr__(self) -> str:
        return f"<Run {self.spec.study}[{self.id}]>"

    def execute(self, body: Callable[[], Any]) -> RunRecord:
        """Obtain the run (exactly once per session); progress and tracking only follow a run
        that is computed here, not one read from the session or the store."""

        def guarded() -> Any:
            try:
                return body()
            except pytest.fail.Exception as exc:
                raise RunAborted(str(exc)) from None

        failure = None
        try:
            record = self._session.obtain(self._study, self.spec, guarded, on_start=self._start)
        except (RunAborted, StoreError) as exc:  # the run is stored as failed, or cannot be
            failure = str(exc)
            if isinstance(exc, StoreError):  # the session stops after this item
                self._session.store_errors.append(failure)
        except BaseException:
            self._finish_log({}, status="failed")
            raise
        finally:
            if self._computing:
                self._session.progress.finish()
        if failure is not None:  # failed here, outside the handler: one message, no chain
            self._finish_log({}, status="failed")
            pytest.fail(failure, pytrace=False)
        self._finish_log(record.metrics)
        return record

    def _finish_log(self, metrics: Mapping[str, float], status: str = "done") -> None:
        """Close the run's log; a log that cannot be written (a full disk) never hides why
        the run failed."""
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.finish(metrics, status=status)

    def _start(self) -> None:
        self._computing = True
        self._session.progress.start(self.id)
        tracker = self._session.tracker
        if tracker is not None:
            spec = self.spec
            name = "-".join([f"{spec.variant}-seed{spec.seed}",
                             *(f"{k}={v}" for k, v in spec.knobs)])
            config = {**spec.config, "seed": spec.seed, "tier": spec.tier,
                      "variant": spec.variant}
            session, coordinator = self._session, self._session.coordinator
            metadata = {"run": spec.id, "session": session.session_id,
                        "host": session.owner.host, "pid": session.owner.pid,
                        "worker": session.owner.worker, "device": session.device_label,
                        "versions": coordinator.versions, "git_commit": coordinator.git_commit,
                        "fingerprint": session.fingerprint(self._study, spec)}
            self._log = tracker.start(study=spec.study, name=name, config=config,
                                      metadata=metadata)


class _BodyCall:
    """Calls a study's test body for a run outside its own item, resolving its fixtures.

    Fixtures of a wider scope than function come from the requesting item (they cannot depend
    on the run); function-scoped ones are evaluated here for this run, generator fixtures
    included (their teardown runs after the body).
    """

    def __init__(self, item: pytest.Function, run: Run) -> None:
        self.item, self.run = item, run
        self.values: dict[str, Any] = {}
        self.teardowns: list[Iterator[Any]] = []

    def __call__(self) -> Any:
        function = self.run._study.function
        assert function is not None
        try:
            kwargs = {name: self.run.value(name) if name in RUN_VALUES else self.resolve(name)
                      for name in inspect.signature(function).parameters}
            return function(**kwargs)
        finally:
            for generator in reversed(self.teardowns):
                next(generator, None)

    def resolve(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        if name == "ablation_run":
            value: Any = self.run
        elif name == "request":
            value = self.item._request
        else:
            definitions = self.item.session._fixturemanager.getfixturedefs(name, self.item)
            if not definitions:
                hint = (f"; a fixture gets the run's {name} as ablation_run.{name}"
                        if name in RUN_VALUES else "")
                raise LookupError(f"fixture {name!r} not found for {self.item.nodeid}{hint}")
            definition = definitions[-1]
            if definition.scope != "function":
                value = self.item._request.getfixturevalue(name)
            else:
                kwargs = {arg: self.resolve(arg) for arg in definition.argnames}
                with READS.recording():  # what a fixture reads is an input of the run
                    value = definition.func(**kwargs)
                    if inspect.isgenerator(value):
                        self.teardowns.append(value)
                        value = next(value)
        self.values[name] = value
        return value


def obtain_setting(item: pytest.Function, study: Study, tier: str, knobs: Knobs,
                   variants: list[str]) -> RunMetrics:
    """Metrics of every (variant, seed) of one setting, computing missing runs; failures are
    reported as text so that a verdict names the missing run instead of crashing."""
    session = item.config.stash[SESSION_KEY]
    runs: dict[tuple[str, int], dict[str, float] | str] = {}
    for spec in study.runs(tier, knobs, variants, seed_offset=session.seed_offset):
        run = Run(session, study, spec)
        try:
            runs[(spec.variant, spec.seed)] = run.execute(_BodyCall(item, run)).metrics
        except RunFailed as exc:
            last = (exc.error or "").strip().splitlines()[-1:] or ["no error recorded"]
            runs[(spec.variant, spec.seed)] = (f"the run failed ({last[0]}); its own item "
                                               "shows the traceback")
        except Exception as exc:
            runs[(spec.variant, spec.seed)] = f"the run raised {type(exc).__name__}: {exc}"
    return runs


class HypothesisItem(pytest.Function):
    """One hypothesis at one tier and knob setting; passes only when supported."""

    def __init__(self, *, hypothesis: Hypothesis, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hypothesis = hypothesis
        # pytest >= 9.2 keeps structured node ids and --lf re-parses their text; our collector's
        # name holds "[...]", so give the item the id its own text parses to.
        if hasattr(self, "_id") and not isinstance(self._id, str):
            self._id = type(self._id).parse(self.nodeid)

    def runtest(self) -> None:
        parent: HypothesisCollector = self.parent  # type: ignore[assignment]
        study, tier, knobs = parent.study, parent.tier, parent.knobs
        session = self.config.stash[SESSION_KEY]
        runs = obtain_setting(self, study, tier, knobs, study.hypothesis_variants())
        from harness.core.verdicts import decide_setting

        results = decide_setting(study, runs, session.seeds(study))
        try:
            session.store.save_verdicts(session.session_id,
                                        [r.row(study.name or "", tier, knobs) for r in results])
        except StoreError as exc:
            session.store_errors.append(str(exc))
            pytest.fail(str(exc), pytrace=False)
        mine = next(r for r in results if r.hypothesis == self.hypothesis)
        row = mine.row(study.name or "", tier, knobs)
        for key in ("status", "claim", "metric", "diff", "ci_lo", "ci_hi", "p", "p_adj", "test",
                    "n"):
            self.user_properties.append((f"ablation_{key}", row[key]))
        if not mine.passed:
            pytest.fail(f"{mine.status.upper()}: {mine.message()}", pytrace=False)

    def reportinfo(self) -> tuple[str, int | None, str]:
        path, _, line = self.hypothesis.where.rpartition(":")
        return path, int(line) - 1 if line.isdigit() else None, f"{self.parent.name}::{self.name}"


def _hypothesis_check() -> None:
    """Placeholder callable: a hypothesis item's work is in HypothesisItem.runtest."""


class HypothesisCollector(pytest.Collector):
    """`test_study[synthetic-noise_sigma=0.5]`: the hypotheses of one tier and knob setting."""

    def __init__(self, *, study: Study, tier: str, knobs: Knobs, marks: list[pytest.Mark],
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.study, self.tier, self.knobs, self.marks = study, tier, knobs, marks

    def collect(self) -> list[HypothesisItem]:
        items = []
        for hypothesis in self.study.hypotheses:
            item = HypothesisItem.from_parent(self, name=hypothesis.label,
                                              callobj=_hypothesis_check, hypothesis=hypothesis)
            for mark in self.marks:  # the study function's own marks (slow, skipif, ...)
                item.own_markers.append(mark)
                item.keywords[mark.name] = mark
            item.add_marker(pytest.mark.hypothesis)
            item.add_marker(pytest.mark.ablation)
            item.keywords[self.tier] = True
            items.append(item)
        return items

    def reportinfo(self) -> tuple[str, int | None, str]:
        path, _, line = self.study.where.rpartition(":")
        return path, int(line) - 1 if line.isdigit() else None, self.name


def hypothesis_collectors(parent: pytest.Collector, name: str, obj: Any,
                          study: Study) -> list[HypothesisCollector]:
    marks = list(getattr(obj, "pytestmark", []))
    return [HypothesisCollector.from_parent(parent, name=f"{name}[{setting_id(tier, knobs)}]",
                                            study=study, tier=tier, knobs=knobs, marks=marks)
            for tier, knobs in study.settings()] if study.hypotheses else []


def run_for(request: pytest.FixtureRequest) -> Run:
    """The run of the item asking: its own for a run item, a clear error anywhere else."""
    spec = getattr(request, "param", None)
    study = getattr(request.function, "__ablation_study__", None)
    if not isinstance(spec, RunSpec) or study is None:
        pytest.fail(f"{request.node.nodeid}: fixture 'ablation_run' is the run of an ablation "
                    "study's test body (a function decorated by a study from "
                    "harness.ablation(...)); this test is not one, so it has no run",
                    pytrace=False)
    return Run(request.config.stash[SESSION_KEY], study, spec)


__all__ = ["RUN_ARG", "SESSION_KEY", "HypothesisCollector", "HypothesisItem", "Run"]
