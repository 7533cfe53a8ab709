"""Claims across the values of a knob: a trend over ordered levels, and the best level.

A study runs every variant at every knob level with the same seeds, so within a variant the
runs of one seed at the different levels share init and data: a seed is a *block*, and the
levels are compared within it, as variants are compared seed by seed in `stats.decide`.

* `trend` decides "the metric increases (decreases) with the knob" by Page's L test for
  ordered alternatives in a randomized complete block design, with p-values from the exact
  permutation distribution of L (the levels' values permuted within each seed independently),
  so ties and quantised metrics are handled exactly.
* `best` decides which level is best from one-sided paired comparisons of the levels
  (`stats.decide`): the winner beats every other level at alpha / k, the candidates are the
  levels no level beats at alpha / (k - 1), and a level named in advance is supported when it
  beats every other at alpha.
* `adjust_family` corrects a family that mixes trend verdicts with `stats.Verdict`s.

A comparison of two levels (`temperature=0.7 > temperature=1.2`) is a claim like any other
and is decided by `stats.decide`. The semantics and calibration are in docs/statistics.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import permutations

import numpy as np

from harness.core import stats
from harness.core.study import CORRECTIONS, TESTS

DIRECTIONS = ("increases", "decreases")
EXACT_MAX_LEVELS = 8  # up to 8! = 40320 orderings per seed are enumerated; more levels use MC
MC_DRAWS = 20_000  # random within-seed orderings beyond EXACT_MAX_LEVELS (p resolution 5e-5)
MC_SEED = 0  # fixed, so that a verdict is a function of the data alone


@dataclass(frozen=True)
class TrendVerdict:
    """The outcome of Page's test of a monotone trend of one metric over a knob's levels."""

    status: str  # "supported" | "contradicted" | "inconclusive"
    direction: str  # "increases" | "decreases"
    alpha: float
    n: int  # seeds (blocks)
    levels: tuple[str, ...]  # in knob order, lowest first
    means: tuple[float, ...]  # per level, over seeds
    stds: tuple[float, ...]  # per level, over seeds (ddof=1)
    statistic: float  # Page's L with the levels weighted 1..k in the claimed direction
    p_support: float  # P(L >= observed) under no trend: small supports the claim
    p_contradict: float  # P(L <= observed): small shows a trend the other way
    p_support_adj: float  # after adjust_family(); equal to the raw p-values until then
    p_contradict_adj: float
    correction: str  # the multiplicity correction applied by adjust_family(), "none" before
    rho: float  # mean over seeds of Spearman's rho of level index vs metric (+1: increasing)
    slope: float  # mean over seeds of the least-squares slope of the metric per level step
    exact: bool  # p-values from the full permutation distribution (else Monte Carlo)
    reason: str  # why the test could not decide (or could hardly), or ""

    @property
    def k(self) -> int:
        return len(self.levels)

    def message(self, metric: str, knob: str, variant: str) -> str:
        """A readable multi-line account of the verdict, for test reports."""
        adjusted = (f"{self.correction}-adjusted {self.p_support_adj:.3g}, "
                    f"{self.p_contradict_adj:.3g}" if self.correction != "none"
                    else "not adjusted for multiplicity")
        width = max(len(level) for level in self.levels)
        lines = [f"{metric} {self.direction} with {knob} (variant {variant}): "
                 f"{self.status.upper()}"]
        lines += [f"  {knob}={level:<{width}}  {mean:.4g} +- {std:.3g} (mean +- std, "
                  f"n={self.n})"
                  for level, mean, std in zip(self.levels, self.means, self.stds, strict=True)]
        rho = (f"{self.rho:+.3g}" if not math.isnan(self.rho)
               else "undefined (no seed varies)")
        lines.append(f"  Spearman rho of {knob} order vs {metric}, mean over seeds {rho} (+1: "
                     f"increasing on every seed); mean slope {self.slope:+.4g} per {knob} step")
        if math.isnan(self.p_support):
            lines.append(f"  Page's L {self.statistic:g}; not tested, alpha {self.alpha:g}")
        else:
            lines += [f"  Page's L {self.statistic:g}; p supporting {self.p_support:.3g}, "
                      f"contradicting {self.p_contradict:.3g}; {adjusted}",
                      f"  {self._test_name()}, alpha {self.alpha:g}, correction "
                      f"{self.correction}"]
        if self.reason:
            lines.append(f"  note: {self.reason}")
        return "\n".join(lines)

    def _test_name(self) -> str:
        if self.exact:
            return (f"Page's L test, exact permutation distribution (all {self.k}!^{self.n} "
                    f"orderings of the levels within seeds)")
        return (f"Page's L test, {MC_DRAWS} random orderings within seeds (Monte Carlo, seed "
                f"{MC_SEED})")


def trend(values: Sequence[Sequence[float]], *, levels: Sequence[str],
          direction: str = "increases", alpha: float = 0.05) -> TrendVerdict:
    """Decide whether the metric increases (decreases) with the knob, by Page's L test.

    `values[i][j]` is the metric at the i-th level (knob order, lowest first) for seed j; the
    seeds are the same at every level. Within each seed the levels are ranked (midranks for
    ties) and L = sum_i w_i R_i, R_i the rank sum of level i, w = 1..k in the claimed order.
    Under no trend every ordering of a seed's values is equally likely, so the p-values are
    the tails of L's permutation distribution: exact (by convolving the seeds' distributions)
    up to EXACT_MAX_LEVELS levels, else Monte Carlo.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; expected one of {DIRECTIONS}")
    _check_alpha(alpha)
    x = _matrix(values)
    k, n = x.shape
    levels = tuple(str(level) for level in levels)
    if len(levels) != k:
        raise ValueError(f"levels names {len(levels)} levels but values has {k} rows")
    if len(set(levels)) != k:
        raise ValueError(f"levels must be distinct, got {list(levels)}")
    if k < 2:
        raise ValueError(f"a trend needs at least 2 knob levels, got {k}")
    if n < 2:
        raise ValueError(f"a trend needs at least 2 seeds (blocks), got {n}")

    mean_std = [stats._mean_std(row) for row in x]
    ordered = x if direction == "increases" else x[::-1]
    ranks2 = np.stack([_doubled_midranks(col) for col in ordered.T])  # (n, k), integers
    weights = np.arange(1, k + 1)
    common = dict(direction=direction, alpha=alpha, n=n, levels=levels,
                  means=tuple(m for m, _ in mean_std), stds=tuple(s for _, s in mean_std),
                  statistic=float((ranks2 @ weights).sum()) / 2, correction="none",
                  rho=_mean_spearman(x), slope=_slope(x), exact=k <= EXACT_MAX_LEVELS)
    if not np.any(np.ptp(ranks2, axis=1)):
        nan = math.nan
        return TrendVerdict(status="inconclusive", p_support=nan, p_contradict=nan,
                            p_support_adj=nan, p_contradict_adj=nan, reason=(
                                f"every seed gives the same value at all {k} levels: with no "
                                f"variation within any seed there is no ordering to test; "
                                f"check that the knob reaches the runs"), **common)
    if k <= EXACT_MAX_LEVELS:
        p_s, p_c, smallest = _page_exact(ranks2)
    else:
        p_s, p_c, smallest = _page_mc(ranks2)
    reason = ""
    if smallest >= alpha:
        reason = (f"with {k} levels and {n} seeds (and these ties) Page's test cannot reach "
                  f"p < {alpha:g} (smallest p = {smallest:.3g}); use more seeds")
    status = stats.status_from(p_s, p_c, alpha)
    return TrendVerdict(status=status, p_support=p_s, p_contradict=p_c, p_support_adj=p_s,
                        p_contradict_adj=p_c, reason=reason, **common)


