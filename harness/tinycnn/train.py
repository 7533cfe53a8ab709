"""fit() and evaluate(): a fixed budget of Adam steps on batches drawn from the seed.

Every variant of a seed gets the same steps and the same batches (a generator of its own,
seeded by the seed; dropout draws from torch's global generator, so it never moves the batch
order). Weight decay is decoupled, as in AdamW: weight matrices (not biases or BN scales) are
multiplied by `1 - lr * weight_decay` before each Adam step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from harness.chords.optim import Adam  # torch.optim's first use costs ~1.5 s a process
from harness.tinycnn.model import TinyCNN


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 100
    batch_size: int = 64
    lr: float = 0.02
    weight_decay: float = 0.0  # decoupled, on weight matrices only
    log_every: int = 10


def fit(model: TinyCNN, x: np.ndarray, y: np.ndarray, config: TrainConfig, *, seed: int,
        log: Callable[[int, float], None] | None = None) -> float:
    """Train for `config.steps` steps; `log(step, loss)` every `log_every` steps and at the
    last one. Returns the mean loss of the last `log_every` steps (the curve's end)."""
    images, labels = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(seed)
    optimizer = Adam(model.parameters(), lr=config.lr)
    decayed = [p for p in model.parameters() if p.dim() > 1]
    recent: list[float] = []
    model.train()
    for step in range(1, config.steps + 1):
        index = torch.randint(len(images), (config.batch_size,), generator=generator)
        loss = F.cross_entropy(model(images[index]), labels[index])
        optimizer.zero_grad()
        loss.backward()
        if config.weight_decay:
            with torch.no_grad():
                for param in decayed:
                    param.mul_(1 - config.lr * config.weight_decay)
        optimizer.step()
        recent.append(loss.item())
        if log is not None and (step % config.log_every == 0 or step == config.steps):
            log(step, recent[-1])
    return float(np.mean(recent[-config.log_every:]))


@torch.no_grad()
def evaluate(model: TinyCNN, x: np.ndarray, y: np.ndarray, *,
             transpose: bool = False) -> dict[str, float]:
    """Accuracy and mean cross-entropy on (x, y), in eval mode. `transpose` swaps the image
    axes (height and width), a layout bug: the known-answer control plants it."""
    model.eval()
    images = torch.from_numpy(x)
    if transpose:
        images = images.transpose(-1, -2).contiguous()
    logits = model(images)
    labels = torch.from_numpy(y)
    return {"acc": float((logits.argmax(dim=1) == labels).float().mean()),
            "loss": float(F.cross_entropy(logits, labels))}
