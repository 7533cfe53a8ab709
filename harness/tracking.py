"""Experiment tracking: a local log that is always written, and optional Weights & Biases runs.

Every run gets `run_dir/<study>/<name>/steps.jsonl` and `summary.json`, with or without W&B, so
results never depend on the tracker. With W&B on, each run is also one W&B run in the session's
group (job_type "run"), and each study adds one "verdicts" run holding its verdict table.

W&B runs offline unless the user asked for "online" and wandb has an API key, so nothing ever
prompts for a login or waits on the network; an explicit WANDB_MODE always wins. Any W&B error
switches W&B off for the rest of the session with a single warning: tracking never costs results.

Plain module: the pytest layer calls it, it never imports pytest.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from harness.core import paths

T = TypeVar("T")

# Quiet, and no per-run cost that the harness does not need: no console capture (pytest owns
# stdout), no `pip freeze` into requirements.txt (~40 ms a run; provenance records versions).
_WANDB_SETTINGS = {"silent": True, "console": "off", "x_save_requirements": False,
                   "init_timeout": 30.0}


def default_group(study_or_suite: str, job_id: str | None = None) -> str:
    """'ablate-<name>_<job>': every process of one Slurm job (array) or session shares a group.

    The Slurm job id wins over the given local session id, so all nodes and array tasks of a
    job land in the same W&B group.
    """
    job = group_job(job_id)
    return f"ablate-{study_or_suite}" + (f"_{job}" if job else "")


def group_job(job_id: str | None = None) -> str | None:
    """The group's suffix: the Slurm job (array) of the session, else `job_id`. A run
    launched as its own job (harness.launch) keeps its controller's, handed over in
    ABLATION_GROUP_JOB, and carries its own job id in its config (`ablation_job`)."""
    return (os.environ.get("ABLATION_GROUP_JOB") or os.environ.get("SLURM_ARRAY_JOB_ID")
            or os.environ.get("SLURM_JOB_ID") or job_id)


def default_project(name: str) -> str:
    """'<name>-ablations', with the characters W&B refuses in project names replaced by '-'."""
    return re.sub(r"[/\\#?%:]", "-", name) + "-ablations"


def has_api_key() -> bool:
    """Whether wandb finds credentials without prompting (WANDB_API_KEY, .netrc, settings)."""
    try:
        from wandb.sdk import wandb_setup
        from wandb.sdk.lib import wbauth

        host = wandb_setup.singleton().settings.base_url
        auth = wbauth.authenticate_session(
            host=host, source="pytest-ablation", prompt=False, update_session=False)
        return auth is not None
    except Exception:  # wandb missing, moved internals or a malformed key: trust the env only
        return bool(os.environ.get("WANDB_API_KEY"))


def decide_mode(requested: str | None, env_mode: str | None, has_key: Callable[[], bool]) -> str:
    """The wandb mode to use: WANDB_MODE if set; "online" only if asked for and a key exists.

    `has_key` is only called when it matters (it imports wandb).
    """
    if env_mode:
        return env_mode
    if requested == "online":
        return "online" if has_key() else "offline"
    return requested or "offline"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _json_default(value: Any) -> Any:
    """numpy/torch scalars become floats, anything else (paths, enums) its string."""
    return float(value) if hasattr(value, "__float__") else str(value)


def _write_json(path: Path, data: Any) -> None:
    """Write via a temp file and os.replace, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, default=_json_default)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class Tracker:
    """The session's tracker: local logs always, W&B runs while W&B works."""

    def __init__(self, *, run_dir: Path, wandb: bool = False, project: str = "ablations",
                 job_id: str | None = None, mode: str | None = None,
                 warn: Callable[[str], None] = warnings.warn, launched_as: str | None = None
                 ) -> None:
        self.run_dir = Path(run_dir)
        self.project, self.job_id = project, job_id
        self.launched_as = launched_as  # the job a launched run executes in (harness.launch)
        self._warn = warn
        self._wandb: Any = None  # the wandb module, imported on first use
        self._open: list[RunLog] = []
        env_mode = os.environ.get("WANDB_MODE")
        self.mode = decide_mode(mode, env_mode, has_api_key) if wandb else "off"
        self.enabled = self.mode not in ("off", "disabled")
        if mode == "online" and self.mode == "offline" and not env_mode:
            warn("W&B: mode 'online' was asked for but no API key is configured (WANDB_API_KEY "
                 f"or `wandb login`); logging offline under {self.wandb_dir / 'wandb'} instead, "
                 "upload later with `wandb sync`.")

    def start(self, *, study: str, name: str, config: dict,
               metadata: Mapping[str, Any] | None = None) -> RunLog:
        """Open the local log of one run and, with W&B on, its W&B run.

        The run's folder gets config.json and metadata.json (host, device, versions, git
        commit, start time) beside steps.jsonl and summary.json.
        """
        path = paths.inside(self.run_dir, study, name)
        if self.launched_as:
            config = {**config, "ablation_job": self.launched_as}
        log = RunLog(self, path, study=study, name=name, config=config)
        _write_json(path / "config.json", config)
        _write_json(path / "metadata.json", {**(metadata or {}), "started": _now()})
        log.wandb_run = self._init_run(study=study, name=name, config=config, job_type="run")
        self._open.append(log)
        return log

    def log_verdicts(self, *, study: str, rows: list[dict],
                     images: Sequence[Path] = ()) -> None:
        """Store a study's verdict rows locally and as one W&B "verdicts" run with a table
        and the study's figures (`images`: PNG files, logged as `figures/<file name>`)."""
        _write_json(paths.inside(self.run_dir, study) / "verdicts.json", rows)
        run = self._init_run(study=study, name=f"{study}-verdicts", config={"study": study},
                             job_type="verdicts")
        if run is None:
            return
        columns = list(dict.fromkeys(key for row in rows for key in row))
        data = [[row.get(column) for column in columns] for row in rows]
        counts = Counter(str(row.get("status")) for row in rows)

        def log() -> None:
            # Mixed types: a column holds None where a verdict could not be computed, and knobs
            # dicts differ between settings; W&B's per-column type check would reject both.
            table = self._wandb.Table(columns=columns, data=data, allow_mixed_types=True)
            figures = {f"figures/{path.parent.name}/{path.stem}": self._wandb.Image(str(path))
                       for path in images}
            run.log({"verdicts": table, **figures})
            run.summary.update({"verdicts/n": len(rows),
                                **{f"verdicts/{status}": n for status, n in counts.items()}})
            run.finish()

        self.guard("logging the verdicts to W&B", log)

    def close(self) -> None:
        """Finish runs left open (their summary says "aborted"), so no W&B run dangles."""
        for log in list(self._open):
            log.finish({}, status="aborted")

    def guard(self, what: str, action: Callable[[], T]) -> T | None:
        """Run a W&B action; on any error switch W&B off for the session and warn once."""
        if not self.enabled:
            return None
        try:
            return action()
        except Exception as exc:
            self.enabled = False
            self._warn(f"W&B tracking switched off for this session: {what} failed "
                       f"({type(exc).__name__}: {exc}). Results are still stored, and the local "
                       f"log continues under {self.run_dir}.")
            return None

    @property
    def wandb_dir(self) -> Path:
        """Where W&B writes its files (a `wandb/` folder in it): WANDB_DIR when set, as W&B
        users expect, else the session's run folder beside the store."""
        return Path(os.environ.get("WANDB_DIR") or self.run_dir)

    def group(self, study: str) -> str:
        """The W&B group of a study's runs: `ablate-<study>_<job id>`."""
        return default_group(study, self.job_id)

    def _init_run(self, *, study: str, name: str, config: dict, job_type: str) -> Any:
        return self.guard("wandb.init",
                          lambda: self._init_run_unguarded(study, name, config, job_type))

    def _init_run_unguarded(self, study: str, name: str, config: dict, job_type: str) -> Any:
        if self._wandb is None:
            if self.mode == "online" and not has_api_key():
                raise RuntimeError("WANDB_MODE=online but no API key is configured (set "
                                   "WANDB_API_KEY or run `wandb login`); wandb would prompt")
            import wandb

            self._wandb = wandb
        known = self._wandb.Settings.model_fields  # drop what another wandb version lacks
        settings = {k: v for k, v in _WANDB_SETTINGS.items() if k in known}
        self.wandb_dir.mkdir(parents=True, exist_ok=True)
        # "create_new": every RunLog owns its run, so a run left open never ends another one.
        return self._wandb.init(project=self.project, group=self.group(study), name=name,
                                config=config, job_type=job_type, mode=self.mode,
                                reinit="create_new", dir=self.wandb_dir,
                                settings=self._wandb.Settings(**settings))