def _page_exact(ranks2: np.ndarray) -> tuple[float, float, float]:
    """P(L >= observed), P(L <= observed) and the smallest attainable upper tail, exactly.

    L is a sum of independent per-seed terms under the null, so its distribution is the
    convolution of theirs; a seed's term only depends on its multiset of ranks.
    """
    k = ranks2.shape[1]
    weights = np.arange(1, k + 1)
    observed = int((ranks2 @ weights).sum())
    pmf = np.ones(1)
    for row in ranks2:
        pmf = np.convolve(pmf, _block_pmf(tuple(sorted(row.tolist()))))
    upper = float(np.clip(pmf[observed:].sum(), 0.0, 1.0))
    lower = float(np.clip(pmf[:observed + 1].sum(), 0.0, 1.0))
    return upper, lower, float(pmf[np.flatnonzero(pmf)[-1]])


@lru_cache(maxsize=256)
def _block_pmf(ranks2: tuple[int, ...]) -> np.ndarray:
    """The null distribution of one seed's term sum_i w_i r_i over all orderings of its ranks.

    Index = the term's value (doubled ranks keep midranks integral); read-only, it is cached.
    """
    terms = np.asarray(ranks2)[_orderings(len(ranks2))] @ np.arange(1, len(ranks2) + 1)
    pmf = np.bincount(terms) / len(terms)
    pmf.flags.writeable = False
    return pmf


