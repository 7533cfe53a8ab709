"""Result tables: per study and setting, one table per metric group, then the verdicts.

Rows are (variant, head), cells mean +- std over seeds, the best value per column marked. A
cell with a NaN or infinite seed says so (`nan (1 of 5)`) instead of averaging the others, and
is never the best. Beside the metrics, what the runs used: "wall s" is a run's own time (mean
over seeds; the stages it computed are not in it, they have their own table), and, when a run
recorded them, "peak MB" (process RSS) and "CUDA MB" (max over seeds and devices) and
"steps/s" (mean over seeds).

After a study's settings come, per tier, its pivots and knob claims (core/pivot.py: a knob x
knob grid per variant, or a variant x value table per knob varied one at a time; the best of
each variant marked), then the stages its runs shared: each once, with its time, memory and
how many runs used it (a stage used in one setting only is shown in that setting instead),
and what the study computed in all.

The same sections render as terminal text, Markdown, CSV (long format: the summary, every
run's values, the verdicts, or the stages) and JSON (all of them; valid JSON, so a non-finite
number is null and the row's `non_finite` says what it was).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from tabulate import tabulate

from harness.core.initstate import init_mismatches
from harness.core.metrics import lower_is_better, split_path
from harness.core.pivot import Grid, Line, tier_pivot
from harness.core.study import Knobs, format_value, setting_id

NON_FINITE = ("nan", "inf", "-inf")


def non_finite(value: float) -> str | None:
    """"nan", "inf" or "-inf" for a value that is not finite, else None."""
    if math.isnan(value):
        return "nan"
    return ("inf" if value > 0 else "-inf") if math.isinf(value) else None


@dataclass
class Cell:
    """One metric of one variant over its seeds. When a seed's value is not finite, `mean`
    and `std` are what IEEE arithmetic makes of all seeds (NaN, or an infinity) and
    `non_finite` counts those seeds by kind."""

    mean: float
    std: float
    n: int
    non_finite: dict[str, int] = field(default_factory=dict)
    best: bool = False

    def text(self) -> str:
        if self.non_finite:
            return ", ".join(f"{kind} ({count} of {self.n})"
                             for kind, count in self.non_finite.items())
        if self.std == 0 and self.mean.is_integer() and 10 <= abs(self.mean) < 1e15:
            return f"{int(self.mean)}"  # a count, the same on every seed: 1466, not 1466.000
        spread = f" ± {self.std:.3f}" if self.n > 1 else ""
        return f"{self.mean:.3f}{spread}"


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[Any]]  # str labels, then Cell | None per metric, then n and resources


@dataclass
class Section:
    study: str
    setting: str
    tables: list[Table] = field(default_factory=list)
    verdicts: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: list[dict] = field(default_factory=list)  # long format: one row per metric
    runs: list[dict] = field(default_factory=list)  # one row per run and metric
    stages: list[dict] = field(default_factory=list)  # one row per stage shown here
    footer: list[str] = field(default_factory=list)  # totals, shown after the tables
    kind: str = "setting"  # "setting" | "across" (a tier's pivots) | "stages" | "tiers"
    tier: str = ""  # an "across" section's tier


def _cell(values: Sequence[float | None]) -> Cell | None:
    values = [float(v) for v in values if v is not None]
    if not values:
        return None
    kinds = Counter(kind for kind in map(non_finite, values) if kind)
    if kinds:
        return Cell(sum(values) / len(values), math.nan, len(values),
                    {kind: kinds[kind] for kind in NON_FINITE if kinds[kind]})
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return Cell(statistics.fmean(values), std, len(values))


def _mark(cells: Iterable[Cell | None], name: str, minimize: tuple[str, ...]) -> None:
    """Mark the best of the finite `cells` of metric `name`."""
    cells = [c for c in cells if c is not None and not c.non_finite]
    if len({c.mean for c in cells}) < 2:  # one value, or all equal: nothing stands out
        return
    pick = min if lower_is_better(name, minimize) else max
    best = pick(c.mean for c in cells)
    for c in cells:
        c.best = c.mean == best


def _mark_best(rows: list[list[Any]], columns: range, names: Sequence[str],
               minimize: tuple[str, ...]) -> None:
    for col, name in zip(columns, names, strict=True):
        _mark((row[col] for row in rows), name, minimize)


class Resource(NamedTuple):
    column: str  # its column in the tables
    how: str  # how a variant's seeds are summarised: "max" | "mean"
    digits: int


# What runs record of their resources (core/resources.py), shown when some run recorded it
RESOURCES = {"peak_rss_mb": Resource("peak MB", "max", 0),
             "steps_per_s": Resource("steps/s", "mean", 1),
             "cuda_peak_mb": Resource("CUDA MB", "max", 0)}
_SUMMARISE = {"max": max, "mean": statistics.fmean}


def _resource(r: Any, name: str) -> float | None:
    """One resource of a run or stage row; CUDA as its largest device's peak. None when the
    row did not record it (older rows record none)."""
    value = (r.resources or {}).get(name)
    if isinstance(value, Mapping):
        value = max((v for v in value.values() if v is not None), default=None)
    return None if value is None else float(value)


def _usage(records: Sequence[Any], names: Iterable[str]) -> dict[str, float | None]:
    """What a variant's runs used, by long-format name: own wall time (`wall_s_mean`, over
    seeds), then each of `names` summarised over seeds as RESOURCES says (`peak_rss_mb_max`)."""
    walls = [r.duration for r in records if r.duration is not None]
    usage = {"wall_s_mean": statistics.fmean(walls) if walls else None}
    for name in names:
        values = [v for r in records if (v := _resource(r, name)) is not None]
        how = RESOURCES[name].how
        usage[f"{name}_{how}"] = _SUMMARISE[how](values) if values else None
    return usage


def _number(value: float | None, digits: int = 1) -> str:
    """`digits` decimals, or two significant digits below 1 (a 4 ms run is not "0.0")."""
    if value is None:
        return "-"
    small = 0 < abs(value) < 1 and digits > 0
    return f"{value:.2g}" if small else f"{value:.{digits}f}"


def build_section(study: str, setting: str, runs: Sequence[Any], verdicts: Sequence[dict],
                  *, groups: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
                  minimize: tuple[str, ...] = ()) -> Section:
    """Tables for one study at one setting from its run records (done or failed).

    `groups` picks the tables (metric groups) in order and, as a dict, their columns; every
    metric still goes into the long-format summary (CSV, JSON).
    """
    section = Section(study, setting, verdicts=list(verdicts))
    done = [r for r in runs if r.status == "done"]
    recorded = [n for n in RESOURCES if any(_resource(r, n) is not None for r in done)]
    variants = list(dict.fromkeys(r.variant for r in runs))
    reused = {r.variant for r in done if r.source == "store"}
    # group -> head -> metric names, in order of first appearance
    layout: dict[str, dict[str, list[str]]] = {}
    for r in done:
        for path in r.metrics:
            head, group, name = split_path(path)
            names = layout.setdefault(group, {}).setdefault(head, [])
            if name not in names:
                names.append(name)
    order = list(layout) if groups is None else [g for g in groups if g in layout]
    for group in order:  # the study's order of tables, else the metrics' own
        heads = layout[group]
        names = list(dict.fromkeys(n for ns in heads.values() for n in ns))
        shown = [n for n in groups[group] if n in names] if isinstance(groups, Mapping) else names
        with_head = any(h != "-" for h in heads)
        rows = []
        for variant in variants:
            records = [r for r in done if r.variant == variant]
            for head in heads:
                prefix = "" if head == "-" else f"{head}/"
                cells = [_cell([r.metrics.get(f"{prefix}{group}/{n}" if group != "metrics"
                                              else f"{prefix}{n}") for r in records])
                         for n in names]
                if all(c is None for c in cells):
                    continue
                label = f"{variant} (store)" if variant in reused else variant
                usage = _usage(records, recorded)
                devices = ",".join(sorted({r.device for r in records})) or "-"
                rows.append([label, *([head] if with_head else []),
                             *(cells[names.index(n)] for n in shown), len(records),
                             _number(usage["wall_s_mean"]),
                             *(_number(usage[f"{n}_{RESOURCES[n].how}"], RESOURCES[n].digits)
                               for n in recorded), devices])
                for n, c in zip(names, cells, strict=True):
                    if c is not None:
                        section.summary.append({"study": study, "setting": setting,
                                                "variant": variant, "head": head,
                                                "group": group, "metric": n, "mean": c.mean,
                                                "std": c.std, "n": c.n,
                                                "source": "store" if variant in reused else "run",
                                                "non_finite_seeds": c.non_finite, **usage})
        first = 2 if with_head else 1
        _mark_best(rows, range(first, first + len(shown)), shown, minimize)
        headers = ["variant", *(["head"] if with_head else []), *shown, "n", "wall s",
                   *(RESOURCES[n].column for n in recorded), "device"]
        section.tables.append(Table(group, headers, rows))
    section.runs = [row for r in runs for row in _run_rows(study, setting, r)]
    section.notes = _notes(runs, variants)
    return section


def _last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""


# A run's resources in the long formats, as recorded (CUDA: device -> MB)
RUN_RESOURCES = ("peak_rss_mb", "cuda_peak_mb", "steps", "steps_per_s")


def _run_rows(study: str, setting: str, r: Any) -> list[dict]:
    """A run's values in long format: one row per metric (one row without metric when it
    has none: failed, or still running)."""
    about = {"tier": r.tier, "knobs": r.knobs, "variant": r.variant, "seed": r.seed}
    provenance = {"status": r.status, "source": r.source, "fingerprint": r.fingerprint,
                  "run": r.id, "reused_from": r.reused_from, "duration": r.duration,
                  "device": r.device, "git_commit": r.git_commit, "note": r.note,
                  "error": _last_line(r.error) or None,
                  **{name: (r.resources or {}).get(name) for name in RUN_RESOURCES},
                  "stages": [use.get("id") for use in r.stages or []]}
    values = r.metrics.items() if r.metrics else [(None, None)]
    return [{"study": study, "setting": setting, **about, "metric": metric, "value": value,
             **provenance} for metric, value in values]


# `RunCoordinator` notes why --reuse retrained a run: "<reason> since run #<id> of session <s>"
_SINCE = re.compile(r"(?P<reason>.*) since run #(?P<id>\d+) of session (?P<session>\S+)", re.S)


def _spans(numbers: Iterable[int]) -> str:
    """1, 2, 3, 5 -> "1..3,5"."""
    spans: list[list[int]] = []
    for n in sorted(set(numbers)):
        if spans and n == spans[-1][-1] + 1:
            spans[-1].append(n)
        else:
            spans.append([n])
    return ",".join(f"{s[0]}..{s[-1]}" if len(s) > 2 else ",".join(map(str, s)) for s in spans)


def _runs_label(runs: Sequence[Any]) -> str:
    """"base-seed0..3, better-seed0,2": runs named by variant and seeds."""
    seeds: dict[str, list[int]] = {}
    for r in runs:
        seeds.setdefault(r.variant, []).append(r.seed)
    return ", ".join(f"{variant}-seed{_spans(s)}" for variant, s in seeds.items())


def _notes(runs: Sequence[Any], variants: Sequence[str]) -> list[str]:
    """Failed runs, malformed samples, why --reuse retrained runs (one line per reason),
    variants whose seeds change nothing, and seeds whose variants started from different
    initial models."""
    notes = [f"run {r.variant}-seed{r.seed} FAILED: {_last_line(r.error) or 'no error recorded'}"
             for r in runs if r.status == "failed"]
    notes += [f"malformed sample in {r.variant}-seed{r.seed}: {failure.get('sample')}: "
              f"{failure.get('error')}" for r in runs for failure in r.failures]
    retrained: dict[tuple[str, str | None], list[Any]] = {}
    for r in runs:
        if r.note:
            since = _SINCE.fullmatch(r.note)
            key = (since["reason"], since["session"]) if since else (r.note, None)
            retrained.setdefault(key, []).append(r)
    for (reason, session), which in retrained.items():
        ids = [int(since["id"]) for r in which if (since := _SINCE.fullmatch(r.note))]
        where = (f" since run{'s' if len(ids) > 1 else ''} #{_spans(ids)} of session {session}"
                 if session else "")
        notes.append(f"retrained {len(which)} run{'s' if len(which) > 1 else ''} "
                     f"({_runs_label(which)}): {reason}{where}")
    for variant in variants:
        done = [r for r in runs if r.variant == variant and r.status == "done"]
        if len(done) > 1 and done[0].metrics and len(
                {json.dumps(r.metrics, sort_keys=True) for r in done}) == 1:
            notes.append(f"variant {variant} gives identical metrics on every seed: are the "
                         f"seeds used (run.seed must seed init and data)?")
    return notes + _init_notes(runs)


def _init_notes(runs: Sequence[Any]) -> list[str]:
    """Seeds whose variants did not start from the same initial model (of runs that recorded
    it), one line per mismatch and the seeds it holds for."""
    by_seed: dict[int, dict[str, dict]] = {}
    for r in runs:
        if r.status == "done" and r.init:
            by_seed.setdefault(r.seed, {})[r.variant] = r.init
    seeds: dict[str, list[int]] = {}
    for seed, inits in sorted(by_seed.items()):
        for line in init_mismatches(inits):
            seeds.setdefault(line, []).append(seed)
    return [f"seed{'s' if len(s) > 1 else ''} {_spans(s)}: not the same initial model: {line}"
            for line, s in seeds.items()]


KNOB_CLAIMS = ("compare", "trend", "best")  # verdict kinds decided across a knob's values


def _knobs(record: Any) -> Knobs:
    return tuple(record.knobs.items())


def session_sections(store: Any, session: str,
                     study_options: Mapping[str, Mapping[str, Any]] | None = None) -> list[Section]:
    """Every study of a stored session, in the order they were run: its settings (in run
    order, then settings that only have verdicts), per tier its pivots and knob claims, the
    stages its settings shared with the study's compute, and its verdicts by tier."""
    runs: dict[tuple[str, str], list[Any]] = defaultdict(list)
    verdicts: dict[tuple[str, str], list[dict]] = defaultdict(list)
    claims: dict[tuple[str, str], list[dict]] = defaultdict(list)  # (study, tier) -> knob claims
    stage_rows: dict[str, list[Any]] = defaultdict(list)
    for r in store.runs(session=session):
        runs[r.study, setting_id(r.tier, _knobs(r))].append(r)
    for r in store.runs(session=session, kind="stage"):
        stage_rows[r.study].append(r)
    all_verdicts = store.verdicts(session)
    for v in all_verdicts:
        setting = setting_id(v["tier"], tuple(v["knobs"].items()))
        if v.get("kind") in KNOB_CLAIMS:  # its knobs are the group's others: no run setting
            claims[v["study"], v["tier"]].append({"setting": setting, **v})
        else:
            verdicts[v["study"], setting].append(v)
    settings = list(dict.fromkeys([*runs, *verdicts]))  # runs' order, then verdicts'
    studies = dict.fromkeys([*(study for study, _ in settings), *(study for study, _ in claims),
                             *stage_rows])
    by_study: dict[str, list[str]] = defaultdict(list)
    for study, setting in settings:
        by_study[study].append(setting)
    sections = []
    for study in studies:
        options = (study_options or {}).get(study, {})
        minimize = tuple(options.get("minimize", ()))
        mine = {setting: build_section(study, setting, runs.get((study, setting), []),
                                       verdicts.get((study, setting), []),
                                       groups=options.get("tables"), minimize=minimize)
                for setting in by_study[study]}
        study_runs = [r for setting in mine for r in runs.get((study, setting), [])]
        shared = stage_section(study, study_runs, stage_rows.get(study, []), mine)
        sections.extend(mine.values())
        tiers = dict.fromkeys([*(r.tier for r in study_runs),
                               *(tier for s, tier in claims if s == study)])
        for tier in tiers:
            across = across_section(study, tier, [r for r in study_runs if r.tier == tier],
                                    claims.get((study, tier), []), options)
            if across is not None:
                sections.append(across)
        if shared is not None:
            sections.append(shared)
        comparison = tier_comparison(study, [v for v in all_verdicts if v["study"] == study])
        if comparison is not None:
            sections.append(comparison)
    return sections


