"""Distillation: the student learns each step from the teacher's rationales.

Sequence-level distillation, as in the notebook: cross-entropy on the tokens the teacher wrote
(its slips included), with label smoothing. `data_fraction` keeps the first part of the
teacher's rationales (nested subsets: a bigger fraction only adds problems), and the budget is
counted in epochs, so less data also means fewer steps, as it does for a notebook that trains
a fixed number of epochs. Plain SGD: the learning rate is the only optimizer knob.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from harness.distill.model import Student


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 0.5
    epochs: int = 20
    batch_size: int = 32
    label_smoothing: float = 0.1
    data_fraction: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.data_fraction <= 1:
            raise ValueError(f"data_fraction={self.data_fraction} must lie in (0, 1]")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing={self.label_smoothing} must lie in [0, 1)")


def transitions(digits: np.ndarray, rationales: np.ndarray
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every step of every rationale as (previous state, digit, next state), flattened."""
    previous = np.concatenate([np.zeros_like(rationales[:, :1]), rationales[:, :-1]], axis=1)
    return tuple(torch.as_tensor(a.reshape(-1), dtype=torch.long)  # type: ignore[return-value]
                 for a in (previous, digits, rationales))


def kept_problems(total: int, fraction: float) -> int:
    """How many problems a data fraction keeps (at least one)."""
    return max(1, math.ceil(total * fraction - 1e-9))


def fit(model: Student, digits: np.ndarray, rationales: np.ndarray, config: TrainConfig, *,
        seed: int, log: Callable[[int, dict[str, float]], None] | None = None) -> list[float]:
    """Train `model` in place on the first `data_fraction` of the problems; returns the mean
    loss of each epoch. Batches are shuffled by a generator seeded with `seed`."""
    n = kept_problems(len(digits), config.data_fraction)
    states, inputs, targets = transitions(digits[:n], rationales[:n])
    generator = torch.Generator().manual_seed(seed)
    params = list(model.parameters())
    losses, step = [], 0
    for _ in range(config.epochs):
        order = torch.randperm(len(targets), generator=generator)
        total = 0.0
        for batch in order.split(config.batch_size):
            loss = F.cross_entropy(model(states[batch], inputs[batch]), targets[batch],
                                   label_smoothing=config.label_smoothing)
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for param, grad in zip(params, grads, strict=True):
                    param.sub_(grad, alpha=config.lr)
            total += float(loss.detach()) * len(batch)
            step += 1
        losses.append(total / len(targets))
        if log is not None:
            log(step, {"loss": losses[-1]})
    return losses
