"""Tests of harness.core.stats: p-values against scipy, Holm, edge cases, ties, calibration."""

import math
import re
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from harness.core.stats import SEEDS_CAP, Verdict, adjust, decide, holm
from harness.core.study import Study
from harness.core.verdicts import SettingResults, decide_setting

M = 0.3
# op, margin, the one-sided tests of d - shift whose rejection supports the claim (all must
# reject) and those whose rejection contradicts it (any may reject), as (shift, alternative).
CASES = [
    (">", 0.0, [(0.0, "greater")], [(0.0, "less")]),
    (">", M, [(M, "greater")], [(M, "less")]),
    (">=", M, [(-M, "greater")], [(-M, "less")]),
    ("<", 0.0, [(0.0, "less")], [(0.0, "greater")]),
    ("<", M, [(-M, "less")], [(-M, "greater")]),
    ("<=", M, [(M, "less")], [(M, "greater")]),
    ("==", M, [(-M, "greater"), (M, "less")], [(M, "greater"), (-M, "less")]),
]


def paired(n, mean, seed=0):
    """Metric values of two variants over n seeds whose differences are N(mean, 1)."""
    rng = np.random.default_rng(seed)
    b = rng.normal(0.7, 0.05, n)
    return b + rng.normal(mean, 1.0, n), b


def scipy_p(a, b, shift, alternative, test):
    d = a - b - shift
    if test == "t":
        return stats.ttest_1samp(d, 0.0, alternative=alternative).pvalue
    res = stats.permutation_test((d, np.zeros_like(d)), lambda x, y, axis: np.mean(x - y, axis),
                                 permutation_type="samples", alternative=alternative,
                                 n_resamples=np.inf)
    return res.pvalue


@pytest.mark.parametrize("test", ["t", "permutation"])
@pytest.mark.parametrize("op, margin, support, contradict", CASES)
@pytest.mark.parametrize("effect", [-0.4, 0.1, 0.6])
def test_p_values_match_scipy(op, margin, support, contradict, test, effect):
    a, b = paired(9, effect)
    v = decide(a, b, op, margin=margin, test=test)
    p_s = max(scipy_p(a, b, s, alt, test) for s, alt in support)
    p_c = min(scipy_p(a, b, s, alt, test) for s, alt in contradict)
    assert v.p_support == pytest.approx(p_s, rel=1e-9)
    assert v.p_contradict == pytest.approx(p_c, rel=1e-9)
    assert (v.p_support_adj, v.p_contradict_adj) == (v.p_support, v.p_contradict)
    assert v.status == ("supported" if p_s < 0.05 else "contradicted" if p_c < 0.05
                        else "inconclusive")


def test_t_confidence_interval_matches_scipy():
    a, b = paired(7, 0.5)
    v = decide(a, b, ">", alpha=0.05)
    ci = stats.ttest_1samp(a - b, 0.0).confidence_interval(confidence_level=0.9)
    assert v.ci == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert v.diff == pytest.approx(np.mean(a - b))
    assert v.std_diff == pytest.approx(np.std(a - b, ddof=1))


def test_permutation_confidence_interval_inverts_the_test():
    a, b = paired(8, 0.5, seed=3)
    v = decide(a, b, ">", test="permutation")
    lo, hi = v.ci
    eps = 1e-9 * (hi - lo)
    assert scipy_p(a, b, lo - eps, "greater", "permutation") < 0.05
    assert scipy_p(a, b, lo + eps, "greater", "permutation") >= 0.05
    assert scipy_p(a, b, hi + eps, "less", "permutation") < 0.05
    assert scipy_p(a, b, hi - eps, "less", "permutation") >= 0.05


def test_monte_carlo_permutation_beyond_16_seeds():
    a, b = paired(24, 0.3, seed=4)
    v = decide(a, b, ">=", margin=0.1, test="permutation")
    res = stats.permutation_test((a - b + 0.1, np.zeros(24)),
                                 lambda x, y, axis: np.mean(x - y, axis),
                                 permutation_type="samples", alternative="greater",
                                 n_resamples=20_000, rng=1)
    assert v.p_support == pytest.approx(res.pvalue, abs=0.01)
    assert decide(a, b, ">=", margin=0.1, test="permutation") == v  # fixed seed
    assert "random flips" in v.message("a", "b", "m")


