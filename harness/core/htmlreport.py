"""One self-contained HTML file for a stored session: every table, verdict and figure.

Self-contained means it opens from a mail attachment or a CI artifact with no network and no
other file: the style is inline, each figure is an SVG in a data: URI (an image of its own,
so the ids of one figure never clash with another's), and there is no script at all. Each
study has a section per setting: its tables, its hypotheses coloured by verdict and its
figures (core/plots.py), each with the notes on what it had to leave out.
"""

from __future__ import annotations

import base64
import html
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from harness.core import figures
from harness.core.paths import component
from harness.core.plots import Plot
from harness.core.tables import Cell, Section, Table, shown_tables

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f;
       margin: 0; background: #fafafa; }
header, main, nav { max-width: 1180px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 20px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 36px 0 8px; padding-top: 12px; border-top: 2px solid #ddd; }
h3 { font-size: 16px; margin: 26px 0 6px; }
.meta { color: #555; margin: 2px 0; }
.counts span { display: inline-block; padding: 2px 10px; margin: 6px 6px 0 0; border-radius: 10px;
               font-weight: 600; color: #fff; }
nav ul { columns: 2; padding-left: 18px; }
table { border-collapse: collapse; margin: 6px 0 14px; background: #fff; font-size: 13px; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; white-space: nowrap; }
th { background: #f0f0f0; }
td.best { font-weight: 700; }
.scroll { overflow-x: auto; }
.figures { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; background: #fff; border: 1px solid #e3e3e3; padding: 8px; max-width: 100%; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { font-size: 13px; color: #333; margin-top: 4px; max-width: 640px; }
.note { color: #8a5a00; margin: 2px 0; }
.footer-line { color: #333; }
"""


def _verdict_class(text: str) -> str:
    """The verdict a hypothesis row's last cell names (its row's colour), or ""."""
    word = text.split()[0].lower() if text.strip() else ""
    return word if word in figures.VERDICT_COLOURS else ""


def _cell(value: Any) -> str:
    if isinstance(value, Cell):
        text = html.escape(value.text())
        return f'<td class="best">{text}</td>' if value.best else f"<td>{text}</td>"
    return f"<td>{html.escape('-' if value is None else str(value))}</td>"


def _table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in table.headers)
    rows = []
    for row in table.rows:
        last = row[-1] if row and isinstance(row[-1], str) else ""
        colour = figures.VERDICT_COLOURS.get(_verdict_class(last))
        style = f' style="background:{colour}1f"' if colour else ""
        rows.append(f"<tr{style}>{''.join(_cell(c) for c in row)}</tr>")
    return (f'<div class="scroll"><table><caption>{html.escape(table.title)}</caption><thead>'
            f"<tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def _figure(plot: Plot) -> str:
    svg = base64.b64encode(figures.render(plot.figure, "svg")).decode("ascii")
    notes = "".join(f'<div class="note">! {html.escape(n)}</div>' for n in plot.notes)
    return (f'<figure data-plot="{html.escape(plot.name)}"><img alt="{html.escape(plot.title)}" '
            f'src="data:image/svg+xml;base64,{svg}"><figcaption>{html.escape(plot.title)}'
            f"{notes}</figcaption></figure>")


def _anchor(index: int, section: Section) -> str:
    return f"s{index}-{component(section.setting)}"


def render_html(sections: Sequence[Section], plots: Mapping[int, Sequence[Plot]], *,
                session: Mapping[str, Any]) -> str:
    """The report of one session: `session` is its stored row (session id, start, exit
    status, argv); `plots` the figures of each section, by index (core/plots.py)."""
    counts = Counter(str(v.get("status")) for s in sections for v in s.verdicts)
    badges = "".join(
        f'<span style="background:{figures.VERDICT_COLOURS.get(status, "#555")}">'
        f"{html.escape(status)}: {n}</span>" for status, n in sorted(counts.items()))
    studies: dict[str, list[int]] = {}
    for index, section in enumerate(sections):
        studies.setdefault(section.study, []).append(index)
    toc = "".join(
        f"<li><a href=\"#{_anchor(indices[0], sections[indices[0]])}\">{html.escape(study)}</a>"
        f" ({len(indices)} section{'s' * (len(indices) != 1)})</li>"
        for study, indices in studies.items())
    body = []
    for study, indices in studies.items():
        body.append(f'<section class="study"><h2>{html.escape(study)}</h2>')
        for index in indices:
            section = sections[index]
            body.append(f'<section class="setting" id="{_anchor(index, section)}">'
                        f"<h3>{html.escape(section.setting)}</h3>")
            body.extend(_table(t) for t in shown_tables(section))
            body.extend(f'<p class="footer-line">{html.escape(line)}</p>'
                        for line in section.footer)
            body.extend(f'<p class="note">! {html.escape(note)}</p>' for note in section.notes)
            mine = plots.get(index, [])
            if mine:
                body.append('<div class="figures">')
                body.extend(_figure(p) for p in mine)
                body.append("</div>")
            body.append("</section>")
        body.append("</section>")
    name = html.escape(str(session.get("session", "")))
    argv = html.escape(" ".join(session.get("argv") or []))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Ablation report · {name}</title><style>{CSS}</style></head>
<body><header><h1>Ablation report</h1>
<p class="meta">session <b>{name}</b> · started {html.escape(str(session.get("started_at", "")))}
 · exit status {html.escape(str(session.get("exitstatus", "-")))}</p>
<p class="meta"><code>pytest {argv}</code></p>
<div class="counts">{badges}</div></header>
<nav><h2>Studies</h2><ul>{toc}</ul></nav>
<main>{"".join(body)}</main></body></html>
"""
