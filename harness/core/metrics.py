"""Metric dicts: flatten what a test body returns into `head/group/name` paths.

    flatten({"ctc": {"labels": {"majmin": 0.8}}, "loss": 0.1})
    # {'ctc/labels/majmin': 0.8, 'loss': 0.1}
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

SEPARATOR = "/"


class MetricsError(ValueError):
    """A test body returned something that is not a dict of numbers."""


def flatten(metrics: Any, *, origin: str = "the test body") -> dict[str, float]:
    """Nested dict of numbers -> flat {path: float}; anything else is a clear error."""
    if metrics is None:
        raise MetricsError(f"{origin} returned None: a study's test body must return its metrics, "
                           "e.g. `return {'acc': 0.93}` or a nested dict per head")
    if not isinstance(metrics, Mapping):
        raise MetricsError(f"{origin} returned {type(metrics).__name__}, not a dict of metrics")
    flat: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, sub in value.items():
                if not isinstance(key, str) or not key or SEPARATOR in key:
                    raise MetricsError(f"{origin}: metric key {key!r} under {prefix or 'top'} "
                                       f"must be a non-empty string without {SEPARATOR!r}")
                walk(f"{prefix}{SEPARATOR}{key}" if prefix else key, sub)
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            flat[prefix] = float(value)
        else:
            raise MetricsError(f"{origin}: metric {prefix!r} is {value!r} "
                               f"({type(value).__name__}); metrics must be numbers")

    walk("", metrics)
    if not flat:
        raise MetricsError(f"{origin} returned an empty dict: no metrics to record")
    return flat


def split_path(path: str) -> tuple[str, str, str]:
    """`head/group/name` -> parts; shorter paths get head "-" and group "metrics"."""
    parts = path.split(SEPARATOR)
    if len(parts) == 1:
        return "-", "metrics", parts[0]
    if len(parts) == 2:
        return "-", parts[0], parts[1]
    return parts[0], SEPARATOR.join(parts[1:-1]), parts[-1]


def lower_is_better(name: str, minimize: tuple[str, ...] = ()) -> bool:
    """Direction of a metric for marking the best value: losses and errors are minimized."""
    leaf = name.split(SEPARATOR)[-1]
    return leaf in minimize or "loss" in leaf or "err" in leaf