@lru_cache(maxsize=EXACT_MAX_LEVELS)
def _orderings(k: int) -> np.ndarray:
    return np.array(list(permutations(range(k))))


def _page_mc(ranks2: np.ndarray) -> tuple[float, float, float]:
    """Monte-Carlo p-values from MC_DRAWS random orderings within every seed, (count + 1) /
    (draws + 1); the smallest attainable is then 1 / (draws + 1)."""
    k = ranks2.shape[1]
    weights = np.arange(1, k + 1)
    observed = int((ranks2 @ weights).sum())
    rng = np.random.default_rng(MC_SEED)
    null = np.zeros(MC_DRAWS, dtype=np.int64)
    for row in ranks2:
        null += rng.permuted(np.broadcast_to(row, (MC_DRAWS, k)), axis=1) @ weights
    upper = (1 + np.count_nonzero(null >= observed)) / (MC_DRAWS + 1)
    lower = (1 + np.count_nonzero(null <= observed)) / (MC_DRAWS + 1)
    return float(upper), float(lower), 1 / (MC_DRAWS + 1)


def _doubled_midranks(x: np.ndarray) -> np.ndarray:
    """Twice the midranks of x (integers), values within float rounding of each other tied."""
    tol = 4 * np.finfo(float).eps * float(np.max(np.abs(x)))
    order = np.argsort(x, kind="stable")
    group = np.concatenate([[0], np.cumsum(np.diff(x[order]) > tol)])
    first = np.searchsorted(group, group, side="left")  # 0-based start of each tie group
    last = np.searchsorted(group, group, side="right")  # one past its end
    out = np.empty(len(x), dtype=np.int64)
    out[order] = first + last + 1  # 2 * mean of the 1-based ranks first+1 .. last
    return out


def _mean_spearman(x: np.ndarray) -> float:
    """Mean over seeds of Spearman's rho between level index and metric; seeds without
    variation (rho undefined) are left out, NaN when none varies."""
    k = x.shape[0]
    index = np.arange(k) - (k - 1) / 2
    rhos = []
    for col in x.T:
        r = _doubled_midranks(col) / 2
        r = r - r.mean()
        if np.any(r):
            rhos.append(float(index @ r / math.sqrt((index @ index) * (r @ r))))
    return float(np.mean(rhos)) if rhos else math.nan


def _slope(x: np.ndarray) -> float:
    """Mean per-seed least-squares slope per level step (= the slope of the level means)."""
    k = x.shape[0]
    index = np.arange(k) - (k - 1) / 2
    return float(index @ x.mean(axis=1) / (index @ index))


@dataclass(frozen=True)
class Pair:
    """One paired comparison of two levels within `best` (`stats.decide(a, b, ">")`)."""

    a: str
    b: str
    diff: float  # mean over seeds of a - b
    p_a: float  # one-sided p that a is the better level (higher, or lower when minimizing)
    p_b: float  # one-sided p that b is the better level; NaN both when d does not vary
    better: str | None  # the level that puts the other out of the candidates, if any


