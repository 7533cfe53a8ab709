"""An exponential moving average (EMA) of a model's trainable weights.

After each optimizer step, ``shadow = decay * shadow + (1 - decay) * weight``, starting from the
initial weights. With a constant, high learning rate, SGD's weights keep jumping around the
optimum by an amount set by the gradient noise; the average over the last ~1 / (1 - decay) steps
sits nearer the optimum. Evaluate with the averaged weights (``averaged``), keep training the raw
ones.

Only parameters that require gradients are averaged: a frozen parameter never changes, so its
average is itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class EMA:
    """``ema = EMA(model, decay=0.98)``; ``ema.update()`` after every step;
    ``with ema.averaged(): evaluate(model)``."""

    def __init__(self, model: nn.Module, *, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay!r}: it is the weight of "
                             "the old average (0.98 keeps ~50 steps), not of the new weights")
        self.decay = decay
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.shadow = [p.detach().clone() for p in self.params]
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        for shadow, param in zip(self.shadow, self.params, strict=True):
            shadow.lerp_(param, 1.0 - self.decay)
        self.updates += 1

    @contextlib.contextmanager
    def averaged(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its raw weights after."""
        raw = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for param, shadow in zip(self.params, self.shadow, strict=True):
                param.copy_(shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                for param, saved in zip(self.params, raw, strict=True):
                    param.copy_(saved)

    def state_dict(self) -> dict[str, object]:
        return {"decay": self.decay, "updates": self.updates,
                "shadow": [t.clone() for t in self.shadow]}

    def load_state_dict(self, state: dict[str, object]) -> None:
        shadow = state["shadow"]
        assert isinstance(shadow, list)
        if len(shadow) != len(self.shadow) or state["decay"] != self.decay:
            raise ValueError(f"EMA state for {len(shadow)} tensors at decay {state['decay']}, "
                             f"this EMA has {len(self.shadow)} at decay {self.decay}")
        for mine, saved in zip(self.shadow, shadow, strict=True):
            mine.copy_(saved)
        self.updates = int(state["updates"])  # type: ignore[call-overload]
