"""The conservative loss against values computed by hand."""

import math

import pytest
import torch

from harness.peptides.loss import conservative_bce


def bce(p, y):
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_penalty_is_the_cube_of_the_probability_a_negative_gets():
    logits = torch.tensor([0.0, math.log(4.0)])  # p = 0.5 and 0.8
    targets = torch.tensor([0.0, 1.0])
    expected_bce = (bce(0.5, 0) + bce(0.8, 1)) / 2
    expected = expected_bce + 2.0 * (0.5**3 + 0.0) / 2  # the positive is never penalised
    assert conservative_bce(logits, targets, alpha=2.0).item() == pytest.approx(expected)


def test_alpha_zero_is_plain_bce_and_penalty_grows_with_confident_false_positives():
    logits, negatives = torch.tensor([-1.0, 0.5, 2.0]), torch.zeros(3)
    plain = torch.nn.functional.binary_cross_entropy_with_logits(logits, negatives)
    assert conservative_bce(logits, negatives, alpha=0.0).item() == pytest.approx(plain.item())
    extra = [conservative_bce(torch.tensor([v]), torch.zeros(1), 1.0).item()
             - conservative_bce(torch.tensor([v]), torch.zeros(1), 0.0).item()
             for v in (-2.0, 0.0, 2.0)]
    assert extra == sorted(extra) and extra[2] > 10 * extra[0]
    with pytest.raises(ValueError, match=">= 0"):
        conservative_bce(logits, negatives, alpha=-1.0)


def test_positives_pay_no_penalty():
    logits, positives = torch.tensor([-3.0, 0.0, 3.0]), torch.ones(3)
    assert conservative_bce(logits, positives, 5.0).item() == pytest.approx(
        conservative_bce(logits, positives, 0.0).item())
