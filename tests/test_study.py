"""Unit tests of the plain core: Study expansion and validation, verdicts per setting, metrics.

Every declaration error must name the file and line of the declaration. Declarations under
test are written as one-line lambdas, so that the expected line is the lambda's first line.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from harness import RunSpec, Study, StudyError, ablation
from harness.core.metrics import MetricsError, flatten
from harness.core.stats import decide, holm
from harness.core.study import Hypothesis, format_value, parse_hypothesis, setting_id
from harness.core.verdicts import decide_setting

HEADS = {"ctc_only": {"train": ["ctc"]}, "combined": {"train": ["ctc", "ar"]}}


def declaration_error(declare: Callable[[], object]) -> str:
    """Call `declare`, expect a StudyError that names this file and the declaring line."""
    with pytest.raises(StudyError) as excinfo:
        declare()
    message = str(excinfo.value)
    where = f"{__file__}:{declare.__code__.co_firstlineno}"
    assert where in message, f"{where!r} not in {message!r}"
    return message


def two_variants(**options: object) -> Study:
    return Study(variants={"a": {}, "b": {}}, seeds=3, **options)


# -- expansion and ids ---------------------------------------------------------------------


def test_run_id_names_tier_knobs_variant_and_seed():
    heads = Study(variants=HEADS, seeds=3, tiers={"synthetic": {"noise_sigma": [0.5, 1.0]}})
    ids = [spec.id for spec in heads.runs()]
    assert ids[:4] == ["synthetic-noise_sigma=0.5-ctc_only-seed0",
                       "synthetic-noise_sigma=0.5-ctc_only-seed1",
                       "synthetic-noise_sigma=0.5-ctc_only-seed2",
                       "synthetic-noise_sigma=0.5-combined-seed0"]
    assert "synthetic-noise_sigma=0.5-combined-seed1" in ids


def test_runs_are_ordered_tier_setting_variant_seed():
    study = Study(variants={"a": {}, "b": {}}, seeds=2,
                  tiers={"synthetic": {"k": [1, 2]}, "real": {"dataset": ["x"]}})
    order = [(s.tier, s.knobs, s.variant, s.seed) for s in study.runs()]
    assert order == [
        ("synthetic", (("k", 1),), "a", 0), ("synthetic", (("k", 1),), "a", 1),
        ("synthetic", (("k", 1),), "b", 0), ("synthetic", (("k", 1),), "b", 1),
        ("synthetic", (("k", 2),), "a", 0), ("synthetic", (("k", 2),), "a", 1),
        ("synthetic", (("k", 2),), "b", 0), ("synthetic", (("k", 2),), "b", 1),
        ("real", (("dataset", "x"),), "a", 0), ("real", (("dataset", "x"),), "a", 1),
        ("real", (("dataset", "x"),), "b", 0), ("real", (("dataset", "x"),), "b", 1),
    ]


def test_runs_can_be_filtered_by_tier_setting_and_variant():
    study = Study(variants={"a": {}, "b": {}}, seeds=2,
                  tiers={"synthetic": {"k": [1, 2]}, "real": {"dataset": ["x"]}})
    runs = study.runs("synthetic", (("k", 2),), ["b"])
    assert [s.id for s in runs] == ["synthetic-k=2-b-seed0", "synthetic-k=2-b-seed1"]


def test_without_tiers_there_is_one_default_setting():
    study = two_variants()
    assert list(study.settings()) == [("default", ())]
    assert study.runs()[0].id == "default-a-seed0"


def test_knobs_expand_to_their_cartesian_product_in_declaration_order():
    study = Study(variants={"a": {}}, seeds=1,
                  tiers={"synthetic": {"lr": [0.1, 1e-05], "frozen": [True, False]}})
    settings = list(study.settings())
    assert settings == [
        ("synthetic", (("lr", 0.1), ("frozen", True))),
        ("synthetic", (("lr", 0.1), ("frozen", False))),
        ("synthetic", (("lr", 1e-05), ("frozen", True))),
        ("synthetic", (("lr", 1e-05), ("frozen", False))),
    ]
    assert [setting_id(*s) for s in settings] == [
        "synthetic-lr=0.1-frozen=true", "synthetic-lr=0.1-frozen=false",
        "synthetic-lr=1e-05-frozen=true", "synthetic-lr=1e-05-frozen=false"]


def test_format_value():
    assert [format_value(v) for v in (0.5, 1e-05, True, "billboard", 3)] == [
        "0.5", "1e-05", "true", "billboard", "3"]


def test_config_merges_base_then_variant_then_knobs():
    base = {"model": {"dim": 8, "heads": ["ctc"]}, "lr": 0.1, "steps": 100}
    study = Study(variants={"plain": {}, "joint": {"model": {"heads": ["ctc", "ar"]}}},
                  seeds=1, base=base, tiers={"synthetic": {"lr": [0.01]}})
    plain, joint = study.runs()
    assert plain.config == {"model": {"dim": 8, "heads": ["ctc"]}, "lr": 0.01, "steps": 100}
    assert joint.config == {"model": {"dim": 8, "heads": ["ctc", "ar"]}, "lr": 0.01,
                            "steps": 100}
    assert base == {"model": {"dim": 8, "heads": ["ctc"]}, "lr": 0.1, "steps": 100}


def test_merged_configs_do_not_share_mutable_state():
    study = Study(variants={"a": {"opt": {"betas": [0.9]}}}, seeds=2, base={"opt": {"eps": 1}})
    first, second = study.runs()
    first.config["opt"]["betas"].append(0.99)
    assert second.config["opt"] == {"eps": 1, "betas": [0.9]}
    assert study.variants["a"] == {"opt": {"betas": [0.9]}}


def test_seeds_as_a_count():
    assert two_variants().seeds == (0, 1, 2)


def test_seeds_as_a_list():
    study = Study(variants={"a": {}}, seeds=[3, 7, 11])
    assert study.seeds == (3, 7, 11)
    assert [s.id for s in study.runs()] == ["default-a-seed3", "default-a-seed7",
                                           "default-a-seed11"]


def test_seed_offset_shifts_every_seed():
    study = Study(variants={"a": {}}, seeds=[0, 5])
    assert [s.seed for s in study.runs(seed_offset=100)] == [100, 105]
    assert study.runs(seed_offset=100)[0].id == "default-a-seed100"


def test_run_spec_key_and_setting():
    spec = Study(variants={"a": {}}, seeds=1, name="heads",
                 tiers={"synthetic": {"noise": [0.5]}}).runs()[0]
    assert isinstance(spec, RunSpec)
    assert spec.setting == ("synthetic", (("noise", 0.5),))
    assert spec.key == '["heads", "synthetic", [["noise", 0.5]], "a", 0]'


def test_ablation_takes_tiers_in_tiers():
    study = ablation(variants={"a": {}, "b": {}}, seeds=2, name="s", base={"x": 1},
                     tiers={"synthetic": {"noise": [0.1, 0.2]}, "real": {"dataset": ["billboard"]}})
    assert study.tiers == {"synthetic": {"noise": [0.1, 0.2]}, "real": {"dataset": ["billboard"]}}
    assert study.name == "s"
    assert study.base == {"x": 1}
    assert len(study.runs()) == 3 * 2 * 2


def test_a_tier_may_bear_an_option_name():
    # tiers live in their own dict, so a tier called "base" is a tier, never the base config
    study = ablation(variants={"a": {}}, seeds=1, base={"x": 1},
                     tiers={"base": {"k": [1]}, "tables": {"k": [2]}})
    assert list(study.tiers) == ["base", "tables"]
    assert study.base == {"x": 1}
    assert [s.config for s in study.runs()] == [{"x": 1, "k": 1}, {"x": 1, "k": 2}]


@pytest.mark.parametrize("options, hint", [
    ({"reall": {"dataset": ["x"]}}, "write tiers={'reall': {'dataset': ['x']}}"),
    ({"seed": 3}, "did you mean seeds=?"),
    ({"minimise": ["loss"]}, "did you mean minimize=?"),
    ({"synthetic": {"noise": [0.5]}}, "tiers={'synthetic': {'noise': [0.5]}}"),
    ({"colour": "red"}, "the options are variants, seeds, tiers"),
])
def test_error_unknown_option(options, hint):
    message = declaration_error(lambda: ablation(variants={"a": {}}, **options))
    assert f"ablation() has no option {next(iter(options))!r}" in message
    assert hint in message


def test_decorating_names_the_study_after_the_function():
    study = two_variants()

    @study
    def test_heads(run):
        return {"acc": 1.0}

    assert study.name == "test_heads"
    assert study.runs()[0].study == "test_heads"
    assert test_heads.__ablation_study__ is study


# -- hypotheses ------------------------------------------------------------------------------


@pytest.mark.parametrize("op", [">", ">=", "<", "<=", "=="])
def test_parse_hypothesis_operators(op):
    hyp = parse_hypothesis(f"  combined {op}ctc_only ", metric="acc")
    assert (hyp.a, hyp.op, hyp.b) == ("combined", op, "ctc_only")
    assert hyp.text == f"combined {op} ctc_only"


def test_parse_hypothesis_accepts_dotted_and_dashed_variant_names():
    hyp = parse_hypothesis("v1.2-big>v1.1_small", metric="acc")
    assert (hyp.a, hyp.b) == ("v1.2-big", "v1.1_small")


def test_hypothesis_label():
    heads = Study(variants=HEADS, seeds=3)
    hyp = heads.expect("combined >= ctc_only", metric="joint/labels/majmin", margin=0.01)
    assert hyp.label == "combined>=ctc_only[joint/labels/majmin]"
    assert (hyp.margin, hyp.alpha, hyp.test) == (0.01, 0.05, "t")
    named = heads.expect("combined > ctc_only", metric="acc", name="joint_helps")
    assert named.label == "joint_helps"
    assert heads.hypotheses == [hyp, named]


def test_declarations_record_where_they_were_made():
    declare_study = lambda: two_variants()  # noqa: E731
    study = declare_study()
    declare_hypothesis = lambda: study.expect("a > b", metric="acc")  # noqa: E731
    hyp = declare_hypothesis()
    assert hyp.where == f"{__file__}:{declare_hypothesis.__code__.co_firstlineno}"
    declare_ablation = lambda: ablation(variants={"a": {}})  # noqa: E731
    assert declare_ablation().where == f"{__file__}:{declare_ablation.__code__.co_firstlineno}"


def test_hypothesis_variants_are_those_the_hypotheses_use():
    study = Study(variants={"a": {}, "b": {}, "c": {}, "d": {}}, seeds=2)
    study.expect("c > a", metric="acc")
    assert study.hypothesis_variants() == ["a", "c"]


# -- declaration errors name the file and line -------------------------------------------------


def test_error_unknown_variant_in_hypothesis():
    study = two_variants()
    message = declaration_error(lambda: study.expect("a > zzz", metric="acc"))
    assert "unknown variant 'zzz'" in message
    assert "a, b" in message


@pytest.mark.parametrize("expr", ["a >> b", "a b", "> b", "a > b > a", "a => b", ""])
def test_error_malformed_hypothesis(expr):
    study = two_variants()
    message = declaration_error(lambda: study.expect(expr, metric="acc"))
    assert "malformed hypothesis" in message
    assert repr(expr) in message


def test_error_hypothesis_compares_a_variant_with_itself():
    study = two_variants()
    assert "with itself" in declaration_error(lambda: study.expect("a > a", metric="acc"))


def test_error_empty_variants():
    message = declaration_error(lambda: Study(variants={}, seeds=2))
    assert "variants must be a non-empty dict" in message


@pytest.mark.parametrize("seeds", [0, -1])
def test_error_fewer_than_one_seed(seeds):
    message = declaration_error(lambda: Study(variants={"a": {}}, seeds=seeds))
    assert f"seeds={seeds}" in message


def test_error_empty_seed_list():
    assert "seeds must be" in declaration_error(lambda: Study(variants={"a": {}}, seeds=[]))


def test_error_duplicate_seeds():
    message = declaration_error(lambda: Study(variants={"a": {}}, seeds=[1, 2, 1]))
    assert "duplicate seeds in [1, 2, 1]" in message


def test_error_duplicate_hypothesis():
    study = two_variants()
    study.expect("a > b", metric="acc")
    message = declaration_error(lambda: study.expect("a > b", metric="acc", margin=0.1))
    assert "duplicate hypothesis 'a>b[acc]'" in message


def test_error_duplicate_hypothesis_name():
    study = two_variants()
    study.expect("a > b", metric="acc", name="claim")
    message = declaration_error(lambda: study.expect("b > a", metric="f1", name="claim"))
    assert "duplicate hypothesis 'claim'" in message


def test_error_knob_is_not_a_list():
    message = declaration_error(lambda: ablation(variants={"a": {}}, tiers={"s": {"noise": 0.5}}))
    assert "knob 'noise' must be a non-empty list" in message
    assert "[0.5]" in message


def test_error_duplicate_knob_values():
    message = declaration_error(lambda: ablation(variants={"a": {}}, tiers={"s": {"k": [1, 2, 1]}}))
    assert "knob 'k' has duplicate values" in message


@pytest.mark.parametrize("op, strict", [(">=", ">"), ("<=", "<")])
def test_error_non_inferiority_without_a_margin(op, strict):
    study = two_variants()
    message = declaration_error(lambda: study.expect(f"a {op} b", metric="acc"))
    assert "non-inferiority within a margin" in message
    assert "give margin > 0" in message and f"'a {strict} b'" in message


def test_identity_is_equivalence_with_margin_zero():
    assert two_variants().expect("a == b", metric="acc").margin == 0.0


@pytest.mark.parametrize("margin", [float("nan"), float("inf")])
def test_error_margin_not_finite(margin):
    study = two_variants()
    message = declaration_error(lambda: study.expect("a > b", metric="acc", margin=margin))
    assert "must be a finite number >= 0" in message


def test_error_negative_margin():
    study = two_variants()
    assert ">= 0" in declaration_error(lambda: study.expect("a > b", metric="acc", margin=-1))


def test_error_unknown_test():
    study = two_variants()
    message = declaration_error(lambda: study.expect("a > b", metric="acc", test="wilcoxon"))
    assert "unknown test 'wilcoxon'" in message
    assert "t, permutation" in message


@pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5, 0.5, 0.7])
def test_error_alpha_out_of_range(alpha):
    # outside (0, 1) is no level at all; from 0.5 on, the paired tests cannot decide
    study = two_variants()
    message = declaration_error(lambda: study.expect("a > b", metric="acc", alpha=alpha))
    assert f"alpha={alpha} must lie in (0, " in message


def test_error_variant_overrides_a_knob():
    message = declaration_error(lambda: ablation(variants={"a": {"lr": 1}},
                                                 tiers={"synthetic": {"lr": [2]}}))
    assert "variant 'a' sets ['lr']" in message
    assert "tier 'synthetic'" in message


def test_error_unknown_correction():
    message = declaration_error(lambda: Study(variants={"a": {}}, correction="fdr"))
    assert "unknown correction 'fdr'" in message


def test_error_decorating_twice_names_the_study_declaration():
    declare = lambda: Study(variants={"a": {}})  # noqa: E731
    study = declare()
    study(lambda: {"acc": 1.0})
    with pytest.raises(StudyError, match="this study already decorates") as excinfo:
        study(lambda: {"acc": 2.0})
    assert f"{__file__}:{declare.__code__.co_firstlineno}:" in str(excinfo.value)


# -- verdicts of one setting -------------------------------------------------------------------


def metrics_by_seed(**per_variant: list[dict]) -> dict[tuple[str, int], dict | str]:
    """{variant: [metrics of seed 0, of seed 1, ...]} -> the runs mapping decide_setting reads."""
    return {(variant, seed): metrics
            for variant, per_seed in per_variant.items() for seed, metrics in enumerate(per_seed)}


def test_decide_setting_supports_a_planted_effect():
    study = two_variants()
    study.expect("a > b", metric="acc")
    runs = metrics_by_seed(a=[{"acc": 0.9}, {"acc": 0.8}, {"acc": 0.85}],
                           b=[{"acc": 0.5}, {"acc": 0.45}, {"acc": 0.55}])
    [result] = decide_setting(study, runs)
    assert result.passed
    assert result.status == "supported"
    row = result.row("s", "synthetic", (("noise", 0.1),))
    assert row.as_dict()["setting"] == "synthetic-noise=0.1"
    assert (row.hypothesis, row.kind, row.claim, row.n) == ("a>b[acc]", "hypothesis", "a > b", 3)


def test_decide_setting_missing_metric_lists_the_available_ones():
    study = two_variants()
    study.expect("a > b", metric="f1")
    runs = metrics_by_seed(a=[{"acc": 0.9, "loss": 0.1}] * 3, b=[{"acc": 0.5, "loss": 0.2}] * 3)
    [result] = decide_setting(study, runs)
    assert not result.passed
    assert result.status == "error"
    assert result.verdict is None
    assert "unknown metric 'f1'" in result.message()
    assert "its metrics are: acc, loss" in result.message()


def test_decide_setting_nan_fails_with_its_cause_and_never_passes():
    study = two_variants()
    study.expect("a > b", metric="acc")
    runs = metrics_by_seed(a=[{"acc": 0.9}, {"acc": math.nan}, {"acc": 0.95}],
                           b=[{"acc": 0.1}, {"acc": 0.1}, {"acc": 0.1}])
    [result] = decide_setting(study, runs)
    assert not result.passed
    assert result.status == "error"
    assert "metric 'acc' is NaN for a-seed1" in result.message()
    assert result.row("s", "default", ()).p is None


def test_decide_setting_missing_run_names_the_run():
    study = two_variants()
    study.expect("a > b", metric="acc")
    runs = metrics_by_seed(a=[{"acc": 0.9}] * 3, b=[{"acc": 0.1}] * 2)
    [result] = decide_setting(study, runs)
    assert not result.passed
    assert "run b-seed2 has no metrics: the run was not obtained" in result.message()


def test_decide_setting_failed_run_names_the_run_and_its_failure():
    study = two_variants()
    study.expect("a > b", metric="acc")
    runs = metrics_by_seed(a=[{"acc": 0.9}] * 3, b=[{"acc": 0.1}] * 3)
    runs[("a", 1)] = "the run raised RuntimeError: boom"
    [result] = decide_setting(study, runs)
    assert not result.passed
    assert "run a-seed1 has no metrics: the run raised RuntimeError: boom" in result.message()


def test_decide_setting_pairs_the_given_seeds():
    study = two_variants()
    study.expect("a > b", metric="acc")
    runs = {(v, s): {"acc": (1.0 if v == "a" else 0.0) + (s - 10) / 100 * (v == "a")}
            for v in "ab" for s in (10, 11, 12)}
    [result] = decide_setting(study, runs, seeds=[10, 11, 12])
    assert result.passed
    assert result.verdict.n == 3 and result.verdict.diff == pytest.approx(1.01)


# Two claims each supported alone (raw p 0.045 and 0.038) but not after Holm (0.077 each).
D1 = [0.3, 0.1, 0.5, -0.1, 0.4]
D2 = [0.2, 0.45, -0.05, 0.35, 0.1]


def holm_family(correction: str = "holm") -> Study:
    study = Study(variants={"a": {}, "c": {}, "b": {}}, seeds=5, correction=correction)
    study.expect("a > b", metric="acc")
    study.expect("c > b", metric="acc")
    return study


def holm_runs() -> dict[tuple[str, int], dict]:
    return metrics_by_seed(a=[{"acc": d} for d in D1], c=[{"acc": d} for d in D2],
                           b=[{"acc": 0.0}] * 5)


def test_decide_setting_applies_holm_across_the_settings_hypotheses():
    raw = [decide(D1, [0.0] * 5, ">").p_support, decide(D2, [0.0] * 5, ">").p_support]
    assert all(p < 0.05 for p in raw)
    results = decide_setting(holm_family(), holm_runs())
    assert [r.verdict.p_support for r in results] == pytest.approx(raw)
    assert [r.verdict.p_support_adj for r in results] == pytest.approx(list(holm(raw)))
    assert [r.status for r in results] == ["inconclusive", "inconclusive"]
    assert all(r.verdict.correction == "holm" for r in results)


def test_decide_setting_without_correction_keeps_raw_p():
    results = decide_setting(holm_family("none"), holm_runs())
    assert [r.status for r in results] == ["supported", "supported"]
    assert all(r.verdict.p_support_adj == r.verdict.p_support for r in results)


def test_undecidable_hypothesis_leaves_the_family():
    study = holm_family()
    study.expect("a > c", metric="missing")
    results = decide_setting(study, holm_runs())
    assert [r.status for r in results] == ["inconclusive", "inconclusive", "error"]
    raw = [r.verdict.p_support for r in results[:2]]
    assert [r.verdict.p_support_adj for r in results[:2]] == pytest.approx(list(holm(raw)))


def test_hypothesis_is_plain_data():
    hyp = Hypothesis(a="a", op=">", b="b", metric="acc")
    assert hyp.label == "a>b[acc]"
    assert hyp.where == ""


# -- metrics.flatten ---------------------------------------------------------------------------


def test_flatten_joins_nested_keys():
    assert flatten({"ctc": {"labels": {"majmin": 0.8}}, "loss": 1}) == {
        "ctc/labels/majmin": 0.8, "loss": 1.0}


def test_flatten_none():
    with pytest.raises(MetricsError, match="returned None: a study's test body must return"):
        flatten(None)


@pytest.mark.parametrize("value, kind", [([0.5], "list"), (0.5, "float"), ("acc", "str")])
def test_flatten_not_a_dict(value, kind):
    with pytest.raises(MetricsError, match=f"returned {kind}, not a dict of metrics"):
        flatten(value, origin="test_x[default-a-seed0]")


def test_flatten_empty_dict():
    with pytest.raises(MetricsError, match="returned an empty dict: no metrics to record"):
        flatten({})
    with pytest.raises(MetricsError, match="empty dict"):
        flatten({"head": {}})


@pytest.mark.parametrize("value", ["0.5", None, True, [0.5]])
def test_flatten_non_number(value):
    with pytest.raises(MetricsError, match=r"metric 'head/acc' is .*metrics must be numbers"):
        flatten({"head": {"acc": value}})


@pytest.mark.parametrize("key", ["a/b", "", 3])
def test_flatten_bad_key(key):
    with pytest.raises(MetricsError, match="must be a non-empty string without '/'"):
        flatten({key: 1.0})


def test_flatten_error_names_its_origin():
    with pytest.raises(MetricsError, match=r"^test_x\[default-a-seed0\] returned None"):
        flatten(None, origin="test_x[default-a-seed0]")


def test_tier_config_is_merged_between_base_and_variant() -> None:
    study = Study(variants={"a": {"train": {"lr": 0.1}}, "b": {}}, seeds=1,
                  tiers={"synthetic": {}, "real": {}},
                  base={"train": {"steps": 10, "lr": 0.01}},
                  tier_config={"real": {"train": {"steps": 600}}})
    configs = {(s.tier, s.variant): s.config for s in study.runs()}
    assert configs[("synthetic", "b")] == {"train": {"steps": 10, "lr": 0.01}}
    assert configs[("real", "b")] == {"train": {"steps": 600, "lr": 0.01}}
    assert configs[("real", "a")] == {"train": {"steps": 600, "lr": 0.1}}


def test_tier_config_for_an_unknown_tier_is_an_error() -> None:
    with pytest.raises(StudyError, match=r"tier_config names tiers \['rael'\]"):
        Study(variants={"a": {}}, tiers={"real": {}}, tier_config={"rael": {}})


# -- guards against a baseline -----------------------------------------------------------------


def test_guard_direction_follows_minimize_and_names_its_items():
    study = Study(variants={"a": {}, "b": {}}, seeds=3, minimize=["wer"])
    acc, wer = study.guard("acc", margin=0.01), study.guard("head/wer", margin=0.02)
    loss = study.guard("train/loss", margin=0.0, variants=["b"])
    assert (acc.minimize, wer.minimize, loss.minimize) == (False, True, True)
    assert acc.label("a") == "a>=baseline[acc]" and wer.label("b") == "b<=baseline[head/wer]"
    assert (acc.covers(["a", "b"]), loss.covers(["a", "b"])) == (["a", "b"], ["b"])
    assert study.guards == [acc, wer, loss]


@pytest.mark.parametrize("options, message", [
    ({"margin": -0.1}, "margin=-0.1 must be a finite number >= 0"),
    ({"margin": float("inf")}, "must be a finite number >= 0"),
    ({"margin": 0.1, "variants": ["c"]}, "names unknown variants ['c']"),
    ({"margin": 0.1, "test": "wilcoxon"}, "unknown test 'wilcoxon'"),
    ({"margin": 0.1, "alpha": 0.5}, "alpha=0.5 must lie in (0, 0.5)"),
])
def test_error_guard_declaration(options, message):
    study = two_variants()
    assert message in declaration_error(lambda: study.guard("acc", **options))


def test_error_guard_declared_twice():
    study = two_variants()
    study.guard("acc", margin=0.1)
    assert "declared twice" in declaration_error(lambda: study.guard("acc", margin=0.2))
