"""The conservative loss: BCE plus a cubic penalty on probability given to negatives.

In AMP screening a false positive costs a synthesis and an assay, a false negative only a missed
candidate, so the seed's pipeline trains with BCE + alpha * relu(p - y)^3: the penalty is zero on
positives and grows with the cube of the probability a negative receives, so it bites on
confident false positives and barely on uncertain ones.
"""

from __future__ import annotations

import torch


def conservative_bce(logits: torch.Tensor, targets: torch.Tensor,
                     alpha: float = 1.0) -> torch.Tensor:
    """Mean BCE over the batch + alpha * mean(relu(sigmoid(logits) - targets) ** 3)."""
    if alpha < 0:
        raise ValueError(f"alpha weighs a penalty and is >= 0, not {alpha}")
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    overshoot = torch.relu(torch.sigmoid(logits) - targets)
    return bce + alpha * overshoot.pow(3).mean()
