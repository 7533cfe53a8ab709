"""harness.core.resources on this machine's real memory: peaks of a 200 MB array, resets between
meters, nesting and threads, steps/s, the fallbacks, and the CUDA folding against a stand-in
that follows torch.cuda's documented peak semantics (no GPU here)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from harness.core import resources
from harness.core.resources import Meter, process_peak_rss_mb

BIG = 200 * 2**20  # bytes


def allocate(nbytes: int = BIG, hold_s: float = 0.0) -> None:
    """Touch `nbytes` of fresh memory (np.ones writes every page), then free it."""
    block = np.ones(nbytes // 8)
    time.sleep(hold_s)
    del block


def measured(body) -> dict:
    with Meter() as meter:
        body()
    return meter.result()


needs_hwm = pytest.mark.skipif(measured(lambda: None)["rss_method"] != "vmhwm",
                               reason="needs Linux and a writable /proc/self/clear_refs")


@needs_hwm
def test_peak_of_a_big_array_then_a_small_computation_after_the_reset() -> None:
    big = measured(allocate)
    assert big["rss_method"] == "vmhwm"
    assert big["peak_rss_mb"] >= big["rss_start_mb"] + 150
    small = measured(lambda: allocate(2**20))
    assert small["peak_rss_mb"] < small["rss_start_mb"] + 50
    assert small["peak_rss_mb"] < big["peak_rss_mb"] - 100


@needs_hwm
def test_an_outer_meter_keeps_the_peak_reached_inside_an_inner_one() -> None:
    with Meter() as outer:
        with Meter() as inner:
            allocate()
        with Meter() as after:  # resets the high-water mark again
            pass
    assert inner.result()["peak_rss_mb"] >= inner.result()["rss_start_mb"] + 150
    assert outer.result()["peak_rss_mb"] >= inner.result()["peak_rss_mb"]
    assert after.result()["peak_rss_mb"] < after.result()["rss_start_mb"] + 50


@needs_hwm
def test_an_inner_meter_starting_does_not_lose_the_outer_peak() -> None:
    with Meter() as outer:
        allocate()
        with Meter() as inner:
            pass
    assert inner.result()["peak_rss_mb"] < inner.result()["rss_start_mb"] + 50
    assert outer.result()["peak_rss_mb"] >= outer.result()["rss_start_mb"] + 150


@needs_hwm
def test_a_meter_in_another_thread_does_not_lose_this_threads_peak() -> None:
    def other() -> None:
        with Meter():
            pass

    with Meter() as meter:
        allocate()
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert meter.result()["peak_rss_mb"] >= meter.result()["rss_start_mb"] + 150


@needs_hwm
def test_the_process_peak_survives_the_resets() -> None:
    measured(lambda: allocate(BIG + 50 * 2**20))
    measured(lambda: None)
    assert process_peak_rss_mb() >= 250


def test_steps_per_second_between_the_first_and_the_highest_step() -> None:
    with Meter() as meter:
        time.sleep(0.2)  # set-up: not part of the rate
        for step in range(501, 511):  # resumed at step 500: steps before it not in the rate
            meter.step(step)
            time.sleep(0.02)
        time.sleep(0.2)  # evaluation
    result = meter.result()
    assert result["steps"] == 510
    assert 5 < result["steps_per_s"] <= 50  # 9 steps in >= 9 sleeps of 20 ms


def test_steps_logged_every_n_and_out_of_order() -> None:
    with Meter() as meter:
        for step in (10, 20, 5, 30):
            meter.step(step)
            time.sleep(0.01)
    assert meter.result()["steps"] == 30
    assert meter.result()["steps_per_s"] <= 20 / 0.02


def test_one_step_logged_falls_back_to_the_whole_wall_time() -> None:
    with Meter() as meter:
        time.sleep(0.05)
        meter.step(100)
    result = meter.result()
    assert result["steps_per_s"] == pytest.approx(100 / result["wall_s"])


def test_no_steps() -> None:
    result = measured(lambda: None)
    assert result["steps"] is None and result["steps_per_s"] is None
    assert result["wall_s"] >= 0


def test_wall_time() -> None:
    assert 0.1 <= measured(lambda: time.sleep(0.1))["wall_s"] < 5


def test_result_is_json_and_known_only_after_the_block() -> None:
    meter = Meter()
    with meter:
        meter.step(3)
        with pytest.raises(RuntimeError, match="once its `with` block has ended"):
            meter.result()
    result = meter.result()
    assert json.loads(json.dumps(result)) == result
    assert set(result) == {"wall_s", "peak_rss_mb", "rss_start_mb", "rss_method", "steps",
                           "steps_per_s"}  # no CUDA here
    with pytest.raises(RuntimeError, match="make a new one"), meter:
        pass


def test_a_failing_body_is_still_measured() -> None:
    meter = Meter()
    with pytest.raises(ZeroDivisionError), meter:
        1 / 0  # noqa: B018
    assert meter.result()["wall_s"] >= 0
    assert resources._open == []


def test_without_a_writable_clear_refs_a_thread_samples_vmrss(monkeypatch, tmp_path) -> None:
    if resources._status_mb("VmRSS") is None:
        pytest.skip("needs /proc/self/status")
    monkeypatch.setattr(resources, "_method", resources._UNSET)
    monkeypatch.setattr(resources, "_CLEAR_REFS", str(tmp_path / "absent" / "clear_refs"))
    with Meter() as outer, Meter() as meter:
        allocate(hold_s=0.3)  # held across several samples
    result = meter.result()
    assert result["rss_method"] == "sampled"
    assert result["peak_rss_mb"] >= result["rss_start_mb"] + 150
    assert outer.result()["peak_rss_mb"] >= result["peak_rss_mb"]
    time.sleep(3 * resources.SAMPLE_INTERVAL_S)
    assert not [t for t in threading.enumerate() if t.name == "ablation-rss-sampler"]


def test_ru_maxrss_units(monkeypatch) -> None:
    class Usage:
        ru_maxrss = 300 * 2**20

    class FakeResource:
        RUSAGE_SELF = 0

        @staticmethod
        def getrusage(who: int) -> Usage:
            return Usage()

    monkeypatch.setattr(resources, "resource", FakeResource)
    assert resources._ru_maxrss_mb("darwin") == 300  # bytes on macOS
    assert resources._ru_maxrss_mb("linux") == 300 * 1024  # KiB elsewhere


def test_ru_maxrss_method_is_named(monkeypatch) -> None:
    monkeypatch.setattr(resources, "_method", "ru_maxrss")
    result = measured(allocate)
    assert result["rss_method"] == "ru_maxrss" and result["rss_start_mb"] is None
    assert result["peak_rss_mb"] >= 150  # the process's peak so far: an upper bound


def test_nothing_to_measure_with(monkeypatch) -> None:
    monkeypatch.setattr(resources, "_method", None)
    result = measured(lambda: None)
    assert result["peak_rss_mb"] is None and result["rss_method"] is None


class FakeCuda:
    """torch.cuda's peak semantics, as documented: max_memory_allocated(i) is the peak since
    the last reset_peak_memory_stats(i), which restarts it from what the device holds now."""

    def __init__(self, devices: int) -> None:
        self.now = [0] * devices
        self.peak = [0] * devices

    def is_initialized(self) -> bool:
        return True

    def device_count(self) -> int:
        return len(self.now)

    def allocate(self, device: int, mib: int) -> None:
        self.now[device] += mib * 2**20
        self.peak[device] = max(self.peak[device], self.now[device])

    def max_memory_allocated(self, device: int) -> int:
        return self.peak[device]

    def reset_peak_memory_stats(self, device: int) -> None:
        self.peak[device] = self.now[device]


def test_cuda_peaks_nest_like_rss(monkeypatch) -> None:
    cuda = FakeCuda(devices=3)
    monkeypatch.setattr(resources, "_cuda", lambda: cuda)
    cuda.allocate(0, 500)  # before any meter: not theirs
    cuda.allocate(0, -500)
    with Meter() as outer:
        cuda.allocate(0, 100)
        cuda.allocate(0, -100)
        with Meter() as inner:  # resets: outer keeps its 100 on cuda:0
            cuda.allocate(1, 50)
        cuda.allocate(0, 10)
    assert inner.result()["cuda_peak_mb"] == {"cuda:1": 50}  # devices without memory left out
    assert outer.result()["cuda_peak_mb"] == {"cuda:0": 100, "cuda:1": 50}


def test_cuda_is_left_alone_when_torch_has_not_initialised_it() -> None:
    code = ("import sys; from harness.core.resources import Meter\n"
            "with Meter() as m: pass\n"
            "assert 'torch' not in sys.modules and 'cuda_peak_mb' not in m.result()\n"
            "import torch\n"
            "with Meter() as m: pass\n"
            "assert not torch.cuda.is_initialized() and 'cuda_peak_mb' not in m.result()\n")
    subprocess.run([sys.executable, "-c", code], check=True)
