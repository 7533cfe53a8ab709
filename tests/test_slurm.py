"""slurm/ablate.sbatch on a real single-node Slurm: the job runs a toy study with xdist, and what
a user reads afterwards (job output, Markdown summary, store, sbatch's exit code) is right.

Needs root and Debian's Slurm (`apt-get install slurmctld slurmd slurm-client munge`); skipped
otherwise. The cluster lives in a temp dir (tests/slurm_cluster.py). Select with `-m slurm`.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.slurm_cluster import Cluster, started_or_skip

pytestmark = pytest.mark.slurm

SBATCH = Path(__file__).resolve().parents[1] / "slurm" / "ablate.sbatch"

TOY = """
import random

from harness import ablation

toy = ablation(variants={{"base": {{}}, "better": {{"gain": 1.0}}}}, seeds=3,
               tiers={{"synthetic": {{"noise": [0.1]}}}})


@toy
def test_toy(run):
    rng = random.Random(f"{{run.variant}}/{{run.seed}}")
    return {{"acc": run.config.get("gain", 0.0) + rng.gauss(0, run.config["noise"])}}


toy.expect("{claim}", metric="acc")
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # a short path: the munge socket's must stay under 108 characters
    yield from started_or_skip(tmp_path_factory.mktemp("slurm"), timeout=20)


def make_project(root: Path, claim: str) -> Path:
    """A user's checkout: ablation_tests/ holding the toy study, and slurm/ablate.sbatch."""
    (root / "ablation_tests").mkdir(parents=True)
    (root / "ablation_tests" / "test_toy.py").write_text(textwrap.dedent(TOY.format(claim=claim)))
    (root / "slurm").mkdir()
    shutil.copy(SBATCH, root / "slurm" / "ablate.sbatch")
    return root


def submit(cluster: Cluster, project: Path, *args: str) -> tuple[int, str, int]:
    """`sbatch --wait ...` from the project dir: (sbatch's exit code, job output, job id)."""
    # the job inherits this environment: drop the outer pytest's and any outer Slurm job's
    # variables, and make the job's python this one (with harness installed)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "SLURM_", "SBATCH_"))}
    env.update(cluster.env, PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
    if sys.prefix != sys.base_prefix:
        env["ABLATION_VENV"] = sys.prefix  # exercises the script's venv activation
    proc = subprocess.run(["sbatch", "--wait", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120)
    match = re.search(r"Submitted batch job (\d+)", proc.stdout)
    assert match, f"sbatch failed: {proc.stderr}\n{cluster.log_tail()}"
    job = int(match.group(1))
    out = project / f"slurm-ablate-{job}.out"
    return proc.returncode, out.read_text() if out.exists() else "", job


def test_sbatch_runs_the_studies_with_one_worker_per_cpu_and_writes_tables(
        cluster: Cluster, tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", "better > base")
    rc, out, job = submit(cluster, project, "--exclusive", "slurm/ablate.sbatch", "-k",
                          "synthetic", "-p", "no:cacheprovider")
    assert rc == 0, f"job {job} failed (rc {rc}):\n{out}\n{cluster.log_tail()}"
    # --exclusive gave the job every CPU: SLURM_CPUS_ON_NODE workers
    workers = re.search(r"created: (\d+)/\1 workers?", out)
    assert workers and int(workers.group(1)) == cluster.cpus, out
    assert "ablation results" in out and "7 passed" in out, out
    assert re.search(r"better>base\[acc\] .* SUPPORTED", out), out

    summary = project / f"ablation-{job}.md"
    assert summary.exists(), out
    assert re.search(r"\| better>base\[acc\] .*\| SUPPORTED \|", summary.read_text())

    with sqlite3.connect(project / ".ablation" / "results.sqlite") as db:
        runs = db.execute("SELECT variant, seed FROM runs WHERE status = 'done'").fetchall()
        verdicts = db.execute("SELECT hypothesis, status FROM verdicts").fetchall()
    assert sorted(runs) == [(v, s) for v in ("base", "better") for s in range(3)]
    assert verdicts == [("better>base[acc]", "supported")]


def test_a_failed_hypothesis_fails_the_job_and_sbatch_wait(
        cluster: Cluster, tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", "base > better")
    rc, out, job = submit(cluster, project, "slurm/ablate.sbatch", "-k", "synthetic",
                          "-p", "no:cacheprovider")
    assert rc == 1, f"job {job}: pytest's exit code 1 expected, got {rc}:\n{out}"
    assert "6 passed" in out and "1 failed" in out, out
    assert (project / f"ablation-{job}.md").exists()
