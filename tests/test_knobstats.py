"""Tests of harness.core.knobstats: Page's trend test, the best level, mixed-family correction."""

import math
from dataclasses import replace
from itertools import permutations, product

import numpy as np
import pytest
from scipy import stats as st

from harness.core import knobstats
from harness.core.knobstats import BestVerdict, TrendVerdict, adjust_family, best, trend
from harness.core.stats import Verdict, adjust, decide, holm

ALPHA = 0.05


def blocks(k, n, step=0.0, seed=0, decimals=None):
    """(k levels, n seeds) metric values: a seed effect shared by all levels (the pairing),
    per-run noise of SD 1, and `step` added per level; rounded to `decimals` if given."""
    rng = np.random.default_rng(seed)
    x = 5 * rng.standard_normal(n) + rng.standard_normal((k, n)) + step * np.arange(k)[:, None]
    return x if decimals is None else np.round(x, decimals)


def levels(k):
    return [f"{0.25 * i:g}" for i in range(k)]


def slack(reps, alpha=ALPHA):
    """Two binomial standard errors of a rate near alpha over `reps` replications."""
    return 2 * math.sqrt(alpha * (1 - alpha) / reps)


def brute_force_page(x):
    """P(L >= observed), P(L <= observed) by enumerating every within-seed ordering."""
    k = x.shape[0]
    ranks = [st.rankdata(col) for col in x.T]
    w = np.arange(1, k + 1)
    observed = sum(r @ w for r in ranks)
    per_seed = [[r[list(p)] @ w for p in permutations(range(k))] for r in ranks]
    null = np.array([sum(terms) for terms in product(*per_seed)])
    return np.mean(null >= observed - 1e-9), np.mean(null <= observed + 1e-9)


# --- trend ----------------------------------------------------------------------------------

@pytest.mark.parametrize("k, n", [(3, 4), (4, 5), (5, 3)])
@pytest.mark.parametrize("step", [0.0, 0.8])
def test_page_p_matches_scipy_exact(k, n, step):
    x = blocks(k, n, step, seed=k * n)
    v = trend(x, levels=levels(k))
    assert v.exact
    assert v.statistic == pytest.approx(st.page_trend_test(x.T).statistic)
    assert v.p_support == pytest.approx(st.page_trend_test(x.T, method="exact").pvalue,
                                        rel=1e-9)
    down = trend(x, levels=levels(k), direction="decreases")
    assert down.p_support == pytest.approx(
        st.page_trend_test(x[::-1].T, method="exact").pvalue, rel=1e-9)
    assert (down.p_support, down.p_contradict) == pytest.approx((v.p_contradict, v.p_support))


@pytest.mark.parametrize("x", [
    [[0.80, 0.81, 0.80], [0.80, 0.82, 0.79], [0.81, 0.82, 0.80]],  # quantised, ties
    [[1.0, 1.0, 0.9], [1.0, 0.95, 0.9], [1.0, 1.0, 1.0]],  # saturated; one seed constant
    [[0.1 + 0.2, 1.0, 2.0], [0.3, 1.5, 2.0], [0.4, 1.5, 2.5]],  # 0.1 + 0.2 ties 0.3
])
def test_exact_distribution_with_ties_matches_enumeration(x):
    x = np.array(x)
    v = trend(x, levels=levels(3))
    if not math.isclose(x[0, 0], x[1, 0]):
        p_s, p_c = brute_force_page(x)
    else:  # the float-rounding tie: rankdata would tell 0.30000000000000004 from 0.3
        p_s, p_c = brute_force_page(np.round(x, 12))
    assert (v.p_support, v.p_contradict) == pytest.approx((p_s, p_c), rel=1e-9)
    assert v.p_support + v.p_contradict >= 1  # both tails hold P(L = observed)


def test_monte_carlo_path_agrees_with_exact(monkeypatch):
    x = blocks(4, 6, 0.4, seed=3)
    exact = trend(x, levels=levels(4))
    monkeypatch.setattr(knobstats, "EXACT_MAX_LEVELS", 0)
    mc = trend(x, levels=levels(4))
    assert exact.exact and not mc.exact
    # 20000 draws: SE of p below 0.004
    assert mc.p_support == pytest.approx(exact.p_support, abs=0.015)
    assert mc.p_contradict == pytest.approx(exact.p_contradict, abs=0.015)
    assert mc == trend(x, levels=levels(4))  # fixed seed: a function of the data alone
    assert "Monte Carlo" in mc.message("acc", "lr", "a")
    assert "exact permutation" in exact.message("acc", "lr", "a")


def test_many_levels_use_monte_carlo_with_plus_one():
    v = trend(blocks(9, 3, 5.0, seed=1), levels=levels(9))
    assert not v.exact and v.status == "supported"
    assert v.p_support == pytest.approx(1 / (knobstats.MC_DRAWS + 1))