@dataclass(frozen=True)
class BestVerdict:
    """Which knob level is best for one metric: a winner, or the levels that cannot be told
    apart from the top."""

    status: str  # "decided" | "undecided"; with expect: "supported" | "contradicted" |
    # "inconclusive"
    maximize: bool
    alpha: float
    test: str  # of the pairwise comparisons: "t" | "permutation"
    n: int
    levels: tuple[str, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]  # ddof=1, per level over seeds
    winner: str | None  # the level the data single out as better than every other, if any
    candidates: tuple[str, ...]  # levels no other level beats: a 1 - alpha confidence set
    expect: str | None
    pairs: tuple[Pair, ...]
    reason: str

    @property
    def k(self) -> int:
        return len(self.levels)

    def message(self, metric: str, knob: str, variant: str) -> str:
        """A readable multi-line account of the verdict, for test reports."""
        goal = "highest" if self.maximize else "lowest"
        if self.expect is None:
            head = (f"best {knob} for {metric} ({goal}; variant {variant}): "
                    f"{self.status.upper()}")
            head += f": {knob}={self.winner}" if self.winner is not None else ""
        else:
            head = (f"{knob}={self.expect} gives the best {metric} ({goal}; variant "
                    f"{variant}): {self.status.upper()}")
        width = max(len(level) for level in self.levels)
        lines = [head]
        lines += [f"  {knob}={level:<{width}}  {mean:.4g} +- {std:.3g} (mean +- std, "
                  f"n={self.n})"
                  for level, mean, std in zip(self.levels, self.means, self.stds, strict=True)]
        if self.winner is not None:
            lines.append(f"  {knob}={self.winner} beats every other level (one-sided p < "
                         f"alpha/k = {self.alpha / self.k:.3g} each)")
        else:
            lines.append(f"  no level beats every other at p < alpha/k = "
                         f"{self.alpha / self.k:.3g}")
        lines.append(f"  candidates (no level beats them at p < alpha/(k-1) = "
                     f"{self.alpha / (self.k - 1):.3g}): "
                     f"{', '.join(f'{knob}={c}' for c in self.candidates)}")
        if self.expect is not None:
            worst = max(self._p_better(self.expect, other) for other in self.levels
                        if other != self.expect)
            lines.append(f"  {knob}={self.expect} (named in advance) against every other level: "
                         f"largest one-sided p {worst:.3g}, supported below alpha "
                         f"{self.alpha:g}")
        test = "paired t-test" if self.test == "t" else "sign-flip permutation test"
        lines.append(f"  pairs ({test}; one-sided p that each is the better):")
        for p in self.pairs:
            verdict = f"{knob}={p.better} better" if p.better is not None else "not separated"
            lines.append(f"    {p.a} - {p.b}: {p.diff:+.4g}; p({p.a} better) {p.p_a:.3g}, "
                         f"p({p.b} better) {p.p_b:.3g}; {verdict}")
        if self.reason:
            lines.append(f"  note: {self.reason}")
        return "\n".join(lines)

    def _p_better(self, level: str, other: str) -> float:
        """One-sided p that `level` is better than `other` (1 when it cannot be tested)."""
        for p in self.pairs:
            if (p.a, p.b) in ((level, other), (other, level)):
                value = p.p_a if p.a == level else p.p_b
                return 1.0 if math.isnan(value) else value
        raise KeyError((level, other))


