"""pytest items of a study: the run context behind each run item, and hypothesis items.

A hypothesis item needs every run of its tier and knob setting. Runs already made in this
session (or, with `--reuse`, in the store) are read; the others are computed right there by
calling the study's test body with its fixtures, so `-k` can select a hypothesis alone.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from harness.core.runs import RunFailed
from harness.core.store import RunRecord
from harness.core.study import RUN_ARG, Hypothesis, Knobs, RunSpec, Study, setting_id
from harness.session import AblationSession

if TYPE_CHECKING:  # the statistics (numpy, scipy) load when a hypothesis is decided
    from harness.core.verdicts import RunMetrics

SESSION_KEY = pytest.StashKey[AblationSession]()
RUN_FIXTURES = ("run", "variant", "seed", "config", "knobs", "tier", "log", "device",
                "checkpoint")


class StepLog:
    """`log(step, loss=0.3)`: per-step metrics to the run log, W&B and the progress bar;
    `log.steps(1000)` declares the step budget, for the progress bar's ETA."""

    def __init__(self, context: RunContext) -> None:
        self._context = context

    def __call__(self, step: int, **values: float) -> None:
        if self._context._log is not None:
            self._context._log.log(step, **values)
        self._context.session.progress.update(step, values)

    def steps(self, total: int) -> None:
        self._context.session.progress.steps(total)


class RunContext:
    """One run as the test body sees it (through the `run`, `log`, ... fixtures)."""

    def __init__(self, session: AblationSession, study: Study, spec: RunSpec) -> None:
        self.session, self.study, self.spec = session, study, spec
        self._computing = False
        self._log = None
        self.log = StepLog(self)

    def execute(self, body: Callable[[], Any]) -> RunRecord:
        """Obtain the run (exactly once per session); progress and tracking only follow a run
        that is computed here, not one read from the session or the store."""
        try:
            record = self.session.obtain(self.study, self.spec, body, on_start=self._start)
        except BaseException:
            if self._log is not None:
                self._log.finish({}, status="failed")
            raise
        finally:
            if self._computing:
                self.session.progress.finish()
        if self._log is not None:
            self._log.finish(record.metrics)
        return record

    def _start(self) -> None:
        self._computing = True
        self.session.progress.start(self.spec.id)
        tracker = self.session.tracker
        if tracker is not None:
            name = "-".join([f"{self.spec.variant}-seed{self.spec.seed}",
                             *(f"{k}={v}" for k, v in self.spec.knobs)])
            config = {**self.spec.config, "seed": self.spec.seed, "tier": self.spec.tier,
                      "variant": self.spec.variant}
            coordinator = self.session.coordinator
            metadata = {"run": self.spec.id, "session": self.session.session_id,
                        "host": self.session.owner.host, "pid": self.session.owner.pid,
                        "worker": self.session.owner.worker, "device": self.session.device_label,
                        "versions": coordinator.versions, "git_commit": coordinator.git_commit,
                        "fingerprint": self.session.fingerprint(self.study, self.spec)}
            self._log = tracker.start(study=self.spec.study, name=name, config=config,
                                      metadata=metadata)

    def fixture(self, name: str) -> Any:
        """The value of run fixture `name` (`run`, `variant`, `seed`, `config`, ...): the one
        place they are defined, for harness.fixtures and for bodies called outside their item."""
        spec = self.spec
        values: dict[str, Callable[[], Any]] = {
            "run": lambda: spec, "variant": lambda: spec.variant, "seed": lambda: spec.seed,
            "config": lambda: dict(spec.config), "knobs": lambda: dict(spec.knobs),
            "tier": lambda: spec.tier, "log": lambda: self.log,
            "device": lambda: self.session.device,
            "checkpoint": lambda: self.session.checkpoint_path(self.study, spec)}
        return values[name]()


class _BodyCall:
    """Calls a study's test body for a run outside its own item, resolving its fixtures.

    Fixtures of a wider scope than function come from the requesting item (they cannot depend
    on the run); function-scoped ones are evaluated here for this run, generator fixtures
    included (their teardown runs after the body).
    """

    def __init__(self, item: pytest.Function, context: RunContext) -> None:
        self.item, self.context = item, context
        self.values: dict[str, Any] = {}
        self.teardowns: list[Iterator[Any]] = []

    def __call__(self) -> Any:
        function = self.context.study.function
        assert function is not None
        try:
            kwargs = {name: self.resolve(name) for name in inspect.signature(function).parameters}
            return function(**kwargs)
        finally:
            for generator in reversed(self.teardowns):
                next(generator, None)

    def resolve(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        if name in RUN_FIXTURES:
            value = self.context.fixture(name)
        elif name == "request":
            value = self.item._request
        else:
            definitions = self.item.session._fixturemanager.getfixturedefs(name, self.item)
            if not definitions:
                raise LookupError(f"fixture {name!r} not found for {self.item.nodeid}")
            definition = definitions[-1]
            if definition.scope != "function":
                value = self.item._request.getfixturevalue(name)
            else:
                kwargs = {arg: self.resolve(arg) for arg in definition.argnames}
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
        context = RunContext(session, study, spec)
        try:
            runs[(spec.variant, spec.seed)] = context.execute(_BodyCall(item, context)).metrics
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
        session.store.save_verdicts(session.session_id,
                                    [r.row(study.name or "", tier, knobs) for r in results])
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


def run_context(request: pytest.FixtureRequest) -> RunContext:
    """The hidden `_ablation_run` fixture's value for a run item."""
    spec: RunSpec = request.param
    study: Study = request.function.__ablation_study__
    return RunContext(request.config.stash[SESSION_KEY], study, spec)


__all__ = ["RUN_ARG", "SESSION_KEY", "HypothesisCollector", "HypothesisItem", "RunContext"]
