"""Which figures a stored session gets, section by section of its tables (core/tables.py).

    plots = section_plots(store, session, sections)     # section index -> [Plot, ...]

A setting's section gets the verdict plot of its hypotheses, the paired seeds of each claim,
the learning curves of what its runs logged (`run.log`), scree plots of metrics named
`.../sv1`, `.../sv2`, ... (singular values), and the plot of its guards against a baseline
when the section has one. A tier's "across" section gets a heatmap per variant and metric for
a two-knob grid, or a sweep curve per swept knob and metric. Everything comes from the store
and the run logs beside it: no run is repeated. A failed run, a NaN, a single seed or a run
without logged steps never stops a figure: it is left out and the figure's notes say so.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core import figures, paths
from harness.core.metrics import lower_is_better
from harness.core.pivot import Grid, tier_pivot
from harness.core.runlogs import RunLogs
from harness.core.study import Knobs, format_value, setting_id
from harness.core.tables import CLAIM_SIDES, KNOB_CLAIMS, Section

MAX_LOGGED = 4  # learning curves for at most this many logged series per setting
_MARGIN = re.compile(r"\(margin (?P<margin>[-+0-9.eE]+)\)")
_SINGULAR = re.compile(r"^(?P<name>.+)/sv(?P<index>\d+)$")


@dataclass
class Plot:
    """One figure of the report: `name` is its file stem, unique within its section."""

    name: str
    title: str
    figure: Any  # matplotlib.figure.Figure
    notes: list[str] = field(default_factory=list)


def section_plots(store: Any, session: str, sections: Sequence[Section],
                  options: Mapping[str, Mapping[str, Any]] | None = None,
                  smoothing: float = 0.0) -> dict[int, list[Plot]]:
    """The figures of each section (by its index in `sections`) of a stored session."""
    records = store.runs(session=session)
    reused = [r.reused_from for r in records if r.reused_from is not None]
    logs = RunLogs(store.path.parent, store.sessions_of(reused) if reused else {})
    by_setting: dict[tuple[str, str], list[Any]] = defaultdict(list)
    by_tier: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for r in records:
        knobs = tuple(r.knobs.items())
        by_setting[r.study, setting_id(r.tier, knobs)].append(r)
        by_tier[r.study, r.tier].append(r)
    found: dict[int, list[Plot]] = {}
    for index, section in enumerate(sections):
        study_options = (options or {}).get(section.study, {})
        if section.kind == "setting":
            plots = _setting_plots(section, by_setting.get((section.study, section.setting), []),
                                   logs, smoothing)
        elif section.kind == "across":
            plots = _across_plots(section, by_tier.get((section.study, section.tier), []),
                                  study_options)
        else:
            plots = []
        if plots:
            found[index] = plots
    return found


# -- one setting -------------------------------------------------------------------------------

def claim_sides(verdict: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(a, op, b) of a paired claim's verdict row, from its claim in words."""
    text = (verdict.get("detail") or {}).get("claim") or verdict["hypothesis"].split("[")[0]
    match = CLAIM_SIDES.match(text)
    return (match["a"], match["op"], match["b"]) if match else None


def _margin(verdict: Mapping[str, Any]) -> float:
    """The claim's margin: stored in its detail, or (rows of older stores) in its message."""
    margin = (verdict.get("detail") or {}).get("margin")
    if isinstance(margin, int | float):
        return float(margin)
    match = _MARGIN.search(verdict.get("message") or "")
    return float(match["margin"]) if match else 0.0


def _interval(verdict: Mapping[str, Any], label: str) -> figures.Interval | None:
    sides = claim_sides(verdict)
    if sides is None:
        return None
    look = (verdict.get("detail") or {}).get("adaptive")
    note = f"look {look['look']}/{look['looks']}, {look['seeds']} seeds" if look else ""
    return figures.Interval(label or f"{sides[0]} {sides[1]} {sides[2]}", verdict["metric"] or "",
                            sides[1], _margin(verdict), verdict["status"] or "error",
                            verdict["diff"], verdict["ci_lo"], verdict["ci_hi"], note)


