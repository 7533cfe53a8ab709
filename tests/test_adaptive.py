"""Adaptive seed budgets: the group-sequential core, the spec, and real pytest sessions that
stop adding seeds once every claim of a setting is decided."""

from __future__ import annotations

import json
import sqlite3
import textwrap

import numpy as np
import pytest
from scipy import stats as st

from harness.core import sequential
from harness.core.stats import decide
from harness.core.study import Budget, Study, StudyError
from harness.core.verdicts import decide_setting, stopping_look

STORE = ".ablation/results.sqlite"
LOOKS = (3, 6, 9, 12)


# -- the sequential core ------------------------------------------------------------------------

def test_looks_run_from_min_by_batch_and_end_at_max() -> None:
    assert Budget(3, 12, 3).looks == (3, 6, 9, 12)
    assert Budget(3, 10, 3).looks == (3, 6, 9, 10)
    assert Budget(2, 4).looks == (2, 3, 4)


def test_null_boundaries_are_deterministic_and_cached() -> None:
    first = sequential.null_statistic(LOOKS)
    assert sequential.null_statistic(LOOKS) is first
    sequential.null_statistic.cache_clear()
    assert np.array_equal(sequential.null_statistic(LOOKS), first)


def test_false_support_under_the_null_stays_at_alpha_where_naive_peeking_does_not() -> None:
    """Fresh null paths (another random stream than the calibration's), every look."""
    paths = 20_000
    p = sequential.null_pvalues(LOOKS, paths, np.random.default_rng(123))
    rejected = np.count_nonzero(sequential.sequential_p(p, LOOKS) < 0.05)
    assert rejected <= st.binom.ppf(0.999, paths, 0.05)
    assert rejected >= st.binom.ppf(0.001, paths, 0.05)  # not wastefully conservative either
    naive = np.count_nonzero(p.min(axis=1) < 0.05)
    assert naive > 2 * rejected


def test_the_exact_paths_match_t_tests_of_drawn_seeds() -> None:
    """null_pvalues draws a look's sums instead of its seeds: the same law as t-tests on
    prefixes of drawn differences (compared through their rejection rates)."""
    d = np.random.default_rng(7).standard_normal((20_000, LOOKS[-1]))
    drawn = np.stack([st.ttest_1samp(d[:, :m], 0, axis=1, alternative="greater").pvalue
                      for m in LOOKS], axis=1)
    rate = np.mean(sequential.sequential_p(drawn, LOOKS) < 0.05)
    assert abs(rate - 0.05) < 4 * np.sqrt(0.05 * 0.95 / len(d))


def test_a_look_alone_rejects_at_its_nominal_level() -> None:
    for k in range(1, len(LOOKS) + 1):
        level = sequential.nominal_level(LOOKS, k, 0.05)
        p = [0.5] * (k - 1) + [level * 0.99]
        assert sequential.sequential_p(p, LOOKS) < 0.05 <= sequential.sequential_p(
            [0.5] * (k - 1) + [level * 1.05], LOOKS)
    levels = [sequential.nominal_level(LOOKS, k, 0.05) for k in range(1, 5)]
    assert levels == sorted(levels) and levels[-1] < 0.05  # stricter early, never above alpha


def test_identity_and_looks_without_p_values() -> None:
    assert sequential.sequential_p([0.3, 0.0], LOOKS) == 0.0
    assert sequential.sequential_p([float("nan")], LOOKS) == 1.0
    a = [0.5, 0.6, 0.7]
    assert sequential.decide_looks(a, a, "==", looks=LOOKS).status == "supported"
    constant = sequential.decide_looks([1.0, 2.0, 3.0], [0.0, 1.0, 2.0], ">", looks=LOOKS)
    assert constant.status == "inconclusive" and np.isnan(constant.p_support)
    with pytest.raises(ValueError, match="not a look"):
        sequential.decide_looks([1.0, 2.0, 3.0, 4.0], [0.0] * 4, ">", looks=LOOKS)


