"""Fixtures of the plugin: the run for fixtures that depend on it, and a setting's results.

A study body receives its run through its own parameters (`run`, `seed`, `config`, ...: see
RUN_VALUES), never through fixtures, so no conftest fixture can stand in for them. A fixture
that needs the run asks for `ablation_run`:

    @pytest.fixture
    def dataset(ablation_run):
        return make_data(ablation_run.config["data"], seed=ablation_run.seed)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from harness.core.study import Study
from harness.items import RUN_ARG, SESSION_KEY, Run, fixed_seeds, obtain_setting, run_for

if TYPE_CHECKING:  # the statistics (numpy, scipy) load when results are decided
    from harness.core.verdicts import SettingResults


@pytest.fixture(name=RUN_ARG)
def _ablation_run(request: pytest.FixtureRequest) -> Run:
    return run_for(request)


@pytest.fixture
def ablation_run(_ablation_run: Run) -> Run:
    """The run being made (the body's `run`): `.variant`, `.seed`, `.config`, `.knobs`,
    `.tier`, `.device`, `.checkpoint`, `.log`. Only a study's body and its fixtures have one."""
    return _ablation_run


@pytest.fixture
def ablation_results(request: pytest.FixtureRequest) -> Callable[..., SettingResults]:
    """`ablation_results(study, tier=None, knobs=None)`: every run of one setting of a study
    (under an adaptive seed budget, of its first look: the seeds that always run).

    Runs made in this session are read; missing ones are computed (exactly once). For known-
    answer controls that assert on verdicts themselves:

        def test_planted_regression(ablation_results):
            results = ablation_results(controls, knobs={"noise_sigma": 0.5})
            verdict = results.decide("bug >= ctc_only", metric="joint/labels/majmin", margin=0.01)
    """

    def results(study: Study, tier: str | None = None,
                knobs: dict[str, Any] | None = None) -> SettingResults:
        settings = [(t, k) for t, k in study.settings(tier)
                    if knobs is None or dict(k) == knobs]
        if not settings:
            raise LookupError(f"study {study.name!r} has no setting tier={tier!r} knobs={knobs}")
        tier_name, knob_values = settings[0]
        seeds = fixed_seeds(request.config.stash[SESSION_KEY], study, tier_name)
        runs = obtain_setting(request.node, study, tier_name, knob_values, list(study.variants),
                              seeds)
        from harness.core.verdicts import SettingResults

        return SettingResults(study, runs, seeds)

    return results
