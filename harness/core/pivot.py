"""How a tier's knob settings line up, so that tables can pivot them instead of listing them.

A tier's settings are either a full grid over two knobs (every value of one with every value of
the other: an embedder x classifier study), which pivots into a knob x knob table per variant,
or knobs varied one at a time around a base setting (`study.sweep`, or a single swept knob),
which pivots into a variant x value table per knob. Anything else (three knobs in a grid, a
grid with holes) is left to the per-setting tables: a pivot with guessed rows would mislead.

    arrange([(("emb", "bow"), ("clf", "lr")), (("emb", "bow"), ("clf", "svm")), ...])
    # Grid(rows="emb", cols="clf", ...)

Which metrics a pivot shows is `pivot_metrics`: the study's own list, else all of few metrics,
else each metric group's first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from harness.core.metrics import split_path
from harness.core.study import Knobs, format_value

FEW_METRICS = 4  # up to this many metrics, a pivot shows them all


def setting_key(knobs: Knobs) -> tuple[tuple[str, str], ...]:
    """A hashable identity of a knob setting (values may be lists or dicts)."""
    return tuple((name, format_value(value)) for name, value in knobs)


@dataclass(frozen=True)
class Grid:
    """Two knobs over every combination of their values; the others equal in every setting."""

    rows: str
    cols: str
    row_values: tuple[Any, ...]
    col_values: tuple[Any, ...]
    settings: Mapping[tuple[int, int], Knobs]  # (row index, col index) -> the setting


@dataclass(frozen=True)
class Line:
    """One knob varied with the others fixed (at the base setting's values)."""

    knob: str
    values: tuple[Any, ...]
    settings: tuple[Knobs, ...]  # one per value, in the same order
    fixed: Knobs  # the other knobs of these settings


def _ordered(values: Sequence[Any]) -> list[Any]:
    """Distinct values, ascending when all are numbers (a sweep's base comes first in
    declaration order), else in order of first appearance."""
    distinct = list({format_value(v): v for v in values}.values())
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in distinct)
    return sorted(distinct) if numbers else distinct


def _differing(a: Knobs, b: Knobs) -> list[str]:
    return [name for (name, x), (_, y) in zip(a, b, strict=True)
            if format_value(x) != format_value(y)]


def _changes(settings: Sequence[Knobs], name: str) -> int:
    """How often knob `name` changes value from one setting to the next."""
    values = [format_value(dict(s)[name]) for s in settings]
    return sum(a != b for a, b in pairwise(values))


def arrange(settings: Sequence[Knobs]) -> Grid | list[Line] | None:
    """The grid, or the one-at-a-time lines, that `settings` (of one tier, in run order) form;
    None when they form neither (or vary no knob).

    Stored knobs come back in name order, so the declaration's order is read from the run
    order instead: a grid's rows are the knob that changes least often (the study's outer
    loop, its first knob), and lines come in the order the settings first vary them."""
    distinct = list({setting_key(s): s for s in settings}.values())
    if len(distinct) < 2 or len({tuple(name for name, _ in s) for s in distinct}) != 1:
        return None
    names = [name for name, _ in distinct[0]]
    values = {name: _ordered([dict(s)[name] for s in distinct]) for name in names}
    varying = [name for name in names if len(values[name]) > 1]
    if len(varying) == 2:
        rows, cols = sorted(varying, key=lambda name: _changes(distinct, name))
        index = {setting_key(s): s for s in distinct}
        cells = {}
        for i, r in enumerate(values[rows]):
            for j, c in enumerate(values[cols]):
                want = tuple((n, format_value(r if n == rows else c if n == cols else v))
                             for n, v in distinct[0])
                if want in index:
                    cells[i, j] = index[want]
        if len(cells) == len(values[rows]) * len(values[cols]) == len(distinct):
            return Grid(rows, cols, tuple(values[rows]), tuple(values[cols]), cells)
    base = next((b for b in distinct if all(len(_differing(b, s)) <= 1 for s in distinct)),
                None)
    if base is None:
        return None
    lines = []
    first = {knob: next(i for i, s in enumerate(distinct) if knob in _differing(base, s))
             for knob in varying}
    for knob in sorted(varying, key=first.__getitem__):  # in the order the settings vary them
        on_line = [s for s in distinct if not set(_differing(base, s)) - {knob}]
        by_value = {format_value(dict(s)[knob]): s for s in on_line}
        order = _ordered([dict(s)[knob] for s in on_line])
        lines.append(Line(knob, tuple(order), tuple(by_value[format_value(v)] for v in order),
                          tuple((n, v) for n, v in base if n != knob)))
    return lines


def pivot_metrics(paths: Sequence[str], declared: Sequence[str] | None = None,
                  groups: Sequence[str] | Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """The metrics to pivot: the study's `declared` list (those it has), else every metric when
    there are at most FEW_METRICS, else the first metric of each group (in the study's order of
    tables and columns when it gives one)."""
    if declared:
        return [p for p in declared if p in paths]
    if len(paths) <= FEW_METRICS:
        return list(paths)
    by_group: dict[str, list[str]] = {}
    for path in paths:
        by_group.setdefault(split_path(path)[1], []).append(path)
    order = list(by_group) if groups is None else [g for g in groups if g in by_group]
    picked = []
    for group in order:
        found = by_group[group]
        if isinstance(groups, Mapping):  # the group's first shown column
            found = [p for name in groups[group] for p in found if split_path(p)[2] == name]
        if found:
            picked.append(found[0])
    return picked


@dataclass(frozen=True)
class TierPivot:
    """A tier's runs lined up for pivoting: how the settings are arranged, the metrics shown,
    the variants, and the done runs of each (setting, variant)."""

    arrangement: Grid | list[Line]
    metrics: list[str]
    variants: list[str]
    done: Mapping[tuple[tuple[tuple[str, str], ...], str], list[Any]]

    def values(self, knobs: Knobs, variant: str, metric: str) -> list[Any]:
        """The metric of each done run of `variant` at the setting `knobs` (None if missing)."""
        return [r.metrics.get(metric) for r in self.done.get((setting_key(knobs), variant), [])]


def tier_pivot(runs: Sequence[Any], declared: Sequence[str] | None = None,
               groups: Sequence[str] | Mapping[str, Sequence[str]] | None = None
               ) -> TierPivot | None:
    """The pivot of one tier's run records (in run order), for the tables and the figures
    alike; None when the settings form neither a grid nor lines, or no run is done."""
    arrangement = arrange([tuple(r.knobs.items()) for r in runs])
    done = [r for r in runs if r.status == "done"]
    if arrangement is None or not done:
        return None
    found: dict[tuple[tuple[tuple[str, str], ...], str], list[Any]] = defaultdict(list)
    for r in done:
        found[setting_key(tuple(r.knobs.items())), r.variant].append(r)
    paths = list(dict.fromkeys(path for r in done for path in r.metrics))
    return TierPivot(arrangement, pivot_metrics(paths, declared, groups),
                     list(dict.fromkeys(r.variant for r in runs)), found)