# -- stages: each shown once, with the runs that used it --------------------------------------

STAGE_HEADERS = ["stage", "seeds", "wall s", "total s", "peak MB", "source", "used by"]


def _stage_label(stage: Any, known_as: str | None) -> str:
    """The stage's id (as its runs knew it) without its seed: a row stands for every seed."""
    label = known_as or f"{stage.variant}-{stage.tier}"
    return re.sub(rf"-seed{stage.seed}(?=-[0-9a-f]+$|$)", "", label)


def _sources(stages: Sequence[Any]) -> str:
    """"computed", "reused" (from the store), or how many of each (failed ones too)."""
    kinds = Counter("failed" if s.status == "failed" else "running" if s.status == "running"
                    else "computed" if s.source == "run" else "reused" for s in stages)
    if len(kinds) == 1:
        return next(iter(kinds))
    return ", ".join(f"{count} {kind}" for kind, count in kinds.items())


@dataclass
class StageGroup:
    """One stage over its seeds (one name, tier and dependencies): its rows, and per row the
    runs that used it and the id they knew it by."""

    rows: list[Any]
    users: dict[int, list[Any]] = field(default_factory=dict)
    ids: dict[int, str] = field(default_factory=dict)

    def used(self, row: Any | None = None) -> list[Any]:
        """The runs that used `row`, or any row of the group."""
        return [r for s in ([row] if row else self.rows) for r in self.users.get(s.id, [])]

    def settings(self, row: Any | None = None) -> list[str]:
        """The settings of the runs that used it (stages that used it have none)."""
        return list(dict.fromkeys(setting_id(r.tier, _knobs(r)) for r in self.used(row)
                                  if r.kind != "stage"))

    def table_row(self) -> list[str]:
        """Its time once (mean per seed and total), its peak memory, where it came from and
        what used it."""
        first = self.rows[0]
        walls = [s.duration for s in self.rows if s.duration is not None]
        peaks = [v for s in self.rows if (v := _resource(s, "peak_rss_mb")) is not None]
        seeds = sorted({s.seed for s in self.rows if s.seed >= 0})  # negative: any seed
        return [_stage_label(first, self.ids.get(first.id)), _spans(seeds) if seeds else "any",
                _number(statistics.fmean(walls) if walls else None),
                _number(sum(walls) if walls else None), _number(max(peaks, default=None), 0),
                _sources(self.rows), _used_by(self.used(), self.settings())]

    def long(self, study: str) -> list[dict]:
        """One row per stage, for CSV and JSON."""
        return [{"study": study, "tier": s.tier, "stage": s.variant, "id": self.ids.get(s.id),
                 "seed": s.seed, "status": s.status, "source": s.source,
                 "duration": s.duration,
                 **{name: (s.resources or {}).get(name) for name in RUN_RESOURCES},
                 "used_by": len(self.used(s)), "settings": self.settings(s), "row": s.id}
                for s in self.rows]


