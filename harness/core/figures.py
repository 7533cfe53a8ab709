"""The report's figures, drawn with matplotlib from plain numbers (no store, no pytest).

Each function takes what one figure shows and returns a `matplotlib.figure.Figure` (built
without pyplot: nothing is global, nothing needs closing, no display or backend is touched);
`render` turns it into SVG or PNG bytes in the one house style. What the figures show:

    verdict_plot    each claim's paired difference with its CI, the boundary its margin sets,
                    the side that supports it shaded, coloured by verdict (the gate, drawn)
    paired_plot     per claim, each seed's value of both variants joined by a line
    sweep_plot      a metric against a knob's values, per variant: mean and a 95% CI band
    learning_plot   a logged series against the step, per variant: mean over seeds and a band,
                    optionally EMA-smoothed, with a zoom on the last quarter of the steps
    heatmap         a metric over a two-knob grid, one variant, each cell annotated
    scree_plot      singular values by index (log scale), per variant

Non-finite values never reach a figure: the callers leave them out and say so in a note.
"""

from __future__ import annotations

import io
import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
from matplotlib import ticker
from matplotlib.figure import Figure
from scipy import special

STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.6,
    "lines.linewidth": 1.6, "lines.markersize": 4, "figure.dpi": 100, "savefig.dpi": 110,
    "svg.fonttype": "none",  # text stays text: searchable, and small files
    "axes.prop_cycle": matplotlib.cycler(color=[
        "#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3",
        "#8c8c8c", "#ccb974", "#64b5cd"]),
}
VERDICT_COLOURS = {"supported": "#2a9d4b", "contradicted": "#c8283c",
                   "inconclusive": "#e0a100", "error": "#7f7f7f", "skipped": "#7f7f7f"}
WIDTH = 6.4  # inches: one figure per row of the report


def _figure(width: float, height: float, *, left: float = 0.7, right: float = 0.15,
            bottom: float = 0.5, top: float = 0.4, wspace: float = 0.25,
            hspace: float = 0.45) -> Figure:
    """A figure with its margins in inches. Fixed margins, not a layout engine: constrained
    layout doubled the time to draw a figure, and the report draws dozens."""
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=(width, height))
    figure.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                           top=1 - top / height, wspace=wspace, hspace=hspace)
    return figure


def _text_width(lines: Sequence[str], size: float = 8.0) -> float:
    """Rough width in inches of the longest of `lines` in the house font."""
    return max((len(line) for line in lines), default=0) * size * 0.7 / 72


