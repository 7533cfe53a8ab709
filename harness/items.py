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
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pytest

from harness.core.inputs import READS
from harness.core.runlogs import log_name
from harness.core.runs import RunFailed
from harness.core.store import RunRecord, StoreError, VerdictRow
from harness.core.study import (
    RUN_VALUES,
    Guard,
    Hypothesis,
    KnobClaim,
    Knobs,
    RunSpec,
    Study,
    format_value,
    setting_id,
)
from harness.session import AblationSession

if TYPE_CHECKING:  # the statistics (numpy, scipy) load when a hypothesis is decided
    from harness.core.verdicts import RunMetrics, Stop

SESSION_KEY = pytest.StashKey[AblationSession]()
RUN_ARG = "_ablation_run"  # the hidden argument through which a run item gets its run


def study_test(study: Study) -> Callable[..., None]:
    """The test function pytest calls for a study's run items: it asks for the body's
    fixtures plus the hidden run argument, fills the body's run values (RUN_VALUES) from the
    run, and hands the body's return value to the run (pytest ignores return values)."""
    function = study.function
    assert function is not None
    signature = inspect.signature(function)
    names = list(signature.parameters)

    @functools.wraps(function)
    def test(**kwargs: Any) -> None:
        run = kwargs.pop(RUN_ARG)
        run.execute(lambda: function(**{n: run.value(n) if n in RUN_VALUES else kwargs[n]
                                         for n in names}))

    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
              for p in signature.parameters.values() if p.name not in RUN_VALUES]
    params.append(inspect.Parameter(RUN_ARG, inspect.Parameter.KEYWORD_ONLY))
    test.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return test


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
        frame = self._run._session.frame
        if frame is not None:  # steps/s of the run, or of the stage that trains
            frame.meter.step(step)

    def steps(self, total: int) -> None:
        self._run._session.progress.steps(total)


