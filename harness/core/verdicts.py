"""Decide a study's hypotheses at one tier and knob setting from its runs' metrics.

The hypotheses of one setting form the family for the multiplicity correction. A hypothesis
that cannot be decided (a run failed, its metric is missing, NaN or infinite) fails with that
cause and leaves the family; it never passes, and the setting's other hypotheses are decided
as usual.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from harness.core.knobstats import BestVerdict, TrendVerdict, adjust_family, best, trend
from harness.core.metrics import lower_is_better
from harness.core.sequential import decide_looks
from harness.core.stats import POWER, Verdict, adjust, decide, fixed_seeds
from harness.core.store import VerdictRow
from harness.core.study import Budget, Hypothesis, KnobClaim, Knobs, Study, parse_hypothesis

# (variant, seed) -> the run's flat metrics, or the reason it has none
RunMetrics = Mapping[tuple[str, int], Mapping[str, float] | str]


class _Decided:
    """What every claim's result says: its status ("error" when it could not be decided) and
    whether its item passes."""

    verdict: Verdict | TrendVerdict | BestVerdict | None

    @property
    def status(self) -> str:
        return self.verdict.status if self.verdict else "error"

    @property
    def passed(self) -> bool:
        return self.status == "supported"


@dataclass(frozen=True)
class Look:
    """Where a setting with an adaptive seed budget was decided: look `index` (1-based) of the
    budget's looks, and the seeds a fixed design would need for the claim's difference."""

    index: int
    budget: Budget
    fixed: int | None = None

    @property
    def seeds(self) -> int:
        return self.budget.looks[self.index - 1]

    def message(self, verdict: Verdict) -> str:
        b = self.budget
        state = ("undecided at the last look" if verdict.status == "inconclusive"
                 else f"decided at look {self.index}")
        lines = [f"  adaptive seeds: {state} of {len(b.looks)}, with {self.seeds} seeds (budget: "
                 f"min {b.min}, max {b.max}, batch {b.batch})"]
        if self.fixed is not None:
            lines.append(f"  a fixed design would need about {self.fixed} seeds for this "
                         f"difference and SD (power {POWER:g})")
        if self.fixed is not None and verdict.status == "inconclusive":
            lines.append("  adding seeds to this budget after looking would be peeking: decide "
                         "a larger budget on fresh seeds (--seed-offset)")
        if not verdict.identity:
            lines.append("  group-sequential t-test: repeated p-values and confidence interval, "
                         "valid whenever the setting stops (docs/statistics.md, Adaptive seeds)")
        return "\n".join(lines)

    def detail(self) -> dict:
        """What the store's `detail` keeps of it."""
        return {"look": self.index, "looks": len(self.budget.looks), "seeds": self.seeds,
                "min": self.budget.min, "max": self.budget.max, "batch": self.budget.batch,
                "fixed_seeds": self.fixed}


@dataclass(frozen=True)
class HypothesisResult(_Decided):
    hypothesis: Hypothesis
    verdict: Verdict | None
    error: str = ""
    look: Look | None = None  # under an adaptive budget: the look it was decided at

    def message(self) -> str:
        h = self.hypothesis
        if self.verdict is None:
            return f"{h.text} on {h.metric}: cannot be decided: {self.error}"
        text = self.verdict.message(h.a, h.b, h.metric)
        return text if self.look is None else f"{text}\n{self.look.message(self.verdict)}"

    def row(self, study: str, tier: str, knobs: Knobs) -> VerdictRow:
        """The verdict as the store, the tables and junit properties take it."""
        h = self.hypothesis
        detail = {"adaptive": self.look.detail()} if self.look else {}
        return VerdictRow(study, tier, dict(knobs), h.label, "hypothesis", h.text, h.metric,
                          self.status, self.message(), margin=h.margin, alpha=h.alpha,
                          test=h.test, detail=detail, **paired(self.verdict))


def paired(verdict: Verdict | None) -> dict:
    """The statistics of a paired verdict for a VerdictRow (none when it was not decided)."""
    if verdict is None:
        return {}
    return {"n": verdict.n, "diff": verdict.diff, "ci_lo": verdict.ci[0],
            "ci_hi": verdict.ci[1], "p": verdict.p_support, "p_adj": verdict.p_support_adj,
            "mean_a": verdict.mean_a, "mean_b": verdict.mean_b}


def seed_values(runs: RunMetrics, seeds: Sequence[int], variant: str,
            metric: str) -> list[float] | str:
    """The metric of `variant` for every seed, in seed order, or why it can't be had."""
    values = []
    for seed in seeds:
        metrics = runs.get((variant, seed), "the run was not obtained")
        if isinstance(metrics, str):
            return f"run {variant}-seed{seed} has no metrics: {metrics}"
        if metric not in metrics:
            available = ", ".join(sorted(metrics)) or "none"
            return (f"unknown metric {metric!r} for {variant}-seed{seed}; "
                    f"its metrics are: {available}")
        value = math.nan if metrics[metric] is None else float(metrics[metric])
        if not math.isfinite(value):
            shown = "NaN" if math.isnan(value) else f"{value}"
            return f"metric {metric!r} is {shown} for {variant}-seed{seed}"
        values.append(value)
    return values


