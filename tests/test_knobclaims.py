"""Claims across knob values (compare, trend, best) and one-at-a-time sweeps, in real sessions."""

from __future__ import annotations

import sqlite3

import pytest

import harness.core.verdicts  # noqa: F401  (numpy and scipy load before pytester snapshots)
from harness.core.study import StudyError, ablation, sweep

# acc rises with frac by `slope` and falls with temperature; each run has its own noise, so
# the paired differences vary (a constant difference would have no noise estimate)
STUDY = """
import numpy as np
from harness import ablation, sweep

SLOPE = {slope}
study = ablation(variants={{"lm": {{}}, "big": {{"size": 2.0}}}}, seeds=6,
                 tiers={{"synthetic": {{"frac": [0.25, 0.5, 1.0], "temperature": [0.5, 1.0]}}}})
{claims}

@study
def test_lm(run):
    k = run.knobs
    shared = np.random.default_rng(run.seed).normal(0, 0.05)
    own = np.random.default_rng([run.seed, int(100 * k["frac"]), int(10 * k["temperature"]),
                                 int(run.config.get("size", 1.0))]).normal(0, 0.01)
    return {{"acc": 0.5 + shared + own + SLOPE * k["frac"] - 0.1 * k["temperature"]}}
"""


def verdicts(pytester: pytest.Pytester) -> dict[str, list[str]]:
    db = sqlite3.connect(pytester.path / ".ablation" / "results.sqlite")
    found: dict[str, list[str]] = {}
    for label, status in db.execute("SELECT hypothesis, status FROM verdicts ORDER BY rowid"):
        found.setdefault(label, []).append(status)
    db.close()
    return found


def test_trend_best_and_comparisons_are_items_per_group_decided_right(
        pytester: pytest.Pytester) -> None:
    claims = """
study.trend("frac", metric="acc")
study.trend("temperature", metric="acc", direction="decreases", variants=["lm"])
study.best("temperature", metric="acc", expect=0.5)
study.best("frac", metric="acc")
study.expect("temperature=0.5 > temperature=1.0", metric="acc", variants=["big"])
"""
    pytester.makepyfile(test_lm=STUDY.format(slope=0.1, claims=claims))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "-q")
    # runs 2 variants x 6 settings x 6 seeds; claims: frac trend/best 2 groups x 2 variants x
    # 2 claims, temperature trend (lm) + best (2 variants) + compare (big) x 3 groups
    result.assert_outcomes(passed=72 + 8 + 12)
    found = verdicts(pytester)
    assert found["lm:increases_with(frac)[acc]"] == ["supported"] * 2
    assert found["lm:decreases_with(temperature)[acc]"] == ["supported"] * 3
    assert found["big:best(temperature)[acc]"] == ["supported"] * 3
    assert found["lm:best(frac)[acc]"] == ["decided"] * 2
    assert found["big:temperature=0.5>temperature=1.0[acc]"] == ["supported"] * 3
    names = pytester.runpytest("--co", "-q", "-p", "no:cacheprovider").stdout.lines
    assert "test_lm.py::test_lm[synthetic-temperature=0.5-frac=*]::lm:increases_with(frac)[acc]" \
        in names
    assert "test_lm.py::test_lm[synthetic-frac=0.25-temperature=*]::big:best(temperature)[acc]" \
        in names


def test_a_trend_that_goes_the_other_way_is_contradicted_and_fails(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_lm=STUDY.format(slope=-0.1, claims='study.trend("frac", '
                                             'metric="acc", variants=["lm"])'))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=72, failed=2)
    result.stdout.fnmatch_lines(["*CONTRADICTED*"])
    assert verdicts(pytester)["lm:increases_with(frac)[acc]"] == ["contradicted"] * 2


def test_a_flat_knob_leaves_best_undecided_and_the_item_reports_the_candidates(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_lm=STUDY.format(slope=0.0, claims='study.best("frac", '
                                             'metric="acc", variants=["lm"])'))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-rA")
    result.assert_outcomes(passed=74)  # an open question passes with its answer
    assert set(verdicts(pytester)["lm:best(frac)[acc]"]) <= {"undecided", "decided"}


def test_a_knob_claim_declaration_is_masked_so_reuse_keeps_the_runs(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_lm=STUDY.format(slope=0.1, claims=""))
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=72)
    pytester.makepyfile(test_lm=STUDY.format(slope=0.1, claims='study.trend("frac", '
                                             'metric="acc")'))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--reuse")
    result.assert_outcomes(passed=76)
    db = sqlite3.connect(pytester.path / ".ablation" / "results.sqlite")
    sources = db.execute("SELECT source, count(*) FROM runs WHERE session = (SELECT max(session) "
                         "FROM runs) GROUP BY source").fetchall()
    assert sources == [("store", 72)]


def test_a_sweep_varies_one_knob_at_a_time_around_its_base() -> None:
    study = ablation(variants={"a": {}}, seeds=2,
                     tiers={"t": sweep({"lr": [0.01, 0.001], "drop": [0.0, 0.3]},
                                       base={"lr": 0.001, "drop": 0.1, "width": 8})})
    ids = [spec.id for spec in study.runs() if spec.seed == 0]
    assert ids == ["t-lr=0.001-drop=0.1-width=8-a-seed0", "t-lr=0.01-drop=0.1-width=8-a-seed0",
                   "t-lr=0.001-drop=0.0-width=8-a-seed0", "t-lr=0.001-drop=0.3-width=8-a-seed0"]
    trend = study.trend("lr", metric="acc")
    [(tier, rest, members)] = study.knob_groups(trend)
    assert (tier, rest) == ("t", (("drop", 0.1), ("width", 8)))
    assert [dict(m)["lr"] for m in members] == [0.001, 0.01]  # numeric order
    # a knob the sweep does not vary has one value: no group can decide a claim on it
    assert study.knob_groups(study.best("width", metric="acc")) == []