def render(figure: Figure, fmt: str = "svg") -> bytes:
    """The figure as SVG or PNG bytes (an SVG without a date: the same figure, the same
    bytes)."""
    out = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        figure.savefig(out, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    return out.getvalue()


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and its t-based CI over seeds; the CI is the mean itself with fewer than 2."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, mean, mean
    half = special.stdtrit(len(values) - 1, 0.5 + level / 2) * statistics.stdev(values) \
        / math.sqrt(len(values))
    return mean, mean - half, mean + half


# -- verdicts ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Interval:
    """One decided paired claim: `a op b` on `metric`, its mean difference and CI."""

    label: str  # "combined >= ctc_only", or "combined >= baseline"
    metric: str
    op: str
    margin: float
    status: str
    diff: float | None
    lo: float | None
    hi: float | None
    note: str = ""  # shown under the verdict, e.g. the look of an adaptive seed budget


def boundaries(op: str, margin: float) -> list[float]:
    """Where the mean difference must lie beyond for the claim to hold: `a >= b` with margin
    m holds above -m, `a > b` above +m, `a == b` between -m and +m."""
    return {">=": [-margin], ">": [margin], "<=": [margin], "<": [-margin],
            "==": [-margin, margin]}.get(op, [])


def _holds(op: str, margin: float) -> tuple[float, float]:
    """The interval of mean differences on which the claim holds."""
    edge = boundaries(op, margin)
    if op in (">=", ">"):
        return edge[0], math.inf
    if op in ("<=", "<"):
        return -math.inf, edge[0]
    return (edge[0], edge[1]) if op == "==" else (-math.inf, math.inf)


def verdict_plot(claims: Sequence[Interval], title: str) -> Figure:
    """A row per claim: the mean difference with its CI (the one the test decides on), zero,
    the margin's boundary (dashed) and the side where the claim holds (shaded). Claims on
    different metrics have different scales, so each row has its own x axis."""
    labels = [line for claim in claims for line in (claim.label, claim.metric)]
    figure = _figure(WIDTH + 1.0, 0.95 + 0.7 * len(claims),
                     left=min(3.2, 0.25 + _text_width(labels)), right=1.1, bottom=0.55,
                     hspace=0.9)
    axes = figure.subplots(len(claims), 1, squeeze=False)[:, 0]
    for ax, claim in zip(axes, claims, strict=True):
        colour = VERDICT_COLOURS.get(claim.status, VERDICT_COLOURS["error"])
        ax.set_yticks([0], [f"{claim.label}\n{claim.metric}"])
        ax.set_ylim(-1, 1)
        ax.grid(axis="y", visible=False)
        ax.axvline(0, color="#444444", linewidth=0.8)
        for edge in boundaries(claim.op, claim.margin):
            ax.axvline(edge, color="#444444", linewidth=0.9, linestyle="--")
        if claim.diff is None or claim.lo is None or claim.hi is None:
            ax.text(0.5, 0, f"{claim.status}: not decided", transform=ax.get_yaxis_transform(),
                    ha="center", va="center", color=colour)
            continue
        ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=6))
        ax.errorbar([claim.diff], [0], xerr=[[claim.diff - claim.lo], [claim.hi - claim.diff]],
                    fmt="o", color=colour, capsize=4, markersize=6, linewidth=2.2)
        span = [claim.lo, claim.hi, 0.0, *boundaries(claim.op, claim.margin)]
        low, high = min(span), max(span)
        pad = 0.15 * (high - low) or 0.1 * (abs(claim.diff) or 1.0)
        ax.set_xlim(low - pad, high + pad)
        start, end = _holds(claim.op, claim.margin)
        ax.axvspan(max(start, low - pad), min(end, high + pad), color=VERDICT_COLOURS[
            "supported"], alpha=0.08, linewidth=0)
        ax.text(1.0, 0.5, claim.status, transform=ax.transAxes, ha="left",
                va="bottom" if claim.note else "center", color=colour, fontweight="bold",
                clip_on=False)
        if claim.note:
            ax.text(1.0, 0.45, claim.note, transform=ax.transAxes, ha="left", va="top",
                    color="#444444", fontsize=7, clip_on=False)
    axes[-1].set_xlabel("a − b: mean paired difference and its CI")
    figure.suptitle(title)
    return figure


# -- paired seeds ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pairing:
    """The seeds of one claim `a op b` (with its margin): seed -> (value of a, value of b)."""

    claim: str
    metric: str
    a: str
    b: str
    op: str
    margin: float
    values: Mapping[int, tuple[float, float]]

    def agrees(self, a: float, b: float) -> bool:
        """Whether one seed's difference lies where the claim holds."""
        start, end = _holds(self.op, self.margin)
        return start <= a - b <= end if self.op in (">=", "<=", "==") else start < a - b < end


AGREES, DISAGREES = "#4c72b0", "#c44e52"


def paired_plot(pairings: Sequence[Pairing], title: str) -> Figure:
    """A panel per claim: a line per seed from a's value to b's, blue where that seed's
    difference lies where the claim holds, red where it does not; the means as black
    diamonds. Parallel lines are what makes a paired test powerful."""
    columns = min(3, len(pairings))
    rows = math.ceil(len(pairings) / columns)
    figure = _figure(WIDTH + 0.5 * (columns - 1), 0.8 + 2.4 * rows, left=0.75, top=0.75,
                     wspace=0.75)  # room for each panel's metric label
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, pairing in zip(axes, pairings, strict=False):
        for seed, (a, b) in sorted(pairing.values.items()):
            colour = AGREES if pairing.agrees(a, b) else DISAGREES
            ax.plot([0, 1], [a, b], marker="o", color=colour, alpha=0.75, label=f"seed {seed}")
        if pairing.values:
            a_mean = statistics.fmean(a for a, _ in pairing.values.values())
            b_mean = statistics.fmean(b for _, b in pairing.values.values())
            ax.plot([0, 1], [a_mean, b_mean], marker="D", color="black", linewidth=2.4,
                    markersize=6, label="mean")
        ax.set_xticks([0, 1], [pairing.a, pairing.b])
        ax.set_xlim(-0.3, 1.3)
        ax.set_title(pairing.claim, fontsize=9)
        ax.set_ylabel(pairing.metric)
    for ax in axes[len(pairings):]:
        ax.set_visible(False)
    figure.suptitle(title)
    return figure


