"""Device pinning and threads: the pure logic, then real xdist workers."""

from __future__ import annotations

import os
import sqlite3

import pytest

from harness import devices


@pytest.mark.parametrize(("outer", "expected"), [
    ("0,1,2,3", ["0", "1", "2", "3"]),
    ("3, 5", ["3", "5"]),
    ("", []),
    ("-1", []),
    ("2,-1,3", ["2"]),  # CUDA ignores everything after an invalid entry
    ("GPU-8e2f,GPU-11aa", ["GPU-8e2f", "GPU-11aa"]),
])
def test_visible_gpus_respects_the_outer_list(outer: str, expected: list[str]) -> None:
    assert devices.visible_gpus({"CUDA_VISIBLE_DEVICES": outer}, detected=8) == expected


def test_visible_gpus_without_outer_list_uses_the_detected_count() -> None:
    assert devices.visible_gpus({}, detected=3) == ["0", "1", "2"]
    assert devices.visible_gpus({}, detected=0) == []


def test_round_robin_never_goes_past_the_allowed_gpus() -> None:
    gpus = ["3", "5"]
    assert [devices.assign(f"gw{i}", gpus) for i in range(5)] == ["3", "5", "3", "5", "3"]
    assert devices.assign("gw7", []) is None
    assert devices.assign("main", gpus) == "3"


def test_auto_workers_is_one_per_gpu_times_workers_per_gpu_else_one_per_core() -> None:
    assert devices.auto_workers(["0", "1", "2", "3"], per_gpu=1, cores=16) == 4
    assert devices.auto_workers(["0", "1"], per_gpu=3, cores=16) == 6
    assert devices.auto_workers([], per_gpu=2, cores=2) == 2


def test_device_list_option_is_validated() -> None:
    assert devices.parse_device_list("0, 2") == ["0", "2"]
    assert devices.parse_device_list("cpu") == []
    with pytest.raises(ValueError, match="--ablation-devices"):
        devices.parse_device_list("zero,one")


def test_pin_sets_one_gpu_and_thread_counts() -> None:
    env: dict[str, str] = {"CUDA_VISIBLE_DEVICES": "3,5"}
    devices.pin("5", 1, env)
    assert env["CUDA_VISIBLE_DEVICES"] == "5"
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"


STUDY = """
import os
from harness import ablation

study = ablation(variants={"a": {}, "b": {}}, seeds=4)

@study
def test_pinned(run, device):
    return {"gpu": float(os.environ.get("CUDA_VISIBLE_DEVICES") or -1),
            "threads": float(os.environ["OMP_NUM_THREADS"]),
            "on_cuda": float(device == "cuda:0")}
"""


def _rows(pytester: pytest.Pytester) -> list[tuple]:
    db = sqlite3.connect(pytester.path / ".ablation" / "results.sqlite")
    return db.execute("SELECT worker, device, metrics FROM runs ORDER BY worker").fetchall()


def test_xdist_workers_are_pinned_round_robin_to_the_outer_gpus(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    pytester.makepyfile(test_pinned=STUDY)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=8)
    by_worker = {worker: (device, metrics) for worker, device, metrics in _rows(pytester)}
    assert by_worker["gw0"][0] == "cuda:3"
    assert by_worker["gw1"][0] == "cuda:5"
    assert '"gpu": 3.0' in by_worker["gw0"][1] and '"gpu": 5.0' in by_worker["gw1"][1]
    assert '"threads": 1.0' in by_worker["gw0"][1]
    assert '"on_cuda": 1.0' in by_worker["gw0"][1]


def test_explicit_device_list_and_cpu(pytester: pytest.Pytester,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    pytester.makepyfile(test_pinned=STUDY)
    pytester.runpytest_subprocess("-n", "2", "--ablation-devices", "2",
                                  "-p", "no:cacheprovider").assert_outcomes(passed=8)
    assert {device for _, device, _ in _rows(pytester)} == {"cuda:2"}
    pytester.runpytest_subprocess("-n", "2", "--ablation-devices", "cpu",
                                  "-p", "no:cacheprovider").assert_outcomes(passed=8)
    cpu_rows = [metrics for _, device, metrics in _rows(pytester) if device == "cpu"]
    assert len(cpu_rows) == 8 and all('"gpu": -1.0' in m for m in cpu_rows)


def test_threads_without_xdist_default_to_one(pytester: pytest.Pytester) -> None:
    """Not every core: beside any other busy process, OpenMP threads spin (docs/benchmarks.md,
    "contention")."""
    pytester.makepyfile(test_pinned=STUDY.replace(
        '"on_cuda"', '"torch": float(__import__("torch").get_num_threads()), "on_cuda"'))
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=8)
    assert all('"threads": 1.0' in metrics and '"torch": 1.0' in metrics
               for _, _, metrics in _rows(pytester))


def test_torch_threads_option_overrides_the_default(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_pinned=STUDY)
    pytester.runpytest_subprocess("--torch-threads", "3",
                                  "-p", "no:cacheprovider").assert_outcomes(passed=8)
    assert all('"threads": 3.0' in metrics for _, _, metrics in _rows(pytester))


def test_oversubscription_is_named_only_beyond_the_cores() -> None:
    assert devices.oversubscription(workers=2, threads=1, cores=2) is None
    assert devices.oversubscription(workers=8, threads=1, cores=2) is None  # time-slicing only
    assert devices.oversubscription(workers=2, threads=4, cores=8) is None
    problem = devices.oversubscription(workers=2, threads=2, cores=2)
    assert problem is not None and "4 CPU threads on 2 cores" in problem
    assert "--torch-threads 1" in problem


def test_oversubscribed_session_warns_and_bad_thread_count_is_refused(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_pinned=STUDY)
    cores = len(os.sched_getaffinity(0))
    result = pytester.runpytest_subprocess("-n", "2", "--torch-threads", str(cores),
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines([f"*--torch-threads {cores} with 2 xdist workers asks for "
                                 f"{2 * cores} CPU threads on {cores} cores*"])
    refused = pytester.runpytest_subprocess("--torch-threads", "0", "-p", "no:cacheprovider")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["*--torch-threads 0: give 1 or more threads per process*"])