class Run:
    """The run a study's body makes: its `run` argument, and `ablation_run` for fixtures.

        run.variant, run.seed, run.tier, run.id   # what is being run
        run.config, run.knobs                     # merged config (a copy), knob values
        run.device, run.checkpoint                # torch device, a path to resume from
        run.log(step, loss=0.3)                   # per-step metrics
        run.stage("train", fn, ignore=[...])      # a result shared by runs, computed once
        run.init_model(build)                     # a seeded fresh model, its init recorded
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

    def stage(self, name: str, compute: Callable[..., Any], *,
              only: Sequence[str] | None = None, ignore: Sequence[str] = (),
              per_seed: bool = True, save: Callable[[Any, Path], None] | None = None,
              load: Callable[[Path], Any] | None = None) -> Any:
        """An intermediate result this run shares with others, computed once per session:

            state = run.stage("train", lambda: train(run.config).state_dict(),
                              ignore=["temperature"])     # an eval-only knob
            emb = run.stage("embed", lambda: embed(data, run.config["embedder"]),
                            only=["embedder"])            # shared by every classifier

        It is keyed by the tier, the seed (unless `per_seed=False`) and the config it depends
        on: the keys in `only`, or all but those in `ignore` (never the variant's name: two
        variants that agree on them share it). `compute` may take a `checkpoint` path to resume
        from after a crash. The value (dicts, lists, numbers, str, numpy arrays, torch tensors)
        is stored beside the store without pickle, so that `--reuse` takes it in later
        sessions like a run; anything else needs `save(value, folder)` and `load(folder)`.
        """
        return self._session.stage(self._study, self.spec, name, compute, only=only,
                                   ignore=ignore, per_seed=per_seed, save=save, load=load)

    def init_model(self, build: Callable[[], Any]) -> Any:
        """`model = run.init_model(lambda: Model(run.config))`: build the model with torch
        seeded by the run's seed and record a hash of its initial state, so the tables report
        variants of one seed that did not start from the same init."""
        import torch

        torch.manual_seed(self.seed)
        return self.note_init(build())

    def note_init(self, model: Any) -> Any:
        """Record the initial state of `model` (an nn.Module or a name -> tensor mapping) built
        by the body itself; returns it."""
        from harness.core.initstate import fingerprint_state

        frame = self._session.frame
        if frame is None:
            raise RuntimeError("run.note_init is for a run's body, while it computes")
        frame.init.update(fingerprint_state(model))
        return model

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
            name = log_name(spec.variant, spec.seed, spec.knobs)
            config = {**spec.config, "seed": spec.seed, "tier": spec.tier,
                      "variant": spec.variant}
            session, coordinator = self._session, self._session.coordinator
            metadata = {"run": spec.id, "key": spec.key, "session": session.session_id,
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
                   variants: list[str], seeds: Sequence[int] | None = None) -> RunMetrics:
    """Metrics of every (variant, seed) of one setting (or of those `seeds`, as the session
    numbers them), computing missing runs; failures are reported as text so that a verdict
    names the missing run instead of crashing."""
    session = item.config.stash[SESSION_KEY]
    runs: dict[tuple[str, int], dict[str, float] | str] = {}
    for spec in study.runs(tier, knobs, variants, seed_offset=session.seed_offset):
        if seeds is not None and spec.seed not in seeds:
            continue
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


def walk_looks(item: pytest.Item, study: Study, tier: str, knobs: Knobs,
               upto: int | None = None) -> Stop:
    """The look that ends a setting with an adaptive seed budget (see `stopping_look`),
    obtaining the runs of each look it walks through the coordinator, as `obtain_setting`
    does: a run another process is computing is waited for, never computed twice."""
    from harness.core.verdicts import stopping_look

    session = item.config.stash[SESSION_KEY]
    variants = study.hypothesis_variants()
    # a finished run's metrics do not change within a session: each walk of the setting in
    # this process asks the store only for the runs no earlier walk obtained
    known = item.config.stash.setdefault(WALKED_KEY, {}).setdefault(
        (study.name or "", tier, knobs), {})

    def obtain(seeds: Sequence[int]) -> RunMetrics:
        missing = [s for s in seeds if any((v, s) not in known for v in variants)]
        if missing:
            known.update(obtain_setting(item, study, tier, knobs, variants, missing))  # type: ignore[arg-type]
        return {(v, s): known[v, s] for v in variants for s in seeds}

    return stopping_look(study, tier, session.seeds(study, tier), obtain, upto)


# (study, tier, knobs) -> (looks walked, the look that settled the setting or None), and the
# runs obtained by walks, per process
STOPS_KEY = pytest.StashKey[dict[tuple[str, str, Knobs], tuple[int, int | None]]]()
WALKED_KEY = pytest.StashKey[dict[tuple[str, str, Knobs], dict[tuple[str, int], Any]]]()


def not_needed(item: pytest.Item, study: Study, spec: RunSpec) -> str | None:
    """Why a run beyond an adaptive budget's first look is skipped: every claim of its
    setting was decided at an earlier look (found by walking them), or None: it runs."""
    budget = study.budget_at(spec.tier)
    if budget is None:
        return None
    seeds = item.config.stash[SESSION_KEY].seeds(study, spec.tier)
    earlier = sum(n <= seeds.index(spec.seed) for n in budget.looks)  # looks before its own
    if not earlier:
        return None
    stops = item.config.stash.setdefault(STOPS_KEY, {})
    key = (study.name or "", spec.tier, spec.knobs)
    walked, settled = stops.get(key, (0, None))
    if settled is None and walked < earlier:
        stop = walk_looks(item, study, spec.tier, spec.knobs, upto=earlier)
        walked, settled = stops[key] = (stop.look, stop.look if stop.settled else None)
    if settled is None or settled > earlier:
        return None
    return (f"not needed: every claim of {setting_id(spec.tier, spec.knobs)} decided at look "
            f"{settled} ({budget.looks[settled - 1]} seeds)")


class ClaimItem(pytest.Function):
    """An item that decides a claim at one tier and knob setting from its runs: a hypothesis,
    or a guard against the baseline session. It passes only when the claim is supported."""

    def __init__(self, *, where: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.where = where  # file:line of the declaration
        # pytest >= 9.2 keeps structured node ids and --lf re-parses their text; our collector's
        # name holds "[...]", so give the item the id its own text parses to.
        if hasattr(self, "_id") and not isinstance(self._id, str):
            self._id = type(self._id).parse(self.nodeid)

    @property
    def setting(self) -> tuple[Study, str, Knobs]:
        parent: HypothesisCollector = self.parent  # type: ignore[assignment]
        return parent.study, parent.tier, parent.knobs

    def _properties(self, mine: VerdictRow) -> None:
        """This item's statistics become junit properties."""
        for key in ("status", "claim", "metric", "diff", "ci_lo", "ci_hi", "p", "p_adj", "test",
                    "n"):
            self.user_properties.append((f"ablation_{key}", getattr(mine, key)))

    def reportinfo(self) -> tuple[str, int | None, str]:
        path, _, line = self.where.rpartition(":")
        return path, int(line) - 1 if line.isdigit() else None, f"{self.parent.name}::{self.name}"


