"""Paired tests over seeds that decide a hypothesis `a op b` on one metric.

`a[i]` and `b[i]` are the metric of variants A and B for seed i. Both variants share the
initialisation and the data of a seed, so the runs are paired and the test works on the
differences `d = a - b`: pairing removes the between-seed variance, which is usually most of it.

A claim is *supported* when the null hypothesis that contradicts it is rejected at `alpha`,
*contradicted* when the null hypothesis that the claim holds is rejected, and *inconclusive*
otherwise. For `==` (equivalence within a margin) both directions are tested (TOST). The exact
semantics of every operator are in docs/statistics.md.

Two tests are offered: the paired t-test, and the sign-flip permutation test (exact for up to
16 seeds), which assumes only that d is symmetric about its mean. `adjust` corrects the
p-values of a family of hypotheses for multiplicity (Holm by default) and re-decides them.
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
    std_a: float  # ddof=1, nan with fewer than 2 seeds
    mean_b: float
    std_b: float
    diff: float  # mean of d = a - b
    std_diff: float  # SD of d (ddof=1): the noise the paired test works against
    ci: tuple[float, float]  # two-sided (1 - 2 alpha) CI of mean(d), the dual of the tests
    p_support: float  # rejecting it supports the claim (for ==, the larger TOST p)
    p_contradict: float  # rejecting it contradicts the claim
    p_support_adj: float  # after adjust(); equal to the raw p-values until then
    p_contradict_adj: float
    correction: str  # the multiplicity correction applied by adjust(), "none" before
    seeds_needed: int | None  # when inconclusive: rough seeds that would decide it
    reason: str  # why the usual test was not (or could not be) applied, or ""

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
            f"  {_test_name(self.test, self.n)}, alpha {self.alpha:g}, "
            f"correction {self.correction}",
        ]
        if self.status == "inconclusive" and self.seeds_needed is not None:
            seeds = f">{SEEDS_CAP}" if self.seeds_needed > SEEDS_CAP else f"{self.seeds_needed}"
            lines.append(f"  roughly {seeds} seeds would decide it (if the observed difference "
                         f"and SD hold, power {POWER:g})")
        if self.reason:
            lines.append(f"  note: {self.reason}")
        return "\n".join(lines)


def decide(a: Sequence[float], b: Sequence[float], op: str, *, margin: float = 0.0,
           alpha: float = 0.05, test: str = "t") -> Verdict:
    """Decide `a op b` by a paired test over seeds; see the module docstring for the meaning."""
    if op not in OPERATORS:
        raise ValueError(f"unknown operator {op!r}; expected one of {OPERATORS}")
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; expected one of {TESTS}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha={alpha} must lie in (0, 0.5)")
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin={margin} must be finite and >= 0")
    if op == "==" and margin <= 0:
        raise ValueError("equivalence (==) needs a margin > 0: no test can show exact equality")
    a, b = _vector(a, "a"), _vector(b, "b")
    if len(a) != len(b):
        raise ValueError(f"a and b must pair up seed by seed; got {len(a)} and {len(b)} values")
    d = a - b
    n = len(d)
    # every seed gives the same difference, up to float rounding of the subtraction itself
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))), 1.0) if n else 1.0
    exact = n >= 2 and np.ptp(d) <= 8 * np.finfo(float).eps * scale
    diff, sd = (float(d[0]), 0.0) if exact else _mean_std(d)
    (mean_a, std_a), (mean_b, std_b) = _mean_std(a), _mean_std(b)
    common = dict(op=op, margin=margin, alpha=alpha, test=test, n=n, mean_a=mean_a,
                  std_a=std_a, mean_b=mean_b, std_b=std_b, diff=diff, std_diff=sd,
                  correction="none")

    if n < 2:
        return Verdict(status="inconclusive", ci=(math.nan, math.nan), p_support=math.nan,
                       p_contradict=math.nan, p_support_adj=math.nan,
                       p_contradict_adj=math.nan, seeds_needed=None,
                       reason=f"a paired test needs at least 2 seeds, got {n}", **common)
    if exact:
        holds = _holds(op, diff, margin)
        p_s, p_c = (0.0, 1.0) if holds else (1.0, 0.0)
        return Verdict(status=_status(p_s, p_c, alpha), ci=(diff, diff), p_support=p_s,
                       p_contradict=p_c, p_support_adj=p_s, p_contradict_adj=p_c,
                       seeds_needed=None,
                       reason=f"all {n} paired differences equal {diff:.6g}, so the difference "
                              f"is known exactly; decided on that value, without a test",
                       **common)

    flips = None if test == "t" else _sign_flips(n)
    p = {(side, k): _p_value(d - k * margin, side, flips)
         for side, k in _SUPPORT[op] + _CONTRADICT[op]}
    p_s = max(p[t] for t in _SUPPORT[op])
    p_c = min(p[t] for t in _CONTRADICT[op])
    status = _status(p_s, p_c, alpha)
    reason = ""
    if flips is not None and 1 / len(flips) >= alpha:
        reason = (f"the exact permutation test cannot reach p < {alpha:g} with {n} seeds "
                  f"(smallest p = {1 / len(flips):.3g}); use >= {_min_seeds(test, alpha)} "
                  f"seeds or test='t'")
    seeds = _seeds_needed(op, margin, diff, sd, alpha, n, test) if status == "inconclusive" \
        else None
    return Verdict(status=status, ci=_ci(d, alpha, flips), p_support=p_s, p_contradict=p_c,
                   p_support_adj=p_s, p_contradict_adj=p_c, seeds_needed=seeds, reason=reason,
                   **common)


def adjust(verdicts: Sequence[Verdict], method: str = "holm") -> list[Verdict]:
    """Correct a family's p-values for multiplicity and re-decide every verdict.

    The supporting and the contradicting p-values are corrected separately, each as a family
    of its own: a hypothesis can be wrongly supported or wrongly contradicted, and each kind
    of error is controlled family-wise at each verdict's alpha. Verdicts without p-values
    (fewer than 2 seeds) stay out of the family.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; expected one of {CORRECTIONS}")
    correct = {"holm": holm, "bonferroni": bonferroni, "none": np.asarray}[method]
    p_s = correct(np.array([v.p_support for v in verdicts], dtype=float))
    p_c = correct(np.array([v.p_contradict for v in verdicts], dtype=float))
    family = int(np.count_nonzero(~np.isnan(p_s)))
    out = []
    for v, s, c in zip(verdicts, p_s, p_c, strict=True):
        status = _status(s, c, v.alpha)
        # Bonferroni's threshold, the strictest a hypothesis of the family can face.
        alpha = v.alpha if method == "none" else v.alpha / max(family, 1)
        seeds = (_seeds_needed(v.op, v.margin, v.diff, v.std_diff, alpha, v.n, v.test)
                 if status == "inconclusive" else None)
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
    mean = float(x.mean()) if len(x) else math.nan
    return mean, float(x.std(ddof=1)) if len(x) > 1 else math.nan