def test_planted_trend_is_supported_and_reverse_contradicted():
    x = blocks(4, 5, 1.5, seed=7)
    up = trend(x, levels=levels(4))
    assert up.status == "supported" and up.p_support < 0.001
    assert up.rho > 0.8 and up.slope == pytest.approx(1.5, abs=0.5)
    assert up.means == pytest.approx(tuple(x.mean(axis=1)))
    assert trend(x, levels=levels(4), direction="decreases").status == "contradicted"
    down = trend(x[::-1], levels=levels(4))
    assert down.status == "contradicted" and down.rho < -0.8 and down.slope < 0
    assert trend(x[::-1], levels=levels(4), direction="decreases").status == "supported"


def test_seed_shift_does_not_matter_only_within_seed_order():
    """Page's test is invariant to anything a seed adds to all its levels (the pairing)."""
    x = blocks(3, 5, 0.7, seed=2)
    shifted = x + 100 * np.random.default_rng(0).standard_normal(5)
    a, b = trend(x, levels=levels(3)), trend(shifted, levels=levels(3))
    assert (a.statistic, a.p_support, a.rho) == pytest.approx((b.statistic, b.p_support, b.rho))


@pytest.mark.parametrize("decimals", [None, 0])  # rounded to 1 with noise SD 1: many ties
@pytest.mark.parametrize("k, n", [(3, 5), (5, 3)])
def test_aa_false_support_at_most_alpha(k, n, decimals):
    reps = 400
    statuses = [trend(blocks(k, n, seed=1000 * k + r, decimals=decimals), levels=levels(k),
                      alpha=ALPHA).status for r in range(reps)]
    assert statuses.count("supported") / reps <= ALPHA + slack(reps)
    assert statuses.count("contradicted") / reps <= ALPHA + slack(reps)


def test_no_variation_is_inconclusive_without_a_test():
    v = trend(np.full((3, 4), 0.9), levels=levels(3))
    assert v.status == "inconclusive" and math.isnan(v.p_support) and math.isnan(v.rho)
    assert "no variation within any seed" in v.reason
    assert "not tested" in v.message("acc", "lr", "a")


def test_too_few_seeds_says_so():
    v = trend(blocks(2, 3, 10.0), levels=levels(2))  # smallest p 1/8
    assert v.status == "inconclusive" and v.p_support == pytest.approx(1 / 8)
    assert "cannot reach p < 0.05" in v.reason and "smallest p = 0.125" in v.reason


@pytest.mark.parametrize("values, kwargs, match", [
    ([[1.0, 2.0, 3.0]], {"levels": ["a"]}, "at least 2 knob levels"),
    ([[1.0], [2.0]], {"levels": ["a", "b"]}, "at least 2 seeds"),
    ([[1.0, 2.0], [2.0]], {"levels": ["a", "b"]}, "same seeds at every level"),
    ([[1.0, 2.0], [2.0, math.nan]], {"levels": ["a", "b"]}, r"non-finite.*level 1 seed 1"),
    ([[1.0, 2.0], [2.0, 3.0]], {"levels": ["a"]}, "levels names 1 levels but values has 2"),
    ([[1.0, 2.0], [2.0, 3.0]], {"levels": ["a", "a"]}, "distinct"),
    ([[1.0, 2.0], [2.0, 3.0]], {"levels": ["a", "b"], "direction": "up"}, "unknown direction"),
    ([[1.0, 2.0], [2.0, 3.0]], {"levels": ["a", "b"], "alpha": 0.5}, "alpha"),
    ([1.0, 2.0], {"levels": ["a", "b"]}, "2-d"),
])
def test_trend_validation(values, kwargs, match):
    with pytest.raises(ValueError, match=match):
        trend(values, **kwargs)


def test_trend_message():
    text = trend(blocks(3, 5, 2.0), levels=["0.1", "0.5", "1.0"]).message(
        "acc", "data_fraction", "combined")
    assert text.startswith("acc increases with data_fraction (variant combined): SUPPORTED")
    assert "data_fraction=0.5" in text and "Spearman rho" in text and "Page's L" in text
    assert "not adjusted for multiplicity" in text


# --- best -----------------------------------------------------------------------------------

def level_values(means, n=6, seed=0, noise=0.01, decimals=None):
    """Per-seed metric of levels with the given true means, paired through a seed effect."""
    rng = np.random.default_rng(seed)
    shared = 0.05 * rng.standard_normal(n)
    out = {f"{0.1 * i:.1f}": m + shared + noise * rng.standard_normal(n)
           for i, m in enumerate(means)}
    return out if decimals is None else {k: np.round(v, decimals) for k, v in out.items()}


