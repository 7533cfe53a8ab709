"""The per-step logs of stored runs (`run.log(step, loss=...)`), read back for learning curves.

Each computed run has a folder `<store folder>/runs/<session>/<study>/<name>/` holding
`steps.jsonl` (one JSON object a line: `{"step": 10, "loss/ar": 3.6}`) and `metadata.json`,
which names the run's store key. A run reused from an earlier session has no folder of its
own: its log is the one of the run it reused. A missing folder, an empty log or a line that is
not JSON (a crash mid-write) is never an error: the curves say what they lack.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core import paths


def log_name(variant: str, seed: int, knobs: Iterable[tuple[str, Any]]) -> str:
    """The folder name of a run's log: `combined-seed1-noise_sigma=0.5`."""
    return "-".join([f"{variant}-seed{seed}", *(f"{k}={v}" for k, v in knobs)])


@dataclass
class Steps:
    """One run's logged values: key -> (steps, values), each in logged order."""

    series: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    skipped: int = 0  # lines that were not a JSON object with a numeric "step"


def read_steps(path: Path) -> Steps:
    """The series of one `steps.jsonl`; non-finite or non-numeric values are left out."""
    found = Steps()
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return found
    for line in lines:
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            step = float(entry["step"])
        except (ValueError, TypeError, KeyError):
            found.skipped += 1
            continue
        for key, value in entry.items():
            if key == "step" or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isfinite(value):
                steps, values = found.series.setdefault(key, ([], []))
                steps.append(step)
                values.append(float(value))
    return found


class RunLogs:
    """Finds the log folder of a stored run in the session folders beside the store."""

    def __init__(self, store_folder: Path, origins: Mapping[int, str]) -> None:
        """`origins`: row id -> session, for the rows that reused runs (their logs are the
        original rows' ones)."""
        self.root = store_folder / "runs"
        self.origins = origins
        self._index: dict[tuple[str, str], dict[str, Path]] = {}

    def folder(self, record: Any) -> Path | None:
        """The log folder of `record` (a RunRecord), or None when it has none."""
        session = record.session
        if record.source == "store" and record.reused_from is not None:
            session = self.origins.get(record.reused_from, "")
        if not session:
            return None
        by_key = self._folders(session, record.study)
        if record.key in by_key:
            return by_key[record.key]
        try:  # a log written before metadata.json named the key
            guess = paths.inside(self.root, session, record.study,
                                 log_name(record.variant, record.seed, record.knobs.items()))
        except ValueError:
            return None
        return guess if guess.is_dir() else None

    def steps(self, record: Any) -> Steps:
        folder = self.folder(record)
        return read_steps(folder / "steps.jsonl") if folder else Steps()

    def _folders(self, session: str, study: str) -> dict[str, Path]:
        """Store key -> log folder, for one study of one session (read once)."""
        if (session, study) not in self._index:
            found: dict[str, Path] = {}
            try:
                base = paths.inside(self.root, session, study)
                folders = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
            except (ValueError, OSError):
                folders = []
            for folder in folders:
                try:
                    key = json.loads((folder / "metadata.json").read_text()).get("key")
                except (OSError, ValueError, AttributeError):
                    continue
                if isinstance(key, str):
                    found[key] = folder
            self._index[session, study] = found
        return self._index[session, study]
