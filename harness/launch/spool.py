"""The spool: files beside the results store through which jobs on other hosts hand back runs.

SQLite's WAL must not be shared across hosts, so a job never opens the shared store: it
computes its run against a job-private store on node-local disk and writes the finished row
here, atomically (temp file + rename), and the controller ingests it. Layout, per session:

    <data dir>/spool/<session>/tickets/<name>.json   what to run (written before submission)
                               jobs/<name>.json      the job id it was submitted as
                               leases/<name>.json    who computes it now (host, pid, job, beat)
                               results/<name>.json   the finished row(s), written once
                               ingested/<name>.json  a result after the controller stored it
                               logs/<name>.log       the job's pytest output (appended on requeue)
                               stages/<name>.json    a stage's row, computed by one job for all

Exactly once across hosts: a job computes a run only while it holds the run's lease, a file
created with link() (atomic, also on NFS) and refreshed by a heartbeat thread; a lease whose
beat is older than `stale_after` (its holder died or hangs), or one held by the same job id (a
requeued job), is taken over by renaming it away first, which only one contender can do.
Timestamps are the writers' wall clocks: hosts need synchronised clocks (NTP), and
`stale_after` should be several beats.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.core import paths


def write_json(path: Path, value: Any) -> None:
    """Write `value` as JSON so that readers see the old file or the whole new one, never part
    (a job killed while writing leaves only a temp file, which nothing reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(value, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def read_json(path: Path) -> Any:
    """The JSON at `path`, or None when it is not there (JSON only: nothing read executes)."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def entry_name(key: str, spec_id: str) -> str:
    """A run's file name in the spool: its readable id plus a hash of its key (the key holds
    the study, so runs of two studies with one id never share a name)."""
    return paths.component(spec_id)[:60] + "-" + hashlib.sha256(key.encode()).hexdigest()[:12]


class Spool:
    """One session's spool folder (see the module's doc)."""

    def __init__(self, root: Path, session: str) -> None:
        self.root = Path(root)
        self.session = session
        self.folder = paths.inside(self.root, session)

    @staticmethod
    def sessions(root: Path) -> list[str]:
        """The sessions that have a spool under `root`, oldest first (ids sort by time)."""
        return sorted(p.name for p in Path(root).iterdir() if p.is_dir()) \
            if Path(root).is_dir() else []

    def path(self, kind: str, name: str) -> Path:
        suffix = ".log" if kind == "logs" else ".json"
        return self.folder / kind / f"{name}{suffix}"

    def names(self, kind: str) -> list[str]:
        """Entries of one kind, sorted (temp files are skipped)."""
        folder = self.folder / kind
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.iterdir()
                      if p.suffix == ".json" and not p.name.startswith("."))

    def read(self, kind: str, name: str) -> Any:
        return read_json(self.path(kind, name))

    def write(self, kind: str, name: str, value: Any) -> None:
        write_json(self.path(kind, name), value)

    def finished(self, name: str) -> bool:
        """Whether the run has a result, ingested or not: a job never computes it again."""
        return self.path("results", name).exists() or self.path("ingested", name).exists()

    def mark_ingested(self, name: str) -> None:
        """Move a stored result aside (one rename), so it is never ingested twice."""
        target = self.path("ingested", name)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path("results", name), target)

    def log_tail(self, name: str, lines: int = 20) -> str:
        """The last lines of the run's job log, for the error of a run that failed."""
        try:
            text = self.path("logs", name).read_text(errors="replace")
        except FileNotFoundError:
            return "(no log: the job never started the run)"
        return "\n".join(text.splitlines()[-lines:])


class Lease:
    """The right to compute one run, held by one job at a time across hosts (module doc)."""

    def __init__(self, path: Path, job: str, *, beat: float = 10.0,
                 stale_after: float = 60.0) -> None:
        self.path = Path(path)
        self.beat, self.stale_after = beat, stale_after
        self.holder = {"host": socket.gethostname(), "pid": os.getpid(), "job": job,
                       "token": uuid.uuid4().hex}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> dict | None:
        """Take the lease (None) or return its live holder. A stale lease, or one of this
        same job (requeued: its earlier incarnation died with the lease), is taken over."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")
            write_json(tmp, {**self.holder, "beat": time.time()})
            try:
                os.link(tmp, self.path)  # fails if a lease exists: create-if-absent, atomically
                self._start_beating()
                return None
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
            current = read_json(self.path)
            if current is None:
                continue  # released or taken over meanwhile: try again
            if current.get("job") != self.holder["job"] and not self.is_stale(current):
                return current
            with contextlib.suppress(FileNotFoundError):  # only one contender renames it
                os.replace(self.path, self.path.with_name(
                    f".{self.path.name}.{uuid.uuid4().hex[:8]}.stale"))

    def is_stale(self, holder: dict) -> bool:
        return time.time() - float(holder.get("beat", 0)) > self.stale_after

    def _start_beating(self) -> None:
        self._thread = threading.Thread(target=self._beat_loop, name="ablation-lease",
                                        daemon=True)
        self._thread.start()

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.beat):
            current = read_json(self.path)
            if not current or current.get("token") != self.holder["token"]:
                return  # taken over (we were presumed dead): stop claiming it
            write_json(self.path, {**self.holder, "beat": time.time()})

    def release(self) -> None:
        """Stop beating and remove the lease if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        current = read_json(self.path)
        if current and current.get("token") == self.holder["token"]:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    @contextlib.contextmanager
    def held(self) -> Iterator[dict | None]:
        """`with lease.held() as other:` other is None while we hold it, else the holder."""
        other = self.acquire()
        try:
            yield other
        finally:
            if other is None:
                self.release()