def test_holm_hand_computed():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([]).shape == (0,)
    out = holm([0.01, math.nan, 0.02])  # untested hypotheses stay out of the family
    assert math.isnan(out[1]) and out[[0, 2]] == pytest.approx([0.02, 0.02])
    with pytest.raises(ValueError):
        holm([0.5, 1.5])


def test_holm_matches_direct_definition():
    p = np.random.default_rng(5).uniform(0, 0.1, 12)
    m = len(p)
    order = np.argsort(p)
    direct = np.empty(m)
    for i, idx in enumerate(order):  # adj p_(i) = max_{j <= i} min(1, (m - j) p_(j)), 0-based
        direct[idx] = max(min(1.0, (m - j) * p[order[j]]) for j in range(i + 1))
    assert holm(p) == pytest.approx(direct)


def with_p(v, p_support, p_contradict, status):
    """A copy of verdict v with the given raw p-values and status, as decide() would make it."""
    return replace(v, p_support=p_support, p_contradict=p_contradict, p_support_adj=p_support,
                   p_contradict_adj=p_contradict, status=status)


def test_adjust_changes_status():
    base = decide(*paired(6, 2.0), ">")
    family = [with_p(base, p, 1 - p, "supported") for p in (0.01, 0.04, 0.03)]
    assert [v.status for v in family] == ["supported"] * 3
    holm_ = adjust(family)
    assert [v.p_support_adj for v in holm_] == pytest.approx([0.03, 0.06, 0.06])
    assert [v.status for v in holm_] == ["supported", "inconclusive", "inconclusive"]
    assert all(v.seeds_needed for v in holm_[1:]) and holm_[0].seeds_needed is None
    assert [v.p_support for v in holm_] == [0.01, 0.04, 0.03]  # raw p-values kept
    assert [v.status for v in adjust(family, "bonferroni")] == \
        ["supported", "inconclusive", "inconclusive"]
    assert adjust(family, "none") == family
    contra = [with_p(base, 1 - p, p, "contradicted") for p in (0.02, 0.04)]
    assert [v.status for v in adjust(contra)] == ["contradicted", "contradicted"]
    assert [v.status for v in adjust([*contra, replace(contra[1], p_contradict=0.3)])] == \
        ["inconclusive"] * 3  # 0.02 * 3 > 0.05
    with pytest.raises(ValueError, match="unknown correction"):
        adjust(family, "fdr")


def test_adjust_leaves_untested_verdicts_out_of_the_family():
    tested = with_p(decide(*paired(6, 2.0), ">"), 0.03, 0.97, "supported")
    untested = decide([1.0], [0.0], ">")
    constant = decide([1.0, 1.0], [0.0, 0.0], ">")  # no variation: no test either
    out = adjust([tested, untested, constant])
    assert out[0].p_support_adj == pytest.approx(0.03) and out[0].status == "supported"
    for v in out[1:]:
        assert math.isnan(v.p_support_adj) and v.status == "inconclusive"


@pytest.mark.parametrize("test", ["t", "permutation"])
def test_identity_is_checked_seed_by_seed(test):
    a = [0.81, 0.79, 0.8]
    same = decide(a, list(a), "==", margin=0, test=test)
    assert same.status == "supported" and same.ci == (0.0, 0.0)
    assert (same.p_support, same.p_contradict) == (0.0, 1.0)
    assert "equal values on all 3 seeds" in same.reason
    assert "identity, checked seed by seed (no test)" in same.message("x", "y", "m")
    # a difference of one ulp on one seed is a difference: identity means bitwise equal values
    other = decide(a, [0.81, np.nextafter(0.79, 1), 0.8], "==", margin=0, test=test)
    assert other.status == "contradicted" and (other.p_support, other.p_contradict) == (1.0, 0.0)
    assert "values differ on 1 of 3 seeds (seed positions [1]" in other.reason
    assert math.isnan(other.ci[0])
    assert [v.status for v in adjust([same, other, same])] == [
        "supported", "contradicted", "supported"]
    assert decide([0.5], [0.5], "==", margin=0).status == "supported"  # no test: 1 seed will do


