"""The study spec: variants x seeds x knobs, tiers and hypotheses.

A `Study` is plain data plus validation. The pytest layer turns it into items; this module
knows nothing of pytest, so a study can be expanded, checked and decided in a script too.

    heads = Study(variants={"ctc_only": {"train": ["ctc"]}, "combined": {"train": ["ctc", "ar"]}},
                  seeds=3, tiers={"synthetic": {"noise_sigma": [0.5, 1.0]}})
    heads.expect("combined >= ctc_only", metric="joint/labels/majmin", margin=0.01)
    [spec.id for spec in heads.runs()][:1]   # ['synthetic-noise_sigma=0.5-combined-seed0']
"""

from __future__ import annotations

import copy
import difflib
import itertools
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.core.metrics import lower_is_better

# What a hypothesis may say; harness.core.stats decides each (kept here, so that declaring and
# collecting studies does not import numpy and scipy).
OPERATORS = (">", ">=", "<", "<=", "==")
TESTS = ("t", "permutation")
CORRECTIONS = ("holm", "bonferroni", "none")
# Body parameters filled from the run itself, never from fixtures of the same name: a conftest's
# own `config` or `seed` fixture can never stand in for the run's.
RUN_VALUES = ("run", "seed", "config", "knobs", "tier", "variant", "device", "log", "checkpoint")
DEFAULT_TIER = "default"

Knobs = tuple[tuple[str, Any], ...]
BUDGET_KEYS = ("min", "max", "batch")
MAX_LOOKS = 20  # looks of an adaptive budget: each look costs the boundaries some power


class StudyError(ValueError):
    """A study or hypothesis is declared wrongly; the message names the file and line."""


def _caller(depth: int = 2) -> str:
    """`file:line` of the user code that declared something, for error messages. (Not
    inspect.stack(): it reads source lines for every frame, 80 ms a call under pytest.)"""
    frame = sys._getframe(depth)
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def format_value(value: Any) -> str:
    """Short, id-friendly text for a knob value: 0.5, 1e-05, true, billboard."""
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def setting_id(tier: str, knobs: Knobs) -> str:
    """`synthetic-noise_sigma=0.5`: one tier at one knob setting."""
    return "-".join([tier, *(f"{k}={format_value(v)}" for k, v in knobs)])


@dataclass(frozen=True)
class RunSpec:
    """One run: a variant at one seed, one tier and one knob setting, with its merged config."""

    study: str
    tier: str
    knobs: Knobs
    variant: str
    seed: int
    config: Mapping[str, Any] = field(compare=False, hash=False)

    @property
    def key(self) -> str:
        """Canonical identity of the run within a session (the config follows from it)."""
        return json.dumps([self.study, self.tier, [list(k) for k in self.knobs], self.variant,
                           self.seed], sort_keys=True)

    @property
    def id(self) -> str:
        return f"{setting_id(self.tier, self.knobs)}-{self.variant}-seed{self.seed}"

    kind = "run"  # a row of the store's runs table is a run or a stage (core/stages.py)

    @property
    def setting(self) -> tuple[str, Knobs]:
        return self.tier, self.knobs


@dataclass(frozen=True)
class Budget:
    """An adaptive seed budget, `seeds={"min": 3, "max": 12, "batch": 3}`: run `min` seeds,
    then add `batch` more at a time, only while a claim of the setting is undecided, up to
    `max` (harness/core/sequential.py; docs/statistics.md, "Adaptive seeds")."""

    min: int
    max: int
    batch: int = 1

    @property
    def looks(self) -> tuple[int, ...]:
        """The seed counts at which the claims are decided: min, min + batch, ..., max."""
        return (*range(self.min, self.max, self.batch), self.max)


_HYPOTHESIS = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(>=|<=|==|>|<)\s*([A-Za-z_][\w.\-]*)\s*$")


@dataclass(frozen=True)
class Hypothesis:
    """A claim `a op b` on one metric, decided by a paired test over seeds."""

    a: str
    op: str
    b: str
    metric: str
    margin: float = 0.0
    alpha: float = 0.05
    test: str = "t"
    name: str = ""
    where: str = ""  # file:line of the declaration
    tiers: tuple[str, ...] = ()  # the tiers it is claimed at (all when empty)

    @property
    def label(self) -> str:
        """The item name: `combined>=ctc_only[joint/labels/majmin]` unless named explicitly."""
        return self.name or f"{self.a}{self.op}{self.b}[{self.metric}]"

    @property
    def text(self) -> str:
        return f"{self.a} {self.op} {self.b}"