def decide_setting(study: Study, runs: RunMetrics, seeds: Sequence[int] | None = None,
                   tier: str | None = None, look: int | None = None) -> list[HypothesisResult]:
    """Verdicts for every hypothesis of `study` at one setting, corrected as a family.

    Runs are paired by seed (variants share init and data per seed); `seeds` defaults to the
    study's own. At a tier with an adaptive seed budget, `look` (1-based) says which look to
    decide at, with the group-sequential test over the first seeds of each look so far (see
    `stopping_look`, which finds the look that ends the setting).
    """
    seeds = (study.seeds if tier is None else study.seeds_at(tier)) if seeds is None else seeds
    budget = None if tier is None else study.budget_at(tier)
    if (budget is None) != (look is None):
        raise ValueError(f"tier {tier!r}: look= is for an adaptive seed budget, and an "
                         "adaptive budget needs look=")
    if budget is not None:
        seeds = seeds[:budget.looks[look - 1]]  # type: ignore[index]
    results: list[HypothesisResult] = []
    decided: list[int] = []
    for hyp in study.hypotheses if tier is None else study.hypotheses_at(tier):
        a = seed_values(runs, seeds, hyp.a, hyp.metric)
        b = seed_values(runs, seeds, hyp.b, hyp.metric)
        problem = a if isinstance(a, str) else b if isinstance(b, str) else ""
        if problem:
            results.append(HypothesisResult(hyp, None, problem))
            continue
        verdict = (decide(a, b, hyp.op, margin=hyp.margin, alpha=hyp.alpha, test=hyp.test)
                   if budget is None else decide_looks(a, b, hyp.op, looks=budget.looks,
                                                       margin=hyp.margin, alpha=hyp.alpha))
        decided.append(len(results))
        results.append(HypothesisResult(hyp, verdict))
    corrected = adjust([results[i].verdict for i in decided], method=study.correction)
    family = max(len(decided), 1) if study.correction != "none" else 1
    for i, verdict in zip(decided, corrected, strict=True):
        where = None
        if budget is not None:  # the fixed design's seeds stand in for `seeds_needed`
            fixed = (verdict.seeds_needed if verdict.status == "inconclusive" else None
                     if verdict.identity else fixed_seeds(verdict, verdict.alpha / family))
            where = Look(look, budget, fixed)  # type: ignore[arg-type]
            verdict = replace(verdict, seeds_needed=None)
        results[i] = HypothesisResult(results[i].hypothesis, verdict, look=where)
    return results


@dataclass(frozen=True)
class Stop:
    """The look that ends an adaptive setting, or the last one walked, and its verdicts;
    `settled` when every hypothesis was decided (or cannot be: a run failed)."""

    look: int
    results: list[HypothesisResult]
    settled: bool


def stopping_look(study: Study, tier: str, seeds: Sequence[int],
                  obtain: Callable[[Sequence[int]], RunMetrics],
                  upto: int | None = None) -> Stop:
    """Walk the looks of the tier's adaptive budget: obtain each look's new seeds (`obtain`
    gets the runs of those seeds, computing them if need be), decide the setting's hypotheses
    at that look, and stop at the first look that decides them all, or at look `upto` (the
    last by default).

    The stopping rule is a function of the runs' values alone, so a rerun, another process,
    or a session that takes stored runs (`--reuse`) ends at the same look with the same
    verdicts; a look's seeds are always the budget's first seeds, never chosen by a result.
    """
    budget = study.budget_at(tier)
    if budget is None:
        raise ValueError(f"tier {tier!r} of {study.name!r} has fixed seeds, not a budget")
    runs: dict[tuple[str, int], Mapping[str, float] | str] = {}
    last = len(budget.looks) if upto is None else upto
    have = 0
    for look in range(1, last + 1):
        runs.update(obtain(seeds[have:budget.looks[look - 1]]))
        have = budget.looks[look - 1]
        results = decide_setting(study, runs, seeds, tier, look=look)
        settled = all(r.status != "inconclusive" for r in results)
        if settled or look == last:
            return Stop(look, results, settled)
    raise ValueError(f"upto={upto}: walk at least one look")


