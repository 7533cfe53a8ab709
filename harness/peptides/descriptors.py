"""Dubchak's CTD property classes: each residue as its class in seven physico-chemical scales.

Composition/transition/distribution (CTD) descriptors group the 20 amino acids into three
classes per property (hydrophobicity, van der Waals volume, polarity, polarizability, charge,
secondary structure, solvent accessibility); the classes below are the ones PROFEAT and propy
use. Coded one-hot per property, a residue becomes 21 binary features. The code is lossy on
purpose and by nature: K and R, I and V, F and W fall in the same class on every scale, so no
model reading these features can tell them apart. That is what makes it the weakest embedder.
"""

from __future__ import annotations

import numpy as np

from harness.peptides.alphabet import AMINO_ACIDS

PROPERTIES: dict[str, tuple[str, str, str]] = {
    "hydrophobicity": ("RKEDQN", "GASTPHY", "CLVIMFW"),
    "vdw_volume": ("GASTPDC", "NVEQIL", "MHKFRYW"),
    "polarity": ("LIFWCMVY", "PAGST", "HQRKNED"),
    "polarizability": ("GASDT", "CPNVEQIL", "KMHFRYW"),
    "charge": ("KR", "ANCQGHILMFPSTWYV", "DE"),
    "secondary_structure": ("EALMQKRH", "VIYCWFT", "GNPSD"),
    "solvent_accessibility": ("ALFCGIVW", "RKQEND", "MPSHTY"),
}
WIDTH = 3 * len(PROPERTIES)


def ctd_table() -> np.ndarray:
    """(21, 21) uint8: row 0 (padding) zeros, row i + 1 the classes of AMINO_ACIDS[i]."""
    table = np.zeros((len(AMINO_ACIDS) + 1, WIDTH), dtype=np.uint8)
    for p, classes in enumerate(PROPERTIES.values()):
        for c, members in enumerate(classes):
            for aa in members:
                table[AMINO_ACIDS.index(aa) + 1, 3 * p + c] = 1
    return table


def indistinguishable() -> list[str]:
    """Groups of residues with the same class on every scale (e.g. "KR"), sorted."""
    groups: dict[bytes, str] = {}
    for aa, row in zip(AMINO_ACIDS, ctd_table()[1:], strict=True):
        groups[row.tobytes()] = groups.get(row.tobytes(), "") + aa
    return sorted(g for g in groups.values() if len(g) > 1)
