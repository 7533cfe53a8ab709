"""`python -m harness report`: the session's tables again, read from the results store.

    python -m harness report                       # latest session, as terminal text
    python -m harness report --format md -o results.md
    python -m harness report --session 20261121-111500-3f9a1c --format csv --table runs
    python -m harness report --baseline git:main   # guarded metrics against main's session
    python -m harness report --html report.html    # one self-contained page with the figures
    python -m harness report --plots figures/      # the figures as PNG and SVG files

The store is opened read-only and never changed (not even a foreign or an older one). Without
--store it is the one a pytest session started here would write (harness.core.inifile). Every
error is one line and exit status 2, like argparse's.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.core import inifile
from harness.core.baseline import SPEC_HELP, BaselineError, compare_session
from harness.core.baseline import resolve as resolve_baseline
from harness.core.store import Store, StoreError
from harness.core.tables import (
    CSV_TABLES,
    Section,
    render_csv,
    render_json,
    render_markdown,
    render_text,
    session_sections,
)

FORMATS = ("text", "md", "csv", "json")


class ReportError(Exception):
    """Nothing to report: the reason, in one line."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness report",
                                     description="Print or export the tables of a stored session "
                                                 "(the store is only read, never changed).")
    parser.add_argument("--store", metavar="PATH",
                        help="results store (default: the one pytest would use from here: the "
                             "ablation_store ini value of the pytest configuration found from "
                             "the current folder up, else .ablation/results.sqlite under the "
                             "rootdir)")
    parser.add_argument("--session", default="latest",
                        help="session id, or 'latest' (default); see --list")
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.add_argument("--table", choices=list(CSV_TABLES),
                        help="the CSV table: summary (default; mean, std and n per variant and "
                             "metric), runs (one row per run and metric: tier, knobs, seed, "
                             "value, status, source, fingerprint, resources, note...), verdicts "
                             "(one row per claim and setting with its statistics), stages (one "
                             "row per stage: wall s, peak MB, computed or reused, its users). "
                             "JSON always holds all of them")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write to this file instead of stdout")
    parser.add_argument("--baseline", metavar="SPEC",
                        help="compare the session's guarded metrics (study.guard) with a "
                             f"baseline, paired seed by seed: {SPEC_HELP}; relative paths and "
                             "git refs from the current folder")
    parser.add_argument("--html", metavar="FILE",
                        help="write one self-contained HTML report (tables, verdicts and "
                             "figures, no network needed to view it) instead of printing")
    parser.add_argument("--plots", metavar="DIR",
                        help="write the report's figures as PNG and SVG files under DIR "
                             "(DIR/<study>/<section>/<figure>.png)")
    parser.add_argument("--smooth", type=float, default=0.0, metavar="W",
                        help="EMA weight for the learning curves, 0 (default: raw) to <1 "
                             "(0.9: strong smoothing)")
    parser.add_argument("--list", action="store_true", help="list the stored sessions")
    return parser


def _figures(store: Store, session: str, sections: list[Section], options: dict,
             args: argparse.Namespace) -> str | None:
    """Write the figures (--plots) and return the HTML report (--html), if asked for."""
    try:
        from harness.core.htmlreport import render_html
        from harness.core.plots import section_plots, write_plots
    except ImportError as exc:
        raise ReportError(f"--html and --plots need matplotlib ({exc}): pip install "
                          "'pytest-ablation[plots]'") from None
    plots = section_plots(store, session, sections, options, smoothing=args.smooth)
    if args.plots:
        try:
            written = write_plots(sections, plots, Path(args.plots))
        except OSError as exc:
            raise ReportError(f"cannot write the figures under {args.plots}: "
                              f"{exc.strerror or exc}") from None
        count = sum(map(len, written.values()))
        print(f"wrote {count} figure files under {args.plots}", file=sys.stderr)
    if not args.html:
        return None
    row = next(s for s in store.sessions() if s["session"] == session)
    return render_html(sections, plots, session=row)


def _report(args: argparse.Namespace) -> str:
    path = Path(args.store) if args.store else inifile.store_path()
    with Store(path, readonly=True, option="--store") as store:
        sessions = store.sessions()
        if not sessions:
            raise ReportError(f"the store {path} holds no session yet")
        if args.list:
            return "\n".join(f"{s['session']}  {s['started_at']}  exit={s['exitstatus']}  "
                             f"{' '.join(s['argv'])}" for s in sessions)
        session = store.latest_session() if args.session == "latest" else args.session
        if session is None:
            raise ReportError(f"no session in the store {path} has runs yet; see --list")
        options = store.study_options(session)
        sections = session_sections(store, session, options)
        if args.baseline:
            baseline = resolve_baseline(args.baseline, store=path, repo=Path.cwd())
            _with_baseline(sections, compare_session(store, session, baseline, options))
        if not sections:
            raise ReportError(f"session {session!r} has no runs in {path}; see --list")
        if args.html or args.plots:
            page = _figures(store, session, sections, options, args)
            if page is not None:
                return page
    if args.format == "csv":
        return render_csv(sections, args.table or "summary")
    return {"text": render_text, "md": render_markdown, "json": render_json}[args.format](
        sections)


def _with_baseline(sections: list[Section], rows: list[dict]) -> None:
    """Each section's guard verdicts become those against the chosen baseline."""
    for section in sections:
        mine = [row for row in rows if (row["study"], row["setting"]) ==
                (section.study, section.setting)]
        section.verdicts = [v for v in section.verdicts if not v.get("baseline")] + mine


def _print(text: str) -> None:
    """Print, and stop quietly when the reader is gone (`report | head -3`)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Python flushes stdout again at exit: point it at /dev/null so that fails no more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not 0 <= args.smooth < 1:
        parser.error(f"--smooth {args.smooth}: give an EMA weight from 0 (no smoothing) up to, "
                     "not including, 1")
    if args.html and args.output:
        parser.error("--html FILE is where the report goes: drop -o")
    if args.table and args.format != "csv":
        parser.error(f"--table {args.table} picks a CSV table: add --format csv (JSON holds "
                     f"every table)")
    try:
        text = _report(args)
    except (StoreError, ReportError, BaselineError, inifile.ConfigError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    output = args.html or args.output
    if not output:
        if args.plots:  # the figures were the point
            return 0
        _print(text)
        return 0
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        parser.exit(2, f"{parser.prog}: error: cannot write {output}: {exc.strerror}\n")
    print(f"wrote {output}", file=sys.stderr)
    return 0
