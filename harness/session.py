"""Per-process state of one pytest session: the store, the run coordinator, run inputs.

Every process (the controller and each xdist worker) opens the same SQLite store under one
session id, handed from the controller to its workers, so a run is computed once per session
whichever process asks for it first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import inspect
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core import inputs, paths, stages
from harness.core.baseline import Baseline
from harness.core.metrics import flatten
from harness.core.resources import Meter
from harness.core.runs import Computed, RunCoordinator
from harness.core.stages import StageError
from harness.core.store import Owner, RunRecord, Store, utc_now
from harness.core.study import RunSpec, Study, StudyError
from harness.progress import Progress

Spec = RunSpec | stages.StageSpec  # what the session obtains: a run or a stage


def new_session_id() -> str:
    """Sortable and unique: 20261121-111500-3f9a1c."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


@dataclass(frozen=True)
class StudyCode:
    """Where a study's code starts: its module (and the lines of its declarations there) and
    the files that define the fixtures its body uses (`code=` entries are the study's own)."""

    module: str
    declarations: tuple[int, ...]
    fixture_files: tuple[str, ...]


@dataclass
class Frame:
    """A run or stage being computed: the resources it uses, the stages it takes, the hash of
    its initial model state (run.init_model)."""

    meter: Meter = dataclasses.field(default_factory=Meter)
    stages: list[dict] = dataclasses.field(default_factory=list)
    init: dict[str, str] = dataclasses.field(default_factory=dict)


