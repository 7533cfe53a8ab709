"""--ablation-launcher ray on a real local Ray cluster: a head and one more worker node, started
by the test as child processes (`ray start --block`, their own temp dir) and ended with it.
Every run is a task, computed once, ingested; the verdicts equal a local run's.

Needs ray (pip install 'pytest-ablation[ray]'); skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.launch_project import (
    RUNS,
    computed,
    environment,
    events,
    local_verdicts,
    make_project,
    run_pytest,
    store_rows,
)
from tests.slurm_cluster import _die_with_parent, _free_port

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(address, TOY_LOG): the log path is in the nodes' environment, which Ray tasks get."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray not installed: pip install 'pytest-ablation[ray]'")
    ray = Path(sys.executable).parent / "ray"
    log = tmp_path_factory.mktemp("ray-project") / "project" / "toy.log"
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths
    port = _free_port()
    env = environment(log)
    common = ["--block", "--disable-usage-stats", "--num-gpus=0"]
    head = [str(ray), "start", "--head", f"--port={port}", "--num-cpus=1",
            f"--temp-dir={temp}", "--include-dashboard=false", *common]
    worker = [str(ray), "start", f"--address=127.0.0.1:{port}", "--num-cpus=2", *common]
    procs = []
    try:
        for command in (head, worker):
            procs.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL,
                                          preexec_fn=_die_with_parent))
            if not _wait_for_nodes(f"127.0.0.1:{port}", len(procs), env):
                pytest.skip(f"the local Ray cluster did not start ({' '.join(command)})")
        yield f"127.0.0.1:{port}", log
    finally:
        for proc in reversed(procs):  # `ray start --block` ends its node's processes on exit
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for_nodes(address: str, nodes: int, env: dict[str, str], timeout: float = 90) -> bool:
    probe = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='error');"
             "print(sum(n['Alive'] for n in ray.nodes()))")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run([sys.executable, "-c", probe, address], env=env,
                             capture_output=True, text=True, timeout=60)
        if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(nodes)]:
            return True
        time.sleep(1)
    return False


def test_each_run_is_a_ray_task_computed_once_and_verdicts_equal_local(
        ray_cluster: tuple[str, Path], tmp_path: Path) -> None:
    address, log = ray_cluster
    project = make_project(log.parent)
    out = run_pytest(project, environment(log), "--ablation-launcher", "ray",
                     "--ablation-ray-address", address)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "6 done, 0 failed" in out.stdout and "7 passed" in out.stdout, out.stdout
    assert computed(log) == {run: 1 for run in RUNS}
    runs, verdicts = store_rows(project / ".ablation" / "results.sqlite")
    jobs = {r[3] for r in runs}
    assert [r[2] for r in runs] == ["done"] * 6
    assert len(jobs) == 6 and all(re.fullmatch(r"ray-[0-9a-f]{16}", j) for j in jobs), jobs
    assert {e["job"] for e in events(log)} == jobs
    assert verdicts == local_verdicts(tmp_path)
