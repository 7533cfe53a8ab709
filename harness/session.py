"""Per-process state of one pytest session: the store, the run coordinator, fingerprints.

Every process (the controller and each xdist worker) opens the same SQLite store under one
session id, handed from the controller to its workers, so a run is computed once per session
whichever process asks for it first.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.core.metrics import flatten
from harness.core.provenance import fingerprint
from harness.core.runs import RunCoordinator
from harness.core.store import Owner, RunRecord, Store, utc_now
from harness.core.study import RunSpec, Study
from harness.progress import Progress


def new_session_id() -> str:
    """Sortable and unique: 20261121-111500-3f9a1c."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def _source_files(name: str, rootdir: Path) -> list[Path]:
    """Files behind an entry of `Study(code=...)`: a path, or an importable module/package."""
    path = Path(name) if os.sep in name or name.endswith(".py") else None
    if path is None:
        spec = importlib.util.find_spec(name)
        if spec is None:
            raise ValueError(f"Study(code=...): cannot find module {name!r}")
        if spec.submodule_search_locations:
            return sorted(p for d in spec.submodule_search_locations for p in Path(d).rglob("*.py"))
        path = Path(spec.origin or "")
    path = path if path.is_absolute() else rootdir / path
    if path.is_dir():
        return sorted(path.rglob("*.py"))
    if not path.is_file():
        raise ValueError(f"Study(code=...): no file or directory {path}")
    return [path]


class AblationSession:
    """What a process needs to obtain runs: store, coordinator, options."""

    def __init__(self, *, store_path: Path, session_id: str, rootdir: Path, reuse: bool,
                 seed_offset: int, worker: str, device: str | None = None,
                 device_label: str | None = None, tracker: Any = None,
                 progress: Progress | None = None) -> None:
        self.store = Store(store_path)
        self.session_id = session_id
        self.rootdir = rootdir
        self.seed_offset = seed_offset
        self._device, self._device_label = device, device_label
        self.tracker = tracker
        self.progress = progress or Progress(enabled=False)
        self.owner = Owner.current(worker)
        self.coordinator = RunCoordinator(self.store, session_id, self.owner, reuse=reuse,
                                          repo=rootdir)
        self.opening: dict[str, Any] = {}  # the controller's argv and start, for the session row
        self._recorded = False
        self._code_files: dict[str, list[Path]] = {}
        self._fingerprints: dict[tuple[str | None, str], str] = {}

    def begin(self, argv: list[str]) -> None:
        """Note the session's start (the controller's). The store records it when a study is
        first registered, by whichever process collects one: a pytest run without studies
        leaves no store behind and runs no git."""
        self.opening = {"argv": argv, "started_at": utc_now()}

    @property
    def device(self) -> str:
        """The torch device for runs: `cuda:0` for a pinned worker, else CUDA if present."""
        if self._device is None:
            self._device = "cpu"
            torch = sys.modules.get("torch")
            if torch is not None and torch.cuda.is_available():
                self._device = "cuda"
        return self._device

    @property
    def device_label(self) -> str:
        """The device as recorded in the store: the physical GPU id, or cpu."""
        return self._device_label or self.device

    def _record_session(self) -> None:
        """The session's row, written before this process's first write (once)."""
        if not self._recorded:
            meta = {"host": self.owner.host, "rootdir": str(self.rootdir),
                    "git_commit": self.coordinator.git_commit,  # computed once, runs reuse it
                    "python": sys.version.split()[0]}
            self.store.begin_session(self.session_id, meta=meta, **self.opening)
            self._recorded = True

    def register(self, study: Study) -> None:
        """Remember how the study's tables are shown, for the summary and later reports."""
        self._record_session()
        self.store.save_study(self.session_id, study.name or "",
                              {"tables": study.tables, "minimize": list(study.minimize)})

    def code_files(self, study: Study) -> list[Path]:
        """The study's module, the conftest.py files above it, and `Study(code=...)` entries."""
        if study.name not in self._code_files:
            module = Path(study.function.__code__.co_filename).resolve()  # type: ignore[union-attr]
            files = [module]
            for parent in [module.parent, *module.parent.parents]:
                if (parent / "conftest.py").is_file():
                    files.append(parent / "conftest.py")
                if parent == self.rootdir:
                    break
            for entry in study.code:
                files.extend(_source_files(entry, self.rootdir))
            self._code_files[study.name] = sorted(set(files))
        return self._code_files[study.name]

    def fingerprint(self, study: Study, spec: RunSpec) -> str:
        """Hash of the run's config and the study's code, once per run and process: every
        hypothesis item asks for all its runs, and hashing reads every code file."""
        key = (study.name, spec.key)
        if key not in self._fingerprints:
            config = {"config": spec.config, "tier": spec.tier, "knobs": dict(spec.knobs),
                      "seed": spec.seed}
            self._fingerprints[key] = fingerprint(config, self.code_files(study))
        return self._fingerprints[key]

    def seeds(self, study: Study) -> list[int]:
        """The study's seeds in this session (shifted by --seed-offset)."""
        return [seed + self.seed_offset for seed in study.seeds]

    def checkpoint_path(self, study: Study, spec: RunSpec) -> Path:
        """Where a run keeps its training checkpoint: beside the store, named by run and
        fingerprint, so an interrupted run resumes in a later session only with the same code
        and config."""
        folder = self.store.path.parent / "checkpoints" / (study.name or "study")
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{spec.id}-{self.fingerprint(study, spec)}.pt"

    def obtain(self, study: Study, spec: RunSpec, body: Callable[[], Any],
               on_start: Callable[[], None] | None = None) -> RunRecord:
        """The run's record: from this session, from the store (with reuse), or computed now."""
        self._record_session()

        def compute() -> tuple[dict[str, float], list[dict]]:
            if on_start:
                on_start()
            result = body()
            metrics = flatten(result, origin=f"{study.name}[{spec.id}]")
            return metrics, list(getattr(result, "failures", []) or [])

        return self.coordinator.obtain(spec, fingerprint=self.fingerprint(study, spec),
                                       compute=compute, device=self.device_label)
