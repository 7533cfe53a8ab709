"""Result tables: per study and setting, one table per metric group, then the verdicts.

Rows are (variant, head), cells mean +- std over seeds, the best value per column marked.
The same sections render as terminal text, Markdown, CSV (long format) and JSON.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tabulate import tabulate

from harness.core.metrics import lower_is_better, split_path
from harness.core.study import setting_id


@dataclass
class Cell:
    mean: float
    std: float
    n: int
    best: bool = False

    def text(self) -> str:
        spread = f" ± {self.std:.3f}" if self.n > 1 else ""
        return f"{self.mean:.3f}{spread}"


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[Any]]  # str labels, then Cell | None per metric, then n and wall time


@dataclass
class Section:
    study: str
    setting: str
    tables: list[Table] = field(default_factory=list)
    verdicts: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: list[dict] = field(default_factory=list)  # long format: one row per metric


def _cell(values: Sequence[float]) -> Cell | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return Cell(statistics.fmean(values), std, len(values))


def _mark_best(rows: list[list[Any]], columns: range, names: Sequence[str],
               minimize: tuple[str, ...]) -> None:
    for col, name in zip(columns, names, strict=True):
        cells = [row[col] for row in rows if row[col] is not None]
        if len({c.mean for c in cells}) < 2:  # one value, or all equal: nothing stands out
            continue
        pick = min if lower_is_better(name, minimize) else max
        best = pick(c.mean for c in cells)
        for c in cells:
            c.best = c.mean == best


def build_section(study: str, setting: str, runs: Sequence[Any], verdicts: Sequence[dict],
                  *, groups: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
                  minimize: tuple[str, ...] = ()) -> Section:
    """Tables for one study at one setting from its run records (done or failed).

    `groups` picks the tables (metric groups) in order and, as a dict, their columns; every
    metric still goes into the long-format summary (CSV, JSON).
    """
    section = Section(study, setting, verdicts=list(verdicts))
    done = [r for r in runs if r.status == "done"]
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
                wall = _cell([r.duration for r in records if r.duration is not None])
                devices = ",".join(sorted({r.device for r in records})) or "-"
                rows.append([label, *([head] if with_head else []),
                             *(cells[names.index(n)] for n in shown), len(records),
                             f"{wall.mean:.1f}" if wall else "-", devices])
                for n, c in zip(names, cells, strict=True):
                    if c is not None:
                        section.summary.append({"study": study, "setting": setting,
                                                "variant": variant, "head": head,
                                                "group": group, "metric": n, "mean": c.mean,
                                                "std": c.std, "n": c.n,
                                                "source": "store" if variant in reused else "run"})
        first = 2 if with_head else 1
        _mark_best(rows, range(first, first + len(shown)), shown, minimize)
        headers = ["variant", *(["head"] if with_head else []), *shown, "n", "wall s", "device"]
        section.tables.append(Table(group, headers, rows))
    for r in runs:
        if r.status == "failed":
            error = (r.error or "").strip().splitlines()
            section.notes.append(f"run {r.variant}-seed{r.seed} FAILED: "
                                 f"{error[-1] if error else 'no error recorded'}")
        for failure in r.failures:
            section.notes.append(f"malformed sample in {r.variant}-seed{r.seed}: "
                                 f"{failure.get('sample')}: {failure.get('error')}")
    return section


def session_sections(store: Any, session: str,
                     study_options: Mapping[str, Mapping[str, Any]] | None = None) -> list[Section]:
    """Every study and setting of a stored session, in the order they were run."""
    runs = store.runs(session=session)
    verdicts = store.verdicts(session)
    keys = list(dict.fromkeys((r.study, setting_id(r.tier, tuple(r.knobs.items())))
                              for r in runs))
    keys += [k for k in dict.fromkeys((v["study"], setting_id(v["tier"],
                                                               tuple(v["knobs"].items())))
                                      for v in verdicts) if k not in keys]
    sections = []
    for study, setting in keys:
        options = (study_options or {}).get(study, {})
        sections.append(build_section(
            study, setting,
            [r for r in runs if (r.study, setting_id(r.tier, tuple(r.knobs.items())))
             == (study, setting)],
            [v for v in verdicts if (v["study"], setting_id(v["tier"], tuple(v["knobs"].items())))
             == (study, setting)],
            groups=options.get("tables"), minimize=tuple(options.get("minimize", ()))))
    for study in dict.fromkeys(v["study"] for v in verdicts):
        comparison = tier_comparison(study, [v for v in verdicts if v["study"] == study])
        if comparison is not None:
            sections.append(comparison)
    return sections


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
                 else "") + v["status"].upper() for v in found) or "not run")
        rows.append(row)
    return Section(study, "verdicts by tier",
                   tables=[Table("verdicts by tier", ["hypothesis", *tiers], rows)])


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def verdict_rows(verdicts: Iterable[dict]) -> list[list[str]]:
    return [[v["hypothesis"], v["metric"], _fmt(v["diff"]),
             f"[{_fmt(v['ci_lo'])}, {_fmt(v['ci_hi'])}]" if v["ci_lo"] is not None else "-",
             _p(v["p"]), _p(v["p_adj"]), v["status"].upper()] for v in verdicts]


VERDICT_HEADERS = ["hypothesis", "metric", "diff", "CI", "p", "p adj", "verdict"]


def _render(sections: Sequence[Section], fmt: str, bold: str, heading: str) -> str:
    out = []
    for s in sections:
        out.append(f"{heading}{s.study} · {s.setting}")
        for t in s.tables:
            rows = [[(f"{bold}{c.text()}{bold}" if bold else f"{c.text()} *") if
                     isinstance(c, Cell) and c.best else c.text() if isinstance(c, Cell)
                     else "-" if c is None else c for c in row] for row in t.rows]
            out.append(f"\n{t.title}\n" if not bold else f"\n**{t.title}**\n")
            out.append(tabulate(rows, t.headers, tablefmt=fmt, disable_numparse=True))
        if s.verdicts:
            out.append("\nhypotheses\n" if not bold else "\n**hypotheses**\n")
            out.append(tabulate(verdict_rows(s.verdicts), VERDICT_HEADERS, tablefmt=fmt,
                                disable_numparse=True))
        out.extend(f"\n! {note}" for note in s.notes)
        out.append("\n")
    return "\n".join(out)


def render_text(sections: Sequence[Section]) -> str:
    """Terminal tables; the best value per column ends in `*`."""
    return _render(sections, "simple", "", "")


def render_markdown(sections: Sequence[Section]) -> str:
    """GitHub Markdown (job summaries, reports); the best value per column in bold."""
    return _render(sections, "github", "**", "### ")


def render_csv(sections: Sequence[Section]) -> str:
    """Long format: one line per (study, setting, variant, head, group, metric)."""
    buffer = io.StringIO()
    fields = ["study", "setting", "variant", "head", "group", "metric", "mean", "std", "n",
              "source"]
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for s in sections:
        writer.writerows(s.summary)
    return buffer.getvalue()


def render_json(sections: Sequence[Section]) -> str:
    return json.dumps([{"study": s.study, "setting": s.setting, "summary": s.summary,
                        "verdicts": s.verdicts, "notes": s.notes,
                        "tables": [asdict(t) | {"rows": [[c.text() if isinstance(c, Cell) else c
                                                          for c in row] for row in t.rows]}
                                   for t in s.tables]} for s in sections], indent=2)


def write_markdown(sections: Sequence[Section], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_markdown(sections), encoding="utf-8")
    return path
