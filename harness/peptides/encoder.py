"""The learned embedder: a small convolutional encoder, trained once per seed in its stage.

It stands in for a protein language model, which cannot be downloaded here: residues are
embedded, mixed by two convolutions (a receptive field of 7 residues) and read out per residue.
Like a language model it learns from a corpus of its own, larger than the downstream training
set: the synthetic tier draws one from the same biology; where there is none (the real tier) it
learns from the fit part of the training peptides (never the validation part that selects the
classifiers' checkpoints, never eval). Unlike a language model it learns activity itself, from
its max-pooled features with plain BCE: its job is to make features, not to be the study's
classifier. Its per-residue features, stored as float16, are what every classifier then reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from harness.chords.optim import Adam  # torch.optim's first use costs ~1.5 s per process
from harness.peptides.alphabet import AMINO_ACIDS, PAD


@dataclass(frozen=True)
class EncoderConfig:
    width: int = 32
    kernel: int = 5
    steps: int = 150
    batch_size: int = 64
    lr: float = 0.01


class ConvEncoder(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        width = config.width
        self.embed = nn.Embedding(len(AMINO_ACIDS) + 1, width, padding_idx=PAD)
        self.mix = nn.Conv1d(width, width, config.kernel, padding=config.kernel // 2)
        self.out = nn.Conv1d(width, width, 3, padding=1)
        self.head = nn.Linear(width, 1)

    def features(self, codes: torch.Tensor) -> torch.Tensor:
        """(N, L) residue codes -> (N, L, width) features, >= 0, zero at padding."""
        hidden = torch.relu(self.mix(self.embed(codes).transpose(1, 2)))
        hidden = torch.relu(self.out(hidden)).transpose(1, 2)
        return hidden * (codes != PAD).unsqueeze(-1)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(codes).amax(dim=1)).squeeze(-1)


def train_encoder(codes: np.ndarray, labels: np.ndarray, config: EncoderConfig,
                  seed: int) -> ConvEncoder:
    """A fixed number of steps on batches drawn from `seed`: the same encoder every time."""
    torch.manual_seed(seed)
    model = ConvEncoder(config)
    optimizer = Adam(model.parameters(), lr=config.lr)
    rng = np.random.default_rng([seed, 17])
    inputs, targets = torch.from_numpy(codes), torch.from_numpy(labels).float()
    for _ in range(config.steps):
        rows = torch.from_numpy(rng.choice(len(codes), size=min(config.batch_size, len(codes)),
                                           replace=False))
        loss = nn.functional.binary_cross_entropy_with_logits(model(inputs[rows]), targets[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


@torch.no_grad()
def encoder_features(model: ConvEncoder, codes: np.ndarray) -> np.ndarray:
    """(N, L, width) float16 features of every peptide."""
    return model.features(torch.from_numpy(codes)).numpy().astype(np.float16)
