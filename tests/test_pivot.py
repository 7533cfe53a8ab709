"""harness.core.pivot: how a tier's settings line up (grid, one-at-a-time lines)."""

from __future__ import annotations

import pytest

from harness.core.pivot import Grid, arrange, pivot_metrics
from harness.core.study import Sweep


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
