"""Classifiers and fit(): padding is invisible, training is reproducible, the kept epoch is the
one selection picks."""

import numpy as np
import pytest
import torch

from harness.peptides.classifiers import (
    CLASSIFIERS,
    build_classifier,
    pad_width,
    reverse_within,
)
from harness.peptides.selection import best_epoch
from harness.peptides.train import Tensors, TrainConfig, fit, predict


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_output_does_not_depend_on_how_far_a_peptide_is_padded(name):
    torch.manual_seed(0)
    model = build_classifier(name, width=8, hidden=8)
    x = torch.randn(2, 4, 8)
    short, long = torch.ones(2, 4, dtype=torch.bool), torch.zeros(2, 7, dtype=torch.bool)
    long[:, :4] = True
    padded = torch.cat([x, torch.zeros(2, 3, 8)], dim=1)  # embedders give zeros at padding
    assert model(x, short).shape == (2,)
    torch.testing.assert_close(model(x, short), model(padded, long))


def test_reverse_within_keeps_padding_in_place():
    x = torch.arange(5.0).reshape(1, 5, 1).repeat(2, 1, 1)
    flipped = reverse_within(x, torch.tensor([3, 5]))
    assert flipped[..., 0].tolist() == [[2, 1, 0, 3, 4], [4, 3, 2, 1, 0]]
    torch.testing.assert_close(reverse_within(flipped, torch.tensor([3, 5])), x)


def test_pad_width_appends_zeros_and_refuses_wider_embeddings():
    x = torch.ones(1, 2, 3)
    assert pad_width(x, 5)[0, 0].tolist() == [1, 1, 1, 0, 0]
    with pytest.raises(ValueError, match="width"):
        pad_width(x, 2)
    with pytest.raises(ValueError, match="unknown classifier"):
        build_classifier("esm_head", width=4)


def toy_tensors(n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 5, 3)).astype(np.float32)
    x[:, 2, 0] += 2.0 * labels  # the signal sits on one residue
    return Tensors.of(x, np.full(n, 5), labels, width=4)


@pytest.mark.parametrize("name", ["cnn", "transformer"])
def test_fit_is_reproducible_and_keeps_the_selected_epoch(name):
    train, validation = toy_tensors(64, 0), toy_tensors(32, 1)
    config = TrainConfig(epochs=4, batch_size=16, lr=0.02)
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = build_classifier(name, width=4, hidden=4)
        fitted = fit(model, train, validation, config, seed=7)
        runs.append((fitted, predict(model, validation)))
    (first, p1), (second, p2) = runs
    np.testing.assert_array_equal(p1, p2)
    assert first.history == second.history and len(first.history) == 4
    assert first.best_epoch == best_epoch(first.history, min_recall=config.min_recall) + 1
    # the model ends with the kept epoch's weights: its validation scores are that epoch's
    kept = first.history[first.best_epoch - 1]
    predicted, actual = p1 >= 0.5, validation.y.numpy() == 1
    assert kept["recall"] == pytest.approx((predicted & actual).sum() / actual.sum())
