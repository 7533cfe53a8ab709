"""The report's figures, one function at a time: what each draws (axes, series, labels, scales)
from numbers whose picture is known."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from matplotlib.colors import to_hex
from scipy import stats

from harness.core import figures
from harness.core.figures import Band, Curve, Interval, Pairing


def _texts(figure) -> list[str]:
    """Every text the figure shows: titles, labels, tick labels, legend entries, annotations."""
    found = [t.get_text() for t in figure.findobj(lambda a: hasattr(a, "get_text"))]
    return [t for t in found if t]


def test_mean_ci_is_the_t_interval_and_a_point_for_one_seed() -> None:
    values = [0.61, 0.64, 0.58, 0.66, 0.6]
    mean, lo, hi = figures.mean_ci(values)
    want = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert mean == pytest.approx(np.mean(values))
    assert (lo, hi) == pytest.approx(want)
    assert figures.mean_ci([0.5]) == (0.5, 0.5, 0.5)


@pytest.mark.parametrize(("op", "margin", "edges"), [
    (">=", 0.01, [-0.01]), (">", 0.01, [0.01]), ("<=", 0.02, [0.02]), ("<", 0.02, [-0.02]),
    ("==", 0.05, [-0.05, 0.05])])
def test_the_boundary_is_where_the_margin_puts_it(op, margin, edges) -> None:
    assert figures.boundaries(op, margin) == edges


def test_verdict_plot_has_a_row_per_claim_coloured_by_its_verdict() -> None:
    claims = [Interval("combined >= ctc_only", "joint/majmin", ">=", 0.01, "supported",
                       0.08, 0.07, 0.09),
              Interval("ar_only > ctc_only", "joint/majmin", ">", 0.0, "contradicted",
                       -0.2, -0.25, -0.15),
              Interval("a == b", "loss", "==", 0.05, "inconclusive", 0.01, -0.08, 0.1,
                       "look 3/3, 9 seeds"),
              Interval("c > d", "loss", ">", 0.0, "error", None, None, None)]
    figure = figures.verdict_plot(claims, "hypotheses")
    axes = figure.axes
    assert len(axes) == 4
    for ax, claim in zip(axes, claims, strict=True):
        assert [t.get_text() for t in ax.get_yticklabels()] == [f"{claim.label}\n{claim.metric}"]
        status = [t for t in ax.texts if claim.status in t.get_text()]
        assert status and to_hex(status[0].get_color()) == figures.VERDICT_COLOURS[claim.status]
    # the decided claims: one errorbar spanning the CI, and the margin's boundary drawn dashed
    first = axes[0]
    [bar] = first.containers
    segments = bar.lines[2][0].get_segments()
    assert segments[0][:, 0] == pytest.approx([0.07, 0.09])
    dashed = [line.get_xdata()[0] for line in first.lines if line.get_linestyle() == "--"]
    assert dashed == [pytest.approx(-0.01)]
    assert "look 3/3, 9 seeds" in [t.get_text() for t in axes[2].texts]  # an adaptive budget's
    equivalence = [line.get_xdata()[0] for line in axes[2].lines if line.get_linestyle() == "--"]
    assert sorted(equivalence) == pytest.approx([-0.05, 0.05])
    assert "not decided" in " ".join(_texts(axes[3].figure))


def test_paired_plot_draws_one_line_per_seed_and_the_means() -> None:
    pairing = Pairing("combined >= ctc_only", "majmin", "combined", "ctc_only", ">=", 0.01,
                      {0: (0.9, 0.8), 1: (0.92, 0.85), 2: (0.8, 0.82)})
    figure = figures.paired_plot([pairing, pairing], "paired seeds")
    ax = figure.axes[0]
    assert len(ax.lines) == 3 + 1  # a line per seed, and the means
    assert [t.get_text() for t in ax.get_xticklabels()] == ["combined", "ctc_only"]
    assert ax.get_ylabel() == "majmin"
    seed_lines = ax.lines[:3]
    assert [tuple(line.get_ydata()) for line in seed_lines] == [(0.9, 0.8), (0.92, 0.85),
                                                                (0.8, 0.82)]
    # the seed whose difference lies beyond the margin's boundary (-0.02 < -0.01) is red
    colours = [line.get_color() for line in seed_lines]
    assert colours == [figures.AGREES, figures.AGREES, figures.DISAGREES]
    assert ax.lines[3].get_ydata() == pytest.approx([np.mean([0.9, 0.92, 0.8]),
                                                     np.mean([0.8, 0.85, 0.82])])


@pytest.mark.parametrize(("values", "log"), [
    ([1e-4, 1e-3, 1e-2], True), ([0.001, 0.01, 0.1, 1.0], True), ([0.1, 0.2, 0.3], False),
    ([10, 20, 30, 40, 50, 60, 70, 80, 90, 100], False), ([1, 2, 5, 10, 20, 50, 100], True),
    ([0, 1, 10, 100], False), (["a", "b", "c"], False),
    ([1, 100], False)])
def test_a_log_axis_only_where_the_values_call_for_it(values, log) -> None:
    assert figures.log_scale(values) is log


def test_sweep_plot_of_numbers_is_a_line_and_band_per_variant_on_a_log_axis() -> None:
    lr = [1e-4, 1e-3, 1e-2]
    curves = [Curve("base", [[0.5, 0.52], [0.6, 0.62], [0.55, 0.5]]),
              Curve("better", [[0.55, 0.56], [0.7, 0.71], [0.65]])]
    figure = figures.sweep_plot("lr", lr, "acc", curves, "acc across lr")
    ax = figure.axes[0]
    assert ax.get_xscale() == "log"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("lr", "acc")
    assert [line.get_label() for line in ax.lines] == ["base", "better"]
    assert ax.lines[1].get_ydata() == pytest.approx([0.555, 0.705, 0.65])
    assert len(ax.collections) == 2  # a CI band per variant
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.0001", "0.001", "0.01"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["base", "better"]


def test_sweep_plot_of_categories_has_error_bars_and_no_line_between_them() -> None:
    curves = [Curve("ctd", [[0.5, 0.55], [0.52, 0.5], [0.6, 0.58]]),
              Curve("kmer", [[0.8, 0.82], [], [0.9, 0.88]])]  # no value at bilstm
    figure = figures.sweep_plot("classifier", ["cnn", "bilstm", "transformer"], "auc", curves,
                                "auc across classifier")
    ax = figure.axes[0]
    assert ax.get_xscale() == "linear"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cnn", "bilstm", "transformer"]
    assert len(ax.containers) == 2
    kmer_points = ax.containers[1].lines[0]
    assert len(kmer_points.get_xdata()) == 2 and kmer_points.get_linestyle() == "None"


@pytest.mark.parametrize(("op", "margin", "a", "b", "agrees"), [
    (">=", 0.01, 0.8, 0.805, True), (">=", 0.01, 0.8, 0.82, False), (">", 0.0, 0.8, 0.8, False),
    ("<", 0.0, 0.5, 0.6, True), ("<=", 0.05, 0.6, 0.56, True), ("==", 0.02, 0.5, 0.51, True),
    ("==", 0.02, 0.5, 0.55, False)])
def test_a_seed_agrees_with_a_claim_where_its_difference_holds(op, margin, a, b, agrees):
    assert Pairing("", "m", "a", "b", op, margin, {}).agrees(a, b) is agrees


def test_ema_smooths_without_pulling_the_start_to_zero() -> None:
    assert figures.ema([1.0, 2.0, 3.0], 0.0) == [1.0, 2.0, 3.0]
    smoothed = figures.ema([5.0, 5.0, 5.0, 5.0], 0.9)
    assert smoothed == pytest.approx([5.0] * 4)  # debiased: a constant stays itself
    noisy = figures.ema([0.0, 1.0] * 20, 0.9)
    assert max(noisy[10:]) - min(noisy[10:]) < 0.25  # the alternation is damped


def test_band_is_over_the_steps_every_seed_logged() -> None:
    runs = [([1, 2, 3], [1.0, 0.5, 0.25]), ([1, 2, 3, 4], [1.2, 0.7, 0.35, 0.1])]
    band = figures.band("base", runs)
    assert band is not None and band.steps == [1, 2, 3] and band.seeds == 2
    assert band.mean == pytest.approx([1.1, 0.6, 0.3])
    assert all(lo < m < hi for lo, m, hi in zip(band.lo, band.mean, band.hi, strict=True))
    assert figures.band("x", [([1], [1.0]), ([2], [2.0])]) is None


def test_learning_plot_zooms_on_the_last_quarter() -> None:
    steps = list(range(0, 101, 10))
    slow = Band("slow", steps, [1 / (s + 1) + 0.01 for s in steps],
                [1 / (s + 1) for s in steps], [1 / (s + 1) + 0.02 for s in steps], 3)
    fast = Band("fast", steps, [1 / (s + 1) for s in steps], [1 / (s + 1) - 0.01 for s in steps],
                [1 / (s + 1) + 0.01 for s in steps], 3)
    figure = figures.learning_plot("loss", [slow, fast], "synthetic", smoothing=0.6)
    full, zoom = figure.axes
    assert [line.get_label() for line in full.lines] == ["slow (n=3)", "fast (n=3)"]
    assert len(full.collections) == len(zoom.collections) == 2
    assert zoom.get_xlim() == pytest.approx((75, 100))
    low, high = zoom.get_ylim()
    assert high - low < 0.1 < full.get_ylim()[1] - full.get_ylim()[0]  # the zoom shows detail
    assert full.get_ylabel() == "loss (EMA 0.6)"


def test_heatmap_annotates_every_cell_and_leaves_an_empty_one_blank() -> None:
    means = [[0.5, 0.6, None], [0.7, 0.8, 0.9]]
    figure = figures.heatmap("embedder", "classifier", ["ctd", "kmer"], ["cnn", "lstm", "tf"],
                             means, "auc", False, "auc · base")
    ax = figure.axes[0]
    cells = sorted(t.get_text() for t in ax.texts)
    assert cells == ["0.5", "0.6", "0.7", "0.8", "0.9"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cnn", "lstm", "tf"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ctd", "kmer"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("classifier", "embedder")
    image = np.ma.filled(ax.images[0].get_array().astype(float), np.nan)
    assert math.isnan(image[0, 2]) and image[1, 2] == pytest.approx(0.9)
    assert figure.axes[1].get_ylabel() == "auc"  # the colour bar names the metric


def test_scree_plot_is_log_scaled_with_a_series_per_variant() -> None:
    spectra = {"base": [[4.0, 2.0, 1.0], [4.2, 2.1, 0.9]], "decay": [[1.0, 0.5, 0.2]] * 2}
    figure = figures.scree_plot("conv1/spectrum", spectra, "synthetic")
    ax = figure.axes[0]
    assert ax.get_yscale() == "log"
    assert [line.get_label() for line in ax.lines] == ["base (n=2)", "decay (n=2)"]
    assert ax.lines[0].get_xdata().tolist() == [1, 2, 3]
    assert ax.lines[0].get_ydata() == pytest.approx([4.1, 2.05, 0.95])


def test_svg_keeps_text_as_text() -> None:
    figure = figures.sweep_plot("lr", [0.1, 1.0, 10.0], "acc", [Curve("base", [[1.0]] * 3)],
                                "acc across lr")
    svg = ET.fromstring(figures.render(figure, "svg"))
    texts = {t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")}
    assert {"lr", "acc", "acc across lr"} <= texts
    assert figures.render(figure, "png")[:8] == b"\x89PNG\r\n\x1a\n"