def stage_groups(runs: Sequence[Any], stages: Sequence[Any]) -> list[StageGroup]:
    """A study's stage rows grouped over seeds, with the runs (and stages) that used them.
    Runs adopted from an older session name that session's stage rows, not this one's: left
    out."""
    groups: dict[tuple[str, str, str], StageGroup] = {}
    by_id: dict[int, StageGroup] = {}
    for stage in stages:
        key = (stage.tier, stage.variant, json.dumps(stage.config, sort_keys=True))
        by_id[stage.id] = groups.setdefault(key, StageGroup([]))
        by_id[stage.id].rows.append(stage)
    for r in [*runs, *stages]:  # a stage may use another
        for use in r.stages or []:
            group = by_id.get(use.get("row"))
            if group is not None:
                group.users.setdefault(use["row"], []).append(r)
                group.ids.setdefault(use["row"], use.get("id"))
    return list(groups.values())


def _used_by(users: Sequence[Any], settings: Sequence[str]) -> str:
    """"6 runs of combined in 3 settings": a stage's id does not name the variants (two that
    agree on what it depends on share it), so its users do ("2 stages train" when stages
    used it)."""
    runs = [u for u in users if u.kind != "stage"]
    stages = list(dict.fromkeys(u.variant for u in users if u.kind == "stage"))
    said = []
    if runs:
        variants = ", ".join(dict.fromkeys(r.variant for r in runs))
        said.append(f"{len(runs)} run{'s' if len(runs) != 1 else ''} of {variants}"
                    + (f" in {len(settings)} settings" if len(settings) > 1 else ""))
    if stages:
        count = len(users) - len(runs)
        said.append(f"{count} stage{'s' if count != 1 else ''} {', '.join(stages)}")
    return "; ".join(said) or "no run"


