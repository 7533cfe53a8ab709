"""A RunSpec with defaults, for the store and coordinator tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.core.study import RunSpec


@dataclass(frozen=True)
class Spec(RunSpec):
    study: str = "heads"
    tier: str = "synthetic"
    knobs: tuple = (("noise_sigma", 0.5),)
    variant: str = "combined"
    seed: int = 0
    config: Mapping[str, Any] = field(default_factory=lambda: {"lr": 0.01}, compare=False,
                                      hash=False)
