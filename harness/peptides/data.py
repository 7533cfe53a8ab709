"""What a run trains and evaluates on: labelled peptides, split by a hash of the sequence.

Splitting by sequence (never by row) keeps duplicates on one side: real AMP sets repeat
sequences, and a duplicate on both sides of a split would let a model be scored on what it
memorised. The hash makes the split stable when sequences are added.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.peptides.alphabet import encode


@dataclass(frozen=True, eq=False)
class Peptides:
    """Sequences with binary labels (1: antimicrobial)."""

    sequences: tuple[str, ...]
    labels: np.ndarray  # (N,) int64
    _codes: dict[int, tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict, repr=False, compare=False)  # max_len -> codes(max_len)

    def __post_init__(self) -> None:
        if len(self.sequences) != len(self.labels):
            raise ValueError(f"{len(self.sequences)} sequences but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.sequences)

    def take(self, rows: Sequence[int] | np.ndarray) -> Peptides:
        rows = np.asarray(rows, dtype=np.int64)
        return Peptides(tuple(self.sequences[i] for i in rows), self.labels[rows])

    def codes(self, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """(codes, lengths): see alphabet.encode. Computed once (every run of a seed reads
        them); the arrays are shared, so treat them as read-only."""
        if max_len not in self._codes:
            self._codes[max_len] = encode(self.sequences, max_len)
        return self._codes[max_len]


def hash_fraction(sequence: str, salt: str = "") -> float:
    """A number in [0, 1) fixed by the sequence alone."""
    digest = hashlib.sha256(f"{salt}{sequence}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_rows(sequences: Sequence[str], fraction: float,
               salt: str) -> tuple[np.ndarray, np.ndarray]:
    """(kept rows, split-off rows): a row goes to the second part when its sequence's hash
    falls below `fraction`, so equal sequences always land together."""
    if not 0 < fraction < 1:
        raise ValueError(f"a split fraction lies in (0, 1), not {fraction}")
    second = np.array([hash_fraction(s, salt) < fraction for s in sequences], dtype=bool)
    return np.flatnonzero(~second), np.flatnonzero(second)


@dataclass(frozen=True, eq=False)
class PeptideData:
    """Train and eval peptides of one run; `held_out` splits train for checkpoint selection.

    `seeded`: the peptides depend on the run's seed (synthetic), so do embeddings of them.
    `pretrain`: a corpus for learned embedders, apart from train and eval (None: they learn from
    the fit part of train)."""

    train: Peptides
    eval: Peptides
    max_len: int
    seeded: bool
    pretrain: Peptides | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def held_out(self, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """(fit rows, validation rows) of `train`, by sequence hash. Eval peptides are never
        touched, so choosing a checkpoint on validation leaves the reported scores unbiased."""
        return split_rows(self.train.sequences, fraction, salt="held-out:")
