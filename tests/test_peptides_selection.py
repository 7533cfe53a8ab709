"""Checkpoint selection by held-out precision, with a recall floor."""

import pytest

from harness.peptides.selection import best_epoch


def epochs(*pairs):
    return [{"precision": p, "recall": r} for p, r in pairs]


def test_highest_precision_among_epochs_with_enough_recall():
    history = epochs((0.70, 0.9), (1.00, 0.1), (0.85, 0.6), (0.80, 0.8))
    assert best_epoch(history, min_recall=0.5) == 2  # the 1.00 epoch found 10% of actives
    assert best_epoch(history, min_recall=0.0) == 1


def test_ties_go_to_higher_recall_then_the_earlier_epoch():
    assert best_epoch(epochs((0.8, 0.6), (0.8, 0.7), (0.8, 0.7))) == 1


def test_without_an_eligible_epoch_the_highest_recall_is_kept():
    assert best_epoch(epochs((0.0, 0.0), (0.9, 0.3), (0.6, 0.4)), min_recall=0.5) == 2
    with pytest.raises(ValueError, match="no epoch"):
        best_epoch([])
