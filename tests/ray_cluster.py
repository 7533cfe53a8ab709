"""A throwaway local Ray cluster: a head and worker nodes, each `ray start --block` as our child
(with PR_SET_PDEATHSIG), in its own temp dir; stopping it ends exactly those processes (never
`ray stop`, which ends every Ray process of the machine)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.slurm_cluster import _die_with_parent, _free_port


class RayCluster:
    """`address` once started; `env` is the nodes' environment, which Ray tasks inherit."""

    def __init__(self, env: dict[str, str], *, head_cpus: int = 1,
                 worker_cpus: tuple[int, ...] = (2,)) -> None:
        self.env = env
        self.head_cpus, self.worker_cpus = head_cpus, worker_cpus
        self.temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short socket paths
        self.address = f"127.0.0.1:{_free_port()}"
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self, timeout: float = 90) -> None:
        """Start the head, then each worker node, waiting for each to join; RuntimeError if
        one does not."""
        ray = str(Path(sys.executable).parent / "ray")
        common = ["--block", "--disable-usage-stats", "--num-gpus=0"]
        commands = [[ray, "start", "--head", f"--port={self.address.rsplit(':', 1)[1]}",
                     f"--num-cpus={self.head_cpus}", f"--temp-dir={self.temp}",
                     "--include-dashboard=false", *common]]
        commands += [[ray, "start", f"--address={self.address}", f"--num-cpus={cpus}", *common]
                     for cpus in self.worker_cpus]
        for command in commands:
            self._procs.append(subprocess.Popen(command, env=self.env,
                                                stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL,
                                                preexec_fn=_die_with_parent))
            if not self._wait_for_nodes(len(self._procs), timeout):
                raise RuntimeError(f"the local Ray cluster did not start: {' '.join(command)}")

    def _wait_for_nodes(self, nodes: int, timeout: float) -> bool:
        probe = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='error');"
                 "print(sum(n['Alive'] for n in ray.nodes()))")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run([sys.executable, "-c", probe, self.address], env=self.env,
                                 capture_output=True, text=True, timeout=60)
            if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(nodes)]:
                return True
            time.sleep(1)
        return False

    def stop(self) -> None:
        """End the nodes (`ray start --block` ends its node's processes when it exits)."""
        for proc in reversed(self._procs):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
        shutil.rmtree(self.temp, ignore_errors=True)