class HypothesisItem(ClaimItem):
    """One hypothesis at one tier and knob setting."""

    def __init__(self, *, hypothesis: Hypothesis, **kwargs: Any) -> None:
        super().__init__(where=hypothesis.where, **kwargs)
        self.hypothesis = hypothesis

    def runtest(self) -> None:
        results, rows = self.parent.decided("hypotheses", self, self._decide)  # type: ignore[union-attr]
        mine = next(r for r in results if r.hypothesis == self.hypothesis)
        self._properties(rows[results.index(mine)])
        if not mine.passed:
            pytest.fail(f"{mine.status.upper()}: {mine.message()}", pytrace=False)

    def _decide(self) -> tuple[list, list[VerdictRow]]:
        study, tier, knobs = self.setting
        session = self.config.stash[SESSION_KEY]
        if study.budget_at(tier) is not None:
            results = walk_looks(self, study, tier, knobs).results
        else:
            runs = obtain_setting(self, study, tier, knobs, study.hypothesis_variants())
            from harness.core.verdicts import decide_setting

            results = decide_setting(study, runs, session.seeds(study, tier), tier)
        return results, [r.row(study.name or "", tier, knobs) for r in results]


class GuardItem(ClaimItem):
    """One guarded metric of one variant at one setting, against the baseline session: skipped
    without a baseline, or (unless --ablation-baseline-strict) without the baseline's runs."""

    def __init__(self, *, guard: Guard, variant: str, **kwargs: Any) -> None:
        super().__init__(where=guard.where, **kwargs)
        self.guard, self.variant = guard, variant

    def runtest(self) -> None:
        session = self.config.stash[SESSION_KEY]
        if session.baseline is None:
            raise pytest.skip.Exception(  # reported at the guard's declaration, like a mark
                "no baseline to compare with: pass --ablation-baseline (a session id, git:REF or "
                "a results store file) or set the ablation_baseline ini value",
                _use_item_location=True)
        results, rows = self.parent.decided("guards", self, self._decide)  # type: ignore[union-attr]
        mine = next(r for r in results if (r.guard, r.variant) == (self.guard, self.variant))
        self._properties(rows[results.index(mine)])
        against = f"against the baseline, {session.baseline.describe()}"
        if mine.status == "skipped" and not self.config.getoption("ablation_baseline_strict"):
            raise pytest.skip.Exception(f"{mine.message()} ({against}; "
                                        "--ablation-baseline-strict fails instead)",
                                        _use_item_location=True)
        if mine.status != "supported":
            pytest.fail(f"{mine.status.upper()} {against}:\n{mine.message()}", pytrace=False)

    def _decide(self) -> tuple[list, list[VerdictRow]]:
        study, tier, knobs = self.setting
        session = self.config.stash[SESSION_KEY]
        guarded = [v for v in study.variants if any(g.covers([v]) for g in study.guards)]
        seeds = fixed_seeds(session, study, tier)
        runs = obtain_setting(self, study, tier, knobs, guarded, seeds)
        from harness.core.baseline import BaselineError, baseline_runs, decide_guards

        try:
            before = baseline_runs(session.baseline, study.name or "", tier, knobs)
        except BaselineError as exc:
            pytest.fail(str(exc), pytrace=False)
        results = decide_guards(study.guards, list(study.variants), runs, before, seeds,
                                study.correction)
        return results, [r.row(study.name or "", tier, knobs, session.baseline)
                         for r in results]