def stage_section(study: str, runs: Sequence[Any], stages: Sequence[Any],
                  sections: Mapping[str, Section]) -> Section | None:
    """The study's stages, each once: a stage whose runs are all of one setting goes into
    that setting's section (`sections`, by setting); the others into the returned section,
    with what the study computed in this session (runs' own time + stages' time). None when
    the study used no stage."""
    if not stages:
        return None
    section = Section(study, "stages", kind="stages")
    shared: dict[str, list[list[str]]] = defaultdict(list)  # tier -> rows
    local: dict[str, Table] = {}  # setting -> its stage table
    for group in stage_groups(runs, stages):
        settings = group.settings()
        alone = len(settings) == 1 and all(u.kind != "stage" for u in group.used())
        home = sections.get(settings[0]) if alone else None
        if home is None:
            shared[group.rows[0].tier].append(group.table_row())
            section.stages.extend(group.long(study))
            continue
        if home.setting not in local:
            local[home.setting] = Table("stages", STAGE_HEADERS, [])
            home.tables.append(local[home.setting])
        local[home.setting].rows.append(group.table_row())
        home.stages.extend(group.long(study))
    for tier, rows in shared.items():
        title = "stages shared by settings" + (f" ({tier})" if len(shared) > 1 else "")
        section.tables.append(Table(title, STAGE_HEADERS, rows))
    section.footer.append(_compute_line(runs, stages))
    return section


