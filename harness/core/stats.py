"""Paired tests over seeds that decide a hypothesis `a op b` on one metric.

`a[i]` and `b[i]` are the metric of variants A and B for seed i. Both variants share the
initialisation and the data of a seed, so the runs are paired and the test works on the
differences `d = a - b`: pairing removes the between-seed variance, which is usually most of it.

A claim is *supported* when the null hypothesis that contradicts it is rejected at `alpha`,
*contradicted* when the null hypothesis that the claim holds is rejected, and *inconclusive*
otherwise. For `==` (equivalence within a margin) both directions are tested (TOST); `==` with
margin 0 claims identity (equal values on every seed) and is checked seed by seed, the one
claim decided without a test. Without any variation in d there is no noise estimate, so no
other claim can be decided. The exact semantics are in docs/statistics.md.

Two tests are offered: the paired t-test, and the sign-flip permutation test (exact for up to
16 seeds), which assumes only that d is symmetric about its mean. Ties break both assumptions
(a metric at its ceiling, or rounded), so: seeds where the variants tie are left out of a
one-sided test whose boundary they lie beyond, where they would count as evidence; and when
the values lie on a grid, the t-test adds the variance that rounding gives d. Simulations of
both are in docs/statistics.md. `adjust` corrects the p-values of a family of hypotheses for
multiplicity (Holm by default) and re-decides them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from scipy import special

from harness.core.study import CORRECTIONS, OPERATORS, TESTS

EXACT_MAX_SEEDS = 16  # 2**16 sign flips are enumerated; more seeds use Monte-Carlo flips
MC_FLIPS = 20_000  # random sign flips beyond EXACT_MAX_SEEDS (p resolution 5e-5)
MC_SEED = 0  # fixed, so that a verdict is a function of the data alone
SEEDS_CAP = 10_000  # seeds_needed estimates above this are reported as ">10000"
POWER = 0.8  # the power that seeds_needed aims at

# One-sided tests of each claim, as (direction, boundary in units of the margin): (">", -1)
# rejects H0: mean(d) <= -margin. A claim is supported when all its `support` tests reject,
# contradicted when any of its `contradict` tests rejects.
_SUPPORT = {">": ((">", 1),), ">=": ((">", -1),), "<": (("<", -1),), "<=": (("<", 1),),
            "==": ((">", -1), ("<", 1))}
_CONTRADICT = {">": (("<", 1),), ">=": (("<", -1),), "<": ((">", -1),), "<=": ((">", 1),),
               "==": ((">", 1), ("<", -1))}


@dataclass(frozen=True)
class Verdict:
    """The outcome of one paired test of `a op b`, with everything needed to explain it."""

    status: str  # "supported" | "contradicted" | "inconclusive"
    op: str
    margin: float
    alpha: float
    test: str
    n: int  # seeds (pairs)
    mean_a: float
    std_a: float  # ddof=1, nan with fewer than 2 seeds, exactly 0 for equal values
    mean_b: float
    std_b: float
    diff: float  # mean of d = a - b
    std_diff: float  # SD of d (ddof=1): the noise the paired test works against
    grid: float  # step of the grid all values lie on (ties frequent), or 0; see decide()
    ci: tuple[float, float]  # two-sided (1 - 2 alpha) CI of mean(d), dual to the tests (no ties)
    p_support: float  # rejecting it supports the claim (for ==, the larger TOST p)
    p_contradict: float  # rejecting it contradicts the claim
    p_support_adj: float  # after adjust(); equal to the raw p-values until then
    p_contradict_adj: float
    correction: str  # the multiplicity correction applied by adjust(), "none" before
    seeds_needed: int | None  # when inconclusive: rough seeds that would decide it
    reason: str  # why the usual test was not (or could not be) applied, or ""

    @property
    def identity(self) -> bool:
        """`a == b` with margin 0: equal values on every seed, checked without a test."""
        return self.op == "==" and self.margin == 0

    def message(self, name_a: str, name_b: str, metric: str) -> str:
        """A readable multi-line account of the verdict, for test reports."""
        claim = f"{name_a} {self.op} {name_b}"
        if self.margin:
            claim += f" (margin {self.margin:g})"
        level = round(100 * (1 - 2 * self.alpha), 6)
        adjusted = (f"{self.correction}-adjusted {self.p_support_adj:.3g}, "
                    f"{self.p_contradict_adj:.3g}" if self.correction != "none"
                    else "not adjusted for multiplicity")
        lines = [
            f"{metric}: {claim}: {self.status.upper()}",
            f"  {name_a}: {self.mean_a:.4g} +- {self.std_a:.3g} (mean +- std, n={self.n})",
            f"  {name_b}: {self.mean_b:.4g} +- {self.std_b:.3g} (mean +- std, n={self.n})",
            f"  difference {name_a} - {name_b}: {self.diff:+.4g} (SD {self.std_diff:.3g}), "
            f"{level:g}% CI [{self.ci[0]:+.4g}, {self.ci[1]:+.4g}]",
            f"  p supporting {self.p_support:.3g}, contradicting {self.p_contradict:.3g}; "
            f"{adjusted}",
            f"  {self._test_name()}, alpha {self.alpha:g}, correction {self.correction}",
        ]
        if self.status == "inconclusive" and self.seeds_needed is not None:
            seeds = f">{SEEDS_CAP}" if self.seeds_needed > SEEDS_CAP else f"{self.seeds_needed}"
            lines.append(f"  roughly {seeds} seeds would decide it (if the observed difference "
                         f"and SD hold, power {POWER:g})")
        if self.reason:
            lines.append(f"  note: {self.reason}")
        for name, std in ((name_a, self.std_a), (name_b, self.std_b)):
            if std == 0:  # a variant with no between-seed variance at all
                lines.append(f"  note: {name} gives the same {metric} on every seed: are the "
                             f"seeds used (run.seed seeds init and data)?")
        return "\n".join(lines)

    def _test_name(self) -> str:
        if self.identity:
            return "identity, checked seed by seed (no test)"
        if self.test == "t":
            return "paired t-test"
        if self.n <= EXACT_MAX_SEEDS:
            return f"exact sign-flip permutation test ({2**self.n} flips)"
        return f"sign-flip permutation test ({MC_FLIPS} random flips, seed {MC_SEED})"


def decide(a: Sequence[float], b: Sequence[float], op: str, *, margin: float = 0.0,
           alpha: float = 0.05, test: str = "t",
           unchanged: Sequence[bool] | None = None) -> Verdict:
    """Decide `a op b` by a paired test over seeds; see the module docstring for the meaning.

    `unchanged[i]` says that seed i's two runs are bitwise identical (a run against its own
    baseline that the change did not touch): its zero difference is the run itself, not a tie
    of a coarse metric, so no test leaves it out.
    """
    if op not in OPERATORS:
        raise ValueError(f"unknown operator {op!r}; expected one of {OPERATORS}")
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; expected one of {TESTS}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha={alpha} must lie in (0, 0.5)")
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin={margin} must be finite and >= 0")
    if op in (">=", "<=") and margin == 0:
        raise ValueError(f"'{op}' is non-inferiority within a margin and needs margin > 0; "
                         f"margin 0 would make it the superiority claim '{op[0]}'")
    a, b = _vector(a, "a"), _vector(b, "b")
    if len(a) != len(b):
        raise ValueError(f"a and b must pair up seed by seed; got {len(a)} and {len(b)} values")
    d = a - b
    n = len(d)
    diff, sd = _mean_std(d)
    (mean_a, std_a), (mean_b, std_b) = _mean_std(a), _mean_std(b)
    common = dict(op=op, margin=margin, alpha=alpha, test=test, n=n, mean_a=mean_a,
                  std_a=std_a, mean_b=mean_b, std_b=std_b, diff=diff, std_diff=sd,
                  correction="none", seeds_needed=None)
    undecided = dict(status="inconclusive", grid=0.0, ci=(math.nan, math.nan),
                     p_support=math.nan, p_contradict=math.nan, p_support_adj=math.nan,
                     p_contradict_adj=math.nan)

    if op == "==" and margin == 0:
        if n == 0:
            return Verdict(**undecided, reason="identity needs at least 1 seed, got 0", **common)
        return _identity(a, b, common)
    if n < 2:
        return Verdict(**undecided, reason=f"a paired test needs at least 2 seeds, got {n}",
                       **common)
    # float rounding of the subtractions: a difference within `tol` of a boundary lies on it
    tol = 4 * np.finfo(float).eps * max(float(np.max(np.abs(a))), float(np.max(np.abs(b))),
                                        margin)
    if np.ptp(d) <= 3 * tol:
        return Verdict(**undecided, reason=(
            f"all {n} paired differences equal {d[0]:+.6g}: with no variation there is no "
            f"noise estimate, and no test can decide the claim. Use more seeds; if the variants "
            f"are meant to be identical, claim a == b with margin=0; check that run.seed seeds "
            f"init and data"), **common)

    grid = _grid(np.concatenate([a, b]), tol)
    extra = grid**2 / 6 if test == "t" else 0.0  # the variance rounding to the grid gives d
    ties = np.abs(d) <= tol  # seeds where both variants give the same value
    if unchanged is not None:
        ties &= ~np.asarray(unchanged, dtype=bool)
    p, left_out = {}, False
    for side, k in _SUPPORT[op] + _CONTRADICT[op]:
        x = _on_boundary(d - k * margin, tol)
        # a tie sits at -k * margin; past the boundary it would count as evidence
        if ties.any() and k * margin * (1 if side == "<" else -1) > 0:
            x, left_out = x[~ties], True
        p[side, k] = _p_value(x, side, test, extra, tol)
    p_s = max(p[t] for t in _SUPPORT[op])
    p_c = min(p[t] for t in _CONTRADICT[op])
    status = status_from(p_s, p_c, alpha)
    reasons = []
    if extra:
        reasons.append(f"the values lie on a grid of step {grid:.3g} (ties are frequent): the "
                       f"t-test adds the rounding variance step^2/6 to the variance of d")
    if left_out:
        reasons.append(f"{np.count_nonzero(ties)} of {n} seeds give equal values (ties): they "
                       f"are left out of the one-sided tests that they would otherwise count for")
    if test == "permutation" and 2.0**-n >= alpha:
        reasons.append(f"the exact permutation test cannot reach p < {alpha:g} with {n} seeds "
                       f"(smallest p = {2.0**-n:.3g}); use >= {_min_seeds(test, alpha)} "
                       f"seeds or test='t'")
    common["seeds_needed"] = (_seeds_needed(op, margin, diff, _noise(sd, grid, test), alpha, n,
                                            test) if status == "inconclusive" else None)
    return Verdict(status=status, grid=grid, ci=_ci(d, alpha, test, extra), p_support=p_s,
                   p_contradict=p_c, p_support_adj=p_s, p_contradict_adj=p_c,
                   reason="; ".join(reasons), **common)


def _identity(a: np.ndarray, b: np.ndarray, common: dict) -> Verdict:
    """`a == b` with margin 0: supported when every seed gives bitwise-equal values.

    Any unequal pair shows the difference is not zero, so the claim is then contradicted. The
    CI is (0, 0) when the runs are equal and not computed otherwise.
    """
    n, differ = len(a), np.flatnonzero(a != b)
    if not len(differ):
        return Verdict(status="supported", grid=0.0, ci=(0.0, 0.0), p_support=0.0,
                       p_contradict=1.0, p_support_adj=0.0, p_contradict_adj=1.0,
                       reason=f"equal values on all {n} seeds: identical, decided without a "
                              f"test", **common)
    i = differ[0]
    return Verdict(status="contradicted", grid=0.0, ci=(math.nan, math.nan), p_support=1.0,
                   p_contradict=0.0, p_support_adj=1.0, p_contradict_adj=0.0,
                   reason=f"values differ on {len(differ)} of {n} seeds (seed positions "
                          f"{differ.tolist()}, e.g. {float(a[i])!r} vs {float(b[i])!r}): not "
                          f"identical, decided without a test", **common)


def adjust(verdicts: Sequence[Verdict], method: str = "holm") -> list[Verdict]:
    """Correct a family's p-values for multiplicity and re-decide every verdict.

    The supporting and the contradicting p-values are corrected separately, each as a family
    of its own: a hypothesis can be wrongly supported or wrongly contradicted, and each kind
    of error is controlled family-wise at each verdict's alpha. Verdicts without p-values
    (fewer than 2 seeds, or no variation in d) stay out of the family; identity verdicts
    (p 0 or 1) stay in, which is conservative.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; expected one of {CORRECTIONS}")
    correct = {"holm": holm, "bonferroni": bonferroni, "none": np.asarray}[method]
    p_s = correct(np.array([v.p_support for v in verdicts], dtype=float))
    p_c = correct(np.array([v.p_contradict for v in verdicts], dtype=float))
    family = int(np.count_nonzero(~np.isnan(p_s)))
    out = []
    for v, s, c in zip(verdicts, p_s, p_c, strict=True):
        status = status_from(s, c, v.alpha)
        # Bonferroni's threshold, the strictest a hypothesis of the family can face.
        alpha = v.alpha if method == "none" else v.alpha / max(family, 1)
        tested = not math.isnan(v.p_support)  # no estimate from untested verdicts
        seeds = (_seeds_needed(v.op, v.margin, v.diff, _noise(v.std_diff, v.grid, v.test),
                               alpha, v.n, v.test) if status == "inconclusive" and tested
                 else None)
        out.append(replace(v, status=status, p_support_adj=float(s), p_contradict_adj=float(c),
                           correction=method, seeds_needed=seeds))
    return out


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values: monotone in the raw p, capped at 1, NaN kept.

    Rejecting where the adjusted p < alpha controls the family-wise error rate at alpha under
    any dependence between the tests, and is uniformly more powerful than Bonferroni.
    """
    p = _pvalues(pvalues)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    order = np.argsort(p[ok])
    m = len(order)
    steps = np.maximum.accumulate((m - np.arange(m)) * p[ok][order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(steps, 1.0)
    out[ok] = adjusted
    return out


def bonferroni(pvalues: Sequence[float]) -> np.ndarray:
    """Bonferroni-adjusted p-values (p times the family size, capped at 1), NaN kept."""
    p = _pvalues(pvalues)
    return np.minimum(p * np.count_nonzero(~np.isnan(p)), 1.0)


def _pvalues(pvalues: Sequence[float]) -> np.ndarray:
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1 or np.any((p < 0) | (p > 1)):
        raise ValueError(f"p-values must be a 1-d sequence of numbers in [0, 1], got {pvalues}")
    return p


def _vector(x: Sequence[float], name: str) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"{name} must be a 1-d sequence of per-seed values, got shape {x.shape}")
    bad = np.flatnonzero(~np.isfinite(x))
    if len(bad):
        raise ValueError(f"{name} has non-finite values (NaN or inf) at positions "
                         f"{bad.tolist()}: {x[bad].tolist()}")
    return x


def _mean_std(x: np.ndarray) -> tuple[float, float]:
    """Mean and SD (ddof=1); exactly (value, 0) for equal values, which summing would blur."""
    if len(x) and np.ptp(x) == 0:
        return float(x[0]), 0.0 if len(x) > 1 else math.nan
    mean = float(x.mean()) if len(x) else math.nan
    return mean, float(x.std(ddof=1)) if len(x) > 1 else math.nan


def _on_boundary(x: np.ndarray, tol: float) -> np.ndarray:
    """x (differences minus a boundary) with values within `tol` of 0 set to exactly 0.

    A difference on the boundary then ties with it, whatever the float rounding of the
    subtractions, and so never counts as evidence for either side.
    """
    return np.where(np.abs(x) <= tol, 0.0, x)


def _grid(values: np.ndarray, tol: float) -> float:
    """The step of a grid that all values lie on (rounded or counted metrics), else 0.

    It is the smallest gap between distinct values when every gap is a whole multiple of it;
    continuous values almost never pass that check with more than two distinct values.
    """
    gaps = np.diff(np.unique(values))
    gaps = gaps[gaps > tol]
    if not len(gaps):
        return 0.0
    steps = gaps / gaps.min()
    return float(gaps.min()) if np.all(np.abs(steps - np.rint(steps)) <= 1e-6) else 0.0


def _noise(sd: float, grid: float, test: str) -> float:
    """The SD of d a test works with: for the t-test, with the grid's rounding variance."""
    return math.sqrt(sd**2 + grid**2 / 6) if test == "t" else sd


