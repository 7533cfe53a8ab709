"""Progress of long runs: one bar per run (step, loss, ETA) headed by the session's count.

    [runs 3/18] real-dataset=billboard-combined-seed0: 34%|███▍  | 340/1000 [00:41<01:20, loss=0.53]

The pytest layer decides when it is on (a terminal, no xdist worker) and where it writes (past
pytest's output capture). Off, every call is a no-op, so bodies can always report progress.
"""

from __future__ import annotations

from typing import IO, Any


class Progress:
    """The session's progress display: `start` a run, `update` its steps, `finish` it."""

    def __init__(self, *, enabled: bool, total_runs: int = 0, file: IO[str] | None = None):
        self.enabled = enabled
        self.total_runs = total_runs
        self.done = 0
        self._file = file
        self._bar: Any = None

    def start(self, run_id: str) -> None:
        if self.enabled:
            from tqdm import tqdm  # an extra (pytest-ablation[progress]): loaded when shown

            self.close()
            self._bar = tqdm(desc=f"[runs {self.done + 1}/{self.total_runs or '?'}] {run_id}",
                             file=self._file, leave=False, dynamic_ncols=True, unit="step")

    def steps(self, total: int) -> None:
        """The run's step budget, for the ETA."""
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def update(self, step: int, values: dict[str, float]) -> None:
        if self._bar is not None:
            self._bar.n = step
            shown = {k: f"{v:.3g}" for k, v in values.items() if isinstance(v, int | float)}
            self._bar.set_postfix(shown, refresh=True)

    def finish(self) -> None:
        if self.enabled:
            self.done += 1
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
