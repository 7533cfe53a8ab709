"""Tiny classifiers over per-residue embeddings: a multi-scale CNN, a BiLSTM and a transformer.

Smaller cousins of the seed's CNN1DAMPClassifier, AMPBilstmClassifier and AMPTransformerClassifier,
sized for a CPU gate. Each reads (N, L, width) embeddings with a (N, L) mask of real residues and
returns one logit per peptide. Embeddings are zero-padded to a fixed `width` first (`pad_width`):
an embedder's width then changes no parameter shape, so the variants of one seed start from the
same initial classifier (run.init_model records it) and differ only in what they read.
"""

from __future__ import annotations

import math

import torch
from torch import nn

CLASSIFIERS = ("cnn", "bilstm", "transformer")


def pad_width(x: torch.Tensor, width: int) -> torch.Tensor:
    """(N, L, w) -> (N, L, width), zeros appended; an embedding wider than `width` is an error."""
    if x.shape[-1] > width:
        raise ValueError(f"an embedding of width {x.shape[-1]} does not fit the classifiers' "
                         f"input width {width}: raise the config's 'width'")
    return nn.functional.pad(x, (0, width - x.shape[-1]))


def masked_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return h.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)


class CNN(nn.Module):
    """Convolutions of widths 3 and 5, max-pooled over residues."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(width, hidden, k, padding=k // 2) for k in (3, 5))
        self.head = nn.Linear(2 * hidden, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        channels = x.transpose(1, 2)
        pooled = [masked_max(torch.relu(conv(channels)).transpose(1, 2), mask)
                  for conv in self.convs]
        return self.head(torch.cat(pooled, dim=-1)).squeeze(-1)


def reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each sequence's real residues in reverse order, its padding left at the end (applying it
    twice gives `x` back)."""
    position = torch.arange(x.shape[1]).unsqueeze(0)
    source = torch.where(position < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - position,
                         position)
    return x.gather(1, source.unsqueeze(-1).expand_as(x))


class BiLSTM(nn.Module):
    """An LSTM each way, max-pooled over residues. The backward LSTM reads each peptide from its
    own last residue, not from the end of the padding, so a peptide's output does not depend on
    how far it was padded (what packing would give, without its sorting). An LSTM, not a GRU:
    torch's CPU LSTM kernel trains this size about a third faster."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.ahead = nn.LSTM(width, hidden // 2, batch_first=True)
        self.back = nn.LSTM(width, hidden // 2, batch_first=True)
        self.head = nn.Linear(hidden // 2 * 2, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(dim=1)
        back = reverse_within(self.back(reverse_within(x, lengths))[0], lengths)
        h = torch.cat([self.ahead(x)[0], back], dim=-1)
        return self.head(masked_max(h, mask)).squeeze(-1)


def sinusoids(length: int, dim: int) -> torch.Tensor:
    """(length, dim) fixed sinusoidal positions: no parameter, any length."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    rate = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(1e4) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate[: dim // 2])
    return table


class Transformer(nn.Module):
    """One encoder block (single-head attention over real residues, then a feed-forward
    layer, each with a residual and layer norm), max-pooled: a mean over ~20 residues dilutes
    the few that carry a motif."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.project = nn.Linear(width, hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.ff = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.ReLU(),
                                nn.Linear(2 * hidden, hidden))
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.project(x)
        h = h + sinusoids(h.shape[1], h.shape[2])
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        scores = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])
        attention = scores.masked_fill(~mask.unsqueeze(1), float("-inf")).softmax(dim=-1)
        h = self.norm1(h + attention @ v)
        h = self.norm2(h + self.ff(h))
        return self.head(masked_max(h, mask)).squeeze(-1)


def build_classifier(name: str, width: int, hidden: int = 16) -> nn.Module:
    """A fresh classifier; seed torch first (run.init_model does) for a reproducible init."""
    kinds = {"cnn": CNN, "bilstm": BiLSTM, "transformer": Transformer}
    if name not in kinds:
        raise ValueError(f"unknown classifier {name!r}; choose one of {', '.join(CLASSIFIERS)}")
    return kinds[name](width, hidden)