def status_from(p_support: float, p_contradict: float, alpha: float) -> str:
    """A claim's status from its supporting and contradicting p-values."""
    # alpha < 0.5 keeps the two outcomes exclusive: the p-values of opposite one-sided tests
    # add up to at least 1.
    if p_support < alpha:
        return "supported"
    return "contradicted" if p_contradict < alpha else "inconclusive"


@lru_cache(maxsize=8)
def _sign_flips(n: int) -> np.ndarray:
    """Sign vectors, one per row; the first row is the identity (no flip).

    All 2**n for n <= EXACT_MAX_SEEDS, otherwise the identity and MC_FLIPS random ones: the
    identity then plays the observed statistic's part in the usual (count + 1) / (R + 1).
    """
    if n <= EXACT_MAX_SEEDS:
        bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
    else:
        rng = np.random.default_rng(MC_SEED)
        bits = np.vstack([np.zeros((1, n), int), rng.integers(0, 2, (MC_FLIPS, n))])
    flips = 1.0 - 2.0 * bits
    flips.flags.writeable = False
    return flips


def _p_value(x: np.ndarray, side: str, test: str, extra: float, tol: float) -> float:
    """One-sided p-value of H0: mean(x) = 0 against mean(x) > 0 (side ">") or < 0 ("<").

    The t-test adds `extra` to the sample variance (the grid's rounding variance); without
    two values and some variation (ties left out) it has no noise estimate and gives 1.
    """
    if test == "t":
        if len(x) < 2 or (not extra and np.ptp(x) <= tol):
            return 1.0
        t = x.mean() / math.sqrt((x.var(ddof=1) + extra) / len(x))
        return float(special.stdtr(len(x) - 1, -t if side == ">" else t))
    flips = _sign_flips(len(x))
    null, observed = flips @ x, x.sum()
    tol = 100 * np.finfo(float).eps * abs(observed)  # ties count as extreme, as in scipy
    extreme = null >= observed - tol if side == ">" else null <= observed + tol
    return float(np.count_nonzero(extreme) / len(flips))  # plain floats: xdist sends them


