"""The scores of the seed's pipeline: threshold metrics at 0.5 and the two ranking metrics
(ROC-AUC, average precision) that need no threshold.

Reported scores come from scikit-learn. The per-epoch precision and recall that pick a
checkpoint are counted here instead: each scikit-learn call validates its inputs for several
milliseconds on a small CPU, and an epoch-by-epoch check of every run of a gate would spend
seconds on that alone (tests/test_peptides_metrics.py holds the two side by side).
"""

from __future__ import annotations

import numpy as np


def scores(labels: np.ndarray, probabilities: np.ndarray,
           threshold: float = 0.5) -> dict[str, float]:
    """accuracy, precision, recall, f1 (predicted active: probability >= threshold), roc_auc,
    average_precision. Precision with no predicted positive is 0 (zero_division=0)."""
    from sklearn import metrics

    labels, probabilities = np.asarray(labels), np.asarray(probabilities)
    if len(np.unique(labels)) != 2:
        raise ValueError("scores need both classes among the labels")
    predicted = (probabilities >= threshold).astype(int)
    precision, recall, f1, _ = metrics.precision_recall_fscore_support(
        labels, predicted, average="binary", zero_division=0)
    return {
        "accuracy": float(metrics.accuracy_score(labels, predicted)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "roc_auc": float(metrics.roc_auc_score(labels, probabilities)),
        "average_precision": float(metrics.average_precision_score(labels, probabilities)),
    }


def precision_recall(labels: np.ndarray, probabilities: np.ndarray,
                     threshold: float = 0.5) -> dict[str, float]:
    """{"precision", "recall"} from counts, as scikit-learn's with zero_division=0."""
    labels = np.asarray(labels).astype(bool)
    predicted = np.asarray(probabilities) >= threshold
    hits = int(np.sum(predicted & labels))
    claimed, actual = int(predicted.sum()), int(labels.sum())
    return {"precision": hits / claimed if claimed else 0.0,
            "recall": hits / actual if actual else 0.0}
