"""Planted regressions in the flagship, caught (or not) by its guards against a baseline.

    python benchmarks/regressions.py                      # bugs + power, 10 base seeds (~20 min)
    python benchmarks/regressions.py --bases 2 --fractions 0.01 --no-write   # a quick try

The guards (`heads.guard(...)` in ablation_tests/test_chord_heads.py) are only worth their CI
time if a real bug makes them fail and unchanged code never does. So this script copies HEAD's
tracked files into a temporary folder (imported there through PYTHONPATH, ahead of the editable
install), runs the heads study's synthetic tier there as the baseline, and then runs gate
sessions against it: the unmodified code (must pass: 0 false alarms), and each planted bug, a
small text edit of the copy's source that the script checks it applied exactly once, so that it
fails loudly when the code moves. The power part plants output-frame noise in combined at several
fractions over shifted base seeds and counts how often the majmin guard fails. Everything goes to
the "regressions" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from docs_section import stamp, write_section
from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
# The heads study's synthetic tier only: the module's name would also select the controls.
SELECT = "synthetic and test_chord_heads and not controls and not test_synthetic"
GATE = ["ablation_tests", "-k", SELECT, "-p", "no:cacheprovider", "-q", "-rf",
        "--no-ablation-tables"]
MAJMIN, SEG = "joint/labels/majmin", "joint/alignment/seg"
POWER_GUARD = f"combined>=baseline[{MAJMIN}]"
POWER = 0.8


@dataclass(frozen=True)
class Edit:
    """Replace `old` by `new` in `path` (relative to the copy); `old` must occur exactly once."""

    path: str
    old: str
    new: str


@dataclass(frozen=True)
class Plant:
    """A planted regression: a name, what it does in words, and its source edits."""

    name: str
    summary: str
    edits: tuple[Edit, ...]


MINOR_AS_MAJOR = Plant(
    "estimate minor -> major",
    "`harness/chords/evaluation.py`, `score_heads`: the Harte labels of the estimates' timed "
    "frames (the `ctc` and `joint` heads of every variant) get `:min` replaced by `:maj` "
    "(`A:min` -> `A:maj`, `A:min7` -> `A:maj7`); the references (`song.reference`) and the "
    "class ids are untouched, so token accuracy would not move",
    (Edit("harness/chords/evaluation.py",
          "frames_to_segments(vocab.labels(frames, shift=label_shift),",
          "frames_to_segments([x.replace(':min', ':maj') for x in "
          "vocab.labels(frames, shift=label_shift)],"),))

HALF_STEPS = Plant(
    "combined trained half as long",
    "`ablation_tests/test_chord_heads.py`: combined's variant config gets "
    "`\"train\": {\"steps\": TrainConfig().steps // 2}` (40 of the default 80 steps); "
    "ctc_only and ar_only are unchanged",
    (Edit("ablation_tests/test_chord_heads.py",
          '"combined": {"parts": ["ctc", "ar"]},',
          '"combined": {"parts": ["ctc", "ar"], "train": {"steps": TrainConfig().steps // 2}},'),))


def random_frames(fraction: float) -> Plant:
    """Combined's system output with each frame replaced, with probability `fraction`, by a
    random class; seeded by the frames' CTC log-probs, so a run stays deterministic."""
    return Plant(
        f"combined: {100 * fraction:g}% random frames",
        f"`harness/chords/decode.py`, `_outputs`: after joint decoding (combined only), each "
        f"output frame is replaced with probability {fraction:g} by a class drawn uniformly "
        f"from the 61, from a generator seeded by `zlib.crc32` of the song's CTC log-probs",
        (Edit("harness/chords/decode.py", "import numpy as np\n",
              "import zlib  # planted\n\nimport numpy as np\n"),
         Edit("harness/chords/decode.py",
              "        joint = joint_frames(log_probs, ar_sequence)\n",
              "        joint = joint_frames(log_probs, ar_sequence)\n"
              "        rng = np.random.default_rng(zlib.crc32(log_probs.tobytes()))  # planted\n"
              f"        noisy = rng.random(frames) < {fraction!r}\n"
              "        joint[noisy] = rng.integers(0, log_probs.shape[1] - 1, int(noisy.sum()))\n"
              ),))