def _compute_line(runs: Sequence[Any], stages: Sequence[Any]) -> str:
    """What the study computed in this session; rows reused from the store are not counted."""
    run_s = sum(r.duration or 0.0 for r in runs if r.source == "run")
    stage_s = sum(s.duration or 0.0 for s in stages if s.source == "run")
    line = (f"compute: runs {_number(run_s)} s + stages {_number(stage_s)} s = "
            f"{_number(run_s + stage_s)} s")
    reused = [sum(r.source == "store" for r in rows) for rows in (runs, stages)]
    if any(reused):
        line += (f" (not counted, reused from the store: {reused[0]} run"
                 f"{'s' if reused[0] != 1 else ''}, {reused[1]} stage"
                 f"{'s' if reused[1] != 1 else ''})")
    return line


# -- across knobs: pivots of a tier's settings, and the claims across a knob's values ----------


def across_section(study: str, tier: str, runs: Sequence[Any], claims: Sequence[dict],
                   options: Mapping[str, Any]) -> Section | None:
    """The tier's pivot tables (when its settings form a grid or one-at-a-time lines) and its
    knob claims; None when it has neither."""
    pivot = tier_pivot(runs, options.get("pivot"), options.get("tables"))
    arrangement = pivot.arrangement if pivot else None
    tables: list[Table] = []
    if pivot is not None:

        def cell(knobs: Knobs, variant: str, metric: str) -> Cell | None:
            return _cell(pivot.values(knobs, variant, metric))

        minimize = tuple(options.get("minimize", ()))
        if isinstance(pivot.arrangement, Grid):
            tables = [t for metric in pivot.metrics for variant in pivot.variants
                      if (t := _grid_table(pivot.arrangement, variant, metric, cell, minimize))]
        else:
            tables = [_line_table(line, pivot.variants, metric, cell, minimize)
                      for line in pivot.arrangement for metric in pivot.metrics]
    if not tables and not claims:
        return None
    if isinstance(arrangement, Grid) and tables:
        knobs = f"{arrangement.rows} x {arrangement.cols}"
    else:
        names = [line.knob for line in arrangement or [] if isinstance(line, Line) and tables]
        names += [v.get("detail", {}).get("knob") or "?" for v in claims]
        knobs = "across " + ", ".join(dict.fromkeys(names))
    return Section(study, f"{tier} · {knobs}", tables=tables, verdicts=list(claims),
                   kind="across", tier=tier)


