"""pytest fixtures of the distillation domain. A study imports them into its module, so this
domain loads only for the studies that use it:

    from harness.distill.fixtures import distill_data_fixture  # noqa: F401

    @study
    def test_distill(run, distill_data):
        distill_data.train_digits, distill_data.train_rationales, distill_data.eval_digits

The fixture is registered under the name `distill_data` but defined as `distill_data_fixture`,
so that a body's parameter never shadows an imported name (ruff's F811).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from harness.distill.task import DistillData, TaskConfig, make_data


@cache
def _data(config: TaskConfig, seed: int) -> DistillData:
    """Per process: every setting of a seed (a sweep has many) shares the seed's data."""
    return make_data(config, seed)


def data_for(config: dict[str, Any], seed: int) -> DistillData:
    """The data of a run: `config["task"]` overrides TaskConfig's defaults."""
    return _data(TaskConfig(**config.get("task", {})), seed)


@pytest.fixture(name="distill_data")
def distill_data_fixture(ablation_run: Any) -> DistillData:
    """The teacher's rationales and the eval problems for the run's seed and task config."""
    return data_for(dict(ablation_run.config), ablation_run.seed)
