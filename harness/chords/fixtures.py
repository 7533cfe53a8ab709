"""pytest fixtures of the chord domain, loaded by the root conftest.py.

    @heads
    def test_chord_heads(run, chord_data, log):
        chord_data.train, chord_data.eval     # songs for this run's tier, knobs and seed
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.chords.synthetic import ChordDataset, SyntheticConfig, make_dataset


def synthetic_data(config: dict[str, Any], seed: int) -> ChordDataset:
    """The synthetic dataset of a run: `config["data"]` overrides plus the noise knob."""
    options = dict(config.get("data", {}))
    if "noise_sigma" in config:
        options["noise_sigma"] = config["noise_sigma"]
    return make_dataset(SyntheticConfig(**options), seed=seed)


@pytest.fixture
def chord_data(run: Any) -> ChordDataset:
    """Train and eval songs for the run: synthetic data from the run's seed and knobs."""
    if run.tier == "synthetic":
        return synthetic_data(dict(run.config), run.seed)
    raise pytest.UsageError(f"chord_data has no data for tier {run.tier!r} yet")
