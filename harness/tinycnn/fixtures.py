"""pytest fixtures of the TinyCNN domain; a study module imports them by name:

    from harness.tinycnn.fixtures import tinycnn_data_fixture  # noqa: F401

    @study
    def test_tinycnn(run, tinycnn_data):
        tinycnn_data.train_x, tinycnn_data.eval_y    # this run's images

The config's `dataset` picks the data: `synthetic` (images drawn from the run's seed, with
`config["data"]` as SyntheticConfig) or `digits` (scikit-learn's digits, the same fixed split
for every run). The fixture is registered as `tinycnn_data` but defined as
`tinycnn_data_fixture`, so that a body's parameter never shadows an imported name (ruff F811).
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.tinycnn.data import ImageData, SyntheticConfig, digits, synthetic

DATASETS = ("synthetic", "digits")


def image_data(config: dict[str, Any], seed: int) -> ImageData:
    """The images a run with this config and seed trains and evaluates on."""
    dataset = config.get("dataset", "synthetic")
    if dataset == "synthetic":
        return synthetic(SyntheticConfig(**config.get("data", {})), seed)
    if dataset == "digits":
        return digits()
    raise ValueError(f"dataset {dataset!r}: choose one of {', '.join(DATASETS)}")


@pytest.fixture(name="tinycnn_data")
def tinycnn_data_fixture(ablation_run: Any) -> ImageData:
    """Train and eval images for the run: synthetic from its seed, or the digits."""
    return image_data(dict(ablation_run.config), ablation_run.seed)
