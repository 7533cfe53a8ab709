"""Pose-error metrics of produced sign sequences, as sign-language production reports them.

All take arrays of shape (sequences, frames, joints, 2) in shoulder widths, produced and
reference, and return one number (lower is better for the errors):

- ``mpjpe``: mean per-joint position error, the Euclidean distance of each joint to its
  reference, averaged over joints, frames and sequences.
- ``dtw_mje``: mean joint error after dynamic time warping (DTW-MJE). Each produced sequence is
  aligned to its reference by the monotonic path that minimises the summed frame errors (steps
  (1, 0), (0, 1), (1, 1)); the score is the mean frame error along that path. A sign produced
  a frame early or late costs less here than under MPJPE, as in the SLP literature where
  sequence lengths differ.
- ``pck``: the share of joints within ``threshold`` of their reference (higher is better).
"""

from __future__ import annotations

import numpy as np


def _check(produced: np.ndarray, reference: np.ndarray) -> None:
    if produced.shape != reference.shape or produced.ndim != 4 or produced.shape[-1] != 2:
        raise ValueError(f"poses must both be (sequences, frames, joints, 2); got "
                         f"{produced.shape} and {reference.shape}")


def joint_errors(produced: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(sequences, frames, joints) Euclidean distance of each joint to its reference."""
    _check(produced, reference)
    return np.linalg.norm(produced - reference, axis=-1)


def mpjpe(produced: np.ndarray, reference: np.ndarray) -> float:
    return float(joint_errors(produced, reference).mean())


def pck(produced: np.ndarray, reference: np.ndarray, threshold: float = 0.1) -> float:
    return float((joint_errors(produced, reference) <= threshold).mean())


def dtw_mje(produced: np.ndarray, reference: np.ndarray) -> float:
    _check(produced, reference)
    # cost[s, i, j]: mean joint error of produced frame i against reference frame j
    diff = produced[:, :, None] - reference[:, None, :]
    cost = np.linalg.norm(diff, axis=-1).mean(axis=-1)
    sequences, frames = cost.shape[:2]
    total = np.full((sequences, frames + 1, frames + 1), np.inf)
    length = np.zeros((sequences, frames + 1, frames + 1))
    total[:, 0, 0] = 0.0
    rows = np.arange(sequences)
    for i in range(1, frames + 1):  # vectorised over sequences
        for j in range(1, frames + 1):
            options = np.stack([total[:, i - 1, j - 1], total[:, i - 1, j], total[:, i, j - 1]])
            lengths = np.stack([length[:, i - 1, j - 1], length[:, i - 1, j],
                                length[:, i, j - 1]])
            best = options.argmin(axis=0)  # ties: the diagonal first
            total[:, i, j] = options[best, rows] + cost[:, i - 1, j - 1]
            length[:, i, j] = lengths[best, rows] + 1
    return float((total[:, -1, -1] / length[:, -1, -1]).mean())