def test_a_clear_effect_is_supported_at_the_first_look_with_a_wider_interval() -> None:
    rng = np.random.default_rng(0)
    b = rng.normal(0, 1, 3)
    a = b + 10 + rng.normal(0, 0.1, 3)
    verdict = sequential.decide_looks(a, b, ">", looks=LOOKS)
    fixed = decide(a, b, ">")
    assert verdict.status == "supported" and verdict.p_support > fixed.p_support
    assert verdict.ci[0] < fixed.ci[0] and verdict.ci[1] > fixed.ci[1]


# -- the walk over looks --------------------------------------------------------------------

def _study(hypothesis: str = "a > b", **options: object) -> Study:
    study = Study(variants={"a": {}, "b": {}}, seeds={"min": 3, "max": 12, "batch": 3},
                  name="s", **options)
    study.expect(hypothesis, metric="m")
    return study


def _obtain(effect: float, asked: list[int], own_sd: float = 0.1):
    """Runs of 12 seeds: a seed-shared draw, each run's own, and `effect` for variant a."""
    rng = np.random.default_rng(41)
    shared, own = rng.normal(0, 1, 12), rng.normal(0, own_sd, (12, 2))

    def obtain(seeds):
        asked.extend(seeds)
        return {(v, s): {"m": shared[s] + own[s, i] + (effect if v == "a" else 0.0)}
                for s in seeds for i, v in enumerate("ab")}
    return obtain


def test_a_clear_cut_setting_stops_at_the_first_look_and_obtains_only_its_seeds() -> None:
    asked: list[int] = []
    stop = stopping_look(_study(), "default", range(12), _obtain(1.0, asked, own_sd=0.001))
    assert (stop.look, stop.settled, asked) == (1, True, [0, 1, 2])
    result = stop.results[0]
    assert result.status == "supported" and result.look.seeds == 3
    assert "decided at look 1 of 4, with 3 seeds" in result.message()
    assert result.row("s", "default", ()).detail["adaptive"]["look"] == 1


def test_a_smaller_effect_adds_one_batch() -> None:
    asked: list[int] = []
    stop = stopping_look(_study(), "default", range(12), _obtain(1.0, asked))
    assert (stop.look, stop.settled, asked) == (2, True, list(range(6)))
    assert "decided at look 2 of 4, with 6 seeds" in stop.results[0].message()


def test_an_undecided_setting_walks_every_look_up_to_the_maximum() -> None:
    asked: list[int] = []
    stop = stopping_look(_study(), "default", range(12), _obtain(0.0, asked))
    assert (stop.look, stop.settled, asked) == (4, False, list(range(12)))
    assert "undecided at the last look of 4, with 12 seeds" in stop.results[0].message()
    partial = stopping_look(_study(), "default", range(12), _obtain(0.0, []), upto=2)
    assert (partial.look, partial.settled) == (2, False)


def test_holm_corrects_the_repeated_p_values_of_the_family() -> None:
    study = _study()
    study.expect("b < a", metric="m", name="mirror")
    runs = _obtain(1.0, [])(range(12))
    first, mirror = decide_setting(study, runs, range(12), "default", look=2)
    alone = sequential.decide_looks([runs["a", s]["m"] for s in range(6)],
                                    [runs["b", s]["m"] for s in range(6)], ">", looks=LOOKS)
    assert first.verdict.p_support == alone.p_support  # the repeated p-value, raw
    assert first.verdict.p_support_adj == pytest.approx(2 * alone.p_support)  # Holm, 2 equal
    assert first.look.fixed == mirror.look.fixed and first.look.fixed >= 2


def test_an_adaptive_setting_is_decided_at_a_look() -> None:
    runs = _obtain(1.0, [])(range(12))
    with pytest.raises(ValueError, match="needs look="):
        decide_setting(_study(), runs, range(12), "default")
    assert decide_setting(_study(), runs, range(12), "default", look=2)[0].verdict.n == 6


# -- the spec -------------------------------------------------------------------------------