# -- sweeps and grids --------------------------------------------------------------------------

def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
               for v in values)


def log_scale(values: Sequence[Any]) -> bool:
    """A log axis when the values are positive numbers spanning at least a factor of 10 that
    are spaced more evenly on a log axis than on a linear one (a learning-rate or data-size
    sweep, not 10, 20, ..., 100)."""
    if not _numeric(values) or len(values) < 3 or min(values) <= 0:
        return False
    ordered = sorted(set(values))
    if len(ordered) < 3 or ordered[-1] / ordered[0] < 10:
        return False

    def unevenness(xs: Sequence[float]) -> float:
        gaps = [b - a for a, b in itertools.pairwise(xs)]
        return max(gaps) / min(gaps)

    return unevenness([math.log(v) for v in ordered]) < unevenness(ordered)


@dataclass(frozen=True)
class Curve:
    """One variant's values at each of a knob's values: per x, the finite seed values."""

    label: str
    samples: Sequence[Sequence[float]]


def sweep_plot(knob: str, values: Sequence[Any], metric: str, curves: Sequence[Curve],
               title: str) -> Figure:
    """The metric against the knob's values, per variant the mean over seeds and its 95% CI
    (none where a value has a single seed): a line and band over numeric values, on a log
    axis when they call for it; a point and error bar per category otherwise (a line between
    categories would suggest an order that is not there)."""
    figure = _figure(WIDTH, 3.5, top=0.55)
    ax = figure.subplots()
    numeric = _numeric(values)
    xs = list(values) if numeric else list(range(len(values)))
    for k, curve in enumerate(curves):
        points = [(x, mean_ci(s)) for x, s in zip(xs, curve.samples, strict=True) if s]
        if not points:
            continue
        means = [m for _, (m, _, _) in points]
        lows, highs = [lo for _, (_, lo, _) in points], [hi for _, (_, _, hi) in points]
        if numeric:
            line, = ax.plot([x for x, _ in points], means, marker="o", label=curve.label)
            ax.fill_between([x for x, _ in points], lows, highs, color=line.get_color(),
                            alpha=0.18, linewidth=0)
        else:
            shift = 0.08 * (k - (len(curves) - 1) / 2)
            ax.errorbar([x + shift for x, _ in points], means,
                        yerr=[[m - lo for m, lo in zip(means, lows, strict=True)],
                              [hi - m for m, hi in zip(means, highs, strict=True)]],
                        fmt="o", capsize=3, label=curve.label)
    if log_scale(values):
        ax.set_xscale("log")
        ax.minorticks_off()
    if numeric:  # the swept values themselves, as written, not 3x10^-1
        ax.set_xticks(xs, [f"{v:g}" for v in values])
    else:
        ax.set_xticks(xs, [str(v) for v in values])
        ax.set_xlim(-0.5, len(values) - 0.5)
    ax.set_xlabel(knob)
    ax.set_ylabel(metric)
    ax.legend(title="variant (mean, 95% CI)", loc="best")
    ax.set_title(title, fontsize=9, wrap=True)
    return figure


def heatmap(rows: str, cols: str, row_values: Sequence[Any], col_values: Sequence[Any],
            means: Sequence[Sequence[float | None]], metric: str, lower_is_better: bool,
            title: str) -> Figure:
    """The metric's mean over a two-knob grid; brighter is better; each cell annotated (an
    empty cell had no finite value)."""
    row_labels = [str(v) for v in row_values]
    left = 0.45 + _text_width(row_labels)
    figure = _figure(min(WIDTH + 1.5, left + 1.4 + 0.9 * len(col_values)),
                     1.3 + 0.45 * len(row_values), left=left, right=0.3, bottom=0.55)
    ax = figure.subplots()
    grid = [[math.nan if v is None else v for v in row] for row in means]
    image = ax.imshow(grid, cmap="viridis_r" if lower_is_better else "viridis", aspect="auto")
    finite = [v for row in grid for v in row if math.isfinite(v)]
    middle = (min(finite) + max(finite)) / 2 if finite else 0.0
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            if math.isfinite(value):
                dark = (value > middle) != lower_is_better
                ax.text(j, i, f"{value:.3g}", ha="center", va="center", fontsize=8,
                        color="black" if dark else "white")
    ax.set_xticks(range(len(col_values)), [str(v) for v in col_values])
    ax.set_yticks(range(len(row_values)), row_labels)
    ax.set_xlabel(cols)
    ax.set_ylabel(rows)
    ax.grid(visible=False)
    figure.colorbar(image, ax=ax, label=metric, shrink=0.9)
    ax.set_title(title)
    return figure