@dataclass(frozen=True)
class Guard:
    """A metric that must not get worse than in a baseline session (`--ablation-baseline`) by
    more than `margin`, for each of `variants` (all when empty); margin 0: identical to it."""

    metric: str
    margin: float
    minimize: bool = False  # lower is better: the claim is current <= baseline + margin
    alpha: float = 0.05
    test: str = "t"
    variants: tuple[str, ...] = ()
    where: str = ""  # file:line of the declaration

    def label(self, variant: str) -> str:
        """The item name: `combined>=baseline[joint/labels/majmin]`."""
        return f"{variant}{'<=' if self.minimize else '>='}baseline[{self.metric}]"

    def covers(self, variants: Sequence[str]) -> list[str]:
        """Those of `variants` the guard covers, in their order."""
        return [v for v in variants if not self.variants or v in self.variants]


class Sweep:
    """One knob at a time around a base setting (a tier's knobs, instead of a grid):

        tiers={"synthetic": sweep({"lr": [1e-4, 1e-2], "dropout": [0.0, 0.3]},
                                  base={"lr": 1e-3, "dropout": 0.1})}

    gives the base setting, then each swept value with every other knob at its base value:
    5 settings where the grid would have 9. Every setting names all its knobs in its id.
    """

    def __init__(self, values: Mapping[str, Sequence[Any]], *, base: Mapping[str, Any]):
        self.values = {knob: list(v) if isinstance(v, list | tuple) else v
                       for knob, v in dict(values).items()}
        self.base = dict(base)

    @property
    def knobs(self) -> dict[str, list[Any]]:
        """Every value each knob takes: its base value first, then its swept ones."""
        return {knob: [self.base[knob], *[v for v in self.values.get(knob, [])
                                          if format_value(v) != format_value(self.base[knob])]]
                for knob in self.base}

    def settings(self) -> Iterator[Knobs]:
        base = tuple(self.base.items())
        yield base
        for knob, values in self.knobs.items():
            for value in values[1:]:
                yield tuple((k, value if k == knob else v) for k, v in base)


def sweep(values: Mapping[str, Sequence[Any]], *, base: Mapping[str, Any]) -> Sweep:
    """One-at-a-time knobs for a tier: see `Sweep`."""
    return Sweep(values, base=base)


CLAIM_KINDS = ("compare", "trend", "best")
DIRECTIONS = ("increases", "decreases")


@dataclass(frozen=True)
class KnobClaim:
    """A claim across the values of one knob, for each of `variants` (all when empty), decided
    over the runs of one tier whose other knobs are equal, paired by seed:

    - compare: `temperature=0.7 > temperature=1.2` (`a`, `op`, `b` are value texts), decided
      like a hypothesis between variants;
    - trend: the metric increases (or decreases) with the knob's values in their order;
    - best: which value is best, the winner only when it beats every other (`expect`: claim
      that it is this value).
    """

    kind: str
    knob: str
    metric: str
    op: str = ""
    a: str = ""
    b: str = ""
    direction: str = ""
    expect: str | None = None
    margin: float = 0.0
    alpha: float = 0.05
    test: str = "t"
    variants: tuple[str, ...] = ()
    name: str = ""
    where: str = ""
    tiers: tuple[str, ...] = ()  # the tiers it is claimed at (all when empty)

    def label(self, variant: str) -> str:
        """`combined:temperature=0.7>temperature=1.2[acc]`, `combined:increases_with(frac)[acc]`,
        `combined:best(label_smoothing)[acc]`."""
        if self.name:
            return f"{variant}:{self.name}"
        what = {"compare": f"{self.knob}={self.a}{self.op}{self.knob}={self.b}",
                "trend": f"{self.direction}_with({self.knob})",
                "best": f"best({self.knob})"}[self.kind]
        return f"{variant}:{what}[{self.metric}]"

    @property
    def text(self) -> str:
        """The claim in words, for tables."""
        if self.kind == "compare":
            return f"{self.knob}={self.a} {self.op} {self.knob}={self.b}"
        if self.kind == "trend":
            return f"{self.metric} {self.direction} with {self.knob}"
        return f"best {self.knob}" + (f" is {self.expect}" if self.expect is not None else "")

    def needs(self, values: Sequence[str]) -> bool:
        """Whether a group of settings with these knob values (texts) can decide the claim."""
        if self.kind == "compare":
            return self.a in values and self.b in values
        return len(values) >= 2

    def covers(self, variants: Sequence[str]) -> list[str]:
        return [v for v in variants if not self.variants or v in self.variants]


_KNOB_SIDE = re.compile(r"^\s*([A-Za-z_]\w*)\s*=\s*([^\s<>=]+)\s*$")
_KNOB_CLAIM = re.compile(r"^(.*?)\s*(>=|<=|==|>|<)\s*(.*)$")