class KnobClaimItem(ClaimItem):
    """One knob claim (compare, trend, best) of one variant over one group of settings."""

    def __init__(self, *, claim: KnobClaim, variant: str, **kwargs: Any) -> None:
        super().__init__(where=claim.where, **kwargs)
        self.claim, self.variant = claim, variant

    def runtest(self) -> None:
        results, rows = self.parent.decided("claims", self, self._decide)  # type: ignore[union-attr]
        mine = next(r for r in results if (r.claim, r.variant) == (self.claim, self.variant))
        self._properties(rows[results.index(mine)])
        if not mine.passed:
            pytest.fail(f"{mine.status.upper()}: {mine.message()}", pytrace=False)

    def _decide(self) -> tuple[list, list[VerdictRow]]:
        group: KnobClaimCollector = self.parent  # type: ignore[assignment]
        study, session = group.study, self.config.stash[SESSION_KEY]
        variants = [v for v in study.variants if any(c.covers([v]) for c in group.claims)]
        levels = [format_value(dict(knobs)[group.knob]) for knobs in group.members]
        seeds = fixed_seeds(session, study, group.tier)
        runs = {level: obtain_setting(self, study, group.tier, knobs, variants, seeds)
                for level, knobs in zip(levels, group.members, strict=True)}
        from harness.core.verdicts import decide_claims

        results = decide_claims(study, group.claims, levels, runs, seeds)
        return results, [r.row(study.name or "", group.tier, group.rest) for r in results]


def fixed_seeds(session: AblationSession, study: Study, tier: str) -> list[int]:
    """The session's seeds that always run at a tier (an adaptive budget's first look): knob
    claims and guards are decided on them, a fixed design whatever the looks found."""
    return session.seeds(study, tier)[:len(study.fixed_seeds_at(tier))]


def _claim() -> None:
    """Placeholder callable: a claim item's work is in its runtest."""


