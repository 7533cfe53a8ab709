"""Verdicts on saturated, quantised and degenerate metrics, through the plugin (pytester).

Each toy study runs many independent A/A-like settings (a `rep` knob) in one real pytest
session, with correction="none" so that every setting's claim stands alone, and the verdicts are
read back from the results store. A rate of support is held to an upper bound of the binomial
distribution at alpha: a calibrated test exceeds it with probability 0.001.
benchmarks/calibrate_plugin.py runs the full grid (metric kinds x seeds x tests).
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter

import pytest
from scipy import optimize, stats

# In-process runs (pytester.runpytest) drop the modules first imported inside them, and numpy
# cannot be imported twice in one process: the statistics' imports must predate every run.
import harness.core.verdicts  # noqa: F401

ALPHA = 0.05
STORE = ".ablation/results.sqlite"
QUIET = ("-p", "no:cacheprovider", "-q", "--tb=no", "--no-ablation-tables")


def toy(*, seeds: int, reps: int, value: str, expects: list[str], prelude: str = "") -> str:
    """A study of variants a and b over `reps` settings; `value` is the body's metric.

    The body sees `shared` (a seed-shared draw), `own` (the variant's own draw, standard normal
    both) and `rep`.
    """
    return "\n".join([
        "import math",
        "import random",
        "from harness import ablation",
        prelude,
        f"study = ablation(variants={{'a': {{}}, 'b': {{}}}}, seeds={seeds}, correction='none',",
        f"                 tiers={{'aa': {{'rep': list(range({reps}))}}}})",
        "",
        "@study",
        "def test_aa(run):",
        "    rep = run.config['rep']",
        "    shared = random.Random(f'{rep}-{run.seed}').gauss(0, 1)",
        "    own = random.Random(f'{rep}-{run.seed}-{run.variant}').gauss(0, 1)",
        f"    return {{'acc': {value}}}",
        "",
        *(f"study.expect({args})" for args in expects),
        "",
    ])


def verdicts(pytester: pytest.Pytester) -> list[sqlite3.Row]:
    db = sqlite3.connect(pytester.path / STORE)
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM verdicts").fetchall()
    finally:
        db.close()


def supported(pytester: pytest.Pytester, reps: int) -> Counter[str]:
    """How many settings supported each hypothesis (every setting decided exactly once)."""
    rows = verdicts(pytester)
    assert Counter(r["hypothesis"] for r in rows) == dict.fromkeys(
        {r["hypothesis"] for r in rows}, reps)
    assert len({(r["hypothesis"], r["knobs"]) for r in rows}) == len(rows)
    return Counter(r["hypothesis"] for r in rows if r["status"] == "supported")


def bound(reps: int) -> int:
    """The most supported settings out of `reps` that a test calibrated at alpha allows."""
    return int(stats.binom.ppf(0.999, reps, ALPHA))


def test_quantised_aa_pair_is_supported_at_most_at_alpha(pytester: pytest.Pytester):
    # an accuracy rounded to 0.01 whose own noise (0.004) is below the step: most seeds tie.
    # `a >= b` within 0.001, a tenth of the step and 0.15 SD of d, is as good as at its
    # boundary: no honest test supports it much more often than alpha. Deciding equal
    # differences without a test supported it in about 19% of settings.
    reps = 400
    pytester.makepyfile(test_quant=toy(
        seeds=3, reps=reps, value="round(0.8 + 0.05 * shared + 0.004 * own, 2)",
        expects=['"a > b", metric="acc"', '"a < b", metric="acc"',
                 '"a >= b", metric="acc", margin=0.001']))
    pytester.runpytest(*QUIET)
    counts = supported(pytester, reps)
    for hypothesis in ("a>b[acc]", "a<b[acc]", "a>=b[acc]"):
        assert counts[hypothesis] <= bound(reps), (hypothesis, counts)


def saturated_shift(true_diff: float, mean: float, sd: float) -> float:
    """The shift of a's latent N(mean, sd) metric, clipped at 1, that makes E[a - b] true_diff."""
    def clipped(mu: float) -> float:  # E[min(1, X)] for X ~ N(mu, sd)
        z = (mu - 1) / sd
        return mu - ((mu - 1) * stats.norm.cdf(z) + sd * stats.norm.pdf(z))
    return optimize.brentq(lambda x: clipped(mean - x) - clipped(mean) - true_diff, 0, 1)