CellOf = Callable[[Knobs, str, str], Cell | None]  # (knobs, variant, metric)


def _grid_table(grid: Grid, variant: str, metric: str, cell: CellOf,
                minimize: tuple[str, ...]) -> Table | None:
    """`metric` of `variant` over the grid: a row per value of one knob, a column per value
    of the other; the best cell marked. None when the variant has no value there."""
    rows = [[format_value(r), *(cell(grid.settings[i, j], variant, metric)
                                for j in range(len(grid.col_values)))]
            for i, r in enumerate(grid.row_values)]
    if all(c is None for row in rows for c in row[1:]):
        return None
    _mark((c for row in rows for c in row[1:]), metric, minimize)
    return Table(f"{metric} · {variant}",
                 [f"{grid.rows} \\ {grid.cols}", *map(format_value, grid.col_values)], rows)


def _line_table(line: Line, variants: Sequence[str], metric: str, cell: CellOf,
                minimize: tuple[str, ...]) -> Table:
    """`metric` across one knob's values (the others fixed): a row per variant, its best value
    marked."""
    rows = []
    for variant in variants:
        cells = [cell(knobs, variant, metric) for knobs in line.settings]
        _mark(cells, metric, minimize)
        rows.append([variant, *cells])
    fixed = ", ".join(f"{k}={format_value(v)}" for k, v in line.fixed)
    return Table(f"{metric} across {line.knob}" + (f" ({fixed})" if fixed else ""),
                 [f"variant \\ {line.knob}", *map(format_value, line.values)], rows)


def tier_comparison(study: str, verdicts: Sequence[dict]) -> Section | None:
    """One row per hypothesis, one column per tier: the synthetic and the real verdicts side by
    side (each setting's verdict when a tier sweeps knobs). None with fewer than two tiers."""
    tiers = list(dict.fromkeys(v["tier"] for v in verdicts))
    if len(tiers) < 2:
        return None
    rows = []
    for hypothesis in dict.fromkeys(v["hypothesis"] for v in verdicts):
        row: list[Any] = [hypothesis]
        for tier in tiers:
            found = [v for v in verdicts if v["hypothesis"] == hypothesis and v["tier"] == tier]
            row.append("; ".join(
                (f"{setting_id('', tuple(v['knobs'].items())).lstrip('-')}: " if v["knobs"]
                 else "") + _status(v) for v in found) or "not run")
        rows.append(row)
    return Section(study, "verdicts by tier",
                   tables=[Table("verdicts by tier", ["hypothesis", *tiers], rows)], kind="tiers")


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def _status(verdict: Mapping[str, Any]) -> str:
    """`SUPPORTED`; under an adaptive seed budget with the look that ended the setting and
    its seeds: `SUPPORTED (look 1/4, 3 seeds)`."""
    status = (verdict.get("status") or "-").upper()
    look = (verdict.get("detail") or {}).get("adaptive")
    return f"{status} (look {look['look']}/{look['looks']}, {look['seeds']} seeds)" if look \
        else status


def verdict_rows(verdicts: Iterable[dict]) -> list[list[str]]:
    return [[v["hypothesis"], v["metric"] or "-", _fmt(v["diff"]),
             f"[{_fmt(v['ci_lo'])}, {_fmt(v['ci_hi'])}]" if v["ci_lo"] is not None else "-",
             _p(v["p"]), _p(v["p_adj"]), _status(v)] for v in verdicts]


VERDICT_HEADERS = ["hypothesis", "metric", "diff", "CI", "p", "p adj", "verdict"]


def baseline_rows(verdicts: Iterable[dict]) -> list[list[str]]:
    """Guards against the baseline: both means beside the paired difference."""
    rows = []
    for v in verdicts:  # the label is `variant>=baseline[metric]` (`<=` when lower is better)
        variant, op, _ = re.split(r"(>=|<=)baseline\[", v["hypothesis"], maxsplit=1)
        rows.append([variant, v["metric"] or "-", f"{op} baseline", _fmt(v.get("mean_b")),
                     _fmt(v.get("mean_a")), _fmt(v["diff"]),
                     f"[{_fmt(v['ci_lo'])}, {_fmt(v['ci_hi'])}]" if v["ci_lo"] is not None
                     else "-", _p(v["p_adj"]), _status(v)])
    return rows