@pytest.mark.parametrize("a, b", [
    ([0.81, 0.79, 0.8], [0.81, 0.79, 0.8]),  # identical runs
    ([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]),  # both saturated
    ([1.5, 2.5, 3.5], [1.0, 2.0, 3.0]),  # a constant offset
])
@pytest.mark.parametrize("op, margin", [
    (">", 0.0), ("<", 0.0), (">", 0.4), (">=", 0.01), ("<=", 0.01), ("==", 0.01), ("==", 0.6),
])
@pytest.mark.parametrize("test", ["t", "permutation"])
def test_equal_differences_are_inconclusive_without_a_noise_estimate(a, b, op, margin, test):
    v = decide(a, b, op, margin=margin, test=test)
    assert v.status == "inconclusive" and v.seeds_needed is None
    assert math.isnan(v.p_support) and math.isnan(v.p_contradict) and math.isnan(v.ci[0])
    assert "all 3 paired differences equal" in v.reason and "no noise estimate" in v.reason
    for advice in ("more seeds", "claim a == b with margin=0", "run.seed"):
        assert advice in v.reason
    assert adjust([v, v])[0].status == "inconclusive"


def test_saturated_metric_supports_nothing():
    # both variants at the ceiling on every seed: nothing is known about their difference
    a = b = [1.0, 1.0, 1.0]
    for op, margin in ((">=", 0.005), ("==", 0.005), (">", 0.0)):
        assert decide(a, b, op, margin=margin).status == "inconclusive"
    text = decide(a, b, ">=", margin=0.005).message("combined", "ctc_only", "acc")
    assert ("note: combined gives the same acc on every seed: are the seeds used (run.seed "
            "seeds init and data)?") in text
    assert "note: ctc_only gives the same acc on every seed" in text


def test_only_a_constant_variant_gets_the_note():
    text = decide([0.7, 0.8, 0.75], [0.6, 0.6, 0.6], ">").message("a", "b", "acc")
    assert "b gives the same acc on every seed" in text and "a gives the same" not in text
    assert "on every seed" not in decide(*paired(4, 1.0), ">").message("a", "b", "acc")


@pytest.mark.parametrize("test", ["t", "permutation"])
@pytest.mark.parametrize("op, margin", [(">", 0.01), ("<", 0.01), (">=", 0.01), ("<=", 0.01),
                                        ("==", 0.01), (">", 0.1), ("<=", 0.3)])
def test_differences_on_the_boundary_are_never_supported(op, margin, test):
    # every difference lies exactly on the claim's boundary, up to float rounding
    b = np.round(np.random.default_rng(2).uniform(0.5, 0.9, 6), 2)
    for sign in (1, -1):
        v = decide(np.round(b + sign * margin, 2), b, op, margin=margin, test=test)
        assert v.status != "supported", v.message("a", "b", "m")


@pytest.mark.parametrize("test", ["t", "permutation"])
def test_ties_do_not_count_as_evidence_past_the_boundary(test):
    # a saturated non-inferiority claim: 4 ties at the ceiling and one seed 0.002 below. The
    # ties lie 0.005 above the boundary -0.005, but say nothing about how much worse a is when
    # it leaves the ceiling: they are left out, and one seed decides nothing.
    a, b = [1.0, 1.0, 1.0, 1.0, 0.998], [1.0] * 5
    v = decide(a, b, ">=", margin=0.005, test=test)
    assert v.status == "inconclusive" and v.p_support >= 0.5
    assert "4 of 5 seeds give equal values (ties)" in v.reason
    # with a real difference, ties on the other side of the boundary are kept
    c = [1.0, 1.0, 1.0, 0.9512, 0.9637]
    assert decide(c, b, "<", margin=0.0, test=test).p_support == pytest.approx(
        scipy_p(np.array(c), np.array(b), 0.0, "less", test))