@pytest.mark.parametrize(("seeds", "message"), [
    ({"min": 1, "max": 5}, "min=1, but the first look needs at least 2 seeds"),
    ({"min": 4, "max": 4}, "max=4 must exceed min=4; for a fixed number of seeds write seeds=4"),
    ({"min": 3, "max": 9, "batch": 0}, "batch=0 must be at least 1"),
    ({"min": 3}, "takes min, max and batch"),
    ({"min": 3, "max": 9, "step": 2}, "takes min, max and batch"),
    ({"min": 3, "max": 9.5}, "max=9.5 must be a whole number"),
    ({"min": 2, "max": 40}, "gives 39 looks, more than 20"),
])
def test_a_wrong_budget_names_the_file_and_line(seeds: dict, message: str) -> None:
    with pytest.raises(StudyError, match=r"test_adaptive\.py:\d+: .*" + message.replace(
            "(", r"\(").replace(")", r"\)")):
        Study(variants={"a": {}}, seeds=seeds)


def test_the_budget_spans_every_seed_up_to_max_and_tier_seeds_can_have_their_own() -> None:
    study = Study(variants={"a": {}, "b": {}}, seeds=3,
                  tiers={"synthetic": {}, "real": {}},
                  tier_seeds={"real": {"min": 4, "max": 10, "batch": 2}})
    assert study.budget_at("synthetic") is None and study.seeds_at("synthetic") == (0, 1, 2)
    assert study.budget_at("real") == Budget(4, 10, 2)
    assert study.seeds_at("real") == tuple(range(10))
    assert study.fixed_seeds_at("real") == (0, 1, 2, 3)


def test_the_permutation_test_is_refused_where_seeds_are_adaptive() -> None:
    with pytest.raises(StudyError, match=r"test_adaptive\.py:\d+: .*test='permutation'.*"
                                         r"adaptive budget"):
        _study().expect("b < a", metric="m", test="permutation")
    fixed_tier = Study(variants={"a": {}, "b": {}}, seeds=5, tiers={"x": {}, "y": {}},
                       tier_seeds={"y": {"min": 3, "max": 6}})
    fixed_tier.expect("a > b", metric="m", test="permutation", tiers=["x"])


# -- through the plugin ---------------------------------------------------------------------

STUDY = """
import os
import random

from harness import ablation

study = ablation(variants={{"a": {{}}, "b": {{}}}}, seeds={{"min": 3, "max": 9, "batch": 3}},
                 tiers={{"t": {{"effect": {effects}}}}})


@study
def test_adaptive(run):
    with open(os.environ["TRAININGS"], "a") as f:
        f.write(run.id + "\\n")
    shared = random.Random(run.seed).gauss(0, 1)
    own = random.Random(f"{{run.seed}}-{{run.variant}}").gauss(0, 0.01)
    return {{"m": shared + own + (run.config["effect"] if run.variant == "a" else 0.0)}}


study.expect("a > b", metric="m")
"""


@pytest.fixture
def trainings(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    log = pytester.path / "trainings.txt"
    monkeypatch.setenv("TRAININGS", str(log))
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\n")
    return lambda: log.read_text().split() if log.exists() else []


def _runs(pytester: pytest.Pytester) -> list[str]:
    with sqlite3.connect(pytester.path / STORE) as db:
        return sorted(f"t-effect={json.loads(k)['effect']}-{v}-seed{s}" for k, v, s in db.execute(
            "SELECT knobs, variant, seed FROM runs WHERE kind = 'run'"))


def _looks(pytester: pytest.Pytester) -> list[tuple[str, int, int]]:
    with sqlite3.connect(pytester.path / STORE) as db:
        rows = db.execute("SELECT knobs, status, detail FROM verdicts ORDER BY rowid").fetchall()
    return [(json.loads(k)["effect"], status, json.loads(d)["adaptive"]["seeds"])
            for k, status, d in rows]


def test_a_clear_cut_claim_stops_at_the_minimum(pytester: pytest.Pytester, trainings) -> None:
    pytester.makepyfile(test_study=STUDY.format(effects="[1.0]"))
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=6 + 1, skipped=12)
    result.stdout.fnmatch_lines(["*a>b[[]m[]]*SUPPORTED (look 1/3, 3 seeds)*",  # the table
                                 "*not needed: every claim of t-effect=1.0 decided at look 1 "
                                 "(3 seeds)*"])
    assert sorted(trainings()) == sorted(f"t-effect=1.0-{v}-seed{s}" for v in "ab"
                                         for s in range(3))
    assert len(_runs(pytester)) == 6
    assert _looks(pytester) == [(1.0, "supported", 3)]


