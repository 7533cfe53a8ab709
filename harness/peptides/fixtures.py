"""pytest fixtures of the peptide domain, imported by the study module that uses them:

    from harness.peptides.fixtures import peptide_data_fixture  # noqa: F401

    @grid
    def test_peptide_grid(run, peptide_data):
        peptide_data.train, peptide_data.eval   # peptides for this run's tier and seed

The run's `data` config picks the source: "synthetic" (SyntheticConfig fields as overrides,
drawn from the run's seed) or "modlamp" (the real AMP vs UniProt set; `max_len`,
`eval_fraction`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import pytest

from harness.peptides.data import PeptideData


def load_peptides(config: Mapping[str, Any], seed: int) -> PeptideData:
    """The peptides a `data` config describes; `seed` draws synthetic ones. Cached per process:
    every embedder and classifier of a seed reads the same peptides."""
    return _load(json.dumps(config, sort_keys=True), seed)


@lru_cache(maxsize=8)
def _load(config_json: str, seed: int) -> PeptideData:
    options = json.loads(config_json)
    source = options.pop("source", "synthetic")
    if source == "synthetic":
        from harness.peptides.synthetic import SyntheticConfig, make_dataset

        return make_dataset(SyntheticConfig(**options), seed=seed)
    if source == "modlamp":
        from harness.peptides.amp import load_amp_vs_uniprot

        return load_amp_vs_uniprot(int(options.get("max_len", 50)),
                                   float(options.get("eval_fraction", 0.2)))
    raise ValueError(f"unknown peptide source {source!r}: 'synthetic' or 'modlamp'")


@pytest.fixture(name="peptide_data")  # imported under another name: no clash with the
def peptide_data_fixture(ablation_run: Any) -> PeptideData:  # body's parameter
    """Train and eval peptides of the run: synthetic from its seed, or the real set."""
    return load_peptides(ablation_run.config.get("data", {}), ablation_run.seed)
