"""fit(): deterministic CPU training with the conservative loss and precision-based selection.

Every run of a seed draws the same batches (a generator seeded by the seed), whichever embedder
or classifier it has, so runs differ only in what the study varies. After each epoch the model
is scored on held-out training peptides; the weights of the epoch selection.best_epoch picks
are loaded at the end, so the eval peptides never choose anything.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.chords.optim import Adam  # torch.optim's first use costs ~1.5 s per process
from harness.peptides.classifiers import pad_width
from harness.peptides.loss import conservative_bce
from harness.peptides.metrics import precision_recall
from harness.peptides.selection import best_epoch


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.005
    penalty: float = 1.0  # alpha of the conservative loss
    min_recall: float = 0.5  # an epoch competes on precision only above this recall


@dataclass(frozen=True, eq=False)
class Tensors:
    """Inputs of a classifier: (N, L, width) embeddings, (N, L) mask, (N,) float labels."""

    x: torch.Tensor
    mask: torch.Tensor
    y: torch.Tensor

    @classmethod
    def of(cls, embedding: np.ndarray, lengths: np.ndarray, labels: np.ndarray,
           width: int) -> Tensors:
        x = pad_width(torch.from_numpy(np.asarray(embedding, dtype=np.float32)), width)
        mask = torch.arange(x.shape[1]) < torch.from_numpy(lengths).unsqueeze(1)
        return cls(x, mask, torch.from_numpy(np.asarray(labels)).float())

    def __len__(self) -> int:
        return len(self.y)

    def slice(self, start: int, stop: int) -> Tensors:
        return Tensors(self.x[start:stop], self.mask[start:stop], self.y[start:stop])

    def rows(self, rows: np.ndarray) -> Tensors:
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        return Tensors(self.x[index], self.mask[index], self.y[index])


@dataclass
class Fitted:
    best_epoch: int  # 1-based
    history: list[dict[str, float]] = field(default_factory=list)


@torch.no_grad()
def predict(model: nn.Module, data: Tensors) -> np.ndarray:
    """Probabilities of activity, one per peptide."""
    model.eval()
    probabilities = torch.sigmoid(model(data.x, data.mask)).numpy()
    model.train()
    return probabilities


def fit(model: nn.Module, train: Tensors, validation: Tensors, config: TrainConfig, seed: int,
        log: Callable[..., Any] | None = None) -> Fitted:
    """Train `model` in place for `config.epochs` epochs; it ends with the kept epoch's weights."""
    optimizer = Adam(model.parameters(), lr=config.lr)
    rng = np.random.default_rng([seed, 29])
    history, states = [], []
    step = 0
    for epoch in range(config.epochs):
        shuffled = train.rows(rng.permutation(len(train)))
        for start in range(0, len(train), config.batch_size):
            batch = shuffled.slice(start, start + config.batch_size)
            loss = conservative_bce(model(batch.x, batch.mask), batch.y, config.penalty)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
        checked = precision_recall(validation.y.numpy(), predict(model, validation))
        history.append(checked)
        states.append(copy.deepcopy(model.state_dict()))
        if log is not None:
            log(step, loss=loss.item(), epoch=epoch + 1, **checked)
    kept = best_epoch(history, min_recall=config.min_recall)
    model.load_state_dict(states[kept])
    return Fitted(kept + 1, history)
