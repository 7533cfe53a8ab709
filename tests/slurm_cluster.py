"""A throwaway Slurm cluster (munged + slurmctld + a slurmd per node) living in one temp dir.

Why not the system's Slurm: tests must not touch /etc/slurm, /var/spool or /run, nor clash with
a real cluster on the same host. So every path (key, sockets, state, spool, logs, pid files) is
under `root`, the ports are picked free, and clients reach this cluster through SLURM_CONF.
The daemons run in the foreground as our children with PR_SET_PDEATHSIG, so they die with the
test process even if it is killed before its teardown. Needs root (SlurmUser=root).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DAEMONS = ("munged", "slurmctld", "slurmd")
INSTALL_HINT = "apt-get install slurmctld slurmd slurm-client munge"

CONF = """\
ClusterName=ablation-test
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool-%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd-%n.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd-%n.log
PlugStackConfig={root}/plugstack.conf
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=4
SlurmdParameters=config_overrides
{node_lines}
PartitionName=debug Nodes={node_names} Default=YES MaxTime=INFINITE State=UP
"""


class ClusterError(RuntimeError):
    """The cluster could not be started; the message carries the daemons' log tails."""


def missing_programs() -> list[str]:
    """The daemons and clients this helper needs but cannot find."""
    return [p for p in (*DAEMONS, "sbatch", "scontrol", "sinfo") if not shutil.which(p)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    """Less than the machine has: slurmd drains a node that reports less than configured."""
    with open("/proc/meminfo") as f:
        total_kb = int(f.readline().split()[1])
    return max(total_kb // 1024 // 2, 100)


def _die_with_parent() -> None:
    """Child side of Popen: get SIGTERM when the test process exits, however it exits."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


class Cluster:
    """Node `localhost` (or nodes n1..nN, all on this host) in partition `debug`; `env` is
    what clients need to reach it."""

    def __init__(self, root: Path, cpus: int | None = None, nodes: int = 1) -> None:
        """`cpus`: what each node offers (default: the cores this process may use); more than
        that runs more jobs at once (slurmd reports the configured count: config_overrides).
        `nodes` > 1: nodes n1, n2, ..., one slurmd each on this host (own port, spool, log)."""
        self.root = root
        self.conf = root / "slurm.conf"
        self.cpus = cpus or len(os.sched_getaffinity(0))
        self.nodes = ["localhost"] if nodes == 1 else [f"n{i}" for i in range(1, nodes + 1)]
        self.env = {"SLURM_CONF": str(self.conf)}
        self._procs: list[subprocess.Popen[bytes]] = []

    def _client_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """A Slurm client command against this cluster (never the system's)."""
        return subprocess.run(args, env=self._client_env(), capture_output=True, text=True,
                              timeout=timeout)

    def _spawn(self, name: str, *args: str) -> None:
        with open(self.root / f"{name}.out", "wb") as log:  # the child keeps its own copy
            self._procs.append(subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=self._client_env(),
                preexec_fn=_die_with_parent, cwd=self.root))

    def start(self, timeout: float = 20.0) -> None:
        """Write key and conf, start the three daemons, wait for the node to be idle."""
        for sub in ("state", *(f"spool-{node}" for node in self.nodes)):
            (self.root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.root / "plugstack.conf").touch()
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o400)
        memory = _memory_mb() // len(self.nodes)
        lines = "\n".join(
            f"NodeName={node} NodeHostname=localhost NodeAddr=127.0.0.1 Port={_free_port()} "
            f"CPUs={self.cpus} RealMemory={memory} State=UNKNOWN" for node in self.nodes)
        self.conf.write_text(CONF.format(root=self.root, node_lines=lines,
                                         node_names=",".join(self.nodes),
                                         ctld_port=_free_port(), slurmd_port=_free_port()))
        self._spawn("munged", "munged", "--foreground", "--force", f"--key-file={key}",
                    f"--socket={self.root}/munge.socket", f"--pid-file={self.root}/munged.pid",
                    f"--log-file={self.root}/munged.log", f"--seed-file={self.root}/munged.seed")
        self._spawn("slurmctld", "slurmctld", "-D", "-i", "-f", str(self.conf))
        for node in self.nodes:
            self._spawn(f"slurmd-{node}", "slurmd", "-D", "-N", node, "-f", str(self.conf))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self._procs):
                break
            if self.node_state() == "idle":  # every node
                return
            time.sleep(0.2)
        dead = [p.args[0] for p in self._procs if p.poll() is not None]
        why = (f"{', '.join(dead)} exited" if dead else
               f"node not idle within {timeout:.0f} s (state {self.node_state()!r})")
        raise ClusterError(f"the local Slurm did not start: {why}\n{self.log_tail()}")

    def node_state(self) -> str:
        """`idle`, `down`, `unknown`, ... (of every node; `mixed` when they differ) or ""
        while slurmctld does not answer."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            out = self.run("sinfo", "-h", "-N", "-n", ",".join(self.nodes), "-o", "%T",
                           timeout=5)
            if out.returncode == 0:
                states = {line.strip().rstrip("*~#") for line in out.stdout.split()}
                return states.pop() if len(states) == 1 else "mixed" if states else ""
        return ""

    def log_tail(self, lines: int = 8) -> str:
        """The last lines of every daemon log, for skip reasons and failure messages."""
        parts = []
        for path in sorted(self.root.glob("*.log")) + sorted(self.root.glob("*.out")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel what is still queued or running, then end the daemons (slurmd first)."""
        if self._procs and self.node_state():
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.run("scancel", "--full", "--partition=debug", timeout=5)
        for proc in reversed(self._procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()



def started_or_skip(root: Path, *, timeout: float, **options: Any) -> Iterator[Cluster]:
    """A test module's cluster, started under `root` and stopped after the module (use with
    `yield from` in a fixture); the module is skipped, with the reason, where one cannot run."""
    import pytest

    if os.geteuid() != 0:
        pytest.skip("a throwaway Slurm cluster needs root (SlurmUser=root)")
    if missing := missing_programs():
        pytest.skip(f"{', '.join(missing)} not installed: {INSTALL_HINT}")
    cluster = Cluster(root, **options)
    try:
        cluster.start(timeout=timeout)
    except ClusterError as e:
        cluster.stop()
        pytest.skip(str(e))
    yield cluster
    cluster.stop()