def _ci(d: np.ndarray, alpha: float, test: str, extra: float) -> tuple[float, float]:
    """Two-sided (1 - 2 alpha) CI of mean(d): the shifts that neither one-sided test rejects.

    For the permutation test, a flip s leaves the shifted test's statistic at least as
    extreme as the observed one exactly when the shift is past the mean of d over the flipped
    seeds, so the bounds are order statistics of those subset means (no search needed).
    """
    n = len(d)
    if test == "t":
        half = special.stdtrit(n - 1, 1 - alpha) * math.sqrt((d.var(ddof=1) + extra) / n)
        return float(d.mean() - half), float(d.mean() + half)
    flipped = _sign_flips(n) < 0
    counts = flipped.sum(axis=1)
    moved = counts > 0  # identity rows are as extreme as the observed statistic at any shift
    means = np.sort((flipped[moved] @ d) / counts[moved])
    k = math.ceil(round(alpha * len(flipped), 9)) - np.count_nonzero(~moved)
    if k <= 0:
        return -math.inf, math.inf
    return float(means[k - 1]), float(means[-k])


def _min_seeds(test: str, alpha: float) -> int:
    """The fewest seeds with which the test can reach p < alpha."""
    return 2 if test == "t" else math.floor(math.log2(1 / alpha)) + 1


