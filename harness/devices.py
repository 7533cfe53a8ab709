"""Which device and how many CPU threads a pytest process (xdist worker) uses.

Pinning happens in each worker's own pytest_configure, before anything touches CUDA: the worker
sets CUDA_VISIBLE_DEVICES to the one GPU it owns, so its code sees it as `cuda:0`. GPUs are
taken round-robin from the GPUs the outer CUDA_VISIBLE_DEVICES allows (never past them), or
from an explicit list. Every process runs 1 torch CPU thread unless --torch-threads says more:
with xdist the workers already fill the cores, and without xdist a process with a thread per
core makes its OpenMP threads spin-wait whenever anything else uses a core (a second test
session, a build): measured 2-3x slower beside one busy process, for no gain idle on the small
models studies train (docs/benchmarks.md, "contention"). `-n auto` is the way to use the cores.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Mapping, MutableMapping, Sequence

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def visible_gpus(env: Mapping[str, str] = os.environ, detected: int | None = None) -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries (ids or UUIDs).

    An outer CUDA_VISIBLE_DEVICES is authoritative ("" or "-1" means none); without it,
    `detected` GPUs (counted by the caller, e.g. torch.cuda.device_count()) are 0..n-1.
    """
    outer = env.get("CUDA_VISIBLE_DEVICES")
    if outer is not None:
        entries = [e.strip() for e in outer.split(",") if e.strip()]
        # CUDA stops at the first invalid entry, e.g. "-1" hides everything after it
        valid = []
        for entry in entries:
            if entry.startswith("-"):
                break
            valid.append(entry)
        return valid
    return [str(i) for i in range(detected or 0)]


def parse_device_list(text: str) -> list[str]:
    """`--ablation-devices 0,2` -> ["0", "2"]; "cpu" -> [] (no GPU at all)."""
    if text.strip().lower() == "cpu":
        return []
    entries = [e.strip() for e in text.split(",") if e.strip()]
    if not entries or not all(re.fullmatch(r"\d+|GPU-[\w-]+|MIG-[\w/-]+", e) for e in entries):
        raise ValueError(f"--ablation-devices {text!r}: give GPU ids like '0,1,3' or 'cpu'")
    return entries


def worker_index(worker_id: str) -> int:
    """"gw3" -> 3; the controller (no xdist) is worker 0."""
    match = re.fullmatch(r"gw(\d+)", worker_id)
    return int(match.group(1)) if match else 0


def assign(worker_id: str, gpus: Sequence[str]) -> str | None:
    """Round-robin: worker i gets gpus[i % len(gpus)]; None means the CPU."""
    return gpus[worker_index(worker_id) % len(gpus)] if gpus else None


def auto_workers(gpus: Sequence[str], per_gpu: int, cores: int) -> int:
    """`-n auto`: one worker per visible GPU (times --workers-per-gpu), else one per core."""
    return len(gpus) * per_gpu if gpus else max(cores, 1)


def usable_cores() -> int:
    """Cores this process may run on (respects Slurm/cgroup CPU affinity, unlike cpu_count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def oversubscription(workers: int, threads: int, cores: int) -> str | None:
    """Why `workers` processes of `threads` torch threads each are too many for `cores`, or
    None. Several threads per worker beyond the cores make OpenMP threads spin-wait on each
    other, which makes runs several times slower (docs/benchmarks.md, "Oversubscribed"). One
    thread per worker only time-slices."""
    if threads <= 1 or workers * threads <= cores:
        return None
    return (f"--torch-threads {threads} with {workers} xdist workers asks for "
            f"{workers * threads} CPU threads on {cores} cores: oversubscribed OpenMP threads "
            f"spin-wait on each other and runs get many times slower; use --torch-threads "
            f"{max(cores // workers, 1)} or fewer workers")


def pin(gpu: str | None, threads: int, env: MutableMapping[str, str] | None = None) -> None:
    """Restrict this process to `gpu` ("" hides every GPU, None leaves them) and `threads`.

    Must run before CUDA initialises in this process. Thread counts go into the environment
    (read by torch/numpy at import) and, when torch is already imported, into torch itself.
    """
    env = os.environ if env is None else env
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    for name in THREAD_VARIABLES:
        env[name] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def detect_gpus() -> int:
    """GPUs torch can see. Only the xdist controller calls this (it runs no tests); a worker
    must not, since counting may initialise CUDA before the worker is pinned."""
    if not os.path.exists("/proc/driver/nvidia") and not shutil.which("nvidia-smi"):
        return 0  # no NVIDIA driver: don't pay for importing torch
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count()