def test_saturated_non_inferiority_is_not_supported(pytester: pytest.Pytester):
    # the latent metric N(1.05, 0.036) is clipped at 1: about 90% of b's runs and 60% of a's
    # sit at the ceiling, and a is truly worse by 0.01, twice the margin. Ties at the ceiling
    # say nothing about how much worse a is when it leaves it.
    reps, shared, own = 300, 0.03, 0.02
    shift = saturated_shift(-0.01, 1.05, math.hypot(shared, own))
    pytester.makepyfile(test_sat=toy(
        seeds=5, reps=reps,
        value=f"min(1.0, 1.05 + {shared} * shared + {own} * own - "
              f"({shift!r} if run.variant == 'a' else 0.0))",
        expects=['"a >= b", metric="acc", margin=0.005',
                 '"a >= b", metric="acc", margin=0.005, test="permutation", name="perm"']))
    pytester.runpytest(*QUIET)
    counts = supported(pytester, reps)
    assert counts["a>=b[acc]"] <= bound(reps), counts
    assert counts["perm"] <= bound(reps), counts


def test_metric_at_its_ceiling_supports_nothing(pytester: pytest.Pytester):
    pytester.makepyfile(test_ceiling=toy(
        seeds=3, reps=1, value="min(1.0, 1.5 + 0.01 * shared + 0.01 * own)",
        expects=['"a >= b", metric="acc", margin=0.005', '"a == b", metric="acc", margin=0.005',
                 '"a > b", metric="acc"']))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6, failed=3)
    assert {r["status"] for r in verdicts(pytester)} == {"inconclusive"}
    result.stdout.fnmatch_lines(["*all 3 paired differences equal +0: with no variation there "
                                 "is no noise estimate*"])


def test_study_that_ignores_its_seeds_is_inconclusive_with_a_note(pytester: pytest.Pytester):
    pytester.makepyfile(test_ignored=toy(
        seeds=4, reps=2, value="0.9 if run.variant == 'a' else 0.8",
        expects=['"a > b", metric="acc"', '"a >= b", metric="acc", margin=0.01']))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=16, failed=4)
    rows = verdicts(pytester)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"inconclusive"}
    assert all(r["p"] is None and r["ci_lo"] is None for r in rows)  # no test, no p or CI
    for row in rows:
        assert ("note: a gives the same acc on every seed: are the seeds used (run.seed seeds "
                "init and data)?") in row["message"]
        assert "note: b gives the same acc on every seed" in row["message"]
    result.stdout.fnmatch_lines(["*INCONCLUSIVE: acc: a > b: INCONCLUSIVE",
                                 "*note: a gives the same acc on every seed: are the seeds used*"])


def test_an_infinite_value_fails_only_the_hypothesis_on_its_metric(pytester: pytest.Pytester):
    pytester.makepyfile(test_inf="""
        import random
        from harness import ablation

        study = ablation(variants={"base": {}, "better": {}}, seeds=4)

        @study
        def test_inf(run):
            rng = random.Random(f"{run.seed}-{run.variant}")
            gain = 0.2 if run.variant == "better" else 0.0
            acc = float("inf") if (run.variant, run.seed) == ("better", 2) else 0.5 + gain
            return {"acc": acc + rng.gauss(0, 0.01), "loss": 1.0 - gain + rng.gauss(0, 0.01)}

        study.expect("better > base", metric="acc")
        study.expect("better < base", metric="loss")
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=8 + 1, failed=1)
    result.stdout.fnmatch_lines([
        "*_ test_inf[[]default[]]::better>base[[]acc[]] _*",
        "ERROR: better > base on acc: cannot be decided: metric 'acc' is inf for better-seed2"])
    result.stdout.no_fnmatch_line("*ValueError*")
    rows = {r["hypothesis"]: r for r in verdicts(pytester)}
    assert rows["better>base[acc]"]["status"] == "error"
    assert rows["better<base[loss]"]["status"] == "supported"
    assert rows["better<base[loss]"]["p_adj"] == rows["better<base[loss]"]["p"]  # family of 1
