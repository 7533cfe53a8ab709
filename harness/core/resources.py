"""What one computation cost: wall time, peak memory, steps/s.

Every run, and every stage computed inside a run, is measured by a `Meter`, so a table can say
what a variant costs next to what it scores:

    with Meter() as meter:
        for step in range(1, 1001):
            ...
            meter.step(step)
    meter.result()
    # {"wall_s": 81.2, "peak_rss_mb": 812.4, "rss_start_mb": 301.0, "rss_method": "vmhwm",
    #  "steps": 1000, "steps_per_s": 12.4}                  (+ "cuda_peak_mb" when CUDA is used)

Peak RSS (this process, not its children; MB are MiB) is exact on Linux without a sampling
thread: a meter resets the kernel's high-water mark (`5` to /proc/self/clear_refs) when it
starts and reads VmHWM when it ends. Meters nest and may run in several threads: before any
reset, the current high-water mark is folded into every meter still open, so an outer meter
never loses a peak reached inside an inner one. Where clear_refs cannot be written, a thread
samples VmRSS every 50 ms (`rss_method` "sampled": it can miss a shorter spike); without /proc,
`ru_maxrss` gives the process's peak since it started (`"ru_maxrss"`: an upper bound).

Resetting the high-water mark also resets what the kernel reports as this process's peak
(`getrusage` ru_maxrss, and a parent's RUSAGE_CHILDREN); `process_peak_rss_mb()` keeps it.

CUDA is measured only when torch is already imported and CUDA already initialised (a meter
never imports torch nor starts CUDA): peak allocated bytes per device, reset and folded like
the RSS high-water mark.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

MIB = 2**20
SAMPLE_INTERVAL_S = 0.05
_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"
_UNSET = "unset"

_lock = threading.RLock()
_open: list[Meter] = []  # meters entered and not yet exited, in every thread
_method: str | None = _UNSET  # how peak RSS is measured in this process; decided once
_lifetime_mb = 0.0  # the process's peak, kept across high-water resets
_sampler_stop: threading.Event | None = None


class Meter:
    """Measures one computation; meters nest (a stage inside a run).

    `steps` is the highest step logged: the project's convention is that step k means k steps
    done (`fit` logs 1..steps, the progress bar shows `n = step`). `steps_per_s` is measured
    between the first and the highest step logged, so set-up, final evaluation and steps done
    before a resumed checkpoint do not dilute it, and logging every N steps is exact; with a
    single step logged it falls back to steps / wall_s.
    """

    def __init__(self) -> None:
        self._state = "new"
        self._t0 = self._wall = 0.0
        self._peak_mb: float | None = None
        self._start_mb: float | None = None
        self._rss_method: str | None = None
        self._cuda_mb: dict[str, float] = {}
        self._first: tuple[int, float] | None = None
        self._last: tuple[int, float] | None = None

    def __enter__(self) -> Meter:
        if self._state != "new":
            raise RuntimeError("a Meter measures one computation; make a new one")
        global _method
        with _lock:
            _fold(_peak_now())  # before a reset loses it
            if _method == _UNSET:
                _fold(_ru_maxrss_mb())  # the process's peak so far, before the first reset
                _method = _detect()
            elif _method == "vmhwm":
                _clear_refs()
            cuda = _cuda()
            if cuda is not None:
                _fold_cuda(cuda_peaks_mb(cuda))
                cuda_reset_peaks(cuda)
            self._rss_method = _method
            self._start_mb = _rss_now_mb()
            self._peak_mb = _peak_now()
            _open.append(self)
            if _method == "sampled":
                _start_sampler()
            self._state = "open"
            self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        wall = time.perf_counter() - self._t0
        with _lock:
            _fold(_peak_now())
            cuda = _cuda()
            if cuda is not None:
                _fold_cuda(cuda_peaks_mb(cuda))
            _open.remove(self)
            if not _open:
                _stop_sampler()
            self._wall, self._state = wall, "done"

    def step(self, step: int) -> None:
        """The body logged step `step` (step k = k steps done), for steps and steps/s."""
        now = time.perf_counter()
        if self._first is None:
            self._first = (step, now)
        if self._last is None or step > self._last[0]:
            self._last = (step, now)

    def result(self) -> dict[str, Any]:
        """JSON-able: wall_s (s), peak_rss_mb, rss_start_mb (MiB, None where unmeasurable),
        rss_method, cuda_peak_mb ({"cuda:0": MiB}, only devices that held memory; absent when
        CUDA was not in use), steps (highest step logged, or None), steps_per_s (or None)."""
        if self._state != "done":
            raise RuntimeError("Meter.result() is known once its `with` block has ended")
        out: dict[str, Any] = {"wall_s": self._wall, "peak_rss_mb": self._peak_mb,
                               "rss_start_mb": self._start_mb, "rss_method": self._rss_method}
        used = {device: mb for device, mb in self._cuda_mb.items() if mb > 0}
        if used:
            out["cuda_peak_mb"] = used
        out["steps"] = None if self._last is None else self._last[0]
        out["steps_per_s"] = self._rate()
        return out

    def _rate(self) -> float | None:
        if self._first is None or self._last is None:
            return None
        (first, t_first), (last, t_last) = self._first, self._last
        if last > first and t_last > t_first:
            return (last - first) / (t_last - t_first)
        return last / self._wall if last > 0 and self._wall > 0 else None


def process_peak_rss_mb() -> float | None:
    """This process's peak RSS since it started (MiB), which high-water resets would hide from
    `getrusage`: for a benchmark that reports a worker's peak."""
    with _lock:
        _fold(_peak_now())
        return max(_lifetime_mb, _ru_maxrss_mb() or 0.0) or None