class _Family(pytest.Collector):
    """A collector whose items' claims form families, each decided once per process (the
    first item to run decides and stores the whole family; the others read the result)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._decided: dict[str, tuple[list, list[VerdictRow]]] = {}

    def decided(self, family: str, item: ClaimItem, decide: Callable[[], tuple[list, list[
            VerdictRow]]]) -> tuple[list, list[VerdictRow]]:
        if family not in self._decided:
            results, rows = decide()
            session = item.config.stash[SESSION_KEY]
            try:
                session.store.save_verdicts(session.session_id, rows)
            except StoreError as exc:
                session.store_errors.append(str(exc))
                pytest.fail(str(exc), pytrace=False)
            self._decided[family] = results, rows
        return self._decided[family]

    def _mark(self, items: list[ClaimItem], marks: list[pytest.Mark], tier: str) -> None:
        for item in items:
            for mark in marks:  # the study function's own marks (slow, skipif, ...)
                item.own_markers.append(mark)
                item.keywords[mark.name] = mark
            item.add_marker(pytest.mark.hypothesis)
            item.add_marker(pytest.mark.ablation)
            if isinstance(item, GuardItem):
                item.add_marker(pytest.mark.guard)
            item.keywords[tier] = True


class HypothesisCollector(_Family):
    """`test_study[synthetic-noise_sigma=0.5]`: the hypotheses of one tier and knob setting."""

    def __init__(self, *, study: Study, tier: str, knobs: Knobs, marks: list[pytest.Mark],
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.study, self.tier, self.knobs, self.marks = study, tier, knobs, marks

    def collect(self) -> list[ClaimItem]:
        items: list[ClaimItem] = [
            HypothesisItem.from_parent(self, name=hypothesis.label, callobj=_claim,
                                       hypothesis=hypothesis)
            for hypothesis in self.study.hypotheses_at(self.tier)]
        items += [GuardItem.from_parent(self, name=guard.label(variant), callobj=_claim,
                                        guard=guard, variant=variant)
                  for guard in self.study.guards
                  for variant in guard.covers(list(self.study.variants))]
        self._mark(items, self.marks, self.tier)
        return items

    def reportinfo(self) -> tuple[str, int | None, str]:
        path, _, line = self.study.where.rpartition(":")
        return path, int(line) - 1 if line.isdigit() else None, self.name


class KnobClaimCollector(_Family):
    """`test_study[synthetic-noise=0.5-temperature=*]`: the claims across one knob's values
    within one group of settings (one tier, the other knobs equal)."""

    def __init__(self, *, study: Study, tier: str, knob: str, rest: Knobs,
                 members: list[Knobs], claims: list[KnobClaim], marks: list[pytest.Mark],
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.study, self.tier, self.knob, self.rest = study, tier, knob, rest
        self.members, self.claims, self.marks = members, claims, marks

    def collect(self) -> list[ClaimItem]:
        items: list[ClaimItem] = [
            KnobClaimItem.from_parent(self, name=claim.label(variant), callobj=_claim,
                                      claim=claim, variant=variant)
            for claim in self.claims for variant in claim.covers(list(self.study.variants))]
        self._mark(items, self.marks, self.tier)
        return items

    def reportinfo(self) -> tuple[str, int | None, str]:
        path, _, line = self.claims[0].where.rpartition(":")
        return path, int(line) - 1 if line.isdigit() else None, self.name


def hypothesis_collectors(parent: pytest.Collector, name: str, obj: Any,
                          study: Study) -> list[_Family]:
    """The claim collectors of a study function: one per setting for its hypotheses and
    guards, one per group of settings for each knob's claims."""
    marks = list(getattr(obj, "pytestmark", []))
    found: list[_Family] = [
        HypothesisCollector.from_parent(parent, name=f"{name}[{setting_id(tier, knobs)}]",
                                        study=study, tier=tier, knobs=knobs, marks=marks)
        for tier, knobs in study.settings()
        if study.hypotheses_at(tier) or study.guards]
    groups: dict[tuple[str, str, Knobs], tuple[list[Knobs], list[KnobClaim]]] = {}
    for claim in study.claims:
        for tier, rest, members in study.knob_groups(claim):
            group = groups.setdefault((tier, claim.knob, rest), (members, []))
            group[1].append(claim)
    for (tier, knob, rest), (members, claims) in groups.items():
        label = f"{setting_id(tier, rest)}-{knob}=*"
        found.append(KnobClaimCollector.from_parent(
            parent, name=f"{name}[{label}]", study=study, tier=tier, knob=knob, rest=rest,
            members=members, claims=claims, marks=marks))
    return found


def run_for(request: pytest.FixtureRequest) -> Run:
    """The run of the item asking: its own for a run item, a clear error anywhere else."""
    spec = getattr(request, "param", None)
    study = getattr(request.function, "__ablation_study__", None)
    if not isinstance(spec, RunSpec) or study is None:
        pytest.fail(f"{request.node.nodeid}: fixture 'ablation_run' is the run of an ablation "
                    "study's test body (a function decorated by a study from "
                    "harness.ablation(...)); this test is not one, so it has no run",
                    pytrace=False)
    reason = not_needed(request.node, study, spec)
    if reason:
        pytest.skip(reason)
    return Run(request.config.stash[SESSION_KEY], study, spec)


__all__ = ["RUN_ARG", "SESSION_KEY", "ClaimItem", "GuardItem", "HypothesisCollector",
           "HypothesisItem", "KnobClaimCollector", "KnobClaimItem", "Run"]
