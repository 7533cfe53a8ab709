"""--ablation-launcher ray on a real local Ray cluster: a head and one more worker node, started
by the test as child processes (tests/ray_cluster.py) and ended with it. Every run is a task,
computed once, ingested; the verdicts equal a local run's.

Needs ray (pip install 'pytest-ablation[ray]'); skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import re
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
    stage_computed,
    store_rows,
)
from tests.ray_cluster import RayCluster

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(address, TOY_LOG): the log path is in the nodes' environment, which Ray tasks get."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray not installed: pip install 'pytest-ablation[ray]'")
    log = tmp_path_factory.mktemp("ray-project") / "project" / "toy.log"
    cluster = RayCluster(environment(log, {"TOY_STAGE_DELAY": "1"}))
    try:
        cluster.start()
    except RuntimeError as exc:
        cluster.stop()
        pytest.skip(str(exc))
    yield cluster.address, log
    cluster.stop()


def test_each_run_is_a_ray_task_computed_once_and_verdicts_equal_local(
        ray_cluster: tuple[str, Path], tmp_path: Path) -> None:
    address, log = ray_cluster
    project = make_project(log.parent)
    out = run_pytest(project, environment(log), "--ablation-launcher", "ray",
                     "--ablation-ray-address", address)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "6 done, 0 failed" in out.stdout and "7 passed" in out.stdout, out.stdout
    assert computed(log) == {run: 1 for run in RUNS}
    assert stage_computed(log) == {0: 1, 1: 1, 2: 1}  # a stage two tasks share: once
    runs, verdicts = store_rows(project / ".ablation" / "results.sqlite")
    jobs = {r[3] for r in runs}
    assert [r[2] for r in runs] == ["done"] * 6
    assert len(jobs) == 6 and all(re.fullmatch(r"ray-[0-9a-f]{16}", j) for j in jobs), jobs
    assert {e["job"] for e in events(log)} == jobs
    assert verdicts == local_verdicts(tmp_path)