def best(values: Mapping[str, Sequence[float]], *, maximize: bool = True, alpha: float = 0.05,
         test: str = "t", expect: str | None = None) -> BestVerdict:
    """Decide which level gives the best metric, from one-sided paired comparisons of levels.

    `values[level]` holds the metric per seed, in the same seed order for every level; every
    pair is compared by `stats.decide` (which handles ties and grids). With k levels:

    * the winner is the level that beats every other one with one-sided p < alpha / k: a level
      that is not strictly the best is declared with probability at most alpha;
    * the candidates are the levels that no level beats with p < alpha / (k - 1): they hold
      every best level with probability at least 1 - alpha;
    * `expect`, named before the data, is supported when it beats every other level with
      p < alpha (an intersection-union test, no correction), contradicted when it is no
      candidate, else inconclusive.

    The union bounds behind these are in docs/statistics.md.
    """
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; expected one of {TESTS}")
    _check_alpha(alpha)
    levels = tuple(str(level) for level in values)
    if len(levels) < 2:
        raise ValueError(f"best needs at least 2 knob levels, got {len(levels)}")
    if len(set(levels)) != len(levels):
        raise ValueError(f"level names must be distinct as strings, got {list(levels)}")
    data = {str(level): stats._vector(v, f"level {level}") for level, v in values.items()}
    counts = {level: len(v) for level, v in data.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(f"every level needs the same seeds (paired by seed); got seed counts "
                         f"{counts}")
    n = len(data[levels[0]])
    if n < 2:
        raise ValueError(f"best needs at least 2 seeds, got {n}")
    if expect is not None and str(expect) not in levels:
        raise ValueError(f"expect={expect!r} is not one of the levels {list(levels)}")
    expect = None if expect is None else str(expect)

    k = len(levels)
    better = np.ones((k, k))  # better[i, j]: one-sided p that level i is better than level j
    pairs, flat = [], []
    for i in range(k):
        for j in range(i + 1, k):
            v = stats.decide(data[levels[i]], data[levels[j]], ">", alpha=alpha, test=test)
            p_i, p_j = ((v.p_support, v.p_contradict) if maximize
                        else (v.p_contradict, v.p_support))
            if math.isnan(p_i):
                flat.append(f"{levels[i]} vs {levels[j]}")
            else:
                better[i, j], better[j, i] = p_i, p_j
            winner_ij = (levels[i] if better[i, j] < alpha / (k - 1) else
                         levels[j] if better[j, i] < alpha / (k - 1) else None)
            pairs.append(Pair(levels[i], levels[j], v.diff, p_i, p_j, winner_ij))
    np.fill_diagonal(better, 0.0)
    beats_all = [levels[i] for i in range(k) if better[i].max() < alpha / k]
    winner = beats_all[0] if beats_all else None  # at most one: p_i + p_j >= 1 for a pair
    candidates = tuple(levels[j] for j in range(k)
                       if np.delete(better[:, j], j).min() >= alpha / (k - 1))
    if expect is None:
        status = "decided" if winner is not None else "undecided"
    elif better[levels.index(expect)].max() < alpha:
        status = "supported"
    else:
        status = "contradicted" if expect not in candidates else "inconclusive"

    reasons = []
    if flat:
        reasons.append(f"the paired differences do not vary for {', '.join(flat)}: no test "
                       f"can separate them")
    floor = 2.0**-n  # the smallest one-sided p of the exact sign-flip test
    if test == "permutation" and n <= stats.EXACT_MAX_SEEDS and floor >= alpha / k:
        reasons.append(f"the permutation test's smallest p with {n} seeds is {floor:.3g}: it "
                       f"cannot decide a winner (p < alpha/k = {alpha / k:.3g})"
                       + ("" if floor < alpha / (k - 1) else " nor rule out a candidate")
                       + "; use more seeds or test='t'")
    mean_std = [stats._mean_std(data[level]) for level in levels]
    return BestVerdict(status=status, maximize=maximize, alpha=alpha, test=test, n=n,
                       levels=levels, means=tuple(m for m, _ in mean_std),
                       stds=tuple(s for _, s in mean_std), winner=winner,
                       candidates=candidates, expect=expect, pairs=tuple(pairs),
                       reason="; ".join(reasons))


def adjust_family(verdicts: Sequence[stats.Verdict | TrendVerdict | BestVerdict],
                  method: str = "holm") -> list[stats.Verdict | TrendVerdict | BestVerdict]:
    """`stats.adjust` for a family that mixes paired-claim and trend verdicts.

    Every trend verdict goes through `stats.adjust` as a stand-in Verdict that carries its
    p-values and alpha, so the whole family is corrected by one rule: the `stats.Verdict`s come
    back exactly as `stats.adjust` returns them for this family (family size included), the
    trends with their adjusted p-values and status. A `BestVerdict` is returned unchanged and
    stays out of the family: it has no single p-value, and its winner and candidates are
    already corrected for its k levels.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; expected one of {CORRECTIONS}")
    family = [i for i, v in enumerate(verdicts) if not isinstance(v, BestVerdict)]
    for i in family:
        if not isinstance(verdicts[i], stats.Verdict | TrendVerdict):
            raise TypeError(f"cannot adjust a {type(verdicts[i]).__name__}")
    stand_ins = [_stand_in(v) if isinstance(v, TrendVerdict) else v
                 for v in (verdicts[i] for i in family)]
    out = list(verdicts)
    for i, adjusted in zip(family, stats.adjust(stand_ins, method), strict=True):
        v = verdicts[i]
        out[i] = adjusted if isinstance(v, stats.Verdict) else replace(
            v, status=adjusted.status, p_support_adj=adjusted.p_support_adj,
            p_contradict_adj=adjusted.p_contradict_adj, correction=adjusted.correction)
    return out


@lru_cache(maxsize=1)
def _template() -> stats.Verdict:
    return stats.decide([1.0, 2.0], [0.0, 0.5], ">")


def _stand_in(v: TrendVerdict) -> stats.Verdict:
    """A Verdict with the trend's p-values and alpha; diff 0 on the boundary of `>` margin 0,
    so `stats.adjust` estimates no seeds for it."""
    nan = math.nan
    return replace(_template(), alpha=v.alpha, n=v.n, p_support=v.p_support,
                   p_contradict=v.p_contradict, p_support_adj=v.p_support, diff=0.0,
                   p_contradict_adj=v.p_contradict, std_diff=0.0, grid=0.0, ci=(nan, nan),
                   reason="", correction="none", seeds_needed=None)


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha={alpha} must lie in (0, 0.5)")


def _matrix(values: Sequence[Sequence[float]]) -> np.ndarray:
    """values as a (levels, seeds) float array, with a clear error for ragged or bad input."""
    try:
        x = np.asarray(values, dtype=float)
    except ValueError as e:
        raise ValueError(f"values must be one sequence of per-seed values per level, with the "
                         f"same seeds at every level: {e}") from None
    if x.ndim != 2:
        raise ValueError(f"values must be a 2-d (levels x seeds) array, got shape {x.shape}")
    bad = np.argwhere(~np.isfinite(x))
    if len(bad):
        where = ", ".join(f"level {i} seed {j}: {x[i, j]}" for i, j in bad[:5].tolist())
        raise ValueError(f"values has {len(bad)} non-finite values (NaN or inf) at positions "
                         f"(level, seed) {where}")
    return x
