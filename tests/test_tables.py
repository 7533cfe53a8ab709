"""harness.core.tables on records read back from a real store: layout, best marks, notes."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import replace
from typing import Any

import pytest

from harness.core.stages import StageSpec
from harness.core.store import Owner, RunRecord, Store
from harness.core.tables import (
    build_section,
    render_csv,
    render_json,
    render_markdown,
    render_text,
    session_sections,
)
from tests.specs import Spec
from tests.stores import save_verdicts

SESSION = "s1"
OWNER = Owner("host", 1, "main")


def finish(store: Store, spec: Any, metrics: dict[str, float], duration: float = 1.0,
           session: str = SESSION, **recorded: Any) -> RunRecord:
    """Claim and finish a run (or stage) row; `recorded`: its resources, stages, init."""
    _, row = store.claim(session, spec, fingerprint="fp", owner=OWNER, config=dict(spec.config))
    return store.finish(row.id, metrics=metrics, failures=[], duration=duration, device="cpu",
                        versions={}, git_commit=None, **recorded)


@pytest.fixture
def store(tmp_path) -> Store:
    store = Store(tmp_path / "results.sqlite")
    store.begin_session(SESSION, argv=[], meta={})
    for seed in range(3):
        finish(store, Spec(variant="a", seed=seed),
               {"joint/labels/majmin": 0.5 + seed / 100, "joint/labels/seq_err": 0.9,
                "joint/alignment/seg": 0.7})
        finish(store, Spec(variant="b", seed=seed),
               {"joint/labels/majmin": 0.6, "joint/labels/seq_err": 0.8,
                "joint/alignment/seg": 0.6})
    return store


def section(store: Store, **options):
    return build_section("heads", "synthetic-noise_sigma=0.5", store.runs(SESSION), [],
                         **options)


def table(result, title: str):
    return next(t for t in result.tables if t.title == title)


def cell(table, variant: str, column: str):
    row = next(r for r in table.rows if r[0] == variant)
    return row[table.headers.index(column)]


def test_tables_follow_the_studys_order_and_columns(store):
    result = section(store, groups={"labels": ["seq_err", "majmin"], "alignment": ["seg"]})
    assert [t.title for t in result.tables] == ["labels", "alignment"]  # not the stored order
    assert result.tables[0].headers[:4] == ["variant", "head", "seq_err", "majmin"]
    assert [t.title for t in section(store, groups=["alignment"]).tables] == ["alignment"]


def test_the_order_of_tables_survives_the_store(store):
    store.save_study(SESSION, "heads", {"tables": {"labels": ["majmin"], "alignment": ["seg"]}})
    sections = session_sections(store, SESSION, store.study_options(SESSION))
    assert [t.title for t in sections[0].tables] == ["labels", "alignment"]


def test_without_groups_every_group_is_shown(store):
    assert sorted(t.title for t in section(store).tables) == ["alignment", "labels"]


def test_cells_are_mean_and_std_over_seeds(store):
    majmin = cell(table(section(store), "labels"), "a", "majmin")
    assert (majmin.n, majmin.mean) == (3, pytest.approx(0.51))
    assert majmin.std == pytest.approx(0.01)


def test_best_is_the_highest_score_and_the_lowest_error(store):
    labels = table(section(store), "labels")
    assert cell(labels, "b", "majmin").best and not cell(labels, "a", "majmin").best
    assert cell(labels, "b", "seq_err").best and not cell(labels, "a", "seq_err").best
    seg = table(section(store, minimize=("seg",)), "alignment")
    assert cell(seg, "b", "seg").best  # declared lower-is-better by the study


def test_a_column_of_equal_values_marks_no_best(store):
    finish(store, Spec(variant="c"), {"data/unmapped_share": 0.1})
    finish(store, Spec(variant="d"), {"data/unmapped_share": 0.1})
    data = table(section(store), "data")
    assert not cell(data, "c", "unmapped_share").best
    assert not cell(data, "d", "unmapped_share").best


def test_failed_runs_and_malformed_samples_are_noted(store):
    _, row = store.claim(SESSION, Spec(variant="c"), fingerprint="fp", owner=OWNER, config={})
    store.fail(row.id, error="Traceback ...\nValueError: bad shape", duration=0.1)
    _, row = store.claim(SESSION, Spec(variant="d"), fingerprint="fp", owner=OWNER, config={})
    store.finish(row.id, metrics={"joint/labels/majmin": 0.4},
                 failures=[{"sample": "joint:song-3", "error": "intervals overlap"}],
                 duration=1.0, device="cpu", versions={}, git_commit=None)
    notes = section(store).notes
    assert "run c-seed0 FAILED: ValueError: bad shape" in notes
    assert "malformed sample in d-seed0: joint:song-3: intervals overlap" in notes


def test_session_sections_show_verdicts_and_tiers_side_by_side(store):
    verdict = {"study": "heads", "knobs": {"noise_sigma": 0.5}, "hypothesis": "b >= a",
               "metric": "joint/labels/majmin", "status": "supported", "diff": 0.09,
               "ci_lo": 0.08, "ci_hi": 0.1, "p": 0.001, "p_adj": 0.002, "test": "t", "n": 3,
               "message": "m"}
    save_verdicts(store, SESSION, [{**verdict, "tier": "synthetic"},
                                  {**verdict, "tier": "real", "knobs": {},
                                   "status": "inconclusive"}])
    sections = session_sections(store, SESSION)
    assert [s.setting for s in sections] == ["synthetic-noise_sigma=0.5", "real",
                                             "verdicts by tier"]
    comparison = sections[-1].tables[0]
    assert comparison.headers == ["hypothesis", "synthetic", "real"]
    assert comparison.rows == [["b >= a", "noise_sigma=0.5: SUPPORTED", "INCONCLUSIVE"]]
    text = render_text(sections)
    assert "SUPPORTED" in text and "[0.080, 0.100]" in text


def test_renderers_agree_on_the_numbers(store):
    sections = [section(store)]
    assert "**0.600 ± 0.000**" in render_markdown(sections)  # the best majmin, bold
    rows = list(csv.DictReader(io.StringIO(render_csv(sections))))
    assert {(r["variant"], r["metric"]) for r in rows} >= {("a", "majmin"), ("b", "seg")}
    data = json.loads(render_json(sections))
    means = {(r["variant"], r["metric"]): r["mean"] for r in data[0]["summary"]}
    assert means["a", "majmin"] == pytest.approx(0.51)


def strict_json(text: str):
    """Parse JSON as the standard defines it: NaN and Infinity are not JSON."""
    def refuse(token: str):
        raise ValueError(f"{token} is not valid JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def non_finite(tmp_path) -> Store:
    """Five seeds of "a", "b" and "c"; a has one NaN seed on majmin, b two infinite losses."""
    store = Store(tmp_path / "results.sqlite")
    for seed in range(5):
        finish(store, Spec(variant="a", seed=seed),
               {"majmin": math.nan if seed == 2 else 0.9, "loss": 0.1 + seed / 100})
        finish(store, Spec(variant="b", seed=seed),
               {"majmin": 0.5, "loss": math.inf if seed < 2 else 0.3})
        finish(store, Spec(variant="c", seed=seed), {"majmin": 0.7 + seed / 100, "loss": 0.2})
    return store


def test_a_non_finite_seed_shows_in_its_cell_and_is_never_best(non_finite):
    metrics = table(section(non_finite), "metrics")
    nan, inf = cell(metrics, "a", "majmin"), cell(metrics, "b", "loss")
    assert (nan.text(), inf.text()) == ("nan (1 of 5)", "inf (2 of 5)")
    assert math.isnan(nan.mean) and inf.mean == math.inf  # not the mean of the finite seeds
    assert not nan.best and cell(metrics, "c", "majmin").best  # a's 0.9 seeds don't count
    assert cell(metrics, "a", "loss").best and not inf.best
    first, *others = [r for r in non_finite.runs(SESSION) if r.variant == "a"][:4]
    mixed = [first, *(replace(r, metrics={"majmin": v})
                      for r, v in zip(others, [math.inf, -math.inf, math.nan], strict=True))]
    assert cell(build_section("heads", "s", mixed, []).tables[0], "a", "majmin").text() == (
        "nan (1 of 4), inf (1 of 4), -inf (1 of 4)")


def test_every_format_renders_non_finite_cells(non_finite):
    sections = session_sections(non_finite, SESSION)
    assert "nan (1 of 5)" in render_text(sections) and "inf (2 of 5)" in render_markdown(sections)
    summary = list(csv.DictReader(io.StringIO(render_csv(sections))))
    row = next(r for r in summary if (r["variant"], r["metric"]) == ("a", "majmin"))
    assert (row["mean"], row["std"], row["n"]) == ("nan", "nan", "5")
    values = list(csv.DictReader(io.StringIO(render_csv(sections, "runs"))))
    assert [r["value"] for r in values if (r["variant"], r["metric"]) == ("b", "loss")] == [
        "inf", "inf", "0.3", "0.3", "0.3"]
    [data] = strict_json(render_json(sections))
    row = next(r for r in data["summary"] if (r["variant"], r["metric"]) == ("b", "loss"))
    assert (row["mean"], row["std"], row["n"]) == (None, None, 5)
    assert row["non_finite_seeds"] == {"inf": 2}
    assert row["non_finite"] == {"mean": "inf", "std": "nan"}
    [value] = [r for r in data["runs"] if (r["variant"], r["seed"], r["metric"]) == ("a", 2,
                                                                                    "majmin")]
    assert (value["value"], value["non_finite"]) == (None, {"value": "nan"})


VERDICT = {"study": "heads", "tier": "synthetic", "knobs": {"noise_sigma": 0.5},
           "hypothesis": "b >= a", "metric": "joint/labels/majmin", "status": "supported",
           "diff": 0.09, "ci_lo": 0.08, "ci_hi": 0.1, "p": 0.001, "p_adj": 0.002, "test": "t",
           "n": 3, "message": "m"}


def test_verdicts_without_statistics_or_with_infinite_ones_render(store):
    save_verdicts(store, SESSION, [
        {**VERDICT, **dict.fromkeys(("metric", "status", "diff", "ci_lo", "ci_hi", "p",
                                     "p_adj", "test", "n", "message"))},
        {**VERDICT, "hypothesis": "b > a", "ci_lo": -math.inf, "ci_hi": math.inf},
        {**VERDICT, "hypothesis": "b >= a", "tier": "real", "knobs": {}, "status": None}])
    sections = session_sections(store, SESSION)
    assert "[-inf, inf]" in render_text(sections)
    assert "| b >= a " in render_markdown(sections)
    rows = list(csv.DictReader(io.StringIO(render_csv(sections, "verdicts"))))
    assert [(r["setting"], r["hypothesis"], r["status"], r["ci_hi"]) for r in rows] == [
        ("synthetic-noise_sigma=0.5", "b >= a", "", ""),
        ("synthetic-noise_sigma=0.5", "b > a", "supported", "inf"),
        ("real", "b >= a", "", "0.1")]
    data = strict_json(render_json(sections))
    infinite = data[0]["verdicts"][1]
    assert (infinite["ci_lo"], infinite["ci_hi"]) == (None, None)
    assert infinite["non_finite"] == {"ci_lo": "-inf", "ci_hi": "inf"}
    assert data[-1]["tables"][0]["rows"] == [["b >= a", "noise_sigma=0.5: -", "-"],
                                             ["b > a", "noise_sigma=0.5: SUPPORTED", "not run"]]


def test_runs_table_has_one_row_per_run_and_metric(store):
    _, row = store.claim(SESSION, Spec(variant="c"), fingerprint="fp9", owner=OWNER, config={})
    store.fail(row.id, error="Traceback ...\nValueError: bad shape", duration=0.1)
    rows = list(csv.DictReader(io.StringIO(render_csv([section(store)], "runs"))))
    assert len(rows) == 2 * 3 * 3 + 1
    first = rows[0]
    assert {k: first[k] for k in ("tier", "knobs", "variant", "seed", "metric", "value",
                                  "status", "source", "fingerprint")} == {
        "tier": "synthetic", "knobs": '{"noise_sigma": 0.5}', "variant": "a", "seed": "0",
        "metric": "joint/alignment/seg", "value": "0.7", "status": "done", "source": "run",
        "fingerprint": "fp"}
    assert {k: rows[-1][k] for k in ("variant", "metric", "value", "status", "error")} == {
        "variant": "c", "metric": "", "value": "", "status": "failed",
        "error": "ValueError: bad shape"}


def retrained(store: Store, spec: Spec, why: str) -> None:
    _, row = store.claim(SESSION, spec, fingerprint="fp", owner=OWNER, config={}, note=why)
    store.finish(row.id, metrics={"acc": spec.seed / 10 + len(spec.variant)}, failures=[],
                 duration=1.0, device="cpu", versions={}, git_commit=None)


def test_reasons_to_retrain_are_one_note_each(tmp_path):
    store = Store(tmp_path / "results.sqlite")
    for variant in ("base", "better"):
        for seed in (0, 1, 2, 3):
            retrained(store, Spec(variant=variant, seed=seed),
                      f"helpers/train.py changed since run #{12 + seed} of session S")
    retrained(store, Spec(variant="other", seed=0), "config key lr changed (0.1 -> 0.2) "
                                                     "since run #3 of session R")
    assert section(store).notes == [
        "retrained 8 runs (base-seed0..3, better-seed0..3): helpers/train.py changed since "
        "runs #12..15 of session S",
        "retrained 1 run (other-seed0): config key lr changed (0.1 -> 0.2) since run #3 of "
        "session R"]


def test_a_variant_whose_seeds_change_nothing_is_noted(store):
    notes = section(store).notes
    assert notes == ["variant b gives identical metrics on every seed: are the seeds used "
                     "(run.seed must seed init and data)?"]  # a's majmin moves with the seed


# -- resources -----------------------------------------------------------------------------------


def test_resource_columns_appear_only_when_some_run_recorded_them(store):
    labels = table(section(store), "labels")  # rows without resources (older stores)
    assert labels.headers[-3:] == ["n", "wall s", "device"]
    finish(store, Spec(variant="c"), {"joint/labels/majmin": 0.1}, duration=2.0,
           resources={"wall_s": 9.0, "peak_rss_mb": 300.4, "steps": 10, "steps_per_s": 5.0})
    finish(store, Spec(variant="c", seed=1), {"joint/labels/majmin": 0.1}, duration=4.0,
           resources={"wall_s": 9.0, "peak_rss_mb": 700.6, "steps": None, "steps_per_s": None,
                      "cuda_peak_mb": {"cuda:0": 100.0, "cuda:1": 900.0}})
    labels = table(section(store), "labels")
    assert labels.headers[-6:] == ["n", "wall s", "peak MB", "steps/s", "CUDA MB", "device"]
    row = next(r for r in labels.rows if r[0] == "c")
    # own time (not the meter's wall_s, which holds the stages computed inside): mean over
    # seeds; peaks: max over seeds (CUDA: over devices too); steps/s: mean of those recorded
    assert row[-5:] == ["3.0", "701", "5.0", "900", "cpu"]
    assert next(r for r in labels.rows if r[0] == "a")[-5:] == ["1.0", "-", "-", "-", "cpu"]


def test_long_formats_carry_the_resources(store):
    finish(store, Spec(variant="c"), {"acc": 0.1}, duration=2.0,
           resources={"peak_rss_mb": 300.0, "steps": 10, "steps_per_s": 5.0,
                      "cuda_peak_mb": {"cuda:0": 100.0}})
    sections = [section(store)]
    [run] = [r for r in csv.DictReader(io.StringIO(render_csv(sections, "runs")))
             if r["variant"] == "c"]
    assert (run["duration"], run["peak_rss_mb"], run["steps"], run["cuda_peak_mb"]) == (
        "2.0", "300.0", "10", '{"cuda:0": 100.0}')
    [data] = strict_json(render_json(sections))
    assert next(r for r in data["runs"] if r["variant"] == "c")["steps_per_s"] == 5.0
    summary = next(r for r in data["summary"] if r["variant"] == "c")
    assert {k: summary[k] for k in ("wall_s_mean", "peak_rss_mb_max", "steps_per_s_mean",
                                    "cuda_peak_mb_max")} == {
        "wall_s_mean": 2.0, "peak_rss_mb_max": 300.0, "steps_per_s_mean": 5.0,
        "cuda_peak_mb_max": 100.0}
    assert "peak_rss_mb_max" not in render_csv(sections)  # the summary's columns, as before


# -- stages --------------------------------------------------------------------------------------

TEMPERATURES = (0.7, 1.0, 1.2)


def stage(store: Store, name: str, seed: int, depends: dict, duration: float,
          **recorded: Any) -> RunRecord:
    spec = StageSpec("heads", "synthetic", name, seed, depends)
    return finish(store, spec, {}, duration=duration, **recorded)


def used(stage_row: RunRecord, computed: bool) -> dict:
    return {"name": stage_row.variant, "id": f"{stage_row.variant}-synthetic-seed"
            f"{stage_row.seed}-3fa9c2d1", "row": stage_row.id, "computed": computed,
            "duration": stage_row.duration}


@pytest.fixture
def staged(tmp_path) -> Store:
    """A temperature sweep whose runs share a trained model per (variant, seed) (30 s each)
    and only evaluate (0.5 s each); temperature 0.7 also uses a stage of its own."""
    store = Store(tmp_path / "results.sqlite")
    for variant in ("combined", "ctc_only"):
        for seed in range(2):
            train = stage(store, "train", seed, {"train": [variant]}, 30.0,
                          resources={"wall_s": 30.0, "peak_rss_mb": 900.0})
            for t in TEMPERATURES:
                uses = [used(train, t == 0.7)]
                if t == 0.7:
                    uses.append(used(stage(store, "calibrate", seed, {"train": [variant],
                                                                      "temperature": t}, 2.0),
                                     True))
                finish(store, Spec(variant=variant, seed=seed, knobs=(("temperature", t),)),
                       {"acc": 0.5 + seed / 10}, duration=0.5, stages=uses)
    return store


def test_a_shared_stage_shows_its_time_once_in_the_studys_stages(staged):
    sections = session_sections(staged, SESSION)
    assert [s.setting for s in sections] == [
        "synthetic-temperature=0.7", "synthetic-temperature=1.0", "synthetic-temperature=1.2",
        "synthetic · across temperature", "stages"]
    shared = sections[-1]
    [stages] = shared.tables
    assert stages.headers == ["stage", "seeds", "wall s", "total s", "peak MB", "source",
                              "used by"]
    assert stages.rows == [
        ["train-synthetic-3fa9c2d1", "0,1", "30.0", "60.0", "900", "computed",
         "6 runs of combined in 3 settings"],
        ["train-synthetic-3fa9c2d1", "0,1", "30.0", "60.0", "900", "computed",
         "6 runs of ctc_only in 3 settings"]]
    assert shared.footer == ["compute: runs 6.0 s + stages 128.0 s = 134.0 s"]
    # the runs show their own time, not the stage's (nor 0 s)
    assert cell_text(table(sections[1], "metrics"), "combined", "wall s") == "0.5"
    assert all(t.title != "stages" for s in sections[1:3] for t in s.tables)


def cell_text(table, variant: str, column: str) -> str:
    row = next(r for r in table.rows if r[0] == variant)
    return row[table.headers.index(column)]


def test_a_stage_used_in_one_setting_shows_in_that_setting(staged):
    sections = session_sections(staged, SESSION)
    calibrate = table(sections[0], "stages")
    assert [row[0] for row in calibrate.rows] == ["calibrate-synthetic-3fa9c2d1"] * 2
    assert calibrate.rows[0][2:] == ["2.0", "4.0", "-", "computed", "2 runs of combined"]
    assert "calibrate" not in render_text(sections[-1:])
    text = render_text(sections)
    assert text.count("train-synthetic-3fa9c2d1") == 2  # once per variant, in one place


def test_stage_rows_in_the_long_formats(staged):
    sections = session_sections(staged, SESSION)
    rows = list(csv.DictReader(io.StringIO(render_csv(sections, "stages"))))
    assert len(rows) == 4 + 4  # train: 2 variants x 2 seeds; calibrate: the same
    train = next(r for r in rows if r["stage"] == "train")
    assert (train["seed"], train["duration"], train["used_by"], train["source"]) == (
        "0", "30.0", "3", "run")
    assert json.loads(train["settings"]) == [f"synthetic-temperature={t}" for t in TEMPERATURES]
    data = strict_json(render_json(sections))
    assert data[-1]["footer"] == ["compute: runs 6.0 s + stages 128.0 s = 134.0 s"]
    assert len(data[-1]["stages"]) == 4


def test_stages_reused_from_the_store_are_not_counted(tmp_path):
    store = Store(tmp_path / "results.sqlite")
    train = stage(store, "train", 0, {"train": ["ctc"]}, 30.0)
    adopted = store.adopt("s2", train, OWNER)
    for t in TEMPERATURES:
        finish(store, Spec(knobs=(("temperature", t),)), {"acc": 0.5}, duration=0.5,
               session="s2", stages=[used(adopted, False)])
    [shared] = [s for s in session_sections(store, "s2") if s.setting == "stages"]
    assert shared.tables[0].rows[0][5] == "reused"
    assert shared.footer == ["compute: runs 1.5 s + stages 0.0 s = 1.5 s (not counted, reused "
                             "from the store: 0 runs, 1 stage)"]


def test_a_stage_without_runs_and_runs_of_older_sessions_stages_render(tmp_path):
    store = Store(tmp_path / "results.sqlite")
    stage(store, "train", 0, {"train": ["ctc"]}, 30.0)  # its run failed: it recorded no use
    finish(store, Spec(), {"acc": 0.5}, stages=[{"name": "train", "id": "train-x", "row": 999,
                                                 "computed": False, "duration": 3.0}])
    shared = session_sections(store, SESSION)[-1]
    assert shared.tables[0].rows == [["train-synthetic", "0", "30.0", "30.0", "-", "computed",
                                      "no run"]]


# -- knob claims ----------------------------------------------------------------------------------

CLAIM = {"study": "heads", "tier": "synthetic", "knobs": {"noise_sigma": 0.5}, "metric": "acc",
         "ci_lo": None, "ci_hi": None, "test": "t", "n": 3, "message": "m"}
TREND = {**CLAIM, "hypothesis": "combined:increases_with(temperature)[acc]", "kind": "trend",
         "status": "supported", "diff": 0.9, "p": 0.004, "p_adj": 0.008, "test": "page",
         "detail": {"knob": "temperature", "variant": "combined",
                    "claim": "acc increases with temperature", "levels": ["0.7", "1.0", "1.2"],
                    "means": [0.71, 0.75, 0.8], "rho": 0.9, "slope": 0.045}}
BEST = {**CLAIM, "hypothesis": "combined:best(temperature)[acc]", "kind": "best",
        "status": "undecided", "diff": None, "p": None, "p_adj": None,
        "detail": {"knob": "temperature", "variant": "combined", "claim": "best temperature",
                   "levels": ["0.7", "1.0", "1.2"], "means": [0.71, 0.8, 0.8],
                   "winner": None, "candidates": ["1.0", "1.2"], "expect": None}}
COMPARE = {**CLAIM, "hypothesis": "combined:temperature=1.2>temperature=0.7[acc]",
           "kind": "compare", "status": "supported", "diff": 0.09, "ci_lo": 0.05,
           "ci_hi": 0.13, "p": 0.001, "p_adj": 0.002, "mean_a": 0.8, "mean_b": 0.71,
           "detail": {"knob": "temperature", "variant": "combined",
                      "claim": "temperature=1.2 > temperature=0.7",
                      "levels": ["0.7", "1.0", "1.2"]}}


def test_knob_claims_render_across_their_knob(store):
    save_verdicts(store, SESSION, [TREND, BEST, COMPARE])
    sections = session_sections(store, SESSION)
    claims = next(s for s in sections if s.setting == "synthetic · across temperature")
    assert claims.tables == []  # one setting: nothing to pivot
    text = render_text([claims])
    assert "claims on acc across temperature (noise_sigma=0.5)" in text
    lines = {line.split()[1]: line for line in text.splitlines()
             if line.startswith("combined ")}
    assert "0.7: 0.710 · 1.0: 0.750 · 1.2: 0.800" in lines["acc"]
    assert "rho +0.90, slope +0.045" in lines["acc"] and lines["acc"].endswith("SUPPORTED")
    assert "candidates 1.0, 1.2" in lines["best"] and lines["best"].endswith("UNDECIDED")
    assert "1.2: 0.800 · 0.7: 0.710" in lines["temperature=1.2"]
    assert "diff 0.090 [0.050, 0.130]" in lines["temperature=1.2"]
    # not among the setting's hypotheses, though (tier, knobs) are that setting's
    assert "hypotheses" not in render_text(sections[:1])


def test_a_knob_claim_group_without_runs_renders_everywhere(tmp_path):
    store = Store(tmp_path / "results.sqlite")
    store.begin_session(SESSION, argv=[], meta={})
    odd = {**TREND, "status": "error", "p": None, "p_adj": None, "diff": None,
           "detail": {"knob": "temperature"}, "knobs": {}}
    nan = {**TREND, "hypothesis": "ctc_only:increases_with(temperature)[acc]",
           "detail": {**TREND["detail"], "rho": math.nan, "means": [math.nan, 0.1, 0.2]}}
    best = {**BEST, "status": "decided", "detail": {**BEST["detail"], "winner": "1.0",
                                                    "expect": "1.0"}}
    save_verdicts(store, SESSION, [odd, nan, best])
    sections = session_sections(store, SESSION)
    assert [s.setting for s in sections] == ["synthetic · across temperature"]
    text = render_text(sections) + render_markdown(sections)
    assert "ERROR" in text and "rho nan" in text and "winner 1.0 (expected 1.0)" in text
    [data] = strict_json(render_json(sections))
    assert data["verdicts"][1]["non_finite"] == {"detail.rho": "nan", "detail.means.0": "nan"}
    rows = list(csv.DictReader(io.StringIO(render_csv(sections, "verdicts"))))
    assert [(r["setting"], r["kind"]) for r in rows] == [
        ("synthetic", "trend"), ("synthetic-noise_sigma=0.5", "trend"),
        ("synthetic-noise_sigma=0.5", "best")]
    assert json.loads(rows[2]["detail"])["winner"] == "1.0"


# -- initial states --------------------------------------------------------------------------------


def test_variants_of_a_seed_that_did_not_start_from_the_same_init_are_noted(tmp_path):
    store = Store(tmp_path / "results.sqlite")
    same, other = {"ctc.w": "1", "ar.embed.weight": "2"}, {"ctc.w": "1", "ar.embed.weight": "3"}
    for seed in range(3):
        finish(store, Spec(variant="combined", seed=seed), {"acc": seed}, init=same)
        finish(store, Spec(variant="ctc_only", seed=seed), {"acc": seed},
               init=other if seed < 2 else same)
        finish(store, Spec(variant="old", seed=seed), {"acc": seed})  # recorded none
    assert section(store).notes == [
        "seeds 0,1: not the same initial model: ctc_only differs from combined: "
        "ar.embed.weight"]


def test_a_stage_used_by_a_stage_names_it(tmp_path):
    store = Store(tmp_path / "results.sqlite")
    data = stage(store, "data", 0, {}, 5.0)
    train = stage(store, "train", 0, {"lr": 0.1}, 30.0, stages=[used(data, True)])
    finish(store, Spec(), {"acc": 0.5}, stages=[used(train, True)])
    shared = session_sections(store, SESSION)[-1]
    assert [row[0] for row in shared.tables[0].rows] == ["data-synthetic-3fa9c2d1"]
    assert shared.tables[0].rows[0][-1] == "1 stage train"
    assert table(session_sections(store, SESSION)[0], "stages").rows[0][-1] == "1 run of combined"
    assert shared.footer == ["compute: runs 1.0 s + stages 35.0 s = 36.0 s"]


def test_a_count_equal_on_every_seed_reads_as_an_integer():
    from harness.core.tables import _cell

    assert _cell([1466.0, 1466.0, 1466.0]).text() == "1466"
    assert _cell([1.0, 1.0]).text() == "1.000 ± 0.000"  # a saturated accuracy is no count
    assert _cell([0.5, 0.5]).text() == "0.500 ± 0.000"
    assert _cell([3.0, 4.0]).text() == "3.500 ± 0.707"