def test_clear_winner_is_decided():
    v = best(level_values([0.70, 0.75, 0.80]))
    assert (v.status, v.winner, v.candidates) == ("decided", "0.2", ("0.2",))
    assert all(p.better is not None for p in v.pairs)
    low = best(level_values([0.70, 0.75, 0.80]), maximize=False)
    assert (low.status, low.winner, low.candidates) == ("decided", "0.0", ("0.0",))


def test_two_equal_top_levels_stay_candidates():
    v = best(level_values([0.70, 0.80, 0.80], n=8))
    assert v.status == "undecided" and v.winner is None
    assert set(v.candidates) == {"0.1", "0.2"}
    assert "= 0.025): ls=0.1, ls=0.2" in v.message("acc", "ls", "a")


@pytest.mark.parametrize("means, expect, status", [
    ([0.70, 0.75, 0.80], "0.2", "supported"),
    ([0.70, 0.75, 0.80], "0.1", "contradicted"),  # beaten by 0.2
    ([0.70, 0.80, 0.80], "0.1", "inconclusive"),  # tied top: a candidate, not the winner
    ([0.70, 0.80, 0.80], "0.0", "contradicted"),
])
def test_expect(means, expect, status):
    v = best(level_values(means, n=8), expect=expect)
    assert (v.status, v.expect) == (status, expect)
    assert f"ls={expect} gives the best acc" in v.message("acc", "ls", "a")


def test_pairs_are_one_sided_decides_with_k_level_thresholds():
    values = level_values([0.70, 0.708, 0.712, 0.70], n=5, noise=0.006, seed=3)
    v = best(values)
    names, k = list(values), 4
    assert [(p.a, p.b) for p in v.pairs] == [(a, b) for i, a in enumerate(names)
                                             for b in names[i + 1:]]
    p_better = {}
    for pair in v.pairs:
        d = decide(values[pair.a], values[pair.b], ">")
        assert (pair.diff, pair.p_a, pair.p_b) == pytest.approx(
            (d.diff, d.p_support, d.p_contradict))
        p_better[pair.a, pair.b], p_better[pair.b, pair.a] = pair.p_a, pair.p_b
        assert pair.better == (pair.a if pair.p_a < ALPHA / (k - 1) else
                               pair.b if pair.p_b < ALPHA / (k - 1) else None)
    winners = [a for a in names if all(p_better[a, b] < ALPHA / k for b in names if b != a)]
    assert v.winner == (winners[0] if winners else None)
    assert v.candidates == tuple(b for b in names if all(
        p_better[a, b] >= ALPHA / (k - 1) for a in names if a != b))
    low = best(values, maximize=False)
    assert [(p.p_a, p.p_b) for p in low.pairs] == [(p.p_b, p.p_a) for p in v.pairs]


def test_expect_named_in_advance_needs_no_correction():
    """p between alpha/k and alpha against every other level: no winner from the data, but
    the level named in advance is supported (intersection-union test)."""
    for seed in range(200):
        values = level_values([0.70, 0.70, 0.706], n=5, noise=0.004, seed=seed)
        v = best(values)
        worst = max(p.p_b for p in v.pairs if p.b == "0.2")
        if ALPHA / 3 < worst < ALPHA:
            break
    else:
        pytest.fail("no study with p between alpha/k and alpha")
    assert v.status == "undecided" and v.winner is None
    assert best(values, expect="0.2").status == "supported"


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("decimals", [None, 2])  # rounded to 0.01 with noise 0.007: ties
def test_aa_false_decided_at_most_alpha(k, decimals):
    reps = 300
    decided = sum(best(level_values([0.8] * k, n=5, seed=r, noise=0.007, decimals=decimals)
                       ).status == "decided" for r in range(reps))
    assert decided / reps <= ALPHA + slack(reps)


@pytest.mark.parametrize("k", [2, 4])
def test_two_tied_best_levels_far_above_the_rest(k):
    """The least favourable case: one comparison between the tied two decides everything."""
    reps = 300
    decided = supported = 0
    for r in range(reps):
        values = level_values([0.5] * (k - 2) + [0.8, 0.8], n=5, seed=r, noise=0.007)
        decided += best(values).status == "decided"
        supported += best(values, expect=list(values)[-1]).status == "supported"
    assert decided / reps <= ALPHA + slack(reps)
    assert supported / reps <= ALPHA + slack(reps)


def test_permutation_with_few_seeds_says_so():
    v = best(level_values([0.1, 0.5, 0.9], n=4), test="permutation")
    assert v.status == "undecided" and "cannot decide a winner" in v.reason
    assert best(level_values([0.1, 0.5, 0.9], n=6), test="permutation").winner == "0.2"


