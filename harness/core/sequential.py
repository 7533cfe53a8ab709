"""Group-sequential paired t-tests: decide a claim at looks of growing seed counts.

An adaptive seed budget (`seeds={"min": 3, "max": 12, "batch": 3}`) looks at a setting's
claims at 3, 6, 9 and 12 seeds and stops adding seeds once every claim is decided. Testing at
alpha at every look would reject far more often than alpha (optional stopping); here each
one-sided test is a Wang-Tsiatis group-sequential test whose boundaries are calibrated for the
exact look schedule:

    reject by look k  <=>  max_{j <= k} z_j * (n_j / n_K) ** (1/2 - SHAPE) >= c

where z_j is the normal score of the paired t-test's one-sided p-value on the first n_j seeds
and c the (1 - alpha) quantile of the left side at the last look K under the null. Under
normal differences the t statistics of all looks are pivotal (their joint law does not depend
on the SD), so a Monte-Carlo draw of null paths gives c for every alpha at once; it is drawn
with a fixed seed and cached per schedule, so a verdict is a function of the data. The
repeated p-value, the smallest alpha at which the design would have rejected by look k, is a
valid p-value whenever the setting stops: Holm's correction applies to it as to a fixed
design's. SHAPE was chosen by simulation against an always-valid e-value and the fixed design
(benchmarks/calibrate_adaptive.py, docs/statistics.md "Adaptive seeds").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache

import numpy as np
from scipy import special

from harness.core.stats import Verdict, decide, status_from

SHAPE = 0.0  # Wang-Tsiatis Delta: 0 O'Brien-Fleming-like (chosen by measurement), 0.5 Pocock-like
NULL_PATHS = 200_000  # Monte-Carlo null paths per schedule (p resolution 5e-6)
MC_SEED = 0  # fixed: the boundaries, hence the verdicts, depend on the data alone
_CHUNK = 50_000  # paths drawn at a time


def weights(looks: Sequence[int], shape: float = SHAPE) -> np.ndarray:
    """Each look's weight on its z-score: (n_j / n_K) ** (1/2 - shape)."""
    n = np.asarray(looks, dtype=float)
    return (n / n[-1]) ** (0.5 - shape)


def null_pvalues(looks: Sequence[int], paths: int, rng: np.random.Generator) -> np.ndarray:
    """One-sided paired t-test p-values at every look of `paths` null paths (paths x looks).

    Exact without drawing each seed: a batch of m N(0, 1) differences has a sum N(0, m) and,
    independent of it, a sum of squares about its mean chi2(m - 1).
    """
    n = np.asarray(looks, dtype=float)
    sizes = np.diff(n, prepend=0.0)
    sums = rng.standard_normal((paths, len(n))) * np.sqrt(sizes)
    within = rng.chisquare(np.maximum(sizes - 1, 1), (paths, len(n))) * (sizes > 1)
    total = np.cumsum(sums, axis=1)
    squares = np.cumsum(within + sums**2 / sizes, axis=1) - total**2 / n
    t = (total / n) / np.sqrt(squares / (n - 1) / n)
    return special.stdtr(n - 1, -t)


def scores(pvalues: np.ndarray | Sequence[float]) -> np.ndarray:
    """Normal scores of one-sided p-values; a look without a p-value (NaN) scores -inf."""
    p = np.asarray(pvalues, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(np.isnan(p), -np.inf, -special.ndtri(np.where(np.isnan(p), 0.5, p)))


def statistic(pvalues: np.ndarray | Sequence[float], looks: Sequence[int],
              shape: float = SHAPE) -> np.ndarray:
    """max over the looks so far of the weighted scores; `pvalues` (..., k) holds the first k
    looks' p-values of the schedule `looks`."""
    p = np.asarray(pvalues, dtype=float)
    return np.max(scores(p) * weights(looks, shape)[:p.shape[-1]], axis=-1)


@lru_cache(maxsize=32)
def null_statistic(looks: tuple[int, ...], shape: float = SHAPE) -> np.ndarray:
    """The statistic at the last look of NULL_PATHS null paths, sorted (read-only)."""
    rng = np.random.default_rng(MC_SEED)
    draws = [statistic(null_pvalues(looks, min(_CHUNK, NULL_PATHS - start), rng), looks, shape)
             for start in range(0, NULL_PATHS, _CHUNK)]
    null = np.sort(np.concatenate(draws))
    null.flags.writeable = False
    return null


def sequential_p(pvalues: np.ndarray | Sequence[float], looks: Sequence[int],
                 shape: float = SHAPE) -> np.ndarray:
    """The repeated p-value after the first k looks of `looks` from their one-sided p-values
    (..., k): the null probability that the statistic at the last look reaches the observed
    one. 0 where a look had p 0 (identity), 1 where no look had a p-value."""
    w = statistic(pvalues, looks, shape)
    null = null_statistic(tuple(looks), shape)
    beyond = len(null) - np.searchsorted(null, w, side="left")
    p = (beyond + 1) / (len(null) + 1)
    return np.where(np.isposinf(w), 0.0, np.where(np.isneginf(w), 1.0, p))


def nominal_level(looks: Sequence[int], k: int, alpha: float, shape: float = SHAPE) -> float:
    """The one-sided p-value that look k (1-based) alone must reach to reject at `alpha`."""
    null = null_statistic(tuple(looks), shape)
    critical = null[min(len(null) - 1, math.floor((1 - alpha) * (len(null) + 1)) - 1)]
    return float(special.ndtr(-critical / weights(looks, shape)[k - 1]))


def decide_looks(a: Sequence[float], b: Sequence[float], op: str, *, looks: Sequence[int],
                 margin: float = 0.0, alpha: float = 0.05) -> Verdict:
    """Decide `a op b` at the look whose seed count is len(a), with the group-sequential
    t-test over the looks up to it (the values are in seed order, the looks' seeds first).

    The p-values are repeated p-values and the CI is the repeated confidence interval at this
    look (the nominal t interval at the level the look must reach), so `adjust` and the
    message treat the verdict like a fixed design's. Identity (`==` with margin 0) is no test
    and is checked on every seed so far; a claim without a p-value (no variation) stays as
    `decide` left it.
    """
    n = len(a)
    if n not in looks:
        raise ValueError(f"{n} seeds is not a look of the schedule {list(looks)}")
    k = list(looks).index(n) + 1
    history = [decide(a[:m], b[:m], op, margin=margin, alpha=alpha, test="t")
               for m in looks[:k]]
    last = history[-1]
    if last.identity or math.isnan(last.p_support):
        return last
    p_s = float(sequential_p([v.p_support for v in history], looks))
    p_c = float(sequential_p([v.p_contradict for v in history], looks))
    interval = decide(a, b, op, margin=margin, alpha=nominal_level(looks, k, alpha), test="t")
    return replace(last, status=status_from(p_s, p_c, alpha), ci=interval.ci, p_support=p_s,
                   p_contradict=p_c, p_support_adj=p_s, p_contradict_adj=p_c,
                   seeds_needed=None)