# --- CUDA: small functions over a `torch.cuda`-like object, so the folding is testable


def _cuda() -> Any | None:
    """torch.cuda, when torch is imported and CUDA initialised; never imports or initialises."""
    torch = sys.modules.get("torch")
    try:
        return torch.cuda if torch is not None and torch.cuda.is_initialized() else None
    except Exception:  # a half-imported or stubbed torch: measure nothing rather than fail
        return None


def cuda_peaks_mb(cuda: Any) -> dict[str, float]:
    """{"cuda:i": peak allocated MiB since its last reset} for every visible device."""
    return {f"cuda:{i}": cuda.max_memory_allocated(i) / MIB for i in range(cuda.device_count())}


def cuda_reset_peaks(cuda: Any) -> None:
    """Restart every device's peak from what it holds now."""
    for i in range(cuda.device_count()):
        cuda.reset_peak_memory_stats(i)


def _fold_cuda(peaks: dict[str, float]) -> None:
    for meter in _open:
        for device, mb in peaks.items():
            meter._cuda_mb[device] = max(meter._cuda_mb.get(device, 0.0), mb)


# --- RSS


def _fold(peak_mb: float | None) -> None:
    """A peak reached now belongs to every open meter (and to the process's lifetime peak)."""
    global _lifetime_mb
    if peak_mb is None:
        return
    _lifetime_mb = max(_lifetime_mb, peak_mb)
    for meter in _open:
        if meter._peak_mb is None or peak_mb > meter._peak_mb:
            meter._peak_mb = peak_mb


def _peak_now() -> float | None:
    """The peak since the last reset under this process's method (current RSS when sampled)."""
    if _method == "vmhwm":
        return _status_mb("VmHWM")
    if _method == "sampled":
        return _status_mb("VmRSS")
    if _method == "ru_maxrss":
        return _ru_maxrss_mb()
    return None


def _rss_now_mb() -> float | None:
    return _status_mb("VmRSS") if _method in ("vmhwm", "sampled") else None


def _detect() -> str | None:
    """The best method here; probing writes clear_refs (a reset), so the caller folds first."""
    if _status_mb("VmHWM") is not None and _clear_refs():
        return "vmhwm"
    if _status_mb("VmRSS") is not None:
        return "sampled"
    return "ru_maxrss" if resource is not None else None


def _status_mb(field: str) -> float | None:
    """A `VmXxx:  1234 kB` line of /proc/self/status, in MiB."""
    try:
        with open(_STATUS) as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _clear_refs() -> bool:
    """Reset the process's RSS high-water mark to its current RSS."""
    try:
        with open(_CLEAR_REFS, "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _ru_maxrss_mb(platform: str = sys.platform) -> float | None:
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if platform == "darwin" else peak / 1024  # bytes on macOS, else KiB


def _start_sampler() -> None:
    global _sampler_stop
    if _sampler_stop is not None:
        return
    stop = _sampler_stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_INTERVAL_S):
            with _lock:
                _fold(_status_mb("VmRSS"))

    threading.Thread(target=sample, name="ablation-rss-sampler", daemon=True).start()


def _stop_sampler() -> None:
    """Not joined: the caller holds the lock the sampler takes; it ends at its next wake-up."""
    global _sampler_stop
    if _sampler_stop is not None:
        _sampler_stop.set()
        _sampler_stop = None
