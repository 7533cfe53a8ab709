"""harness.core.pivot (how settings line up) and the pivot tables built from a real store."""

from __future__ import annotations

import pytest

from harness.core.pivot import Grid, arrange, pivot_metrics
from harness.core.store import Owner, Store
from harness.core.study import RunSpec, Sweep
from harness.core.tables import render_markdown, render_text, session_sections

SESSION = "s1"
OWNER = Owner("host", 1, "main")


def grid(**knobs: list) -> list[tuple]:
    """Settings of a full grid, the first knob the outer loop (as a study expands them)."""
    settings: list[tuple] = [()]
    for name, values in knobs.items():
        settings = [(*s, (name, v)) for s in settings for v in values]
    return settings


def test_a_full_grid_of_two_knobs_pivots_with_the_outer_loop_as_rows():
    # stored knobs come back in name order: the run order still tells the outer loop
    settings = [tuple(sorted(s)) for s in grid(embedder=["bow", "tfidf", "bert"],
                                              classifier=["lr", "svm"], noise=[0.5])]
    found = arrange(settings)
    assert isinstance(found, Grid)
    assert (found.rows, found.cols) == ("embedder", "classifier")
    assert found.row_values == ("bow", "tfidf", "bert")  # not sorted: they are not numbers
    assert dict(found.settings[2, 1]) == {"classifier": "svm", "embedder": "bert",
                                          "noise": 0.5}


def test_numeric_values_are_ascending():
    found = arrange(grid(lr=[0.1, 0.001, 0.01], depth=[3, 1]))
    assert (found.row_values, found.col_values) == ((0.001, 0.01, 0.1), (1, 3))


def test_a_one_at_a_time_sweep_gives_a_line_per_knob_around_the_base():
    sweep = Sweep({"lr": [1e-4, 1e-2], "dropout": [0.0, 0.3]}, base={"lr": 1e-3, "dropout": 0.1})
    lines = arrange([tuple(sorted(s)) for s in sweep.settings()])
    assert [(line.knob, line.values, line.fixed) for line in lines] == [
        ("lr", (1e-4, 1e-3, 1e-2), (("dropout", 0.1),)),
        ("dropout", (0.0, 0.1, 0.3), (("lr", 1e-3),))]
    assert [dict(s)["lr"] for s in lines[0].settings] == [1e-4, 1e-3, 1e-2]


def test_one_varied_knob_is_one_line():
    [line] = arrange(grid(temperature=[0.7, 1.2, 1.0], beam=[1]))
    assert (line.knob, line.values, line.fixed) == ("temperature", (0.7, 1.0, 1.2),
                                                    (("beam", 1),))


@pytest.mark.parametrize("settings", [
    grid(a=[1, 2], b=[1, 2], c=[1, 2]),  # three knobs in a grid
    [*grid(a=[1, 2, 3], b=[1, 2])[:-1], (("a", 9), ("b", 9))],  # neither grid nor lines
    grid(a=[1], b=[2]),  # one setting: nothing varies
    [(("a", 1),), (("b", 1),)],  # settings with different knobs
])
def test_settings_that_form_neither_are_not_pivoted(settings):
    assert arrange(settings) is None


def test_a_grid_with_a_hole_is_not_a_grid():
    settings = grid(a=[1, 2, 3], b=[1, 2, 3])
    assert arrange([s for s in settings if s != (("a", 3), ("b", 3))]) is None


def test_unhashable_knob_values_line_up_too():
    [line] = arrange([(("layers", [64, 64]),), (("layers", [128]),)])
    assert line.values == ([64, 64], [128])


def test_pivot_metrics():
    paths = ["joint/labels/root", "joint/labels/majmin", "ctc/labels/majmin",
             "joint/alignment/seg", "data/unmapped_share"]
    assert pivot_metrics(paths, ["ctc/labels/majmin", "gone"]) == ["ctc/labels/majmin"]
    assert pivot_metrics(paths[:4]) == paths[:4]  # few: all of them
    assert pivot_metrics(paths) == ["joint/labels/root", "joint/alignment/seg",
                                    "data/unmapped_share"]  # each group's first
    assert pivot_metrics(paths, [], {"alignment": ["seg"], "labels": ["majmin", "root"]}) == [
        "joint/alignment/seg", "joint/labels/majmin"]  # the study's tables and columns


# -- pivot tables from a store ----------------------------------------------------------------


def finish(store: Store, spec: RunSpec, metrics: dict[str, float]) -> None:
    _, row = store.claim(SESSION, spec, fingerprint="fp", owner=OWNER, config={})
    store.finish(row.id, metrics=metrics, failures=[], duration=1.0, device="cpu", versions={},
                 git_commit=None)


EMBEDDERS, CLASSIFIERS = ("bow", "tfidf", "bert"), ("lr", "svm", "knn")


