"""Which device each xdist worker really used: the pinning check for a machine with GPUs.

    python benchmarks/gpu_pinning.py              # -n 2 and -n 4, writes the "pinning" section
    python benchmarks/gpu_pinning.py --workers 2,4,8 --no-write

For each worker count it runs `pytest -n W` over a small study in a temporary folder, exactly
as a user would (the plugin pins each worker in its own pytest_configure). Every run puts a
tensor on the `device` fixture's device, holds it, and records from inside the worker: its
CUDA_VISIBLE_DEVICES, how many GPUs torch sees there, the name and UUID of the GPU behind
`cuda:0`, torch's thread count, and the GPU that nvidia-smi lists for the worker's own process
(the ground truth, independent of CUDA's renumbering). The section tabulates one row per worker,
with the device the store recorded for its runs. Without GPUs it records the CPU pinning (no
visible GPU, one torch thread per worker) and says that no GPU was at hand.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from docs_section import stamp, write_section
from tabulate import tabulate

STUDY = '''
import json, os, shutil, subprocess, time
import torch
from harness import ablation

pinning = ablation(variants={"a": {}, "b": {}}, seeds=4)


def _smi_gpu(pid):
    """The UUID of the GPU nvidia-smi lists for process `pid`, if any."""
    if not shutil.which("nvidia-smi"):
        return None
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,gpu_uuid",
                          "--format=csv,noheader"], capture_output=True, text=True).stdout
    return next((line.split(",")[1].strip() for line in out.splitlines()
                 if line.split(",")[0].strip() == str(pid)), None)


@pinning
def test_pinning(run, device):
    x = torch.ones(1024, 1024, device=device)
    y = (x @ x).sum().item()  # really use the device
    time.sleep(0.5)  # hold it while nvidia-smi looks
    cuda = device.startswith("cuda")
    row = {"worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
           "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
           "torch_gpus": torch.cuda.device_count(), "device": device,
           "name": torch.cuda.get_device_name(0) if cuda else None,
           "uuid": str(torch.cuda.get_device_properties(0).uuid) if cuda else None,
           "smi_gpu": _smi_gpu(os.getpid()) if cuda else None,
           "threads": torch.get_num_threads(), "pid": os.getpid()}
    with open(os.environ["PINNING_LOG"], "a") as log:
        log.write(json.dumps(row) + "\\n")
    return {"sum": y}
'''


def session(workers: int, folder: Path) -> tuple[list[dict], dict[str, set[str]], int]:
    """One `pytest -n workers` session: what each run saw, the store's device per worker, and
    pytest's exit status."""
    folder.mkdir()
    (folder / "test_pinning.py").write_text(STUDY)
    log = folder / "pinning.jsonl"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-n", str(workers), "-q",
                           "-p", "no:cacheprovider", "--no-ablation-tables"], cwd=folder,
                          env={**os.environ, "PINNING_LOG": str(log)}, capture_output=True,
                          text=True)
    print(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-2000:])
    seen = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    stored: dict[str, set[str]] = defaultdict(set)
    db = sqlite3.connect(folder / ".ablation" / "results.sqlite")
    for worker, device in db.execute("SELECT worker, device FROM runs"):
        stored[worker].add(device)
    return seen, stored, proc.returncode


def gpu_summary() -> str:
    """The GPUs of this machine as nvidia-smi lists them (index, name, UUID), or why none."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,name,uuid",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "no GPU on this machine (no working nvidia-smi)"
    outer = os.environ.get("CUDA_VISIBLE_DEVICES")
    listing = "; ".join(line.strip() for line in out.splitlines())
    return f"{listing}; outer CUDA_VISIBLE_DEVICES: {outer if outer is not None else 'unset'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="2,4", help="worker counts (default 2,4)")
    parser.add_argument("--no-write", action="store_true", help="print, leave the docs alone")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    body = [f"{stamp('python benchmarks/gpu_pinning.py')}. GPUs: {gpu_summary()}.\n"]
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for workers in counts:
            seen, stored, code = session(workers, Path(tmp) / f"n{workers}")
            failed = failed or code
            rows = []
            for worker in sorted({r["worker"] for r in seen}):
                own = [r for r in seen if r["worker"] == worker]
                first = own[0]
                same = all({k: v for k, v in r.items() if k != "pid"}
                           == {k: v for k, v in first.items() if k != "pid"} for r in own)
                visible = first["CUDA_VISIBLE_DEVICES"]
            rows.append([worker, len(own), "unset" if visible is None else f"`{visible!r}`",
                             first["torch_gpus"], first["device"], first["name"] or "-",
                             first["uuid"] or "-", first["smi_gpu"] or "-", first["threads"],
                             ", ".join(sorted(stored.get(worker, ()))),
                             "yes" if same else "NO"])
            body.append(f"`pytest -n {workers}` (exit {code}):\n")
            body.append(tabulate(rows, ["worker", "runs", "CUDA_VISIBLE_DEVICES", "GPUs torch sees",
                                        "device", "cuda:0", "cuda:0 UUID", "nvidia-smi GPU",
                                        "torch threads", "store device", "same every run"],
                                 tablefmt="github") + "\n")
    text = "\n".join(body)
    print(text if args.no_write else write_section("pinning", text))
    sys.exit(failed)


if __name__ == "__main__":
    main()
