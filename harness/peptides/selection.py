"""Which epoch's weights a run keeps: the best precision on held-out training peptides.

Precision alone rewards saying "active" almost never: one confident, correct positive gives a
precision of 1. So an epoch competes only when its recall reaches `min_recall`; among those the
highest precision wins (ties: the higher recall, then the earlier epoch). When no epoch reaches
the floor (an undertrained model), the epoch with the highest recall is kept, which is the least
degenerate choice left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def best_epoch(history: Sequence[Mapping[str, float]], *, min_recall: float = 0.5) -> int:
    """Index into `history` (one {"precision", "recall"} mapping per epoch) of the epoch kept."""
    if not history:
        raise ValueError("no epoch to choose from")
    eligible = [i for i, h in enumerate(history) if h["recall"] >= min_recall]
    if not eligible:
        return max(range(len(history)), key=lambda i: (history[i]["recall"], -i))
    return max(eligible, key=lambda i: (history[i]["precision"], history[i]["recall"], -i))
