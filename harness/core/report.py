"""`python -m harness report`: the session's tables again, from the results store.

    python -m harness report                       # latest session, as terminal text
    python -m harness report --format md -o results.md
    python -m harness report --session 20261121-111500-3f9a1c --format csv
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.core.store import Store
from harness.core.tables import (
    render_csv,
    render_json,
    render_markdown,
    render_text,
    session_sections,
)

RENDERERS = {"text": render_text, "md": render_markdown, "csv": render_csv, "json": render_json}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness report",
                                     description="Print or export the tables of a stored session.")
    parser.add_argument("--store", default=".ablation/results.sqlite",
                        help="results store (default: %(default)s)")
    parser.add_argument("--session", default="latest",
                        help="session id, or 'latest' (default); see --list")
    parser.add_argument("--format", choices=sorted(RENDERERS), default="text")
    parser.add_argument("-o", "--output", help="write to this file instead of stdout")
    parser.add_argument("--list", action="store_true", help="list the stored sessions")
    args = parser.parse_args(argv)

    path = Path(args.store)
    if not path.is_file():
        parser.error(f"no results store at {path}; run the studies first or pass --store PATH")
    store = Store(path)
    if args.list:
        for s in store.sessions():
            print(f"{s['session']}  {s.get('started_at', '')}  exit={s.get('exitstatus')}  "
                  f"{' '.join(s.get('argv', []))}")
        return 0
    session = store.latest_session() if args.session == "latest" else args.session
    if session is None:
        parser.error(f"the store {path} holds no session yet")
    sections = session_sections(store, session, store.study_options(session))
    if not sections:
        parser.error(f"session {session!r} has no runs in {path}; see --list")
    text = RENDERERS[args.format](sections)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text)
    return 0
