"""Per-run launcher overhead: submit -> result ingested, for a trivial body (the toy study of
tests/launch_project.py: 6 runs, a body of microseconds), local vs Slurm vs Ray.

    python benchmarks/launcher_overhead.py [--repeats 2]

Local: a run's claim -> stored time in an ordinary session. Slurm (a throwaway local cluster,
tests/slurm_cluster.py, needs root): submit -> all ingested, with one job at a time (array
parallelism 1: the per-run overhead) and all 6 at once; Ray (a head and one worker node,
tests/ray_cluster.py): all at once. Writes the `launcher-overhead` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.docs_section import stamp, write_section
from tests.launch_project import RUNS, environment, make_project, run_pytest
from tests.ray_cluster import RayCluster
from tests.slurm_cluster import Cluster

SUMMARY = re.compile(r"of (\d+) runs in ([\d.]+) s; submit -> ingested median ([\d.]+) s")


def session(root: Path, env: dict[str, str], *args: str) -> tuple[float, float, float]:
    """(session wall s, launcher s, median submit -> ingested s) of one fresh project."""
    project = make_project(Path(tempfile.mkdtemp(dir=root)) / "project")
    env = {**env, "TOY_LOG": str(project / "toy.log")}
    start = time.perf_counter()
    out = run_pytest(project, env, *args)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"pytest {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    found = SUMMARY.search(out.stdout)
    if not found:
        return wall, float("nan"), float("nan")
    return wall, float(found.group(2)), float(found.group(3))


def local(root: Path, repeats: int) -> tuple[float, float]:
    """(session wall s, median claim -> stored s per run) of ordinary local sessions."""
    walls, per_run = [], []
    for _ in range(repeats):
        project = make_project(Path(tempfile.mkdtemp(dir=root)) / "project")
        start = time.perf_counter()
        assert run_pytest(project, environment(project / "toy.log")).returncode == 0
        walls.append(time.perf_counter() - start)
        with sqlite3.connect(project / ".ablation" / "results.sqlite") as db:
            rows = db.execute("SELECT started_at, finished_at FROM runs").fetchall()
        per_run += [(dt.datetime.fromisoformat(b) - dt.datetime.fromisoformat(a)).total_seconds()
                    for a, b in rows]
    return statistics.median(walls), statistics.median(per_run)


def row(name: str, at_once: int, results: list[tuple[float, float, float]]) -> str:
    wall, launcher, latency = (statistics.median(r[i] for r in results) for i in range(3))
    return (f"| {name} | {at_once} | {wall:.1f} | {launcher:.1f} | "
            f"{launcher / len(RUNS) * at_once:.2f} | {latency:.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="launch-bench-"))
    wall, per_run = local(root, args.repeats)
    lines = [f"Measured by {stamp('python benchmarks/launcher_overhead.py')}, median of "
             f"{args.repeats} sessions of the toy study ({len(RUNS)} runs, a body of "
             "microseconds; `ablation_launch_poll = 0.3` s).", "",
             "| launcher | jobs at once | session wall s | submit -> all ingested s | "
             "per run s (that x at once / runs) | median submit -> ingested s |",
             "|---|---|---|---|---|---|",
             f"| local (in the session; per run: claim -> stored) | 1 | {wall:.1f} | | "
             f"{per_run:.3f} | |"]
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp")), cpus=6)
    cluster.start(timeout=30)
    try:
        env = environment(root / "toy.log", cluster.env)
        for at_once in (1, len(RUNS)):
            results = [session(root, env, "--ablation-launcher", "slurm", "-o",
                               f"ablation_slurm_array_parallelism={at_once}")
                       for _ in range(args.repeats)]
            lines.append(row("slurm (submitit job array)", at_once, results))
    finally:
        cluster.stop()
    ray = RayCluster(environment(root / "toy.log"), head_cpus=3, worker_cpus=(3,))
    ray.start()
    try:
        results = [session(root, environment(root / "toy.log"), "--ablation-launcher", "ray",
                           "--ablation-ray-address", ray.address) for _ in range(args.repeats)]
        lines.append(row("ray (head + 1 worker node, 3 CPUs each)", len(RUNS), results))
    finally:
        ray.stop()
    lines += ["", "One job at a time gives the per-run overhead of a launcher: submission, "
              "queueing, a fresh `python -m pytest <run item>` (interpreter, imports, collection "
              "of the study's module, a private store), the result file, the poll and the "
              "ingest. With all jobs at once, 6 pytest processes share this machine's 2 cores. "
              "Worth it for runs of minutes and more, not for seconds."]
    print(write_section("launcher-overhead", "\n".join(lines)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