BASELINE_HEADERS = ["variant", "metric", "claim", "baseline", "current", "diff", "CI", "p adj",
                    "verdict"]


def _signed(value: Any, digits: str = ".2f") -> str:
    if value is None:
        return "-"
    return "nan" if isinstance(value, float) and math.isnan(value) else f"{value:+{digits}}"


def _knob_result(v: Mapping[str, Any]) -> str:
    """What a knob claim found: the difference (compare), rho and slope (trend), the winner
    or the candidates (best)."""
    detail = v.get("detail") or {}
    if v.get("kind") == "trend":
        if "rho" not in detail:
            return "-"
        return f"rho {_signed(detail['rho'])}, slope {_signed(detail.get('slope'), '.3g')}"
    if v.get("kind") == "best":
        found = (f"winner {detail['winner']}" if detail.get("winner") else
                 f"candidates {', '.join(map(str, detail['candidates']))}"
                 if detail.get("candidates") else "-")
        return found + (f" (expected {detail['expect']})" if detail.get("expect") else "")
    if v.get("diff") is None:
        return "-"
    ci = (f" [{_fmt(v['ci_lo'])}, {_fmt(v['ci_hi'])}]" if v.get("ci_lo") is not None else "")
    return f"diff {_fmt(v['diff'])}{ci}"


# `a op b` of a claim in words (`combined >= ctc_only`, `temperature=0.5 > temperature=1.2`)
CLAIM_SIDES = re.compile(r"^\s*(?P<a>.*?)\s*(?P<op>>=|<=|==|>|<)\s*(?P<b>.*?)\s*$")


def _level_means(v: Mapping[str, Any]) -> str:
    """"0.7: 0.812 · 1.2: 0.790": the mean over seeds of each level (of the two compared)."""
    detail = v.get("detail") or {}
    levels, means = detail.get("levels") or [], detail.get("means") or []
    if v.get("kind") == "compare" and (sides := CLAIM_SIDES.match(detail.get("claim") or "")):
        prefix = f"{detail.get('knob')}="
        levels = [side.removeprefix(prefix) for side in sides.group("a", "b")]
        means = [v.get("mean_a"), v.get("mean_b")]
    return " · ".join(f"{level}: {_fmt(mean)}" for level, mean in zip(levels, means,
                                                                      strict=False)) or "-"


KNOB_HEADERS = ["variant", "metric", "claim", "means", "result", "p", "p adj", "verdict"]