@contextmanager
def planted(tree: Path, plant: Plant | None) -> Iterator[None]:
    """The copy with `plant`'s edits applied, restored afterwards whatever happens."""
    originals: dict[Path, str] = {}
    try:
        for edit in plant.edits if plant else ():
            path = tree / edit.path
            text = path.read_text()
            originals.setdefault(path, text)
            count = text.count(edit.old)
            if count != 1:
                raise SystemExit(f"planting {plant.name!r}: {edit.old!r} occurs {count} times "
                                 f"in {edit.path} (expected exactly once): the code moved, "
                                 "update the plant")
            path.write_text(text.replace(edit.old, edit.new))
        yield
    finally:
        for path, text in originals.items():
            path.write_text(text)


@dataclass
class Session:
    """One gate session: exit status, wall time, pytest's last line, and the verdict rows it
    stored (guards: rows naming a baseline; the study's own hypotheses: the others)."""

    rc: int
    wall: float
    summary: str
    guards: list[dict] = field(default_factory=list)
    hypotheses: list[dict] = field(default_factory=list)

    def guard_failures(self) -> list[dict]:
        return [g for g in self.guards if g["status"] != "supported"]

    def other_failures(self) -> list[str]:
        """The study's hypotheses that failed: a planted bug can break those too."""
        return [f"σ={h['noise']} `{h['hypothesis']}` ({h['status']})" for h in self.hypotheses
                if h["status"] != "supported"]


