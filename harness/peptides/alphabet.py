"""Amino acids as integer codes, padded: the one input format every embedder reads."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
PAD = 0  # code 0 pads; residue i of AMINO_ACIDS is code i + 1
_CODES = {aa: i + 1 for i, aa in enumerate(AMINO_ACIDS)}


class AlphabetError(ValueError):
    """A sequence holds a letter that is not one of the 20 standard amino acids."""


def encode(sequences: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(codes (N, max_len) int64, zero-padded; lengths (N,)), sequences cut at `max_len`.

    A non-standard letter (X, B, U, lower case) is an error naming the sequence: guessing a
    residue for it would hand every embedder a made-up input."""
    codes = np.zeros((len(sequences), max_len), dtype=np.int64)
    lengths = np.zeros(len(sequences), dtype=np.int64)
    for row, sequence in enumerate(sequences):
        kept = sequence[:max_len]
        try:
            codes[row, :len(kept)] = [_CODES[aa] for aa in kept]
        except KeyError as exc:
            raise AlphabetError(f"sequence {row} ({sequence[:30]!r}) holds {exc.args[0]!r}, "
                                f"not one of the 20 amino acids {AMINO_ACIDS}") from None
        lengths[row] = len(kept)
    return codes, lengths