def knob_claim_tables(verdicts: Iterable[dict]) -> list[Table]:
    """Knob claims (compare, trend, best) in one table per knob and setting of the others:
    "claims on acc across temperature (noise=0.5)" (the metric in the title when they share
    one)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for v in verdicts:
        others = ", ".join(f"{k}={format_value(x)}" for k, x in v["knobs"].items())
        groups.setdefault(((v.get("detail") or {}).get("knob") or "?", others), []).append(v)
    tables = []
    for (knob, others), found in groups.items():
        metrics = {v["metric"] for v in found}
        one = next(iter(metrics)) if len(metrics) == 1 and None not in metrics else None
        rows = [[(v.get("detail") or {}).get("variant") or "-", v["metric"] or "-",
                 (v.get("detail") or {}).get("claim") or v["hypothesis"], _level_means(v),
                 _knob_result(v), _p(v["p"]), _p(v["p_adj"]), _status(v)] for v in found]
        headers = KNOB_HEADERS
        if one is not None:  # the metric goes into the title
            rows = [[row[0], *row[2:]] for row in rows]
            headers = [KNOB_HEADERS[0], *KNOB_HEADERS[2:]]
        title = (f"claims{' on ' + one if one else ''} across {knob}"
                 + (f" ({others})" if others else ""))
        tables.append(Table(title, headers, rows))
    return tables


def shown_tables(section: Section) -> list[Table]:
    """A section's tables in the order they are shown: its metric tables, then its
    hypotheses, its knob claims and its guards against each baseline."""
    tables = list(section.tables)
    claims = [v for v in section.verdicts
              if not v.get("baseline") and v.get("kind") not in KNOB_CLAIMS]
    guards = [v for v in section.verdicts if v.get("baseline")]
    if claims:
        tables.append(Table("hypotheses", VERDICT_HEADERS, verdict_rows(claims)))
    tables += knob_claim_tables(v for v in section.verdicts if v.get("kind") in KNOB_CLAIMS)
    for baseline in dict.fromkeys(v["baseline"] for v in guards):
        tables.append(Table(f"vs baseline (session {baseline})", BASELINE_HEADERS,
                            baseline_rows(v for v in guards if v["baseline"] == baseline)))
    return tables


def _render(sections: Sequence[Section], fmt: str, bold: str, heading: str) -> str:
    out = []
    for s in sections:
        out.append(f"{heading}{s.study} · {s.setting}")
        for t in shown_tables(s):
            rows = [[(f"{bold}{c.text()}{bold}" if bold else f"{c.text()} *") if
                     isinstance(c, Cell) and c.best else c.text() if isinstance(c, Cell)
                     else "-" if c is None else c for c in row] for row in t.rows]
            out.append(f"\n{t.title}\n" if not bold else f"\n**{t.title}**\n")
            out.append(tabulate(rows, t.headers, tablefmt=fmt, disable_numparse=True))
        out.extend(f"\n{line}" for line in s.footer)
        out.extend(f"\n! {note}" for note in s.notes)
        out.append("\n")
    return "\n".join(out)


def render_text(sections: Sequence[Section]) -> str:
    """Terminal tables; the best value per column ends in `*`."""
    return _render(sections, "simple", "", "")


def render_markdown(sections: Sequence[Section]) -> str:
    """GitHub Markdown (job summaries, reports); the best value per column in bold."""
    return _render(sections, "github", "**", "### ")


# The CSV tables: their columns, in order (`nan`/`inf` as Python writes them, knobs as JSON).
CSV_TABLES = {
    "summary": ["study", "setting", "variant", "head", "group", "metric", "mean", "std", "n",
                "source"],  # JSON's summary also has the variant's resources (`_usage`)
    "runs": ["study", "setting", "tier", "knobs", "variant", "seed", "metric", "value", "status",
             "source", "fingerprint", "run", "reused_from", "duration", "device", "git_commit",
             "note", "error", *RUN_RESOURCES, "stages"],
    "verdicts": ["study", "setting", "tier", "knobs", "hypothesis", "metric", "status", "diff",
                 "ci_lo", "ci_hi", "p", "p_adj", "test", "n", "message", "mean_a", "mean_b",
                 "baseline", "kind", "detail"],
    "stages": ["study", "tier", "stage", "id", "seed", "status", "source", "duration",
               *RUN_RESOURCES, "used_by", "settings", "row"],
}


def _verdicts(section: Section) -> list[dict]:
    return [{"setting": section.setting, **v} for v in section.verdicts]


def render_csv(sections: Sequence[Section], table: str = "summary") -> str:
    """Long format: `summary`, one line per (study, setting, variant, head, group, metric);
    `runs`, one line per run and metric; `verdicts`, one line per hypothesis and setting;
    `stages`, one line per stage (dicts and lists as JSON)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_TABLES[table], extrasaction="ignore")
    writer.writeheader()
    for s in sections:
        rows = {"summary": s.summary, "runs": s.runs, "verdicts": _verdicts(s),
                "stages": s.stages}[table]
        writer.writerows({k: json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v
                          for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def _json_value(value: Any, path: str, kinds: dict[str, str]) -> Any:
    """`value` with each non-finite number (however deep) as None, noted in `kinds` by its
    path ("detail.rho")."""
    if isinstance(value, float) and (kind := non_finite(value)):
        kinds[path] = kind
        return None
    if isinstance(value, Mapping):
        return {k: _json_value(v, f"{path}.{k}", kinds) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v, f"{path}.{i}", kinds) for i, v in enumerate(value)]
    return value


def _json_row(row: Mapping[str, Any]) -> dict:
    """JSON has no NaN or infinities: such a number becomes null and `non_finite` maps its
    field (`detail.means.2` inside one) to what it was ("nan", "inf", "-inf")."""
    kinds: dict[str, str] = {}
    values = {k: _json_value(v, k, kinds) for k, v in row.items()}
    return {**values, "non_finite": kinds}


def render_json(sections: Sequence[Section]) -> str:
    """Every section with its summary (a row's `non_finite_seeds` counts its seeds by
    non-finite kind), every run's values, its verdicts, notes and tables as shown."""
    return json.dumps([{"study": s.study, "setting": s.setting,
                        "summary": [_json_row(row) for row in s.summary],
                        "runs": [_json_row(row) for row in s.runs],
                        "verdicts": [_json_row(v) for v in s.verdicts],
                        "stages": [_json_row(row) for row in s.stages], "footer": s.footer,
                        "notes": s.notes,
                        "tables": [{"title": t.title, "headers": t.headers,
                                    "rows": [[c.text() if isinstance(c, Cell) else c for c in row]
                                             for row in t.rows]} for t in s.tables]}
                       for s in sections],
                      indent=2, allow_nan=False)


def write_markdown(sections: Sequence[Section], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_markdown(sections), encoding="utf-8")
    return path