def test_constant_difference_cannot_be_separated():
    v = best({"a": [0.7, 0.8, 0.9], "b": [0.6, 0.7, 0.8]})
    assert v.status == "undecided" and math.isnan(v.pairs[0].p_a)
    assert "do not vary for a vs b" in v.reason


@pytest.mark.parametrize("values, kwargs, match", [
    ({"a": [1.0, 2.0]}, {}, "at least 2 knob levels"),
    ({"a": [1.0], "b": [2.0]}, {}, "at least 2 seeds"),
    ({"a": [1.0, 2.0], "b": [2.0, 3.0, 4.0]}, {}, r"same seeds.*\{'a': 2, 'b': 3\}"),
    ({"a": [1.0, math.inf], "b": [2.0, 3.0]}, {}, "level a has non-finite values"),
    ({"a": [1.0, 2.0], "b": [2.0, 3.0]}, {"expect": "c"}, "expect='c' is not one of"),
    ({"a": [1.0, 2.0], "b": [2.0, 3.0]}, {"test": "wilcoxon"}, "unknown test"),
    ({1: [1.0, 2.0], "1": [2.0, 3.0]}, {}, "distinct as strings"),
])
def test_best_validation(values, kwargs, match):
    with pytest.raises(ValueError, match=match):
        best(values, **kwargs)


# --- multiplicity ---------------------------------------------------------------------------

def test_adjust_family_mixes_verdicts_and_trends():
    rng = np.random.default_rng(5)
    claims = [decide(rng.normal(mean, 1, 6), rng.normal(0, 1, 6), ">") for mean in (2, 0.8, 0)]
    trends = [trend(blocks(3, 5, step, seed=s), levels=levels(3))
              for s, step in enumerate((1.5, 0.5, 0.0))]
    flat = trend(np.ones((3, 3)), levels=levels(3))  # untested: stays out of the family
    top = best(level_values([0.7, 0.8]))
    family = [claims[0], trends[0], claims[1], top, trends[1], flat, claims[2], trends[2]]
    out = adjust_family(family, "holm")

    tested = [v for v in family if not isinstance(v, BestVerdict) and not math.isnan(
        v.p_support)]
    expected_s = holm([v.p_support for v in tested])
    expected_c = holm([v.p_contradict for v in tested])
    got = [v for v in out if not isinstance(v, BestVerdict) and not math.isnan(v.p_support)]
    assert [v.p_support_adj for v in got] == pytest.approx(list(expected_s))
    assert [v.p_contradict_adj for v in got] == pytest.approx(list(expected_c))
    assert out[3] is top and out[5].status == "inconclusive" and out[5].correction == "holm"
    for v in got:
        assert v.correction == "holm"
        assert v.status == ("supported" if v.p_support_adj < v.alpha else "contradicted"
                            if v.p_contradict_adj < v.alpha else "inconclusive")
    assert all(isinstance(v, TrendVerdict) for v in (out[1], out[4], out[7]))
    # the paired claims come back as stats.adjust returns them in a family of this size
    stand_ins = [replace(claims[0], p_support=t.p_support, p_contradict=t.p_contradict)
                 for t in (*trends, flat)]
    by_adjust = adjust([claims[0], stand_ins[0], claims[1], stand_ins[1], stand_ins[3],
                        claims[2], stand_ins[2]], "holm")
    assert [out[0], out[2], out[6]] == [by_adjust[0], by_adjust[2], by_adjust[5]]


def test_adjust_family_none_and_bad_method():
    v = trend(blocks(3, 5, 1.5), levels=levels(3))
    (same,) = adjust_family([v], "none")
    assert (same.status, same.p_support_adj, same.correction) == (v.status, v.p_support, "none")
    with pytest.raises(ValueError, match="unknown correction"):
        adjust_family([v], "bh")
    with pytest.raises(TypeError, match="cannot adjust a str"):
        adjust_family(["x"], "holm")


def test_adjusted_trend_message_shows_correction():
    weak = trend(blocks(3, 5, 0.6, seed=1), levels=levels(3))  # p 0.018
    assert weak.status == "supported" and weak.p_support > ALPHA / 4
    family = [weak] + [trend(blocks(3, 5, seed=s), levels=levels(3)) for s in range(10, 13)]
    out = adjust_family(family, "bonferroni")[0]
    assert out.status == "inconclusive" and isinstance(out, TrendVerdict)
    assert "bonferroni-adjusted" in out.message("acc", "lr", "a")


def test_verdict_types_are_frozen():
    v = trend(blocks(3, 3), levels=levels(3))
    with pytest.raises(AttributeError):
        v.status = "supported"
    assert not isinstance(v, Verdict)