def test_an_undecided_claim_adds_batches_up_to_the_maximum(pytester: pytest.Pytester,
                                                          trainings) -> None:
    pytester.makepyfile(test_study=STUDY.format(effects="[0.0]"))
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=18, failed=1)
    result.stdout.fnmatch_lines(["*undecided at the last look of 3, with 9 seeds*",
                                 "*a fixed design would need about*"])
    assert len(trainings()) == 18
    assert _looks(pytester) == [(0.0, "inconclusive", 9)]


def test_under_xdist_each_needed_run_is_computed_once_and_the_rest_skipped(
        pytester: pytest.Pytester, trainings) -> None:
    pytester.makepyfile(test_study=STUDY.format(effects="[1.0, 0.0]"))
    result = pytester.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=6 + 18 + 1, failed=1, skipped=12)
    assert sorted(trainings()) == _runs(pytester) and len(trainings()) == 24
    assert sorted(_looks(pytester)) == [(0.0, "inconclusive", 9), (1.0, "supported", 3)]


def test_reuse_takes_the_stored_looks_and_stops_where_the_first_session_did(
        pytester: pytest.Pytester, trainings) -> None:
    pytester.makepyfile(test_study=STUDY.format(effects="[1.0, 0.0]"))
    pytester.runpytest().assert_outcomes(passed=6 + 18 + 1, failed=1, skipped=12)
    first = trainings()
    again = pytester.runpytest("--reuse")
    again.assert_outcomes(passed=6 + 18 + 1, failed=1, skipped=12)
    assert trainings() == first  # nothing trained again
    with sqlite3.connect(pytester.path / STORE) as db:
        sessions = [s for (s,) in db.execute("SELECT DISTINCT session FROM verdicts")]
        rows = {s: sorted(db.execute("SELECT knobs, status, p, detail FROM verdicts WHERE "
                                     "session = ?", (s,)).fetchall()) for s in sessions}
    assert len(sessions) == 2 and rows[sessions[0]] == rows[sessions[1]]


def test_a_yaml_study_declares_a_budget(tmp_path) -> None:
    from harness.core.yamlspec import load_study

    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent("""
        variants: {a: {}, b: {}}
        seeds: {min: 3, max: 9, batch: 3}
        expect: ["a > b"]
        metric: m
    """))
    assert load_study(path).budget == Budget(3, 9, 3)
    path.write_text("variants: {a: {}}\nseeds: {min: 3, max: 9, step: 3}\n")
    with pytest.raises(StudyError, match="unknown key 'step'"):
        load_study(path)


def test_ablation_results_gives_the_first_look(pytester: pytest.Pytester, trainings) -> None:
    control = """

def test_control(ablation_results):
    results = ablation_results(study)
    assert list(results.seeds) == [0, 1, 2]
    assert results.decide("a > b", metric="m").status == "supported"
"""
    pytester.makepyfile(test_study=STUDY.format(effects="[1.0]") + control)
    pytester.runpytest().assert_outcomes(passed=6 + 1 + 1, skipped=12)
    assert len(trainings()) == 6


def test_seed_offset_shifts_every_look(pytester: pytest.Pytester, trainings) -> None:
    pytester.makepyfile(test_study=STUDY.format(effects="[1.0]"))
    result = pytester.runpytest("--seed-offset", "100")
    result.assert_outcomes(passed=6 + 1, skipped=12)
    assert sorted(trainings()) == sorted(f"t-effect=1.0-{v}-seed{s}" for v in "ab"
                                         for s in (100, 101, 102))
