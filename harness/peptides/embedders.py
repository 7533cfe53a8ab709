"""Per-residue embedders, by capacity: ctd < kmer < encoder, offline stand-ins for protein LMs.

Each maps a peptide to one vector per residue (zero rows at padding), as the per-residue
embeddings of ESM models are read by the seed's classifiers:

- ctd: the residue's class on Dubchak's seven physico-chemical scales (21 binary features);
  lossy: K/R, I/V and F/W look the same (descriptors.py);
- kmer: the residue in its k-mer, one-hot residues of a window of k (20k binary features):
  exact residues and their local order;
- encoder: features of a small encoder trained on its own corpus (encoder.py).

They differ in width, as ESM models do (320 to 5,120); classifiers read them zero-padded to one
width (classifiers.py), so that every embedder trains the same initial classifier.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.peptides.alphabet import AMINO_ACIDS, PAD
from harness.peptides.data import PeptideData
from harness.peptides.descriptors import ctd_table


@dataclass(frozen=True)
class Embedder:
    name: str
    trained: bool  # learns from peptides: its embeddings depend on the seed
    options: tuple[str, ...] = ()  # the run config it reads, as paths ("embed/k")


EMBEDDERS = {e.name: e for e in (
    Embedder("ctd", False),
    Embedder("kmer", False, ("embed/k",)),
    # without a corpus of its own it learns from the fit rows: the held-out share shapes it
    Embedder("encoder", True, ("embed/encoder", "select/held_out")),
)}


def ctd(codes: np.ndarray) -> np.ndarray:
    """(N, L) codes -> (N, L, 21) uint8 CTD classes."""
    return ctd_table()[codes]


def kmer(codes: np.ndarray, k: int = 3) -> np.ndarray:
    """(N, L) codes -> (N, L, 20k) uint8: one-hot residues at offsets -(k//2) .. k//2; positions
    outside the peptide are zeros, and so are padding rows."""
    if k < 1 or k % 2 == 0:
        raise ValueError(f"k is an odd window size, not {k}")
    one_hot = np.vstack([np.zeros(len(AMINO_ACIDS)), np.eye(len(AMINO_ACIDS))]).astype(np.uint8)
    half, length = k // 2, codes.shape[1]
    padded = np.pad(codes, ((0, 0), (half, half)))
    window = np.concatenate([one_hot[padded[:, j:j + length]] for j in range(k)], axis=-1)
    window[codes == PAD] = 0
    return window


def depends_on(name: str) -> list[str]:
    """The run config an embedding depends on (a stage's `only`): the embedder, the data and
    the embedder's own options, so that a change elsewhere reuses it."""
    return ["embedder", "data", *embedder(name).options]


def depends_on_seed(name: str, data: PeptideData) -> bool:
    """Whether one embedding per seed is needed (a stage's `per_seed`)."""
    return data.seeded or embedder(name).trained


def embedder(name: str) -> Embedder:
    if name not in EMBEDDERS:
        raise ValueError(f"unknown embedder {name!r}; choose one of {', '.join(EMBEDDERS)}")
    return EMBEDDERS[name]


def embed(name: str, data: PeptideData, *, fit_rows: np.ndarray, seed: int,
          options: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """{"train": (N_train, L, W), "eval": (N_eval, L, W)} embeddings of `data` by `name`.

    A trained embedder learns from `data.pretrain` when there is one, else from the training
    rows `fit_rows`. `options`: "k" for kmer, "encoder" (EncoderConfig fields) for encoder."""
    embedder(name)
    train_codes, _ = data.train.codes(data.max_len)
    eval_codes, _ = data.eval.codes(data.max_len)
    if name == "ctd":
        return {"train": ctd(train_codes), "eval": ctd(eval_codes)}
    if name == "kmer":
        k = int(options.get("k", 3))
        return {"train": kmer(train_codes, k), "eval": kmer(eval_codes, k)}
    from harness.peptides.encoder import EncoderConfig, encoder_features, train_encoder

    if data.pretrain is not None:
        corpus, labels = data.pretrain.codes(data.max_len)[0], data.pretrain.labels
    else:
        corpus, labels = train_codes[fit_rows], data.train.labels[fit_rows]
    model = train_encoder(corpus, labels, EncoderConfig(**options.get("encoder", {})), seed)
    return {"train": encoder_features(model, train_codes),
            "eval": encoder_features(model, eval_codes)}
