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

from harness.core import provenance
from harness.core.store import Owner, RunRecord, SpecLike, Store


class RunFailed(Exception):
    """A run that already failed in this session: it is not retried, its error is re-reported."""

    def __init__(self, spec_id: str, error: str | None):
        super().__init__(f"run {spec_id} already failed in this session:\n{error}")
        self.spec_id = spec_id
        self.error = error


class RunCoordinator:
    """Hands out the runs of `session`, computing each at most once across processes.

    With `reuse`, a run computed by an earlier session with the same fingerprint (same config
    and code) is adopted instead of computed; a different fingerprint is never reused.
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

    def obtain(self, spec: SpecLike, *, fingerprint: str,
               compute: Callable[[], tuple[dict, list[dict]]], device: str = "cpu") -> RunRecord:
        """The finished run of `spec` in this session, computing it with `compute()` if no one has.

        `compute` returns (flat metrics, failures). If it raises, the run is stored as failed and
        the exception propagates; later calls for the run raise RunFailed.
        """
        if self.reuse and (found := self.store.find_reusable(spec, fingerprint)):
            self.store.adopt(self.session, found, self.owner)  # a no-op if the run has a row
        while True:
            status, row = self.store.claim(self.session, spec, fingerprint=fingerprint,
                                           owner=self.owner, config=dict(spec.config))
            if status == "claimed":
                return self._compute(row, compute, device)
            if status == "done":
                return row
            if status == "failed":
                raise RunFailed(spec.id, row.error)
            time.sleep(self.poll_interval)  # another live process computes it

    def _compute(self, row: RunRecord, compute: Callable[[], tuple[dict, list[dict]]],
                 device: str) -> RunRecord:
        """Compute under the claim; never leave the claim behind, or other processes would wait."""
        start = time.perf_counter()
        try:
            metrics, failures = compute()
            return self.store.finish(row.id, metrics=metrics, failures=failures,
                                     duration=time.perf_counter() - start, device=device,
                                     versions=self.versions, git_commit=self.git_commit)
        except Exception:  # from compute, or results that cannot be stored (non-float metrics)
            self.store.fail(row.id, error=traceback.format_exc(),
                            duration=time.perf_counter() - start)
            raise
        except BaseException:
            self.store.release(row.id)  # interrupted or skipped: not a result of the run
            raise