@pytest.mark.parametrize(("declare", "message"), [
    (lambda s: s.expect("temperature=0.3 > temperature=1.0", metric="acc"),
     r"temperature=0.3 is not a value of knob 'temperature' \(its values: 0.5, 1.0\)"),
    (lambda s: s.expect("temperature=0.5 > frac=1.0", metric="acc"), "compares two knobs"),
    (lambda s: s.trend("temprature", metric="acc"), "no tier has a knob 'temprature'"),
    (lambda s: s.trend("frac", metric="acc", direction="up"), "direction='up'"),
    (lambda s: s.best("frac", metric="acc", expect=0.3), r"expect=0.3 is not one of"),
    (lambda s: s.best("frac", metric="acc", variants=["nope"]), "variants= names"),
    (lambda s: s.expect("lm > big", metric="acc", variants=["lm"]), "variants= is for claims"),
])
def test_a_wrong_knob_claim_is_refused_at_its_line(declare, message) -> None:
    study = ablation(variants={"lm": {}, "big": {}}, seeds=3,
                     tiers={"synthetic": {"frac": [0.25, 1.0], "temperature": [0.5, 1.0]}})
    with pytest.raises(StudyError, match=message) as raised:
        declare(study)
    assert "test_knobclaims.py:" in str(raised.value)


def test_a_sweep_needs_a_base_value_for_every_swept_knob() -> None:
    with pytest.raises(StudyError, match=r"varies \['lr'\] but base= gives them no value"):
        ablation(variants={"a": {}}, tiers={"t": sweep({"lr": [0.1]}, base={"drop": 0.1})})


def test_a_knob_named_like_a_path_sets_a_nested_config_key() -> None:
    study = ablation(variants={"deep": {"model": {"depth": 2}}}, seeds=1,
                     base={"model": {"width": 4, "depth": 1}, "lr": 0.1},
                     tiers={"t": {"model/width": [8, 16]}})
    configs = [spec.config for spec in study.runs()]
    assert configs == [{"model": {"width": 8, "depth": 2}, "lr": 0.1},
                       {"model": {"width": 16, "depth": 2}, "lr": 0.1}]
    with pytest.raises(StudyError, match="knob 'lr/x': config key 'lr' is not a dict"):
        ablation(variants={"a": {}}, base={"lr": 0.1}, tiers={"t": {"lr/x": [1]}}).runs()


TIERED = """
import random
from harness import ablation

study = ablation(variants={"a": {"gain": 0.0}, "b": {"gain": 0.1}}, seeds=6,
                 tiers={"synthetic": {"level": [0, 1]}, "real": {"level": [0, 1]}})
study.expect("b > a", metric="m", tiers=["synthetic"])   # true by construction there only
study.expect("b >= a", metric="m", margin=0.5)           # everywhere
study.trend("level", metric="m", tiers=["synthetic"])

@study
def test_tiered(run):
    own = random.Random(f"{run.seed}-{run.knobs['level']}-{run.variant}").gauss(0, 0.005)
    return {"m": run.config["gain"] + 0.01 * run.seed + 0.2 * run.knobs["level"] + own}
"""


def test_a_claim_limited_to_a_tier_has_items_there_only(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_tiered=TIERED)
    names = pytester.runpytest("--co", "-q", "-p", "no:cacheprovider").stdout.lines
    claims = sorted(n.split("::", 1)[1] for n in names if n.count("::") == 2)
    assert claims == sorted([
        "test_tiered[real-level=0]::b>=a[m]", "test_tiered[real-level=1]::b>=a[m]",
        "test_tiered[synthetic-level=0]::b>=a[m]", "test_tiered[synthetic-level=0]::b>a[m]",
        "test_tiered[synthetic-level=1]::b>=a[m]", "test_tiered[synthetic-level=1]::b>a[m]",
        "test_tiered[synthetic-level=*]::a:increases_with(level)[m]",
        "test_tiered[synthetic-level=*]::b:increases_with(level)[m]"])
    result = pytester.runpytest("-p", "no:cacheprovider", "--real", "-q")
    result.assert_outcomes(passed=48 + 8)
    with pytest.raises(StudyError, match="tiers= names"):
        ablation(variants={"a": {}, "b": {}}, tiers={"t": {}}).expect("a > b", metric="m",
                                                                       tiers=["real"])


def test_a_tier_can_have_its_own_seeds(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_seeds="""
from harness import ablation

study = ablation(variants={"a": {}, "b": {"gain": 1.0}}, seeds=2, tier_seeds={"real": 5},
                 tiers={"synthetic": {}, "real": {}})
study.expect("b > a", metric="m")

@study
def test_seeds(run):
    own = (run.seed * 37 + (3 if run.variant == "b" else 0)) % 7
    return {"m": run.config.get("gain", 0.0) + own / 100}
""")
    result = pytester.runpytest("-p", "no:cacheprovider", "--real", "-q", "-rA")
    result.assert_outcomes(passed=4 + 10 + 1, failed=1)  # 2 synthetic seeds cannot decide
    db = __import__("sqlite3").connect(pytester.path / ".ablation" / "results.sqlite")
    assert db.execute("SELECT hypothesis, tier, n, status FROM verdicts ORDER BY tier").fetchall() \
        == [("b>a[m]", "real", 5, "supported"), ("b>a[m]", "synthetic", 2, "inconclusive")]
    with pytest.raises(StudyError, match=r"tier_seeds names tiers \['rael'\]"):
        ablation(variants={"a": {}}, tier_seeds={"rael": 5}, tiers={"real": {}})
