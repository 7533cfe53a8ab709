"""The real tier's peptides: modlamp's AMP vs UniProt set, read from inside its wheel.

`modlamp.datasets.load_AMPvsUniProt()` ships 5,200 sequences offline: 2,600 antimicrobial
peptides from APD3 and 2,600 random UniProt sequences of length 10-50 (BSD-3 licence, ETH
Zurich; Müller, Gabernet, Schneider). The set repeats sequences (222 sequences on 780 rows, 22
of them with both labels): each sequence is kept once, and the 22 contradictory ones are
dropped, so no sequence can be trained on and scored on. Sequences are cut at `max_len`
residues, like the fixed SEQ_MAX of the per-residue pipelines this stands in for.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from harness.peptides.data import PeptideData, Peptides, split_rows


class DataError(RuntimeError):
    """The real data cannot be had (modlamp missing)."""


def unique_labelled(sequences: list[str], labels: list[int]) -> tuple[Peptides, dict[str, int]]:
    """Each sequence once, in first-seen order; sequences seen with both labels dropped."""
    seen: dict[str, set[int]] = {}
    for sequence, label in zip(sequences, labels, strict=True):
        seen.setdefault(sequence, set()).add(int(label))
    kept = [s for s, found in seen.items() if len(found) == 1]
    peptides = Peptides(tuple(kept), np.array([next(iter(seen[s])) for s in kept], np.int64))
    return peptides, {"rows": len(sequences), "unique": len(seen),
                      "contradictory": len(seen) - len(kept)}


@cache
def load_amp_vs_uniprot(max_len: int, eval_fraction: float) -> PeptideData:
    """Train and eval peptides, split by sequence hash (cached per process)."""
    try:
        from modlamp.datasets import load_AMPvsUniProt
    except ImportError as exc:
        raise DataError("the real peptide tier reads modlamp's bundled AMP data: "
                        "pip install modlamp") from exc
    bunch = load_AMPvsUniProt()
    peptides, notes = unique_labelled([str(s) for s in bunch.sequences],
                                      [int(t) for t in bunch.target])
    train, evaluation = split_rows(peptides.sequences, eval_fraction, salt="eval:")
    notes["cut"] = sum(len(s) > max_len for s in peptides.sequences)
    return PeptideData(peptides.take(train), peptides.take(evaluation), max_len=max_len,
                       seeded=False, notes=notes)
