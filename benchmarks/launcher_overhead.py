"""Per-run launcher overhead: submit -> result ingested, for a trivial body (the toy study of
tests/launch_project.py: 6 runs, a body of microseconds), local vs Slurm vs Ray.

    python benchmarks/launcher_overhead.py [--repeats 2]

Local: (a fresh session - a session that reuses every run) / runs: what computing a run in
the session costs beyond collection. Slurm (a throwaway local cluster, tests/slurm_cluster.py,
needs root): the median submit -> ingested time per run with all 6 jobs at once, and one at a
time (array parallelism 1); Ray (a head and one worker node, tests/ray_cluster.py): the same,
all at once. Writes the `launcher-overhead` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import re
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


def local(root: Path, repeats: int) -> float:
    per_run = []
    for _ in range(repeats):
        project = make_project(Path(tempfile.mkdtemp(dir=root)) / "project")
        env = environment(project / "toy.log")
        start = time.perf_counter()
        assert run_pytest(project, env).returncode == 0
        fresh = time.perf_counter() - start
        start = time.perf_counter()
        assert run_pytest(project, env, "--reuse").returncode == 0
        per_run.append((fresh - (time.perf_counter() - start)) / len(RUNS))
    return statistics.median(per_run)


def row(name: str, results: list[tuple[float, float, float]]) -> str:
    wall, launcher, latency = (statistics.median(r[i] for r in results) for i in range(3))
    return (f"| {name} | {len(RUNS)} | {wall:.1f} | {launcher:.1f} | {latency:.2f} | "
            f"{launcher / len(RUNS):.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="launch-bench-"))
    lines = [f"Measured by {stamp('python benchmarks/launcher_overhead.py')}.", "",
             f"Local: computing a run in the session costs {local(root, args.repeats):.3f} s "
             "beyond collection (a fresh session minus one that reuses every run, per run).",
             "", "| launcher | runs | session wall s | launcher s (submit -> all ingested) | "
             "median submit -> ingested s per run | launcher s / run |",
             "|---|---|---|---|---|---|"]
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp")), cpus=6)
    cluster.start(timeout=30)
    try:
        env = environment(root / "toy.log", cluster.env)
        for name, extra in (("slurm, 6 jobs at once", ()),
                            ("slurm, one job at a time", ("-o",
                                                          "ablation_slurm_array_parallelism=1"))):
            results = [session(root, env, "--ablation-launcher", "slurm", *extra)
                       for _ in range(args.repeats)]
            lines.append(row(name, results))
    finally:
        cluster.stop()
    ray = RayCluster(environment(root / "toy.log"), head_cpus=3, worker_cpus=(3,))
    ray.start()
    try:
        results = [session(root, environment(root / "toy.log"), "--ablation-launcher", "ray",
                           "--ablation-ray-address", ray.address) for _ in range(args.repeats)]
        lines.append(row("ray, 6 tasks at once (head + 1 worker node)", results))
    finally:
        ray.stop()
    lines += ["", "Each job is a fresh `python -m pytest <run item>`: interpreter start, imports, "
              "collection of the study's module and a private store cost most of the time, "
              "so the launchers pay off for runs of minutes and more, not for seconds."]
    print(write_section("launcher-overhead", "\n".join(lines)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