@pytest.fixture
def grid_store(tmp_path) -> Store:
    """A 3 x 3 embedder x classifier grid, variants raw and norm, 2 seeds; acc is highest for
    bert + knn, loss lowest for bert."""
    store = Store(tmp_path / "results.sqlite")
    for e, embedder in enumerate(EMBEDDERS):
        for c, classifier in enumerate(CLASSIFIERS):
            for variant in ("raw", "norm"):
                for seed in range(2):
                    knobs = (("embedder", embedder), ("classifier", classifier))
                    finish(store, RunSpec("grid", "synthetic", knobs, variant, seed, {}),
                           {"acc": 0.5 + e / 10 + c / 100 + (variant == "norm") / 50 + seed / 1000,
                            "loss": 1.0 - e / 10, "extra": 1.0, "more": 2.0, "most": 3.0})
    return store


def across(sections, study: str = "grid"):
    return next(s for s in sections if s.study == study and " · " in s.setting)


def test_a_grid_prints_one_knob_by_knob_table_per_variant_and_metric(grid_store):
    sections = session_sections(grid_store, SESSION, {"grid": {"pivot": ["acc", "loss"]}})
    section = across(sections)
    assert section.setting == "synthetic · embedder x classifier"
    assert [t.title for t in section.tables] == ["acc · raw", "acc · norm", "loss · raw",
                                                 "loss · norm"]
    acc = section.tables[1]
    assert acc.headers == ["embedder \\ classifier", "lr", "svm", "knn"]
    assert [row[0] for row in acc.rows] == ["bow", "tfidf", "bert"]
    assert acc.rows[1][2].mean == pytest.approx(0.5 + 0.1 + 0.01 + 0.02 + 0.0005)
    best = [(row[0], acc.headers[j]) for row in acc.rows for j, c in enumerate(row) if
            j and c.best]
    assert best == [("bert", "knn")]  # one best cell in the grid
    loss = section.tables[2]
    assert [row[0] for row in loss.rows if all(c.best for c in row[1:])] == ["bert"]
    assert sections.index(section) == 9  # after the study's nine settings


def test_a_grid_reads_as_a_table_in_text_and_markdown(grid_store):
    sections = session_sections(grid_store, SESSION, {"grid": {"pivot": ["acc"]}})
    text = render_text([across(sections)])
    assert "embedder \\ classifier" in text
    assert any(line.startswith("bert ") and line.rstrip().endswith("*")
               for line in text.splitlines())
    assert "| bert " in render_markdown([across(sections)])
    assert "**0.740 ± 0.001**" in render_markdown([across(sections)])


def test_without_a_pivot_option_many_metrics_pivot_each_groups_first(grid_store):
    section = across(session_sections(grid_store, SESSION))
    assert [t.title for t in section.tables] == ["acc · raw", "acc · norm"]  # 5 metrics, 1 group


@pytest.fixture
def sweep_store(tmp_path) -> Store:
    """Temperature swept around base 1.0 with beam fixed at 1, and beam 4 at the base
    temperature; combined beats ctc_only and peaks at temperature 1.0."""
    store = Store(tmp_path / "results.sqlite")
    sweep = Sweep({"temperature": [0.7, 1.2], "beam": [4]}, base={"temperature": 1.0, "beam": 1})
    for knobs in sweep.settings():
        for variant in ("combined", "ctc_only"):
            for seed in range(3):
                t = dict(knobs)["temperature"]
                finish(store, RunSpec("sweep", "synthetic", knobs, variant, seed, {}),
                       {"acc": 0.8 - abs(t - 1.0) / 10 + (variant == "combined") / 50
                        + seed / 100 - (dict(knobs)["beam"] == 4) / 100})
    return store


def test_a_sweep_prints_a_variant_by_value_table_per_knob(sweep_store):
    section = across(session_sections(sweep_store, SESSION), "sweep")
    assert section.setting == "synthetic · across temperature, beam"
    temperature, beam = section.tables
    assert temperature.title == "acc across temperature (beam=1)"
    assert temperature.headers == ["variant \\ temperature", "0.7", "1.0", "1.2"]
    assert beam.title == "acc across beam (temperature=1.0)"
    assert [row[0] for row in temperature.rows] == ["combined", "ctc_only"]
    # each variant's best value is marked (here 1.0 for both)
    assert [[c.best for c in row[1:]] for row in temperature.rows] == [[False, True, False]] * 2
    assert temperature.rows[0][1].mean == pytest.approx(0.8 - 0.03 + 0.02 + 0.01)


def test_a_failed_or_missing_cell_shows_as_a_dash(sweep_store):
    _, row = sweep_store.claim(SESSION, RunSpec("sweep", "synthetic", (("temperature", 0.7),
                                                                        ("beam", 1)), "other", 0,
                                                {}), fingerprint="fp", owner=OWNER, config={})
    sweep_store.fail(row.id, error="boom", duration=0.1)
    section = across(session_sections(sweep_store, SESSION), "sweep")
    other = section.tables[0].rows[-1]
    assert other == ["other", None, None, None]
    assert "other                    -" in render_text([section])
