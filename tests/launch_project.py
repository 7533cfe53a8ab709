"""A toy study for the launcher tests (tests/test_launch*.py) and benchmarks/launcher_overhead.py.

Every run appends `start` (with the step it resumes from) and `done` events to TOY_LOG, and the
stage both variants of a seed share a `stage` event (it takes TOY_STAGE_DELAY s), so a test
counts computations; TOY_SLOW names runs that train TOY_STEPS steps of TOY_DELAY seconds each,
checkpointing every step, so a test can kill or requeue them mid-run; TOY_FAIL names runs
whose body raises.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

TOY = '''
import json
import os
import random
import time
from pathlib import Path

from harness import ablation

toy = ablation(variants={"base": {}, "better": {"gain": 1.0}}, seeds=3,
               tiers={"synthetic": {"noise": [0.1]}})


def event(run, what, **extra):
    with open(os.environ["TOY_LOG"], "a") as log:
        log.write(json.dumps({"run": run.id, "event": what, "job": os.environ.get(
            "ABLATION_JOB_ID"), "node": os.environ.get("SLURMD_NODENAME"), **extra}) + "\\n")


def prep(run):
    event(run, "stage", seed=run.seed)
    time.sleep(float(os.environ.get("TOY_STAGE_DELAY", "0")))
    return {"offset": 0.0}


@toy
def test_toy(run):
    shared = run.stage("prep", lambda: prep(run), only=["noise"])  # both variants of a seed
    slow = run.id in os.environ.get("TOY_SLOW", "").split(",")
    step = int(run.checkpoint.read_text()) if run.checkpoint.exists() else 0
    event(run, "start", step=step)
    if run.id in os.environ.get("TOY_FAIL", "").split(","):
        raise RuntimeError("the toy body failed")
    while slow and step < int(os.environ.get("TOY_STEPS", "8")):
        time.sleep(float(os.environ.get("TOY_DELAY", "1")))
        step += 1
        tmp = run.checkpoint.with_suffix(".tmp")
        tmp.write_text(str(step))
        os.replace(tmp, run.checkpoint)
    event(run, "done", step=step)
    rng = random.Random(f"{run.variant}/{run.seed}")
    return {"acc": run.config.get("gain", 0.0) + rng.gauss(0, run.config["noise"])
            + shared["offset"]}


toy.expect("better > base", metric="acc")
'''

RUNS = [f"synthetic-noise=0.1-{v}-seed{s}" for v in ("base", "better") for s in range(3)]


def make_project(root: Path, seeds: str = "3", noise: str = "0.1") -> Path:
    """A user's checkout holding the toy study (its own rootdir and ini); `seeds` and `noise`
    as written in the study (an adaptive budget: `{"min": 2, "max": 6, "batch": 2}`)."""
    (root / "ablation_tests").mkdir(parents=True)
    study = TOY.replace("seeds=3", f"seeds={seeds}").replace('"noise": [0.1]',
                                                            f'"noise": [{noise}]')
    (root / "ablation_tests" / "test_toy.py").write_text(textwrap.dedent(study))
    (root / "pytest.ini").write_text("[pytest]\nablation_launch_poll = 0.3\n"
                                     "ablation_lease_beat = 1\nablation_lease_stale = 10\n")
    return root


def pytest_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "ablation_tests", "-p", "no:cacheprovider",
            "-p", "no:randomly", *args]


def environment(log: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The controller's environment: this Python first on PATH, the outer pytest's and any
    outer Slurm job's variables dropped."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "SLURM_", "SBATCH_"))}
    env.update(PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}", TOY_LOG=str(log))
    env.update(extra or {})
    return env


def run_pytest(project: Path, env: dict[str, str], *args: str,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(pytest_command(*args), cwd=project, env=env, capture_output=True,
                          text=True, timeout=timeout)


def events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def computed(log: Path) -> Counter:
    """Run id -> how many times its body finished."""
    return Counter(e["run"] for e in events(log) if e["event"] == "done")


def stage_computed(log: Path) -> Counter:
    """Seed -> how many times the shared stage of that seed was computed."""
    return Counter(e["seed"] for e in events(log) if e["event"] == "stage")


def store_rows(store: Path, session: str | None = None) -> tuple[list[tuple], list[tuple]]:
    """(runs: variant, seed, status, worker, metrics; verdicts: hypothesis, status, diff, p)
    of the latest session (or `session`)."""
    with sqlite3.connect(store) as db:
        session = session or db.execute(
            "SELECT session FROM sessions ORDER BY started_at DESC LIMIT 1").fetchone()[0]
        runs = db.execute("SELECT variant, seed, status, worker, metrics, error FROM runs "
                          "WHERE session = ? AND kind = 'run' ORDER BY variant, seed",
                          (session,)).fetchall()
        verdicts = db.execute("SELECT hypothesis, status, diff, p FROM verdicts WHERE "
                              "session = ?", (session,)).fetchall()
    return runs, verdicts


def local_verdicts(folder: Path, **study: str) -> list[tuple]:
    """The toy study's verdicts from an ordinary local session (what a launcher must equal);
    `study`: make_project's seeds and noise."""
    project = make_project(folder / "project", **study)
    out = run_pytest(project, environment(project / "toy.log"))
    assert out.returncode == 0, out.stdout + out.stderr
    return store_rows(project / ".ablation" / "results.sqlite")[1]
