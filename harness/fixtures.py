"""Fixtures a study's test body can ask for: the run it is making and a step logger.

    @heads
    def test_heads(run, log):      # run: RunSpec (variant, seed, config, knobs, tier)
        ...
        log(step, loss=loss)       # per-step metrics to W&B and the local run log
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness.core.study import RUN_ARG, RunSpec, Study
from harness.items import SESSION_KEY, RunContext, StepLog, obtain_setting, run_context

if TYPE_CHECKING:  # the statistics (numpy, scipy) load when results are decided
    from harness.core.verdicts import SettingResults


@pytest.fixture(name=RUN_ARG)
def _ablation_run(request: pytest.FixtureRequest) -> RunContext:
    return run_context(request)


@pytest.fixture
def run(_ablation_run: RunContext) -> RunSpec:
    """The run being made: `.variant`, `.seed`, `.config` (merged), `.knobs`, `.tier`, `.id`."""
    return _ablation_run.fixture("run")


@pytest.fixture
def variant(_ablation_run: RunContext) -> str:
    """The variant's name."""
    return _ablation_run.fixture("variant")


@pytest.fixture
def seed(_ablation_run: RunContext) -> int:
    """The run's seed (shared by every variant: same init, same data)."""
    return _ablation_run.fixture("seed")


@pytest.fixture
def config(_ablation_run: RunContext) -> dict[str, Any]:
    """The merged config: study base, then variant overrides, then knob values (a copy)."""
    return _ablation_run.fixture("config")


@pytest.fixture
def knobs(_ablation_run: RunContext) -> dict[str, Any]:
    """The knob values of this run's setting, e.g. {"noise_sigma": 0.5}."""
    return _ablation_run.fixture("knobs")


@pytest.fixture
def tier(_ablation_run: RunContext) -> str:
    """The tier: "synthetic", "real", ..."""
    return _ablation_run.fixture("tier")


@pytest.fixture
def log(_ablation_run: RunContext) -> StepLog:
    """`log(step, loss=0.3, ...)`: per-step training metrics (local run log, W&B with --wandb,
    progress bar); `log.steps(n)` declares the step budget for the progress bar's ETA."""
    return _ablation_run.fixture("log")


@pytest.fixture
def ablation_results(request: pytest.FixtureRequest) -> Callable[..., SettingResults]:
    """`ablation_results(study, tier=None, knobs=None)`: every run of one setting of a study.

    Runs made in this session are read; missing ones are computed (exactly once). For known-
    answer controls that assert on verdicts themselves:

        def test_planted_regression(ablation_results):
            results = ablation_results(controls, knobs={"noise_sigma": 0.5})
            verdict = results.decide("bug >= ctc_only", metric="joint/labels/majmin")
    """

    def results(study: Study, tier: str | None = None,
                knobs: dict[str, Any] | None = None) -> SettingResults:
        settings = [(t, k) for t, k in study.settings(tier)
                    if knobs is None or dict(k) == knobs]
        if not settings:
            raise LookupError(f"study {study.name!r} has no setting tier={tier!r} knobs={knobs}")
        tier_name, knob_values = settings[0]
        runs = obtain_setting(request.node, study, tier_name, knob_values, list(study.variants))
        from harness.core.verdicts import SettingResults

        return SettingResults(study, runs, request.config.stash[SESSION_KEY].seeds(study))

    return results


@pytest.fixture
def checkpoint(_ablation_run: RunContext) -> Path:
    """Path for this run's training checkpoint (.ablation/checkpoints/<study>/<run>-<fp>.pt).

    It survives the session: a run interrupted mid-training resumes from it in the next
    session, as long as code and config (the fingerprint) are unchanged. The parent folder
    exists; the file is the body's to write.
    """
    return _ablation_run.fixture("checkpoint")


@pytest.fixture
def device(_ablation_run: RunContext) -> str:
    """The torch device for this run: `cuda:0` on a GPU-pinned xdist worker, else `cuda` when a
    GPU is visible, else `cpu`. Recorded in the store with the physical GPU id."""
    return _ablation_run.fixture("device")