def test_t_test_on_a_grid_adds_the_rounding_variance():
    a = np.array([0.81, 0.83, 0.82, 0.83, 0.81])
    b = np.array([0.80, 0.81, 0.81, 0.82, 0.80])
    v = decide(a, b, ">")
    d, h = a - b, 0.01
    t = d.mean() / math.sqrt((d.var(ddof=1) + h**2 / 6) / len(d))
    assert v.grid == pytest.approx(h) and v.std_diff == pytest.approx(d.std(ddof=1))
    assert v.p_support == pytest.approx(stats.t.sf(t, len(d) - 1), rel=1e-9)
    assert v.p_support > stats.ttest_1samp(d, 0.0, alternative="greater").pvalue
    assert "grid of step 0.01" in v.reason
    half = v.ci[1] - v.diff
    assert half == pytest.approx(stats.t.ppf(0.95, 4) * math.sqrt((d.var(ddof=1) + h**2 / 6) / 5))
    # continuous values lie on no grid
    assert decide(*paired(6, 0.5), ">").grid == 0.0


@pytest.mark.parametrize("n", [0, 1])
def test_fewer_than_two_seeds_is_inconclusive(n):
    v = decide([0.9] * n, [0.1] * n, ">")
    assert v.status == "inconclusive" and v.n == n and v.seeds_needed is None
    assert "at least 2 seeds" in v.reason and math.isnan(v.p_support)
    assert "INCONCLUSIVE" in v.message("a", "b", "m")


def test_invalid_input_raises():
    with pytest.raises(ValueError, match=r"positions \[1, 3\]"):
        decide([0.1, math.nan, 0.3, math.nan], [0.1] * 4, ">")
    with pytest.raises(ValueError, match=r"b has non-finite values .* positions \[0\]"):
        decide([0.1, 0.2], [math.inf, 0.1], ">")
    with pytest.raises(ValueError, match="3 and 2"):
        decide([0.1, 0.2, 0.3], [0.1, 0.2], ">")
    with pytest.raises(ValueError, match="margin"):
        decide([0.1, 0.2], [0.1, 0.3], "==", margin=-0.1)
    for op in (">=", "<="):  # as Study.expect refuses it
        with pytest.raises(ValueError, match=f"'{op}' is non-inferiority within a margin and "
                                             f"needs margin > 0"):
            decide([0.1, 0.2], [0.1, 0.3], op, margin=0.0)
    with pytest.raises(ValueError, match="margin"):
        decide([0.1, 0.2], [0.1, 0.3], ">", margin=-0.1)
    with pytest.raises(ValueError, match="unknown operator"):
        decide([0.1, 0.2], [0.1, 0.3], "!=")
    with pytest.raises(ValueError, match="unknown test"):
        decide([0.1, 0.2], [0.1, 0.3], ">", test="wilcoxon")
    with pytest.raises(ValueError, match="alpha"):
        decide([0.1, 0.2], [0.1, 0.3], ">", alpha=0.5)
    with pytest.raises(ValueError, match="1-d"):
        decide([[0.1, 0.2]], [[0.1, 0.3]], ">")


@pytest.mark.parametrize("bad, shown", [(math.inf, "inf"), (-math.inf, "-inf"),
                                         (math.nan, "NaN"), (None, "NaN")])