def _setting_plots(section: Section, runs: Sequence[Any], logs: RunLogs,
                   smoothing: float) -> list[Plot]:
    title = section.setting  # the report shows the study above it
    hypotheses = [v for v in section.verdicts
                  if not v.get("baseline") and v.get("kind") not in (*KNOB_CLAIMS, "guard")]
    guards = [v for v in section.verdicts if v.get("baseline")]
    plots: list[Plot] = []
    intervals = [i for v in hypotheses if (i := _interval(v, ""))]
    if intervals:
        plots.append(Plot("verdicts", "hypotheses: each claim's mean paired difference "
                          "and CI; dashed: the boundary its margin sets; shaded: where the "
                          "claim holds",
                          figures.verdict_plot(intervals, f"hypotheses · {section.setting}")))
    paired = _paired(hypotheses, runs)
    if paired is not None:
        plots.append(paired)
    for baseline in dict.fromkeys(v["baseline"] for v in guards):
        mine = [i for v in guards if v["baseline"] == baseline
                and (i := _interval(v, (v.get("detail") or {}).get("claim") or ""))]
        if mine:
            plots.append(Plot("baseline", f"against the baseline (session {baseline})",
                              figures.verdict_plot(mine, f"vs baseline {baseline}")))
    plots.extend(_learning(runs, logs, smoothing, title))
    plots.extend(_screes(runs, title))
    return plots


def _left_out(runs: Sequence[Any]) -> list[str]:
    """Notes on the runs a figure cannot use."""
    failed = [r for r in runs if r.status != "done"]
    if not failed:
        return []
    names = ", ".join(f"{r.variant}-seed{r.seed}" for r in failed[:4])
    more = f" and {len(failed) - 4} more" if len(failed) > 4 else ""
    return [f"{len(failed)} run(s) not done ({names}{more}): left out"]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _paired(hypotheses: Sequence[Mapping[str, Any]], runs: Sequence[Any]) -> Plot | None:
    done = {(r.variant, r.seed): r.metrics for r in runs if r.status == "done"}
    pairings, notes = [], _left_out(runs)
    for v in hypotheses:
        sides, metric = claim_sides(v), v["metric"]
        if sides is None or not metric:
            continue
        a, op, b = sides
        seeds = sorted({seed for variant, seed in done if variant in (a, b)})
        values, bad = {}, 0
        for seed in seeds:
            pair = (done.get((a, seed), {}).get(metric), done.get((b, seed), {}).get(metric))
            if all(_finite(x) for x in pair):
                values[seed] = pair
            elif any(x is not None for x in pair):
                bad += 1
        if bad:
            notes.append(f"{a} {op} {b}: {bad} seed(s) with a non-finite {metric} left out")
        pairings.append(figures.Pairing(f"{a} {op} {b}", metric, a, b, op, _margin(v), values))
    if not pairings:
        return None
    if max(len(p.values) for p in pairings) < 2:
        notes.append("a single seed: there is no pairing to show")
    return Plot("paired-seeds", "paired seeds", figures.paired_plot(pairings, "paired seeds"),
                notes)


def _learning(runs: Sequence[Any], logs: RunLogs, smoothing: float, title: str) -> list[Plot]:
    series: dict[str, dict[str, list[tuple[list[float], list[float]]]]] = defaultdict(
        lambda: defaultdict(list))
    missing, skipped = 0, 0
    for r in runs:
        steps = logs.steps(r)
        skipped += steps.skipped
        if not steps.series:
            missing += 1
        for key, pair in steps.series.items():
            series[key][r.variant].append(pair)
    if not series:
        return []
    notes = []
    if missing:
        notes.append(f"{missing} of {len(runs)} run(s) have no logged steps")
    if skipped:
        notes.append(f"{skipped} unreadable log line(s) left out")
    keys = list(series)
    if len(keys) > MAX_LOGGED:
        notes.append(f"{len(keys)} logged series; the first {MAX_LOGGED} are drawn "
                     f"({', '.join(keys[MAX_LOGGED:])} are not)")
    plots = []
    for key in keys[:MAX_LOGGED]:
        bands = [b for variant, pairs in series[key].items()
                 if (b := figures.band(variant, pairs, smoothing))]
        if not bands:
            continue
        mine = list(notes)
        if all(b.seeds < 2 for b in bands):
            mine.append("a single seed per variant: no band")
        plots.append(Plot(f"learning-{key}", f"learning curve: {key}",
                          figures.learning_plot(key, bands, title, smoothing), mine))
    return plots