@dataclass(frozen=True)
class SettingResults:
    """The runs of one study setting, for checks beyond the declared hypotheses (controls).

        results.values("combined", "joint/labels/majmin")   # one value per seed
        results.decide("semitone_bug >= ctc_only", metric="joint/labels/majmin", margin=0.01)
    """

    study: Study
    runs: RunMetrics
    seeds: Sequence[int]

    def values(self, variant: str, metric: str) -> list[float]:
        values = seed_values(self.runs, self.seeds, variant, metric)
        if isinstance(values, str):
            raise ValueError(values)
        return values

    def decide(self, expr: str, *, metric: str, margin: float = 0.0, alpha: float = 0.05,
               test: str = "t") -> HypothesisResult:
        """One uncorrected verdict on the stored runs (the study's family is not touched)."""
        hyp = parse_hypothesis(expr, metric=metric, margin=margin, alpha=alpha, test=test)
        a, b = self.values(hyp.a, metric), self.values(hyp.b, metric)
        return HypothesisResult(hyp, decide(a, b, hyp.op, margin=margin, alpha=alpha, test=test))


@dataclass(frozen=True)
class ClaimResult(_Decided):
    """A knob claim for one variant over one group of settings (its knob's levels)."""

    claim: KnobClaim
    variant: str
    levels: tuple[str, ...]
    verdict: Verdict | TrendVerdict | BestVerdict | None
    error: str = ""

    @property
    def passed(self) -> bool:
        """Supported; an open `best` question passes with its answer, decided or not."""
        if self.claim.kind == "best" and self.claim.expect is None:
            return self.verdict is not None
        return self.status == "supported"

    def message(self) -> str:
        c, v = self.claim, self.verdict
        if v is None:
            return f"{self.variant}: {c.text} on {c.metric}: cannot be decided: {self.error}"
        if isinstance(v, Verdict):
            return v.message(f"{self.variant}[{c.knob}={c.a}]", f"{self.variant}[{c.knob}={c.b}]",
                             c.metric)
        return v.message(c.metric, c.knob, self.variant)

    def row(self, study: str, tier: str, knobs: Knobs) -> VerdictRow:
        """The verdict as the store and the tables take it; `knobs` are the group's other
        knobs, the levels and what was found across them go in `detail`."""
        c, v = self.claim, self.verdict
        detail: dict = {"knob": c.knob, "variant": self.variant, "claim": c.text,
                        "levels": list(self.levels)}
        stats: dict = {"n": v.n} if v is not None else {}
        if isinstance(v, Verdict):
            stats = paired(v)
        elif isinstance(v, TrendVerdict):
            stats.update(diff=v.rho, p=v.p_support, p_adj=v.p_support_adj)
            detail.update(levels=list(v.levels), means=list(v.means), rho=v.rho,
                          slope=v.slope)
        elif isinstance(v, BestVerdict):
            detail.update(levels=list(v.levels), means=list(v.means), winner=v.winner,
                          candidates=list(v.candidates), expect=v.expect)
        return VerdictRow(study, tier, dict(knobs), c.label(self.variant), c.kind, c.text,
                          c.metric, self.status, self.message(), margin=c.margin,
                          alpha=c.alpha, test="page" if c.kind == "trend" else c.test,
                          detail=detail, **stats)


def decide_claims(study: Study, claims: Sequence[KnobClaim], levels: Sequence[str],
                  runs: Mapping[str, RunMetrics], seeds: Sequence[int]) -> list[ClaimResult]:
    """Every claim of one knob over one group of settings, for each variant it covers: `runs`
    maps each level (the knob's value as text, in knob order) to that setting's runs. The
    compare and trend claims form the family for the study's correction; a `best` question
    corrects for its own levels."""
    results: list[ClaimResult] = []
    for claim in claims:
        for variant in claim.covers(list(study.variants)):
            values: dict[str, list[float]] = {}
            problem = ""
            for level in (claim.a, claim.b) if claim.kind == "compare" else levels:
                found = seed_values(runs[level], seeds, variant, claim.metric)
                if isinstance(found, str):
                    problem = f"{claim.knob}={level}: {found}"
                    break
                values[level] = found
            if problem:
                results.append(ClaimResult(claim, variant, tuple(levels), None, problem))
                continue
            results.append(ClaimResult(claim, variant, tuple(levels),
                                       _decide_claim(claim, values, study.minimize)))
    decided = [i for i, r in enumerate(results) if r.verdict is not None]
    adjusted = adjust_family([results[i].verdict for i in decided],  # type: ignore[misc]
                             method=study.correction)
    for i, verdict in zip(decided, adjusted, strict=True):
        results[i] = ClaimResult(results[i].claim, results[i].variant, results[i].levels,
                                 verdict)
    return results


def _decide_claim(claim: KnobClaim, values: Mapping[str, list[float]],
                  minimize: Sequence[str]) -> Verdict | TrendVerdict | BestVerdict:
    if claim.kind == "compare":
        return decide(values[claim.a], values[claim.b], claim.op, margin=claim.margin,
                      alpha=claim.alpha, test=claim.test)
    if claim.kind == "trend":
        return trend(list(values.values()), levels=list(values), direction=claim.direction,
                     alpha=claim.alpha)
    return best(values, maximize=not lower_is_better(claim.metric, tuple(minimize)),
                alpha=claim.alpha, test=claim.test, expect=claim.expect)
