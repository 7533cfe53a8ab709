"""Spectral diagnostics agree with numpy's SVD and name their metrics readably."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.core.metrics import flatten
from harness.tinycnn.model import ModelConfig, TinyCNN
from harness.tinycnn.spectral import spectrum, top_singular_values


@pytest.mark.parametrize("shape", [(8, 9), (16, 72), (10, 4), (3, 3)])
def test_top_singular_values_match_numpy(shape):
    matrix = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))
    expected = np.linalg.svd(matrix.numpy().astype(np.float64), compute_uv=False)
    found = top_singular_values(matrix, 5)
    assert found == sorted(found, reverse=True)
    np.testing.assert_allclose(found, expected[:5], rtol=1e-10)


def test_a_rank_one_matrix_has_one_nonzero_singular_value():
    u, v = torch.randn(6, 1), torch.randn(1, 9)
    values = top_singular_values(u @ v, 3)
    assert values[0] == pytest.approx(float(u.norm() * v.norm()), rel=1e-6)
    assert max(values[1:]) < 1e-6


def test_non_matrix_is_refused():
    with pytest.raises(ValueError, match="2-D"):
        top_singular_values(torch.randn(2, 3, 4), 2)


def test_spectrum_metrics_are_layer_spectrum_svk():
    torch.manual_seed(0)
    model = TinyCNN(ModelConfig(width=2))
    metrics = flatten(spectrum(model.effective_weights(), 3))
    assert sorted(metrics) == sorted([
        "conv1/spectrum/sv1", "conv1/spectrum/sv2",  # a 2 x 9 matrix has 2
        "conv2/spectrum/sv1", "conv2/spectrum/sv2", "conv2/spectrum/sv3",
        "fc/spectrum/sv1", "fc/spectrum/sv2", "fc/spectrum/sv3"])
    with pytest.raises(ValueError, match="topk"):
        spectrum(model.effective_weights(), 0)