def gate(tree: Path, store: Path, *, offset: int, workers: int,
         baseline: Path | None = None) -> Session:
    """A gate session of the copy at `tree` (its own harness first on the path)."""
    extra = ["-n", str(workers), "--seed-offset", str(offset), "--ablation-store", str(store)]
    if baseline is not None:
        extra += ["--ablation-baseline", str(baseline)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(tree), os.environ.get("PYTHONPATH", "")) if p),
        "PYTHONDONTWRITEBYTECODE": "1"}  # no stale .pyc of a planted file
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", *GATE, *extra], cwd=tree, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = proc.stdout.strip().splitlines()
    if proc.returncode not in (0, 1):  # 1: tests failed; anything else: the session broke
        raise SystemExit(f"gate session failed to run (exit {proc.returncode}):\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    rows = verdicts(store)
    return Session(proc.returncode, wall, lines[-1] if lines else "",
                   [r for r in rows if r["baseline"] is not None],
                   [r for r in rows if r["baseline"] is None])


def verdicts(store: Path) -> list[dict]:
    """The verdict rows of the store's one session, with the noise level of each."""
    db = sqlite3.connect(store)
    db.row_factory = sqlite3.Row
    try:
        rows = db.execute("SELECT * FROM verdicts ORDER BY rowid").fetchall()
    finally:
        db.close()
    return [{**dict(r), "noise": json.loads(r["knobs"])["noise_sigma"]} for r in rows]


def copy_head(dest: Path) -> str:
    """HEAD's tracked files in `dest` (no .git: nothing shared with the repository); its sha."""
    sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.strip()
    archive = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return sha


class Progress:
    """Numbered progress lines with the elapsed time, so a 20-minute run is not silent."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.start = total, 0, time.perf_counter()

    def __call__(self, label: str, session: Session) -> None:
        self.done += 1
        guards = (f", guard items failed {len(session.guard_failures())}/{len(session.guards)}"
                  if session.guards else "")
        print(f"[{self.done}/{self.total} {time.perf_counter() - self.start:6.0f} s] {label}: "
              f"{session.wall:.1f} s, exit {session.rc}{guards} ({session.summary})", flush=True)


def fmt(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:+.{digits}f}"


def guard_table(session: Session) -> str:
    """Status, diff (current - baseline), CI and Holm-adjusted p of every guard item."""
    rows = [[g["noise"], f"`{g['hypothesis']}`", g["status"], fmt(g["diff"]),
             "-" if g["ci_lo"] is None else f"[{g['ci_lo']:+.4f}, {g['ci_hi']:+.4f}]",
             "-" if g["p_adj"] is None else f"{g['p_adj']:.3g}",
             f"{g['mean_a']:.4f}" if g["mean_a"] is not None else "-",
             f"{g['mean_b']:.4f}" if g["mean_b"] is not None else "-"]
            for g in session.guards]
    return tabulate(rows, ["noise_sigma", "guard item", "status", "diff", "90% CI",
                           "p_adj (support)", "current", "baseline"], tablefmt="github")


def bug_report(plant: Plant, session: Session) -> str:
    """A planted bug's section: what it is, the gate's outcome, and every guard verdict."""
    failures = session.guard_failures()
    other = session.other_failures()
    lines = [f"**{plant.name}**: {plant.summary}.\n",
             f"Gate exit {session.rc} ({'failed' if session.rc else 'passed'}; "
             f"{session.summary}); guard items failed: {len(failures)} of "
             f"{len(session.guards)}; the study's own hypotheses failed: "
             f"{', '.join(other) if other else 'none'}.\n",
             guard_table(session)]
    if failures:
        first = failures[0]
        lines.append(f"\nThe verdict lines of the first failed guard item "
                     f"(noise_sigma={first['noise']}, `{first['hypothesis']}`):\n\n```\n"
                     f"{first['message']}\n```")
    return "\n".join(lines)


def power_table(power: dict[tuple[float, float], list[dict]], bases: int,
                noises: Sequence[float]) -> tuple[str, dict[float, float | None]]:
    """Fraction -> per noise level: how often the majmin (and seg) guard of combined failed,
    and the mean majmin change; plus the smallest fraction detected in >= 80% of base seeds."""
    fractions = sorted({f for f, _ in power})
    smallest: dict[float, float | None] = dict.fromkeys(noises)
    rows = []
    for fraction in fractions:
        row = [f"{100 * fraction:g}%"]
        for noise in noises:
            found = power[fraction, noise]
            majmin = [g for g in found if g["hypothesis"] == POWER_GUARD]
            seg = [g for g in found if g["hypothesis"] == f"combined>=baseline[{SEG}]"]
            failed = [g for g in majmin if g["status"] != "supported"]
            kinds = ", ".join(f"{s} {sum(g['status'] == s for g in failed)}"
                              for s in sorted({g["status"] for g in failed}))
            diffs = [g["diff"] for g in majmin if g["diff"] is not None]
            if len(failed) >= POWER * bases and smallest[noise] is None:
                smallest[noise] = fraction
            row += [f"{len(failed)}/{len(majmin)}" + (f" ({kinds})" if kinds else ""),
                    fmt(sum(diffs) / len(diffs) if diffs else None),
                    f"{sum(g['status'] != 'supported' for g in seg)}/{len(seg)}"]
        rows.append(row)
    headers = ["fraction of combined's frames"]
    for noise in noises:
        headers += [f"σ={noise}: majmin guard failed", f"σ={noise}: mean majmin diff",
                    f"σ={noise}: seg guard failed"]
    return tabulate(rows, headers, tablefmt="github"), smallest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bases", type=int, default=10,
                        help="base seeds for the power part (--seed-offset 0, 1000, ...)")
    parser.add_argument("--fractions", default="0.0025,0.00375,0.005,0.00625,0.0075",
                        help="fractions of combined's output frames randomised, comma-separated")
    parser.add_argument("--bug-fraction", type=float, default=0.02,
                        help="the fraction of the planted bug (c) (default 0.02)")
    parser.add_argument("--workers", type=int, default=2, help="xdist workers (-n)")
    parser.add_argument("--no-write", action="store_true", help="print, don't write the docs")
    args = parser.parse_args()
    fractions = [float(f) for f in args.fractions.split(",")]
    bugs = [MINOR_AS_MAJOR, HALF_STEPS, random_frames(args.bug_fraction)]
    progress = Progress(2 * args.bases + len(bugs) + args.bases * len(fractions))
    started = time.perf_counter()

    reports: list[str] = []
    unmodified: list[Session] = []
    power: dict[tuple[float, float], list[dict]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="regressions-") as tmp:
        tree, stores = Path(tmp) / "tree", Path(tmp) / "stores"
        stores.mkdir()
        sha = copy_head(tree)
        print(f"copy of HEAD ({sha}) in {tree}", flush=True)
        for k in range(args.bases):
            offset = 1000 * k
            baseline = stores / f"baseline-{k}.sqlite"
            progress(f"base {offset}: baseline", gate(tree, baseline, offset=offset,
                                                       workers=args.workers))
            same = gate(tree, stores / f"unmodified-{k}.sqlite", offset=offset,
                        workers=args.workers, baseline=baseline)
            progress(f"base {offset}: unmodified vs baseline", same)
            unmodified.append(same)
            if k == 0:  # the planted bugs, each against the first baseline
                for n, plant in enumerate(bugs):
                    with planted(tree, plant):
                        session = gate(tree, stores / f"bug-{n}.sqlite", offset=offset,
                                       workers=args.workers, baseline=baseline)
                    progress(f"base {offset}: {plant.name}", session)
                    reports.append(bug_report(plant, session))
            for fraction in fractions:
                with planted(tree, random_frames(fraction)):
                    session = gate(tree, stores / f"power-{k}-{fraction}.sqlite",
                                   offset=offset, workers=args.workers, baseline=baseline)
                progress(f"base {offset}: {100 * fraction:g}% random frames", session)
                for g in session.guards:
                    power[fraction, g["noise"]].append(g)
    wall = time.perf_counter() - started

    noises = sorted({g["noise"] for s in unmodified for g in s.guards})
    first = unmodified[0]
    alarms = sum(len(s.guard_failures()) for s in unmodified)
    items = sum(len(s.guards) for s in unmodified)
    table, smallest = power_table(power, args.bases, noises)
    detected = "; ".join(
        f"σ={noise}: " + (f"**{100 * f:g}%** of combined's output frames (mean majmin diff "
                          f"{fmt(_mean_diff(power[f, noise]))})" if f is not None else
                          f"none of the fractions tried (up to {100 * max(fractions):g}%)")
        for noise, f in smallest.items())
    command = "python benchmarks/regressions.py" + (
        f" --bases {args.bases}" if args.bases != 10 else "")
    body = "\n".join([
        f"{stamp(command)}; {wall / 60:.1f} min in all.\n",
        f"Every session: `pytest {GATE[0]} -k \"{SELECT}\" -n {args.workers} "
        "--ablation-store FILE` in a copy of HEAD's tracked files (commit "
        f"`{sha}`, imported through PYTHONPATH), the gate sessions with `--ablation-baseline "
        "BASELINE` (the same base seed's unmodified session) and never `--reuse`: every run is "
        "recomputed.\n",
        "### The unmodified code against itself\n",
        f"Base seed 0: gate exit {first.rc} ({first.summary}); guard items supported "
        f"{sum(g['status'] == 'supported' for g in first.guards)} of {len(first.guards)}: "
        f"**{len(first.guard_failures())} false alarms**.\n",
        guard_table(first) + "\n",
        "### Planted regressions (base seed 0)\n",
        "\n\n".join(reports) + "\n",
        "### Power: the smallest regression the majmin guard detects\n",
        f"Combined's output frames randomised at each fraction, {args.bases} base seeds "
        f"(`--seed-offset 0, 1000, ..., {1000 * (args.bases - 1)}`), each against a baseline "
        f"session of the same base seed; 5 seeds a session. \"failed\": "
        f"`{POWER_GUARD}` was not supported (the gate fails); mean majmin diff: current - "
        "baseline, averaged over the sessions (the guard's margin is 0.005).\n",
        table + "\n",
        f"Smallest fraction detected in >= {POWER:.0%} of the base seeds: {detected}.\n",
        f"False alarms of the unmodified code over the same {args.bases} base seeds: "
        f"**{alarms} of {items} guard items** failed; gate exit non-zero in "
        f"{sum(s.rc != 0 for s in unmodified)} of {len(unmodified)} sessions.",
    ])
    if args.no_write:
        print(body)
    else:
        print(write_section("regressions", body))


def _mean_diff(rows: list[dict]) -> float | None:
    diffs = [g["diff"] for g in rows if g["hypothesis"] == POWER_GUARD and g["diff"] is not None]
    return sum(diffs) / len(diffs) if diffs else None


if __name__ == "__main__":
    main()
