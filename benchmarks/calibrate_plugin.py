"""Calibration through the plugin: false support of toy studies run by real pytest sessions.

For every metric kind of benchmarks/calibrate_stats.py (continuous, saturated, quantised) and
3, 5 and 10 seeds, it writes a throwaway pytest project with one A/A study, variants a and b
with identical distributions paired by seed, expanded into many independent settings by a
`rep` knob. Each setting decides `a > b` and `a < b` with the t-test and the permutation test,
uncorrected (correction="none"), so every setting's claims stand alone. `python -m pytest`
runs the project in a subprocess; the verdicts are read back from its results store. A study's
settings are split over sessions of at most --chunk settings: a session's cost grows faster
than its number of items (2000 settings of 10 seeds ran at 180 items/s, 500 at 340). The same
is done for the saturated non-inferiority example (a truly worse by 0.01, margin 0.005) and a
study that ignores its seeds. The table goes into docs/statistics.md.

    python benchmarks/calibrate_plugin.py [--reps 2000] [--extra-reps 1000] [--chunk 500]
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from calibrate_stats import (
    ALPHA,
    DOC,
    HEAVY,
    KINDS,
    SEEDS,
    Kind,
    check_markers,
    machine,
    rate_cells,
    write_marked,
)

BEGIN, END = "<!-- plugin-calibration:begin -->", "<!-- plugin-calibration:end -->"
STORE = Path(".ablation") / "results.sqlite"
# A run writes a few small files; on a tmpfs that is about twice as fast as on this disk.
WORKDIR = Path("/dev/shm") if Path("/dev/shm").is_dir() else None


@dataclass(frozen=True)
class Cell:
    """One study: a metric kind at n seeds, its claims, and how many settings it expands to."""

    label: str
    kind: Kind
    seeds: int
    reps: int
    claims: tuple[tuple[str, float], ...]  # (op, margin)
    true_diff: float = 0.0
    seeds_used: bool = True

    def module(self, reps: range) -> str:
        """The toy study over settings `reps`: a seed-shared and a per-run draw, both N(0, 1),
        made into the metric."""
        seed = "-{run.seed}" if self.seeds_used else ""
        shift = f"({self.kind.shift_for(self.true_diff)!r} if run.variant == 'a' else 0.0)"
        lines = [
            "import random",
            "",
            "from harness import ablation",
            "",
            f"study = ablation(variants={{'a': {{}}, 'b': {{}}}}, seeds={self.seeds}, "
            f"correction='none',",
            f"                 tiers={{'aa': {{'rep': list(range({reps.start}, {reps.stop}))}}}})",
            "",
            "",
            "@study",
            "def test_aa(run):",
            "    rep = run.config['rep']",
            f"    shared = random.Random(f'{{rep}}{seed}').gauss(0, 1)",
            f"    own = random.Random(f'{{rep}}{seed}-{{run.variant}}').gauss(0, 1)",
            f"    shift = {shift}",
            f"    return {{'acc': {self.kind.source('shift')}}}",
            "",
            "",
        ]
        for op, margin in self.claims:
            for test in ("t", "permutation"):
                lines.append(f"study.expect('a {op} b', metric='acc', margin={margin!r}, "
                             f"test='{test}', name='{label(op, test)}')")
        return "\n".join(lines) + "\n"


def label(op: str, test: str) -> str:
    return f"a{op}b_{test}"


def cells(reps: int, extra_reps: int) -> list[Cell]:
    aa = [Cell(f"{kind.label}, A/A", kind, n, reps, ((">", 0.0), ("<", 0.0)))
          for kind in KINDS for n in SEEDS]
    ni = [Cell(f"{HEAVY.label}, true a - b = -0.01", HEAVY, n, extra_reps, ((">=", 0.005),),
               true_diff=-0.01) for n in SEEDS]
    ignored = Cell("seeds ignored (A/A)", KINDS[0], 5, extra_reps, ((">", 0.0),),
                   seeds_used=False)
    return [*aa, *ni, ignored]


def session_verdicts(module: str, what: str, workers: int, root: Path | None,
                     query: str = "SELECT hypothesis, knobs, status FROM verdicts") -> list[tuple]:
    """Run `module` as the one test file of a throwaway pytest project; the rows of `query`
    (by default (hypothesis, knobs, status)) from its store. Exit 1 is expected (claims that
    fail, as they should)."""
    project = Path(tempfile.mkdtemp(prefix="calibrate-", dir=root))
    try:
        (project / "pytest.ini").write_text("[pytest]\n")
        (project / "test_calibration_cell.py").write_text(module)
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--tb=no",
                   "-rN", "--no-ablation-tables", *(["-n", str(workers)] if workers else [])]
        done = subprocess.run(command, cwd=project, capture_output=True, text=True, check=False)
        if done.returncode not in (0, 1):
            raise SystemExit(f"pytest exited {done.returncode} on {what}:\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        db = sqlite3.connect(project / STORE)
        try:
            return db.execute(query).fetchall()
        finally:
            db.close()
    finally:
        shutil.rmtree(project)


def run_chunk(cell: Cell, reps: range, workers: int, root: Path) -> list[tuple[str, str, str]]:
    """Run the cell's study over settings `reps` in a fresh project; its verdict rows."""
    rows = session_verdicts(cell.module(reps), f"{cell.label}, {cell.seeds} seeds", workers,
                            root)
    decided = Counter(h for h, _, _ in rows)
    expected = {label(op, test): len(reps) for op, _ in cell.claims
                for test in ("t", "permutation")}
    if decided != expected or len({(h, k) for h, k, _ in rows}) != len(rows):
        raise SystemExit(f"{cell.label}, {cell.seeds} seeds: expected one verdict per setting "
                         f"and hypothesis {expected}, the store has {dict(decided)}")
    return rows