def parse_hypothesis(expr: str, **options: Any) -> Hypothesis:
    """Parse `"combined >= ctc_only"` into a Hypothesis (validated later against the study)."""
    match = _HYPOTHESIS.match(expr) if isinstance(expr, str) else None
    if not match:
        raise StudyError(
            f"malformed hypothesis {expr!r}: write '<variant> <op> <variant>' with op one of "
            f"{', '.join(OPERATORS)}, e.g. 'combined >= ctc_only'")
    a, op, b = match.groups()
    return Hypothesis(a=a, op=op, b=b, **options)


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class Study:
    """An ablation study: variants (name -> config overrides) x seeds x knobs, per tier.

    Args:
        variants: variant name -> config overrides merged over `base`.
        seeds: a count (seeds 0..n-1) or an explicit list of distinct ints.
            Or an adaptive budget, `{"min": 3, "max": 12, "batch": 3}`: every setting runs
            `min` seeds, and `batch` more at a time only while one of its hypotheses is
            undecided, up to `max` (group-sequential tests keep the error rates).
        tiers: tier name -> knobs (knob name -> list of values); the runs of a tier cover the
            cartesian product of its knobs (or `sweep(...)`: one at a time). A knob named
            like a path, "model/width", sets that key of a nested config. The tier "real"
            only runs under `--real`.
        base: config shared by all variants.
        tier_config: tier name -> config merged over `base` for that tier's runs (before the
            variant overrides), e.g. a bigger training budget for real data.
        tier_seeds: tier name -> seeds (a count, a list or a budget) where a tier needs other
            seeds than `seeds`, e.g. more seeds to decide a small effect on real data.
        name: defaults to the decorated test function's name.
        correction: multiplicity correction over the hypotheses of one tier and knob setting
            ("holm", "bonferroni" or "none").
        tables: metric groups shown in the summary tables (default: all), or a dict of
            group -> metric names to show as its columns, in order.
        minimize: metric names (last path part) where lower is better; names containing
            "loss" or "err" are minimized anyway.
        code: extra files or import names (packages, modules) whose source is part of the
            run fingerprint, so `--reuse` never takes a run made by other code.
        opt_in: tiers that run only when asked for with `--tier NAME` (a full-scale tier
            that takes hours), like the tier "real" with `--real`.
    """

    def __init__(self, *, variants: Mapping[str, Mapping[str, Any]],
                 seeds: int | Sequence[int] | Mapping[str, int] = 3,
                 tiers: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
                 base: Mapping[str, Any] | None = None,
                 tier_config: Mapping[str, Mapping[str, Any]] | None = None,
                 name: str | None = None,
                 correction: str = "holm",
                 tables: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
                 minimize: Sequence[str] = (), code: Sequence[str] = (),
                 opt_in: Sequence[str] = (),
                 tier_seeds: Mapping[str, int | Sequence[int] | Mapping[str, int]] | None = None,
                 where: str | None = None):
        self.where = where or _caller()
        self.module = self.where.rpartition(":")[0]  # the Python file that declares it
        self.name = name
        self.explicit_name = name is not None
        self.sweeps: dict[str, Sweep] = {}  # tiers whose knobs vary one at a time
        self.variants = self._check_variants(variants)
        self.seeds, self.budget = self._check_seeds(seeds)
        self.tiers = self._check_tiers(tiers if tiers is not None else {DEFAULT_TIER: {}})
        self.base = dict(base or {})
        self.tier_config = {tier: dict(config) for tier, config in (tier_config or {}).items()}
        unknown = sorted(set(self.tier_config) - set(self.tiers))
        if unknown:
            self._fail(f"tier_config names tiers {unknown} that the study does not have "
                       f"({', '.join(self.tiers)})")
        if correction not in CORRECTIONS:
            self._fail(f"unknown correction {correction!r}; choose one of {', '.join(CORRECTIONS)}")
        self.correction = correction
        self.tables = ({g: list(c) for g, c in tables.items()} if isinstance(tables, Mapping)
                       else list(tables) if tables is not None else None)
        self.minimize = tuple(minimize)
        self.code = tuple(code)
        if isinstance(opt_in, str) or any(t not in self.tiers for t in opt_in):
            self._fail(f"opt_in={opt_in!r} must list tiers of the study "
                       f"({', '.join(self.tiers)})")
        self.opt_in = tuple(opt_in)
        unknown = sorted(set(tier_seeds or {}) - set(self.tiers))
        if unknown:
            self._fail(f"tier_seeds names tiers {unknown} that the study does not have "
                       f"({', '.join(self.tiers)})")
        checked = {tier: self._check_seeds(value) for tier, value in (tier_seeds or {}).items()}
        self.tier_seeds = {tier: seeds for tier, (seeds, _) in checked.items()}
        self.tier_budgets = {tier: budget for tier, (_, budget) in checked.items()}
        self.hypotheses: list[Hypothesis] = []
        self.guards: list[Guard] = []
        self.claims: list[KnobClaim] = []
        self.function: Callable[..., Any] | None = None
        for variant, overrides in self.variants.items():
            for tier, knobs in self.tiers.items():
                clash = sorted(set(overrides) & set(knobs))
                if clash:
                    self._fail(f"variant {variant!r} sets {clash} which tier {tier!r} also "
                               "sweeps as a knob; a value must come from one place")

    # -- validation -------------------------------------------------------------------------

    def _fail(self, message: str, where: str | None = None) -> None:
        raise StudyError(f"{where or self.where}: {message}")

    def _check_variants(self, variants: Any) -> dict[str, dict[str, Any]]:
        if not isinstance(variants, Mapping) or not variants:
            self._fail("variants must be a non-empty dict of name -> config overrides, "
                       "e.g. {'baseline': {}, 'no_attention': {'attention': False}}")
        for name, overrides in variants.items():
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][\w.\-]*", name):
                self._fail(f"variant name {name!r} must be an identifier-like string "
                           "(letters, digits, '_', '-', '.')")
            if not isinstance(overrides, Mapping):
                self._fail(f"variant {name!r}: overrides must be a dict, got "
                           f"{type(overrides).__name__}")
        return {name: dict(overrides) for name, overrides in variants.items()}

    def _check_seeds(self, seeds: Any) -> tuple[tuple[int, ...], Budget | None]:
        """The seeds (every seed up to an adaptive budget's maximum) and the budget, if any."""
        if isinstance(seeds, Mapping):
            budget = self._check_budget(seeds)
            return tuple(range(budget.max)), budget
        if isinstance(seeds, bool):
            self._fail(f"seeds must be a count >= 1 or a list of ints, got {seeds!r}")
        if isinstance(seeds, int):
            if seeds < 1:
                self._fail(f"seeds={seeds}: need at least 1 seed (a paired test needs >= 2)")
            return tuple(range(seeds)), None
        if not isinstance(seeds, Sequence) or not seeds or not all(
                isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            self._fail(f"seeds must be a count >= 1 or a non-empty list of ints, got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            self._fail(f"duplicate seeds in {list(seeds)}")
        return tuple(seeds), None

    def _check_budget(self, seeds: Mapping[str, Any]) -> Budget:
        example = 'e.g. seeds={"min": 3, "max": 12, "batch": 3}'
        unknown = [key for key in seeds if key not in BUDGET_KEYS]
        if unknown or "min" not in seeds or "max" not in seeds:
            self._fail(f"an adaptive seed budget takes min, max and batch (default 1), got "
                       f"{dict(seeds)!r}; {example}")
        values = {key: seeds[key] for key in BUDGET_KEYS if key in seeds}
        wrong = [k for k, v in values.items() if not isinstance(v, int) or isinstance(v, bool)]
        if wrong:
            self._fail(f"seeds: {wrong[0]}={values[wrong[0]]!r} must be a whole number; "
                       f"{example}")
        budget = Budget(**values)
        if budget.min < 2:
            self._fail(f"seeds: min={budget.min}, but the first look needs at least 2 seeds "
                       "(a paired test has no noise estimate from one)")
        if budget.max <= budget.min:
            self._fail(f"seeds: max={budget.max} must exceed min={budget.min}; for a fixed "
                       f"number of seeds write seeds={budget.min}")
        if budget.batch < 1:
            self._fail(f"seeds: batch={budget.batch} must be at least 1 (seeds added per look)")
        if len(budget.looks) > MAX_LOOKS:
            self._fail(f"seeds: {dict(values)} gives {len(budget.looks)} looks, more than "
                       f"{MAX_LOOKS}: every look makes each one's boundary stricter; use a "
                       "larger batch")
        return budget

    def _check_tiers(self, tiers: Any) -> dict[str, dict[str, list[Any]]]:
        if not isinstance(tiers, Mapping) or not tiers:
            self._fail("tiers must be a non-empty dict of tier name -> knobs")
        checked: dict[str, dict[str, list[Any]]] = {}
        for tier, knobs in tiers.items():
            if not isinstance(tier, str) or not re.fullmatch(r"[A-Za-z_]\w*", tier):
                self._fail(f"tier name {tier!r} must be an identifier")
            if isinstance(knobs, Sweep):
                self._check_sweep(tier, knobs)
                self.sweeps[tier] = knobs
                knobs = knobs.knobs
            if not isinstance(knobs, Mapping):
                self._fail(f"tier {tier!r}: knobs must be a dict of name -> list of values, "
                           "or sweep(...)")
            for knob, values in knobs.items():
                if not isinstance(values, list | tuple) or not values:
                    self._fail(f"tier {tier!r}: knob {knob!r} must be a non-empty list of values, "
                               f"got {values!r}; for a single value write [{values!r}]")
                texts = [format_value(v) for v in values]
                if len(set(texts)) != len(texts):
                    self._fail(f"tier {tier!r}: knob {knob!r} has duplicate values {texts}")
            checked[tier] = {knob: list(values) for knob, values in knobs.items()}
        return checked

    def _check_sweep(self, tier: str, swept: Sweep) -> None:
        if not swept.base:
            self._fail(f"tier {tier!r}: sweep(...) needs base={{knob: value, ...}}, the setting "
                       "every knob is varied around")
        unbased = [k for k in swept.values if k not in swept.base]
        if unbased:
            self._fail(f"tier {tier!r}: sweep(...) varies {unbased} but base= gives them no "
                       f"value; add them to base=")
        for knob, values in swept.values.items():
            if not isinstance(values, list) or not values:
                self._fail(f"tier {tier!r}: swept knob {knob!r} needs a non-empty list of "
                           f"values, got {values!r}")

    # -- declaration ------------------------------------------------------------------------

    def expect(self, expr: str, *, metric: str, margin: float = 0.0, alpha: float = 0.05,
               test: str = "t", name: str | None = None,
               variants: Sequence[str] | None = None,
               tiers: Sequence[str] | None = None) -> Hypothesis | KnobClaim:
        """Declare a hypothesis: `expect("combined >= ctc_only", metric="joint/labels/majmin")`.

        Between two values of a knob, for each variant (or those in `variants`), paired by
        seed within each group of settings whose other knobs agree:
        `expect("temperature=0.7 > temperature=1.2", metric="acc")`.

        `tiers` limits a claim to some tiers (e.g. true by construction on synthetic data, an
        open question on real data); by default it is claimed at every tier.

        `>` is superiority by `margin`, `>=` non-inferiority within `margin` (> 0), `==`
        equivalence within `margin` (two one-sided tests); `==` with margin 0 claims the two
        variants identical (equal values on every seed), decided without a test. See
        docs/statistics.md.
        """
        where = _caller()
        sides = _KNOB_CLAIM.match(expr) if isinstance(expr, str) else None
        if sides and _KNOB_SIDE.match(sides.group(1)) and _KNOB_SIDE.match(sides.group(3)):
            return self._knob_comparison(expr, sides.groups(), metric=metric, margin=margin,
                                         alpha=alpha, test=test, name=name, variants=variants,
                                         where=where, tiers=self._claim_tiers(tiers, expr, where))
        if variants is not None:
            self._fail(f"hypothesis {expr!r}: variants= is for claims across knob values "
                       f"('temperature=0.7 > temperature=1.2'); this one names its variants",
                       where)
        try:
            hyp = parse_hypothesis(expr, metric=metric, margin=float(margin), alpha=float(alpha),
                                   test=test, name=name or "", where=where,
                                   tiers=self._claim_tiers(tiers, expr, where))
        except StudyError as exc:
            raise StudyError(f"{where}: {exc}") from None
        for variant in (hyp.a, hyp.b):
            if variant not in self.variants:
                self._fail(f"hypothesis {expr!r} names unknown variant {variant!r}; the study has "
                           f"{', '.join(self.variants)}", where)
        if hyp.a == hyp.b:
            self._fail(f"hypothesis {expr!r} compares {hyp.a!r} with itself", where)
        if not isinstance(metric, str) or not metric.strip("/"):
            self._fail(f"hypothesis {expr!r}: metric must be a path like 'joint/labels/majmin'",
                       where)
        if test not in TESTS:
            self._fail(f"hypothesis {expr!r}: unknown test {test!r}; choose one of "
                       f"{', '.join(TESTS)}", where)
        adaptive = [t for t in hyp.tiers or self.tiers if self.budget_at(t)]
        if test != "t" and adaptive:
            self._fail(f"hypothesis {expr!r}: test={test!r} at tier {adaptive[0]!r}, whose "
                       "seeds are an adaptive budget: its looks are decided by the group-"
                       "sequential t-test (docs/statistics.md); use test='t' or fixed seeds",
                       where)
        if not 0 < hyp.alpha < 0.5:
            self._fail(f"hypothesis {expr!r}: alpha={alpha} must lie in (0, 0.5)", where)
        if not (hyp.margin >= 0 and hyp.margin < float("inf")):
            self._fail(f"hypothesis {expr!r}: margin={margin} must be a finite number >= 0",
                       where)
        if hyp.op in (">=", "<=") and hyp.margin == 0:
            strict = hyp.op[0]
            self._fail(f"hypothesis {expr!r}: '{hyp.op}' is non-inferiority within a margin, "
                       f"and margin=0 would make it the superiority claim "
                       f"'{hyp.a} {strict} {hyp.b}': give margin > 0 (how much worse "
                       f"{hyp.a} may be and still count as not worse), or write "
                       f"'{hyp.a} {strict} {hyp.b}'", where)
        if any(h.label == hyp.label for h in self.hypotheses):
            self._fail(f"duplicate hypothesis {hyp.label!r}; give one a name=...", where)
        self.hypotheses.append(hyp)
        return hyp

    def _knob_comparison(self, expr: str, sides: tuple[str, str, str], *, metric: str,
                         margin: float, alpha: float, test: str, name: str | None,
                         variants: Sequence[str] | None, where: str,
                         tiers: tuple[str, ...]) -> KnobClaim:
        left, op, right = sides
        (knob, a), (other, b) = (_KNOB_SIDE.match(side).groups()  # type: ignore[union-attr]
                                 for side in (left, right))
        if knob != other:
            self._fail(f"claim {expr!r} compares two knobs ({knob}, {other}); compare two "
                       f"values of one knob, e.g. '{knob}=... > {knob}=...'", where)
        values = self._knob_values(knob, f"claim {expr!r}", where)
        for value in (a, b):
            if value not in values:
                self._fail(f"claim {expr!r}: {knob}={value} is not a value of knob {knob!r} "
                           f"(its values: {', '.join(values)})", where)
        if a == b:
            self._fail(f"claim {expr!r} compares {knob}={a} with itself", where)
        claim = KnobClaim("compare", knob, metric, op=op, a=a, b=b, margin=float(margin),
                          alpha=float(alpha), test=test, name=name or "", where=where,
                          variants=self._claim_variants(variants, expr, where), tiers=tiers)
        self._check_claim_options(claim, expr, where)
        if op in (">=", "<=") and claim.margin == 0:
            self._fail(f"claim {expr!r}: '{op}' is non-inferiority within a margin: give "
                       f"margin > 0, or write '{op[0]}'", where)
        return self._add_claim(claim, where)

    def trend(self, knob: str, *, metric: str, direction: str = "increases",
              alpha: float = 0.05, variants: Sequence[str] | None = None,
              name: str | None = None, tiers: Sequence[str] | None = None) -> KnobClaim:
        """Declare that `metric` increases (or decreases) with an ordered knob, for each
        variant (or those in `variants`): `study.trend("data_fraction", metric="acc")`.

        The knob's values are taken in their numeric order (declared order when they are not
        all numbers); Page's test over seeds decides it (docs/statistics.md).
        """
        where = _caller()
        if direction not in DIRECTIONS:
            self._fail(f"trend {knob!r}: direction={direction!r}; choose one of "
                       f"{', '.join(DIRECTIONS)}", where)
        self._knob_values(knob, f"trend {knob!r}", where)
        claim = KnobClaim("trend", knob, metric, direction=direction, alpha=float(alpha),
                          name=name or "", where=where,
                          variants=self._claim_variants(variants, knob, where),
                          tiers=self._claim_tiers(tiers, knob, where))
        self._check_claim_options(claim, knob, where)
        return self._add_claim(claim, where)

    def best(self, knob: str, *, metric: str, expect: Any = None, alpha: float = 0.05,
             test: str = "t", variants: Sequence[str] | None = None,
             name: str | None = None, tiers: Sequence[str] | None = None) -> KnobClaim:
        """Ask which value of `knob` is best on `metric`, for each variant (or those in
        `variants`): the winner only when it beats every other value (one-sided paired tests at
        alpha/k), else the candidates, the values no other value beats (at alpha/(k-1)). The
        item passes with the answer; with `expect=value`, named in advance, it claims that
        value beats every other (at alpha) and fails unless supported. See docs/statistics.md.
        """
        where = _caller()
        values = self._knob_values(knob, f"best {knob!r}", where)
        expected = None if expect is None else format_value(expect)
        if expected is not None and expected not in values:
            self._fail(f"best {knob!r}: expect={expect!r} is not one of its values "
                       f"({', '.join(values)})", where)
        claim = KnobClaim("best", knob, metric, expect=expected, alpha=float(alpha), test=test,
                          name=name or "", where=where,
                          variants=self._claim_variants(variants, knob, where),
                          tiers=self._claim_tiers(tiers, knob, where))
        self._check_claim_options(claim, knob, where)
        return self._add_claim(claim, where)

    def _knob_values(self, knob: str, what: str, where: str) -> list[str]:
        """The texts of a knob's values over all tiers; a knob no tier has is an error."""
        values = [format_value(v) for knobs in self.tiers.values() for v in knobs.get(knob, [])]
        if not values:
            known = sorted({k for knobs in self.tiers.values() for k in knobs})
            self._fail(f"{what}: no tier has a knob {knob!r} (knobs: "
                       f"{', '.join(known) or 'none'})", where)
        return list(dict.fromkeys(values))

    def _claim_variants(self, variants: Sequence[str] | None, what: str,
                        where: str) -> tuple[str, ...]:
        unknown = [v for v in variants or () if v not in self.variants]
        if unknown or isinstance(variants, str):
            self._fail(f"{what}: variants= names {unknown or variants!r}, not a list of the "
                       f"study's variants ({', '.join(self.variants)})", where)
        return tuple(variants or ())

    def _claim_tiers(self, tiers: Sequence[str] | None, what: str,
                     where: str) -> tuple[str, ...]:
        unknown = [t for t in tiers or () if t not in self.tiers]
        if unknown or isinstance(tiers, str):
            self._fail(f"{what}: tiers= names {unknown or tiers!r}, not a list of the study's "
                       f"tiers ({', '.join(self.tiers)})", where)
        return tuple(tiers or ())

    def hypotheses_at(self, tier: str) -> list[Hypothesis]:
        """The hypotheses claimed at `tier`: the family of each of its settings."""
        return [h for h in self.hypotheses if not h.tiers or tier in h.tiers]

    def _check_claim_options(self, claim: KnobClaim, what: str, where: str) -> None:
        if not isinstance(claim.metric, str) or not claim.metric.strip("/"):
            self._fail(f"{what}: metric must be a path like 'joint/labels/majmin'", where)
        if claim.test not in TESTS:
            self._fail(f"{what}: unknown test {claim.test!r}; choose one of {', '.join(TESTS)}",
                       where)
        if not 0 < claim.alpha < 0.5:
            self._fail(f"{what}: alpha={claim.alpha} must lie in (0, 0.5)", where)
        if not (claim.margin >= 0 and claim.margin < float("inf")):
            self._fail(f"{what}: margin={claim.margin} must be a finite number >= 0", where)

    def _add_claim(self, claim: KnobClaim, where: str) -> KnobClaim:
        if any(c.label("") == claim.label("") for c in self.claims):
            self._fail(f"duplicate claim {claim.label('')!r}; give one a name=...", where)
        self.claims.append(claim)
        return claim

    def guard(self, metric: str, *, margin: float, alpha: float = 0.05, test: str = "t",
              variants: Sequence[str] | None = None) -> Guard:
        """Declare a metric that must not regress against a baseline session:

            heads.guard("joint/labels/majmin", margin=0.005)   # no variant loses 0.5 points

        Under `--ablation-baseline`, each variant (or those in `variants`) at each setting
        becomes an item `combined>=baseline[joint/labels/majmin]`: non-inferiority of this
        session's runs to the baseline's, paired seed by seed. The direction follows
        `minimize` (and "loss"/"err" in the name). `margin=0` asks for the baseline's values
        exactly (a reproducibility guard). See README, "Regression gating".
        """
        where = _caller()
        if not isinstance(metric, str) or not metric.strip("/"):
            self._fail("guard: metric must be a path like 'joint/labels/majmin'", where)
        if not (isinstance(margin, int | float) and 0 <= margin < float("inf")):
            self._fail(f"guard {metric!r}: margin={margin!r} must be a finite number >= 0 (how "
                       "much worse than the baseline still passes; 0: identical)", where)
        if test not in TESTS:
            self._fail(f"guard {metric!r}: unknown test {test!r}; choose one of "
                       f"{', '.join(TESTS)}", where)
        if not 0 < alpha < 0.5:
            self._fail(f"guard {metric!r}: alpha={alpha} must lie in (0, 0.5)", where)
        unknown = [v for v in variants or () if v not in self.variants]
        if unknown:
            self._fail(f"guard {metric!r} names unknown variants {unknown}; the study has "
                       f"{', '.join(self.variants)}", where)
        if any(g.metric == metric for g in self.guards):
            self._fail(f"guard {metric!r} is declared twice", where)
        guard = Guard(metric=metric, margin=float(margin),
                      minimize=lower_is_better(metric, self.minimize), alpha=float(alpha),
                      test=test, variants=tuple(variants or ()), where=where)
        self.guards.append(guard)
        return guard

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """Decorate the test body: it trains and evaluates one run and returns its metrics.

        The body's parameters named in RUN_VALUES (`run`, `seed`, `config`, ...) receive the
        run's values; the others are fixtures. The function is returned as it is, marked with
        the study: the pytest layer collects it as the study's items.
        """
        if self.function is not None:
            self._fail(f"this study already decorates {self.function.__name__}")
        self.function = function
        self.name = self.name or function.__name__
        function.__ablation_study__ = self  # type: ignore[attr-defined]
        return function

    # -- expansion --------------------------------------------------------------------------

    def settings(self, tier: str | None = None) -> Iterator[tuple[str, Knobs]]:
        """Every (tier, knob setting) in declaration order."""
        for name, knobs in self.tiers.items():
            if tier is not None and name != tier:
                continue
            if name in self.sweeps:
                for setting in self.sweeps[name].settings():
                    yield name, setting
                continue
            for values in itertools.product(*knobs.values()):
                yield name, tuple(zip(knobs, values, strict=True))

    def spec(self, tier: str, knobs: Knobs, variant: str, seed: int) -> RunSpec:
        config = _deep_merge(_deep_merge(self.base, self.tier_config.get(tier, {})),
                             self.variants[variant])
        for knob, value in knobs:  # a knob named "model/width" sets config["model"]["width"]
            *parents, last = knob.split("/")
            node = config
            for part in parents:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    self._fail(f"knob {knob!r}: config key {part!r} is not a dict")
            node[last] = value
        return RunSpec(self.name or "", tier, knobs, variant, seed, config)

    def runs(self, tier: str | None = None, knobs: Knobs | None = None,
             variants: Sequence[str] | None = None, seed_offset: int = 0) -> list[RunSpec]:
        """All runs, ordered tier, knob setting, variant, seed (optionally filtered).

        `seed_offset` shifts every seed, to rerun a whole study on fresh seeds.
        """
        settings = ([(tier, knobs)] if tier is not None and knobs is not None  # one: no scan
                    else [(t, k) for t, k in self.settings(tier) if knobs is None or k == knobs])
        return [self.spec(t, k, v, s + seed_offset) for t, k in settings
                for v in self.variants if variants is None or v in variants
                for s in self.seeds_at(t)]

    def seeds_at(self, tier: str) -> tuple[int, ...]:
        """The seeds of a tier's runs: `tier_seeds` where given, else `seeds` (with an
        adaptive budget, every seed up to its maximum: the later ones run only if needed)."""
        return self.tier_seeds.get(tier, self.seeds)

    def budget_at(self, tier: str) -> Budget | None:
        """The tier's adaptive seed budget, or None when its seeds are fixed."""
        return self.tier_budgets.get(tier) if tier in self.tier_seeds else self.budget

    def fixed_seeds_at(self, tier: str) -> tuple[int, ...]:
        """The seeds that always run at a tier: all of fixed seeds, an adaptive budget's
        first look. Knob claims and guards are decided on them (a fixed design: valid
        whatever the hypotheses' looks found)."""
        budget = self.budget_at(tier)
        return self.seeds_at(tier)[:budget.min] if budget else self.seeds_at(tier)

    def declaration_lines(self) -> list[int]:
        """The lines of the study's module that declare it and its claims (those in another
        file, such as a YAML study's, are not the module's)."""
        wheres = [self.where, *(c.where for c in (*self.hypotheses, *self.guards, *self.claims))]
        return [int(line) for file, _, line in (w.rpartition(":") for w in wheres)
                if file == self.module and line.isdigit()]

    def knob_groups(self, claim: KnobClaim) -> list[tuple[str, Knobs, list[Knobs]]]:
        """Where a knob claim is decided: (tier, the other knobs, the group's settings in knob
        order) for every group of settings of one tier whose other knobs agree and whose
        values of the claim's knob can decide it."""
        groups: dict[tuple[str, Knobs], list[Knobs]] = {}
        for tier, knobs in self.settings():
            if claim.tiers and tier not in claim.tiers:
                continue
            if claim.knob in dict(knobs):
                rest = tuple((k, v) for k, v in knobs if k != claim.knob)
                groups.setdefault((tier, rest), []).append(knobs)
        out = []
        for (tier, rest), members in groups.items():
            members = _ordered(members, claim.knob)
            if claim.needs([format_value(dict(m)[claim.knob]) for m in members]):
                out.append((tier, rest, members))
        return out

    def hypothesis_variants(self) -> list[str]:
        """Variants the hypotheses need, in declaration order: the runs a verdict depends on."""
        used = {v for h in self.hypotheses for v in (h.a, h.b)}
        return [v for v in self.variants if v in used]


def _ordered(settings: list[Knobs], knob: str) -> list[Knobs]:
    """Settings by the knob's value: numeric order when all are numbers, else as declared."""
    values = [dict(s)[knob] for s in settings]
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return sorted(settings, key=lambda s: dict(s)[knob])
    return settings


OPTIONS = ("tiers", "base", "tier_config", "name", "correction", "tables", "minimize", "code",
           "opt_in", "tier_seeds")


def ablation(*, variants: Mapping[str, Mapping[str, Any]],
             seeds: int | Sequence[int] | Mapping[str, int] = 3,
             **options: Any) -> Study:
    """Declare an ablation study; tiers and their knobs go in `tiers`:

        heads = ablation(variants={...}, seeds=3,
                         tiers={"synthetic": {"noise_sigma": [0.5, 1.0]},
                                "real": {"dataset": ["billboard"]}})

    The other keywords (base, tier_config, name, correction, tables, minimize, code) are
    `Study`'s. A keyword that is none of these is an error naming the file and line: a
    misspelt option must never pass silently.
    """
    where = _caller()
    unknown = [key for key in options if key not in OPTIONS]
    if unknown:
        key = unknown[0]
        value = options[key]
        close = difflib.get_close_matches(key, (*OPTIONS, "seeds", "variants"), n=1)
        if close:
            hint = f"did you mean {close[0]}=?"
        elif isinstance(value, Mapping):
            hint = (f"to declare a tier, write tiers={{{key!r}: {value!r}}} (tiers are not "
                    "keywords of their own, so that no tier can be mistaken for an option)")
        else:
            hint = f"the options are variants, seeds, {', '.join(OPTIONS)}"
        raise StudyError(f"{where}: ablation() has no option {key!r}: {hint}")
    return Study(variants=variants, seeds=seeds, where=where, **options)