def _screes(runs: Sequence[Any], title: str) -> list[Plot]:
    """Metrics `<name>/sv<k>` of done runs, as one scree per name."""
    spectra: dict[str, dict[str, list[list[float]]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if r.status != "done":
            continue
        by_name: dict[str, dict[int, float]] = defaultdict(dict)
        for path, value in r.metrics.items():
            match = _SINGULAR.match(path)
            if match and _finite(value):
                by_name[match["name"]][int(match["index"])] = value
        for name, values in by_name.items():
            spectra[name][r.variant].append([values[i] for i in sorted(values)])
    return [Plot(f"scree-{name}", f"scree: {name}",
                 figures.scree_plot(name, dict(found), f"{name} · {title}"))
            for name, found in spectra.items()]


# -- a tier's knobs ----------------------------------------------------------------------------

def _across_plots(section: Section, runs: Sequence[Any],
                  options: Mapping[str, Any]) -> list[Plot]:
    pivot = tier_pivot(runs, options.get("pivot"), options.get("tables"))
    if pivot is None:
        return []
    left_out = _left_out(runs)

    def samples(knobs: Knobs, variant: str, metric: str, notes: list[str]) -> list[float]:
        values = pivot.values(knobs, variant, metric)
        bad = sum(1 for v in values if v is not None and not _finite(v))
        if bad:
            notes.append(f"{variant} at {setting_id('', knobs).lstrip('-')}: {bad} non-finite "
                         f"value(s) left out")
        return [v for v in values if _finite(v)]

    minimize = tuple(options.get("minimize", ()))
    plots = []
    if isinstance(pivot.arrangement, Grid):
        grid = pivot.arrangement
        for metric in pivot.metrics:
            for variant in pivot.variants:
                notes = list(left_out)
                means = [[_mean(samples(grid.settings[i, j], variant, metric, notes))
                          for j in range(len(grid.col_values))]
                         for i in range(len(grid.row_values))]
                if all(m is None for row in means for m in row):
                    continue
                plots.append(Plot(
                    f"grid-{metric}-{variant}", f"{metric} · {variant} over {grid.rows} x "
                    f"{grid.cols}", figures.heatmap(
                        grid.rows, grid.cols, [format_value(v) for v in grid.row_values],
                        [format_value(v) for v in grid.col_values], means, metric,
                        lower_is_better(metric, minimize), f"{metric} · {variant}"), notes))
        return plots
    for line in pivot.arrangement:
        fixed = ", ".join(f"{k}={format_value(v)}" for k, v in line.fixed)
        for metric in pivot.metrics:
            notes = list(left_out)
            curves = [figures.Curve(variant, [samples(knobs, variant, metric, notes)
                                              for knobs in line.settings])
                      for variant in pivot.variants]
            if all(len(s) < 2 for curve in curves for s in curve.samples):
                notes.append("a single seed per value: no CI band")
            plots.append(Plot(f"sweep-{line.knob}-{metric}", f"{metric} across {line.knob}",
                              figures.sweep_plot(line.knob, list(line.values), metric, curves,
                                                 f"{metric} across {line.knob}"
                                                 + (f"\n({fixed})" if fixed else "")), notes))
    return plots


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def write_plots(sections: Sequence[Section], plots: Mapping[int, Sequence[Plot]],
                folder: Path, formats: Sequence[str] = ("png", "svg")) -> dict[str, list[Path]]:
    """Each figure as `<folder>/<study>/<section>/<name>.<format>`; study -> files written."""
    written: dict[str, list[Path]] = {}
    for index, mine in plots.items():
        section = sections[index]
        target = paths.inside(folder, section.study, section.setting)
        target.mkdir(parents=True, exist_ok=True)
        for plot in mine:
            for fmt in formats:
                path = paths.inside(target, plot.name, suffix=f".{fmt}")
                path.write_bytes(figures.render(plot.figure, fmt))
                written.setdefault(section.study, []).append(path)
    return written