def run_cell(cell: Cell, chunk: int, workers: int, root: Path) -> tuple[Counter[str], float]:
    """Supported settings per hypothesis of the cell's study, and its wall time."""
    start, supported = time.perf_counter(), Counter()
    for first in range(0, cell.reps, chunk):
        rows = run_chunk(cell, range(first, min(first + chunk, cell.reps)), workers, root)
        supported.update(h for h, _, status in rows if status == "supported")
    return supported, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2000, help="settings per A/A study")
    parser.add_argument("--extra-reps", type=int, default=1000,
                        help="settings of the non-inferiority and seeds-ignored studies")
    parser.add_argument("--chunk", type=int, default=500, help="most settings per session")
    parser.add_argument("--workers", type=int, default=0, help="pytest-xdist workers (-n)")
    parser.add_argument("--workdir", type=Path, default=WORKDIR,
                        help="where the throwaway projects go (default /dev/shm, else /tmp)")
    parser.add_argument("--doc", type=Path, default=DOC, help="markdown file to update")
    args = parser.parse_args()
    check_markers(args.doc, BEGIN, END)

    rows = ["| metric | claim | seeds | test | settings | supported | 95% interval "
            "| alpha vs interval |", "|---|---|---|---|---|---|---|---|"]
    start, runs, sessions = time.perf_counter(), 0, 0
    for cell in cells(args.reps, args.extra_reps):
        supported, wall = run_cell(cell, args.chunk, args.workers, args.workdir)
        runs += 2 * cell.seeds * cell.reps
        sessions += -(-cell.reps // args.chunk)
        print(f"{cell.label}, {cell.seeds} seeds: {dict(supported)} of {cell.reps} "
              f"settings, {wall:.0f} s", flush=True)
        for op, margin in cell.claims:
            claim = f"a {op} b" + (f", margin {margin:g}" if margin else "")
            for test in ("t", "permutation"):
                rows.append(f"| {cell.label} | {claim} | {cell.seeds} | {test} | {cell.reps} | "
                            f"{rate_cells(supported[label(op, test)], cell.reps)} |")
    elapsed = time.perf_counter() - start
    command = (f"python benchmarks/calibrate_plugin.py --reps {args.reps} --extra-reps "
               f"{args.extra_reps} --chunk {args.chunk} --workers {args.workers}")
    body = "\n".join([
        f"Generated by `{command}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC in "
        f"{elapsed / 60:.1f} min ({runs} runs in {sessions} pytest sessions, "
        f"{runs / elapsed:.0f} runs/s).",
        machine(),
        "",
        "Every row is the share of settings whose claim was supported, i.e. a false-support "
        "rate: the A/A pairs have identical distributions, the non-inferiority example is "
        "truly worse by twice its margin, and the study that ignores its seeds repeats one "
        f"draw. Alpha {ALPHA}, no correction; *above* or *in* means calibrated.",
        "",
        *rows,
    ])
    print(write_marked(args.doc, BEGIN, END, body))


if __name__ == "__main__":
    main()