def test_a_non_finite_value_fails_only_the_hypotheses_on_its_metric(bad, shown):
    study = Study(variants={"base": {}, "better": {}}, seeds=4)
    study.expect("better > base", metric="acc")
    study.expect("better < base", metric="loss")
    study.expect("better >= base", metric="loss", margin=0.5, name="loss_not_worse")
    rng = np.random.default_rng(0)
    runs = {(v, s): {"acc": 0.5 + gain + rng.normal(0, 0.01),
                     "loss": 1.0 - gain + s / 10 + rng.normal(0, 0.01)}
            for v, gain in (("base", 0.0), ("better", 0.2)) for s in range(4)}
    runs["better", 2] = {**runs["better", 2], "acc": bad}
    failed, loss, not_worse = decide_setting(study, runs)
    cause = f"metric 'acc' is {shown} for better-seed2"
    assert failed.status == "error" and failed.error == cause and not failed.passed
    assert failed.message() == f"better > base on acc: cannot be decided: {cause}"
    # the other hypotheses are decided, as a family of two (Holm)
    assert loss.status == not_worse.status == "supported"
    raw = [loss.verdict.p_support, not_worse.verdict.p_support]
    assert [loss.verdict.p_support_adj, not_worse.verdict.p_support_adj] == pytest.approx(
        holm(raw))
    results = SettingResults(study, runs, study.seeds)
    with pytest.raises(ValueError, match=re.escape(cause)):
        results.values("better", "acc")
    assert results.decide("better < base", metric="loss").passed


def test_too_few_seeds_for_the_exact_permutation_test():
    a, b = paired(3, 5.0)
    v = decide(a, b, ">", test="permutation")
    assert v.status == "inconclusive" and v.p_support == 0.125
    assert "cannot reach p < 0.05 with 3 seeds (smallest p = 0.125)" in v.reason
    assert "use >= 5 seeds" in v.reason and v.seeds_needed == 5
    assert decide(a, b, ">", test="t").status == "supported"
    assert decide(*paired(5, 5.0), ">", test="permutation").reason == ""


def test_seeds_needed():
    a, b = paired(5, 0.0, seed=1)
    v = decide(a, b, ">=", margin=0.1)
    assert v.status == "inconclusive"
    z = stats.norm.ppf(0.95) + stats.norm.ppf(0.8)
    assert v.seeds_needed == max(math.ceil((z * v.std_diff / (v.diff + 0.1)) ** 2), 6)
    tiny = decide([0.0, 1.0, 2.00001], [0.0] * 3, ">", margin=1.0)  # diff ~ margin
    assert tiny.seeds_needed > SEEDS_CAP and ">10000 seeds" in tiny.message("a", "b", "m")
    assert decide([0.0, 1.0, 2.0], [0.0] * 3, ">", margin=1.0).seeds_needed is None
    assert decide(*paired(5, 3.0), ">").seeds_needed is None  # decided


def test_message_explains_the_verdict():
    a, b = paired(5, 0.0, seed=1)
    v = decide(a, b, ">=", margin=0.1)
    text = v.message("combined", "ctc_only", "joint/majmin")
    for part in ["joint/majmin", "combined >= ctc_only (margin 0.1)", "INCONCLUSIVE", "n=5",
                 f"{v.mean_a:.4g} +- {v.std_a:.3g}", f"{v.mean_b:.4g} +- {v.std_b:.3g}",
                 f"{v.diff:+.4g}", f"90% CI [{v.ci[0]:+.4g}, {v.ci[1]:+.4g}]",
                 f"p supporting {v.p_support:.3g}", "paired t-test", "correction none",
                 f"roughly {v.seeds_needed} seeds"]:
        assert part in text, part
    family = adjust([v, with_p(v, 0.2, 0.8, "inconclusive")])
    text = family[0].message("combined", "ctc_only", "joint/majmin")
    assert f"holm-adjusted {family[0].p_support_adj:.3g}" in text and "correction holm" in text
    text = decide(*paired(6, 3.0), ">", test="permutation").message("x", "y", "m")
    assert "SUPPORTED" in text and "exact sign-flip permutation test (64 flips)" in text
    assert "seeds would decide" not in text


def simulate(op, margin, mean, test, n=5, studies=1000, seed=0):
    """Statuses of `studies` simulated studies whose paired differences are N(mean, 1)."""
    rng = np.random.default_rng(seed)
    b = rng.normal(0.7, 0.05, (studies, n))
    a = b + rng.normal(mean, 1.0, (studies, n))
    return [decide(x, y, op, margin=margin, test=test).status for x, y in zip(a, b, strict=True)]


