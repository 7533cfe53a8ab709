"""Benchmarks of the synthetic CI gate; each writes its section of docs/benchmarks.md.

    python benchmarks/gate.py speed        # -n 0 vs -n 2 wall time, per run, start-up, profile
    python benchmarks/gate.py robustness   # support rate of every hypothesis over 20 base seeds

Every number in the docs comes from a run of this script (command, machine and date included).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import os
import platform
import pstats
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
GATE = ["ablation_tests", "-k", "synthetic", "-p", "no:cacheprovider", "-q",
        "--no-ablation-tables"]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{platform.node()}: {os.cpu_count()} cores, {cpu}"


def write_section(name: str, body: str) -> None:
    """Replace the text between `<!-- name -->` markers (or append the section)."""
    command = f"python benchmarks/gate.py {name}"
    stamp = (f"`{command}` on {machine()}, {dt.date.today().isoformat()}, "
             f"Python {platform.python_version()}.")
    block = f"<!-- {name} -->\n{stamp}\n\n{body.strip()}\n<!-- /{name} -->"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"<!-- {name} -->.*?<!-- /{name} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else f"{text}\n{block}\n"
    DOC.write_text(text)
    print(block)


def pytest_gate(store: Path, *extra: str) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", *GATE, "--ablation-store", str(store),
                           *extra], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    print(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-2000:])
    return wall, proc.returncode


def runs(store: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(store)
    db.row_factory = sqlite3.Row
    return db.execute("SELECT r.*, s.started_at AS session_start FROM runs r "
                      "JOIN sessions s USING (session) ORDER BY r.id").fetchall()


def seconds(a: str, b: str) -> float:
    return (dt.datetime.fromisoformat(b) - dt.datetime.fromisoformat(a)).total_seconds()


STARTUP = """
import time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
torch.optim.Adam([torch.zeros(1, requires_grad=True)])
t2 = time.perf_counter()
import harness.plugin, harness.chords.evaluation
t3 = time.perf_counter()
print(f"{t1 - t0:.2f} {t2 - t1:.2f} {t3 - t2:.2f}")
"""


def startup_costs() -> str:
    """What every process pays before its first run, measured in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", STARTUP], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout.split()
    torch_s, optim_s, rest_s = map(float, out)
    return (f"Per-process start-up, fresh interpreter: `import torch` {torch_s:.2f} s, first "
            f"torch optimizer (imports torch._dynamo) {optim_s:.2f} s, plugin + chord modules "
            f"(scipy, mir_eval) {rest_s:.2f} s.")


class _NoLog:
    """Stands in for the `log` fixture outside pytest."""

    def __call__(self, step: int, **values: float) -> None:
        pass

    def steps(self, total: int) -> None:
        pass


def profile_one_run() -> str:
    """cProfile of one combined run, grouped into the stages a newcomer would look for."""
    sys.path.insert(0, str(ROOT))
    import torch

    from ablation_tests.test_chord_heads import train_and_score
    from harness.chords.fixtures import synthetic_data
    from harness.core.study import RunSpec

    torch.set_num_threads(1)
    spec = RunSpec("heads", "synthetic", (("noise_sigma", 0.5),), "combined", 0,
                   {"parts": ["ctc", "ar"], "noise_sigma": 0.5})
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    train_and_score(spec, synthetic_data(dict(spec.config), 0), _NoLog())
    profiler.disable()
    total = time.perf_counter() - start
    stages = {"data generation": "make_dataset", "training (fit)": "fit",
              "decoding (predict)": "predict", "mir_eval scoring": "evaluate"}
    stats = pstats.Stats(profiler, stream=io.StringIO())
    cumulative = {func[2]: row[3] for func, row in stats.stats.items()}  # name -> cumtime
    rows = [[stage, f"{cumulative.get(name, 0.0):.2f}",
             f"{100 * cumulative.get(name, 0.0) / total:.0f}%"] for stage, name in stages.items()]
    rows.append(["total (one combined run)", f"{total:.2f}", "100%"])
    return tabulate(rows, ["stage", "seconds", "share"], tablefmt="github")


def speed(args: argparse.Namespace) -> None:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in ("0", "2"):
            store = Path(tmp) / f"n{workers}.sqlite"
            wall, code = pytest_gate(store, "-n", workers)
            results[workers] = (wall, code, runs(store))
    lines = [["`pytest ablation_tests -k synthetic -n 0`", f"{results['0'][0]:.1f}",
              results["0"][1]],
             ["`pytest ablation_tests -k synthetic -n 2`", f"{results['2'][0]:.1f}",
              results["2"][1]]]
    body = [tabulate(lines, ["command", "wall s", "exit"], tablefmt="github"),
            f"\nSpeed-up of `-n 2` over `-n 0`: **{results['0'][0] / results['2'][0]:.2f}x**.\n"]
    per_variant = defaultdict(list)
    for row in results["0"][2]:
        per_variant[(row["study"], row["variant"])].append(row["duration"])
    body.append(tabulate([[s, v, len(d), f"{statistics.fmean(d):.2f}", f"{max(d):.2f}"]
                          for (s, v), d in per_variant.items()],
                         ["study", "variant", "runs", "mean s/run", "max s/run"],
                         tablefmt="github"))
    serial_busy = sum(row["duration"] for row in results["0"][2])
    parallel_busy = sum(row["duration"] for row in results["2"][2])
    body.append(f"\nTraining + scoring time summed over all runs: {serial_busy:.1f} s with `-n 0`, "
                f"{parallel_busy:.1f} s with `-n 2` (two busy processes make each run "
                f"{100 * (parallel_busy / serial_busy - 1):.0f}% slower on this machine).\n")
    first = defaultdict(list)
    for row in results["2"][2]:
        first[row["worker"]].append(seconds(row["session_start"], row["started_at"]))
    body.append("\nWorker start-up (`-n 2`): seconds from session start to the worker's first "
                "run (xdist start, torch import, collection): "
                + ", ".join(f"{w}: {min(t):.1f}" for w, t in sorted(first.items())) + ".\n")
    body.append(startup_costs() + "\n")
    body.append("Where one run's time goes (cProfile, 1 thread):\n")
    body.append(profile_one_run())
    write_section("speed", "\n".join(body))


def robustness(args: argparse.Namespace) -> None:
    counts: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.bases):
            store = Path(tmp) / f"base{k}.sqlite"
            pytest_gate(store, "-n", str(args.workers), "--seed-offset", str(1000 * k))
            db = sqlite3.connect(store)
            for study, knobs, hyp, status in db.execute(
                    "SELECT study, knobs, hypothesis, status FROM verdicts"):
                counts[(study, knobs, hyp)].append(status)
    rows = [[study, knobs, hyp, f"{s.count('supported')}/{len(s)}",
             ", ".join(f"{x}: {s.count(x)}" for x in sorted(set(s)) if x != "supported") or "-"]
            for (study, knobs, hyp), s in sorted(counts.items())]
    body = (f"{args.bases} base seeds (`--seed-offset 0, 1000, ..., {1000 * (args.bases - 1)}`), "
            "each a full gate session; how often each hypothesis was supported:\n\n"
            + tabulate(rows, ["study", "knobs", "hypothesis", "supported", "otherwise"],
                       tablefmt="github"))
    write_section("robustness", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(required=True)
    sub.add_parser("speed").set_defaults(func=speed)
    rob = sub.add_parser("robustness")
    rob.add_argument("--bases", type=int, default=20)
    rob.add_argument("--workers", type=int, default=2)
    rob.set_defaults(func=robustness)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
