"""Spectral diagnostics: the top singular values of each layer's weight matrix (scree data).

A layer's singular values say how many directions it really uses and how large its weights
are: a scree that drops after a few values is a near-low-rank layer; weight decay shrinks the
whole scree. Metrics are `<layer>/spectrum/sv1..svk`, so the tables show one `spectrum`
table with a row per variant and layer and a column per singular value.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def top_singular_values(matrix: torch.Tensor, k: int) -> list[float]:
    """The `k` largest singular values of a 2-D matrix, descending (fewer if it has fewer)."""
    if matrix.dim() != 2:
        raise ValueError(f"expected a 2-D weight matrix, got shape {tuple(matrix.shape)}")
    values = torch.linalg.svdvals(matrix.detach().double())
    return [float(v) for v in values[:k]]


def spectrum(weights: Mapping[str, torch.Tensor], k: int) -> dict[str, dict[str, dict]]:
    """{layer: {"spectrum": {"sv1": ..., "svk": ...}}}: nested metrics for a run's result."""
    if k < 1:
        raise ValueError(f"topk={k} must be >= 1")
    return {layer: {"spectrum": {f"sv{i + 1}": v
                                 for i, v in enumerate(top_singular_values(matrix, k))}}
            for layer, matrix in weights.items()}