def config_change(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> str | None:
    """`config key 'train/lr' changed (0.001 -> 0.002)`, or None when the configs are equal."""
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            found = config_change(a, b, f"{prefix}{key}/")
            if found:
                return found
        elif json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
            return f"config key {prefix}{key!s} changed ({_short(a)} -> {_short(b)})"
    return None


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if value != "<unset>" else value
    return text if len(text) <= 40 else text[:37] + "..."


class AblationSession:
    """What a process needs to obtain runs: store, coordinator, options, run inputs."""

    def __init__(self, *, store_path: Path, session_id: str, rootdir: Path, reuse: bool,
                 seed_offset: int, worker: str, device: str | None = None,
                 device_label: str | None = None, tracker: Any = None,
                 progress: Progress | None = None, data_dir: Path | None = None) -> None:
        self.store = Store(store_path)
        # checkpoints, stage values: beside the store, except in a launched job (harness.launch),
        # whose store is private and whose files go beside the controller's shared store
        self.data_dir = Path(data_dir) if data_dir is not None else self.store.path.parent
        self.session_id = session_id
        self.rootdir = rootdir
        self.seed_offset = seed_offset
        self._device, self._device_label = device, device_label
        self.tracker = tracker
        self.progress = progress or Progress(enabled=False)
        self.owner = Owner.current(worker)
        self.coordinator = RunCoordinator(self.store, session_id, self.owner, reuse=reuse,
                                          repo=rootdir)
        self.project = inputs.Project(rootdir, ignore=[store_path.parent, self.data_dir])
        self.opening: dict[str, Any] = {}  # the controller's argv and start, for the session row
        self._recorded = False
        self._studies: dict[str, Study] = {}
        self._code: dict[str, StudyCode] = {}
        self._manifests: dict[str, dict[str, str]] = {}
        self._fingerprints: dict[str, str] = {}
        self._dynamic: set[str] = set()  # project modules first imported while a run computed
        self._frames: list[Frame] = []  # the computations in progress, innermost last
        self.store_errors: list[str] = []  # the store failed: the session reports and stops
        self.baseline: Baseline | None = None  # what the guards compare with
        # in a launched job, how stages are shared with the session's other jobs
        # (harness.launch.jobs.StageGate); elsewhere the store alone does it
        self.stage_gate: Callable[[stages.StageSpec, str], AbstractContextManager[None]] = \
            lambda spec, fingerprint: contextlib.nullcontext()

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

    def register(self, study: Study, *, location: str, code: StudyCode) -> None:
        """Name the study after where it lives (unless it has an explicit name), refuse a
        second study of the same name, and remember how its tables are shown.

        `location` is `path/test_x.py::test_fn`, relative to the rootdir: two studies whose
        functions share a name in different files are two studies, never one.
        """
        if not study.explicit_name:
            study.name = location
        other = self._studies.setdefault(study.name, study)
        if other is not study:
            raise StudyError(
                f"{study.where}: two studies are named {study.name!r}: this one and the one "
                f"declared at {other.where}; their runs would be mixed up. Give one of them "
                f"another name=")
        self._code[study.name] = code
        inputs.READS.install(self.project)
        self._record_session()
        self.store.save_study(self.session_id, study.name,
                              {"tables": study.tables, "minimize": list(study.minimize),
                               "guards": [dataclasses.asdict(g) for g in study.guards],
                               "correction": study.correction,
                               "pivot": list(dict.fromkeys(
                                   c.metric for c in (*study.hypotheses, *study.claims,
                                                      *study.guards)))})

    def code_manifest(self, study: Study) -> dict[str, str]:
        """{file: hash} of the study's code: its module (declarations masked), the conftest.py
        files above it, its fixtures' modules, the project modules these import, `code=`."""
        name = study.name or ""
        if name not in self._manifests:
            code = self._code[name]
            roots = [code.module, *(f for f in code.fixture_files if self.project.is_code(f))]
            folder = os.path.dirname(code.module)
            while True:
                if os.path.isfile(os.path.join(folder, "conftest.py")):
                    roots.append(os.path.join(folder, "conftest.py"))
                if folder == str(self.rootdir) or os.path.dirname(folder) == folder:
                    break
                folder = os.path.dirname(folder)
            files = inputs.closure(roots, self.project)
            for entry in study.code:
                try:
                    files.update(inputs.package_files(entry, str(self.rootdir)))
                except ValueError as exc:
                    raise StudyError(f"{study.where}: {exc}") from None
            masks = {code.module: inputs.declaration_mask(code.module, code.declarations)}
            self._manifests[name] = inputs.manifest(files, self.project, masks)
        return self._manifests[name]

    def fingerprint(self, study: Study, spec: Spec) -> str:
        """Hash of the run's (or stage's) declaration (config, tier, knobs, seed) and its
        study's code; the same in every process of the session, so a row made from other code
        is never taken."""
        if spec.key not in self._fingerprints:
            declared = {"config": spec.config, "tier": spec.tier, "knobs": dict(spec.knobs),
                        "seed": spec.seed, "code": self.code_manifest(study),
                        "scheme": inputs.HASH_SCHEME}
            if spec.kind == "stage":
                declared["stage"] = spec.variant
            text = json.dumps(declared, sort_keys=True, separators=(",", ":"))
            self._fingerprints[spec.key] = hashlib.sha256(text.encode()).hexdigest()[:16]
        return self._fingerprints[spec.key]

    def why_stale(self, study: Study, spec: Spec) -> Callable[[RunRecord], str | None]:
        """Why a stored run (or stage) of `spec` may not be reused (None: it may), in one
        line."""

        def check(row: RunRecord) -> str | None:
            if row.kind == "stage" and not (
                    row.artifact and (self.data_dir / row.artifact).is_dir()):
                return "its stored value is gone"
            return (config_change(row.config, spec.config)
                    or inputs.why_changed(row.inputs, self.code_manifest(study), self.project))

        return check

    def seeds(self, study: Study, tier: str) -> list[int]:
        """The seeds of a study's tier in this session (shifted by --seed-offset)."""
        return [seed + self.seed_offset for seed in study.seeds_at(tier)]

    def checkpoint_path(self, study: Study, spec: Spec) -> Path:
        """Where a run (or stage) keeps its training checkpoint: beside the store, named by run and
        fingerprint, so an interrupted run resumes in a later session only with the same code
        and config. Every part is a safe file name, whatever the study and knob names hold."""
        folder = paths.inside(self.data_dir / "checkpoints", study.name or "study")
        folder.mkdir(parents=True, exist_ok=True)
        return paths.inside(folder, f"{spec.id}-{self.fingerprint(study, spec)}", suffix=".pt")

    def obtain(self, study: Study, spec: RunSpec, body: Callable[[], Any],
               on_start: Callable[[], None] | None = None) -> RunRecord:
        """The run's record: from this session, from the store (with reuse), or computed now."""

        def finish(result: Any, frame: Frame) -> Computed:
            metrics = flatten(result, origin=f"{study.name}[{spec.id}]")
            return Computed(metrics, list(getattr(result, "failures", []) or []))

        return self._obtain(study, spec, body, finish, on_start)

    def stage(self, study: Study, run: RunSpec, name: str, compute: Callable[..., Any], *,
              only: Sequence[str] | None = None, ignore: Sequence[str] = (),
              per_seed: bool = True, save: Callable[[Any, Path], None] | None = None,
              load: Callable[[Path], Any] | None = None) -> Any:
        """The value of stage `name` for `run`, computed once per session by whichever process
        asks first (see core/stages.py); `compute` may take a `checkpoint` path to resume from
        after a crash. Its use (and its time, when computed now) is recorded with the run."""
        if not isinstance(name, str) or not name.strip():
            raise StageError("a stage needs a name, e.g. run.stage('train', ...)")
        if (save is None) != (load is None):
            raise StageError(f"stage {name!r}: give both save= and load=, or neither")
        try:
            depends = stages.depends_on(run.config, only=only, ignore=ignore)
        except StageError as exc:
            raise StageError(f"stage {name!r} of {run.id}: {exc}") from None
        shown = tuple((k, v) for k, v in run.knobs
                      if (k in depends if only is not None else k not in ignore))
        spec = stages.StageSpec(study.name or "", run.tier, name,
                                run.seed if per_seed else stages.ANY_SEED, depends, shown)
        wants_checkpoint = "checkpoint" in inspect.signature(compute).parameters

        def body() -> Any:
            if not wants_checkpoint:
                return compute()
            return compute(checkpoint=self.checkpoint_path(study, spec))

        computed: list[bool] = []

        def finish(value: Any, frame: Frame) -> Computed:
            folder = self.stage_folder(study, spec)
            writer = save or functools.partial(stages.save, stage=name)
            stages.replace_folder(folder, lambda tmp: writer(value, tmp))
            computed.append(True)
            return Computed({}, artifact=str(folder.relative_to(self.data_dir)))

        started = time.perf_counter()
        with self.stage_gate(spec, self.fingerprint(study, spec)):
            record = self._obtain(study, spec, body, finish, None)
        if self._frames:  # the run (or stage) that asked: its time excludes this one's
            if not self._frames[-1].init:  # a model built inside the stage is the run's init
                self._frames[-1].init.update(record.init)
            self._frames[-1].stages.append(
                {"name": name, "id": spec.id, "row": record.id, "computed": bool(computed),
                 "duration": record.duration,
                 "seconds": time.perf_counter() - started if computed else 0.0})
        folder = self.data_dir / (record.artifact or "")
        if not record.artifact or not folder.is_dir():
            raise StageError(f"stage {spec.id}: its stored value ({folder}) is gone; rerun "
                             "without --reuse to compute it again")
        return (load or stages.load)(folder)

    def stage_folder(self, study: Study, spec: stages.StageSpec) -> Path:
        """Where a stage's value is kept: beside the store, named by stage and fingerprint."""
        return paths.inside(self.data_dir / "stages", study.name or "study",
                            f"{spec.id}-{self.fingerprint(study, spec)}")

    def _obtain(self, study: Study, spec: Spec, body: Callable[[], Any],
                finish: Callable[[Any, Frame], Computed],
                on_start: Callable[[], None] | None) -> RunRecord:
        """Obtain a run or a stage: compute it under a frame that records what it reads, the
        resources it uses, the stages it takes and its initial state."""
        self._record_session()

        def compute() -> Computed:
            if on_start:
                on_start()
            before = set(sys.modules)
            frame = Frame()
            self._frames.append(frame)
            try:
                with inputs.READS.recording(), frame.meter:
                    result = body()
                computed = finish(result, frame)
            finally:
                self._frames.pop()
            self._dynamic |= self._project_modules(set(sys.modules) - before)
            read = inputs.manifest(self._dynamic | inputs.READS.files(), self.project)
            used = frame.stages
            return dataclasses.replace(
                computed, inputs={**read, **self.code_manifest(study)},
                resources=frame.meter.result(), init=frame.init,
                stages=[{k: v for k, v in u.items() if k != "seconds"} for u in used],
                stage_seconds=sum(u["seconds"] for u in used))

        return self.coordinator.obtain(spec, fingerprint=self.fingerprint(study, spec),
                                       compute=compute, device=self.device_label,
                                       why_stale=self.why_stale(study, spec))

    @property
    def frame(self) -> Frame | None:
        """The run or stage being computed in this process now (the innermost), if any."""
        return self._frames[-1] if self._frames else None

    def _project_modules(self, names: Iterable[str]) -> set[str]:
        """Files of the project modules among `names`, with what they import."""
        files = [getattr(sys.modules.get(name), "__file__", None) for name in names]
        found = [path for path in (os.path.abspath(f) for f in files if isinstance(f, str))
                 if os.path.isfile(path) and self.project.is_code(path)]
        return inputs.closure(found, self.project) if found else set()