def fixed_seeds(verdict: Verdict, alpha: float) -> int | None:
    """Seeds with which a fixed design (one look) decides the claim at `alpha` with power
    POWER, if the verdict's difference and SD are the truth: what an adaptive budget is
    compared with (harness/core/sequential.py)."""
    return _fixed_seeds(verdict.op, verdict.margin, verdict.diff,
                        _noise(verdict.std_diff, verdict.grid, verdict.test), alpha, verdict.test)


def _fixed_seeds(op: str, margin: float, diff: float, sd: float, alpha: float,
                 test: str) -> int | None:
    """Seeds at which the observed difference would be decided with power POWER (normal
    approximation): the distance is from the observed mean to the nearest boundary of the claim.
    """
    boundaries = [k * margin for _, k in _SUPPORT[op] + _CONTRADICT[op]]
    distance = min(abs(diff - x) for x in boundaries)
    if not (distance > 0 and sd > 0):
        return None
    z = special.ndtri(1 - alpha) + special.ndtri(POWER)
    estimate = min((z * sd / distance) ** 2, SEEDS_CAP + 1)
    return max(math.ceil(estimate), _min_seeds(test, alpha))


def _seeds_needed(op: str, margin: float, diff: float, sd: float, alpha: float, n: int,
                  test: str) -> int | None:
    """Seeds that would decide an inconclusive claim: a fixed design's, more than it has."""
    fixed = _fixed_seeds(op, margin, diff, sd, alpha, test)
    return None if fixed is None else max(fixed, n + 1)

