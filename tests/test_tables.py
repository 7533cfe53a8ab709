"""harness.core.tables on records read back from a real store: layout, best marks, notes."""

from __future__ import annotations

import csv
import io
import json

import pytest

from harness.core.store import Owner, Store
from harness.core.tables import (
    build_section,
    render_csv,
    render_json,
    render_markdown,
    render_text,
    session_sections,
)
from tests.specs import Spec

SESSION = "s1"
OWNER = Owner("host", 1, "main")


def finish(store: Store, spec: Spec, metrics: dict[str, float], duration: float = 1.0) -> None:
    _, row = store.claim(SESSION, spec, fingerprint="fp", owner=OWNER, config={})
    store.finish(row.id, metrics=metrics, failures=[], duration=duration, device="cpu",
                 versions={}, git_commit=None)


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
    store.save_verdicts(SESSION, [{**verdict, "tier": "synthetic"},
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