def rate(statuses, status="supported"):
    return statuses.count(status) / len(statuses)


@pytest.mark.parametrize("test", ["t", "permutation"])
@pytest.mark.parametrize("op, margin, boundary", [
    (">", 0.0, 0.0), (">", 0.5, 0.5), (">=", 0.5, -0.5), ("==", 0.5, 0.5), ("==", 0.5, -0.5),
])
def test_false_support_at_the_null_boundary_is_at_most_alpha(op, margin, boundary, test):
    studies, alpha = 1000, 0.05
    statuses = simulate(op, margin, boundary, test, studies=studies)
    assert rate(statuses) <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / studies)
    if op != "==":  # one-sided: the claim is wrongly contradicted at about alpha too
        assert rate(statuses, "contradicted") <= alpha + 3 * math.sqrt(alpha / studies)


@pytest.mark.parametrize("test", ["t", "permutation"])
@pytest.mark.parametrize("op, margin, mean", [(">", 0.0, 2.0), (">=", 0.5, 1.5)])
def test_two_sd_effect_is_supported_with_five_seeds(op, margin, mean, test):
    assert rate(simulate(op, margin, mean, test)) >= 0.8


def test_two_sd_equivalence_with_five_seeds():
    # the truth is 2 SD inside each margin. TOST needs both one-sided tests: the exact
    # permutation test with 5 seeds rejects each only if all 5 differences are on the right
    # side, so its power is exactly (2 Phi(2) - 1)^5 = 0.794, just short of 0.8.
    assert rate(simulate("==", 2.0, 0.0, "t")) >= 0.8
    exact = (2 * stats.norm.cdf(2.0) - 1) ** 5
    assert rate(simulate("==", 2.0, 0.0, "permutation")) == pytest.approx(exact, abs=0.04)


def test_core_does_not_import_pytest():
    code = "import sys, harness.core.stats; assert 'pytest' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


@pytest.mark.parametrize("test", ["t", "permutation"])
def test_verdict_holds_plain_python_numbers(test):
    # xdist workers send verdict rows to the controller, and execnet refuses numpy scalars
    for a, b, op, margin in [(*paired(6, 1.0), ">", 0.0), ([1.0, 1.0, 0.99], [1.0] * 3, ">=", 0.1),
                             ([0.5] * 3, [0.5] * 3, "==", 0.0), ([0.5] * 3, [0.4] * 3, ">", 0.0)]:
        v = decide(a, b, op, margin=margin, test=test)
        values = [getattr(v, f.name) for f in fields(v)]
        values += [*v.ci]
        assert all(type(x) in (str, int, float, tuple, type(None)) for x in values), v


def test_verdict_is_frozen():
    v = decide([0.1, 0.2], [0.0, 0.3], ">")
    assert isinstance(v, Verdict)
    with pytest.raises(AttributeError):
        v.status = "supported"


def test_adjusting_an_untested_verdict_gives_no_seeds_estimate():
    """Equal differences give no noise estimate: no seed count can be promised either."""
    untested = decide([0.9, 0.8, 0.7], [0.85, 0.75, 0.65], ">", margin=0.01)
    assert untested.seeds_needed is None
    [adjusted] = adjust([untested], method="holm")
    assert (adjusted.status, adjusted.seeds_needed) == ("inconclusive", None)
    assert "roughly" not in adjusted.message("a", "b", "acc")


def test_seeds_whose_runs_are_unchanged_are_not_ties():
    """Against a baseline, a seed the change left alone is evidence, not a tie of a coarse
    metric: a change that improves one seed of five and touches no other passes."""
    before = [0.80, 0.81, 0.82, 0.83, 0.84]
    improved, worse = [*before[:4], 0.841], [*before[:4], 0.80]
    unchanged = [True] * 4 + [False]
    assert decide(improved, before, ">=", margin=0.005).status == "inconclusive"  # ties left out
    assert decide(improved, before, ">=", margin=0.005, unchanged=unchanged).status == \
        "supported"
    assert decide(worse, before, ">=", margin=0.005, unchanged=unchanged).status != "supported"