def _holds(op: str, diff: float, margin: float) -> bool:
    """Whether the claim holds for an exactly known mean difference."""
    return {">": diff > margin, ">=": diff >= -margin, "<": diff < -margin,
            "<=": diff <= margin, "==": abs(diff) <= margin}[op]


def _status(p_support: float, p_contradict: float, alpha: float) -> str:
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


def _p_value(x: np.ndarray, side: str, flips: np.ndarray | None) -> float:
    """One-sided p-value of H0: mean(x) = 0 against mean(x) > 0 (side ">") or < 0 ("<")."""
    if flips is None:
        t = x.mean() / (x.std(ddof=1) / math.sqrt(len(x)))
        return float(special.stdtr(len(x) - 1, -t if side == ">" else t))
    null, observed = flips @ x, x.sum()
    tol = 100 * np.finfo(float).eps * abs(observed)  # ties count as extreme, as in scipy
    extreme = null >= observed - tol if side == ">" else null <= observed + tol
    return np.count_nonzero(extreme) / len(flips)


def _ci(d: np.ndarray, alpha: float, flips: np.ndarray | None) -> tuple[float, float]:
    """Two-sided (1 - 2 alpha) CI of mean(d): the shifts that neither one-sided test rejects.

    For the permutation test, a flip s leaves the shifted test's statistic at least as
    extreme as the observed one exactly when the shift is past the mean of d over the flipped
    seeds, so the bounds are order statistics of those subset means (no search needed).
    """
    n = len(d)
    if flips is None:
        half = special.stdtrit(n - 1, 1 - alpha) * d.std(ddof=1) / math.sqrt(n)
        return float(d.mean() - half), float(d.mean() + half)
    flipped = flips < 0
    counts = flipped.sum(axis=1)
    moved = counts > 0  # identity rows are as extreme as the observed statistic at any shift
    means = np.sort((flipped[moved] @ d) / counts[moved])
    k = math.ceil(round(alpha * len(flips), 9)) - np.count_nonzero(~moved)
    if k <= 0:
        return -math.inf, math.inf
    return float(means[k - 1]), float(means[-k])


def _min_seeds(test: str, alpha: float) -> int:
    """The fewest seeds with which the test can reach p < alpha."""
    return 2 if test == "t" else math.floor(math.log2(1 / alpha)) + 1


def _seeds_needed(op: str, margin: float, diff: float, sd: float, alpha: float, n: int,
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
    return max(math.ceil(estimate), n + 1, _min_seeds(test, alpha))


def _test_name(test: str, n: int) -> str:
    if test == "t":
        return "paired t-test"
    if n <= EXACT_MAX_SEEDS:
        return f"exact sign-flip permutation test ({2**n} flips)"
    return f"sign-flip permutation test ({MC_FLIPS} random flips, seed {MC_SEED})"