class RunLog:
    """One run: `steps.jsonl` and `summary.json` in its folder, mirrored to its W&B run."""

    def __init__(self, tracker: Tracker, path: Path, *, study: str, name: str,
                 config: dict) -> None:
        self.path = path
        self.wandb_run: Any = None
        self._tracker = tracker
        self._summary: dict[str, Any] = {"study": study, "name": name, "config": config,
                                         "status": "running", "started": _now()}
        _write_json(path / "summary.json", self._summary)
        self._steps = path / "steps.jsonl"
        self._steps.write_text("")

    def log(self, step: int, **values: float) -> None:
        """Per-step training metrics: one JSON line each, and one W&B history row."""
        with open(self._steps, "a") as f:  # closed at once: nothing to lose in a crash
            f.write(json.dumps({"step": step, **values}, default=_json_default) + "\n")
        if self.wandb_run is not None:
            self._tracker.guard("wandb.log", lambda: self.wandb_run.log(values, step=step))

    def finish(self, metrics: Mapping[str, float], *, status: str = "done") -> None:
        """Final metrics: into summary.json, and as "final/<path>" in the W&B summary."""
        self._tracker._open.remove(self)
        self._summary.update(metrics=dict(metrics), status=status, finished=_now())
        _write_json(self.path / "summary.json", self._summary)
        run = self.wandb_run
        if run is None:
            return

        def finish() -> None:
            run.summary.update({**{f"final/{k}": v for k, v in metrics.items()},
                                "status": status})
            run.finish(exit_code=0 if status == "done" else 1)

        self._tracker.guard("wandb finish", finish)