# -- logged series -----------------------------------------------------------------------------

def ema(values: Sequence[float], weight: float) -> list[float]:
    """Exponential moving average with bias correction (TensorBoard's smoothing): `weight`
    0 leaves the values as they are, 0.9 smooths strongly; the first points are not pulled
    towards zero."""
    if weight <= 0:
        return list(values)
    out, level = [], 0.0
    for i, value in enumerate(values, start=1):
        level = weight * level + (1 - weight) * value
        out.append(level / (1 - weight ** i))
    return out


@dataclass(frozen=True)
class Band:
    """A variant's series over seeds: at each step, the mean and a band."""

    label: str
    steps: Sequence[float]
    mean: Sequence[float]
    lo: Sequence[float]
    hi: Sequence[float]
    seeds: int


def band(label: str, runs: Sequence[tuple[Sequence[float], Sequence[float]]],
         smoothing: float = 0.0) -> Band | None:
    """Mean and 95% CI band over seeds at the steps every seed logged (smoothed per seed
    first); None when the seeds share no step."""
    smoothed = [dict(zip(steps, ema(values, smoothing), strict=True)) for steps, values in runs]
    common = sorted(set.intersection(*(set(s) for s in smoothed))) if smoothed else []
    if not common:
        return None
    stats = [mean_ci([s[step] for s in smoothed]) for step in common]
    return Band(label, common, [m for m, _, _ in stats], [lo for _, lo, _ in stats],
                [hi for _, _, hi in stats], len(runs))


def learning_plot(key: str, bands: Sequence[Band], title: str, smoothing: float = 0.0) -> Figure:
    """A logged series against the step, a line and band per variant; the right panel zooms
    on the last quarter of the steps, where variants that end close apart differ."""
    figure = _figure(WIDTH, 3.4, top=0.65)
    full, zoom = figure.subplots(1, 2, width_ratios=[3, 2])
    last = max(b.steps[-1] for b in bands)
    first = min(b.steps[0] for b in bands)
    start = first + 0.75 * (last - first)
    for b in bands:
        for ax in (full, zoom):
            line, = ax.plot(b.steps, b.mean, label=f"{b.label} (n={b.seeds})")
            ax.fill_between(b.steps, b.lo, b.hi, color=line.get_color(), alpha=0.18,
                            linewidth=0)
    tail = [v for b in bands for s, lo, hi in zip(b.steps, b.lo, b.hi, strict=True)
            if s >= start for v in (lo, hi)]
    if tail:
        low, high = min(tail), max(tail)
        pad = 0.08 * (high - low) or 0.05 * (abs(high) or 1.0)
        zoom.set_ylim(low - pad, high + pad)
    zoom.set_xlim(start, last)
    zoom.set_title("last quarter (zoom)", fontsize=9)
    full.set_xlabel("step")
    zoom.set_xlabel("step")
    full.set_ylabel(key + (f" (EMA {smoothing:g})" if smoothing > 0 else ""))
    full.legend(title="mean, 95% CI over seeds", loc="best")
    figure.suptitle(title)
    return figure


def scree_plot(name: str, spectra: Mapping[str, Sequence[Sequence[float]]],
               title: str) -> Figure:
    """Singular values by index on a log axis: per variant the mean over seeds, the band
    from the smallest to the largest seed. A scree that drops early is a near-low-rank layer."""
    figure = _figure(WIDTH, 3.0)
    ax = figure.subplots()
    for label, vectors in spectra.items():
        size = min(len(v) for v in vectors)
        index = list(range(1, size + 1))
        columns = [[v[i] for v in vectors] for i in range(size)]
        line, = ax.plot(index, [statistics.fmean(c) for c in columns], marker="o",
                        label=f"{label} (n={len(vectors)})")
        ax.fill_between(index, [min(c) for c in columns], [max(c) for c in columns],
                        color=line.get_color(), alpha=0.18, linewidth=0)
    if all(v > 0 for vectors in spectra.values() for vec in vectors for v in vec):
        ax.set_yscale("log")
        plain = ticker.StrMethodFormatter("{x:g}")  # 0.6, not 6x10^-1
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_xlabel("singular value index")
    ax.set_ylabel(f"{name} singular value")
    ax.legend(title="mean, min-max over seeds", loc="best")
    ax.set_title(title)
    return figure
