"""Obtain each run exactly once per session, whichever process asks first.

Every test that needs a run calls `RunCoordinator.obtain()`. Under pytest-xdist several workers
may ask for the same run at once (a hypothesis test needs the runs of two variants); the store's
atomic claim makes one of them compute it while the others wait for its row to finish.
"""

from __future__ import annotations

import functools
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.core import provenance
from harness.core.store import Owner, RunRecord, SpecLike, Store


class RunFailed(Exception):
    """A run that already failed in this session: it is not retried, its error is re-reported."""

    def __init__(self, spec_id: str, error: str | None):
        super().__init__(f"run {spec_id} already failed in this session:\n{error}")
        self.spec_id = spec_id
        self.error = error


class RunConflict(Exception):
    """The session already holds the run under another fingerprint: other code or config made
    it (files edited during the session). Its row is never taken for this one."""

    def __init__(self, spec_id: str, row: RunRecord, fingerprint: str):
        super().__init__(
            f"run {spec_id} is already in this session with fingerprint {row.fingerprint} "
            f"(made by {row.worker}, pid {row.pid} on {row.host}), but this process computes "
            f"{fingerprint} for it: the study's code, data or config changed while the session "
            f"ran. Rerun the session (with --reuse, unchanged runs are not trained again).")


@dataclass(frozen=True)
class Computed:
    """What computing a run (or a stage) gives: flat metrics, malformed samples, the inputs it
    read (file -> content hash, which decide whether a later session may reuse it), the
    resources it used, the stages it took (and the seconds spent computing them, which are
    theirs, not the run's), its initial model state, and a stage's stored value."""

    metrics: dict[str, float]
    failures: list[dict] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    stages: list[dict] = field(default_factory=list)
    stage_seconds: float = 0.0
    init: dict[str, str] = field(default_factory=dict)
    artifact: str | None = None


class RunCoordinator:
    """Hands out the runs of `session`, computing each at most once across processes.

    With `reuse`, a run computed by an earlier session is adopted instead of computed when the
    caller's `why_stale` finds nothing changed (same config, same inputs); the newest such run
    wins. A run that is computed although stored ones exist keeps the reason in its `note`.
    """

    def __init__(self, store: Store, session: str, owner: Owner, *, reuse: bool = False,
                 poll_interval: float = 0.1, repo: str | os.PathLike = "."):
        self.store = store
        self.session = session
        self.owner = owner
        self.reuse = reuse
        self.poll_interval = poll_interval
        self.repo = repo  # the git checkout whose commit is recorded with each run

    @functools.cached_property
    def versions(self) -> dict[str, str]:
        return provenance.package_versions()

    @functools.cached_property
    def git_commit(self) -> str | None:
        return provenance.git_commit(self.repo)

    def obtain(self, spec: SpecLike, *, fingerprint: str, compute: Callable[[], Computed],
               device: str = "cpu",
               why_stale: Callable[[RunRecord], str | None] = lambda row: None) -> RunRecord:
        """The finished run of `spec` in this session, computing it with `compute()` if no one has.

        If `compute` raises, the run is stored as failed and the exception propagates; later
        calls for the run raise RunFailed. `why_stale(row)` says why a stored run may not be
        reused (None: it may); it is asked under `reuse` only.
        """
        note = self.adopt_stored(spec, fingerprint, why_stale) if self.reuse else None
        while True:
            status, row = self.store.claim(self.session, spec, fingerprint=fingerprint,
                                           owner=self.owner, config=dict(spec.config), note=note)
            if status == "claimed":
                return self._compute(row, compute, device)
            if status == "done":
                return row
            if status == "failed":
                raise RunFailed(spec.id, row.error)
            if status == "conflict":
                raise RunConflict(spec.id, row, fingerprint)
            time.sleep(self.poll_interval)  # another live process computes it

    def adopt_stored(self, spec: SpecLike, fingerprint: str,
                      why_stale: Callable[[RunRecord], str | None]) -> str | None:
        """Adopt the newest reusable stored run into the session (a no-op if the session has
        the run already); else the one-line reason the newest stored run is not reused."""
        if self.store.get(self.session, spec) is not None:
            return None
        reason = None
        for row in self.store.reuse_candidates(spec):
            stale = why_stale(row)
            if stale is None:
                self.store.adopt(self.session, row, self.owner, fingerprint=fingerprint)
                return None
            reason = reason or f"{stale} since run #{row.id} of session {row.session}"
        return reason

    def _compute(self, row: RunRecord, compute: Callable[[], Computed], device: str) -> RunRecord:
        """Compute under the claim; never leave the claim behind, or other processes would wait."""
        start = time.perf_counter()
        try:
            result = compute()
            own = time.perf_counter() - start - result.stage_seconds
            return self.store.finish(row.id, metrics=result.metrics, failures=result.failures,
                                     duration=own, device=device, versions=self.versions,
                                     git_commit=self.git_commit, inputs=result.inputs,
                                     resources=result.resources, stages=result.stages,
                                     init=result.init, artifact=result.artifact)
        except Exception:  # from compute, or results that cannot be stored (non-float metrics)
            self.store.fail(row.id, error=traceback.format_exc(),
                            duration=time.perf_counter() - start)
            raise
        except BaseException:
            self.store.release(row.id)  # interrupted or skipped: not a result of the run
            raise
