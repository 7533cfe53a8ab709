"""Scores against hand-computed values, and the counted precision/recall against sklearn."""

import numpy as np
import pytest
from sklearn.metrics import precision_score, recall_score

from harness.peptides.metrics import precision_recall, scores

LABELS = np.array([1, 1, 1, 0, 0, 0])
PROBS = np.array([0.9, 0.6, 0.4, 0.7, 0.2, 0.1])


def test_scores_by_hand():
    s = scores(LABELS, PROBS)
    # predicted active: 0.9, 0.6 (hits) and 0.7 (a false positive); 0.4 is missed
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3)
    # pairs (positive, negative) ranked right: 0.9 > all 3, 0.6 > 2, 0.4 > 2 -> 7 of 9
    assert s["roc_auc"] == pytest.approx(7 / 9)
    # ranked: 0.9 (P, precision 1), 0.7 (N), 0.6 (P, 2/3), 0.4 (P, 3/4): mean over positives
    assert s["average_precision"] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)


def test_no_predicted_positive_gives_zero_precision_and_one_class_is_refused():
    s = scores(LABELS, np.full(6, 0.1))
    assert s["precision"] == 0.0 and s["recall"] == 0.0 and s["roc_auc"] == 0.5
    with pytest.raises(ValueError, match="both classes"):
        scores(np.ones(3), np.full(3, 0.5))


@pytest.mark.parametrize("seed", range(5))
def test_counted_precision_recall_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels, probs = rng.integers(0, 2, 50), rng.random(50) ** (seed + 1)
    counted = precision_recall(labels, probs)
    predicted = probs >= 0.5
    assert counted["precision"] == pytest.approx(precision_score(labels, predicted,
                                                                 zero_division=0))
    assert counted["recall"] == pytest.approx(recall_score(labels, predicted, zero_division=0))
