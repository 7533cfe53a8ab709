"""TinyCNN: one small convolutional network whose parts are switched off, never rebuilt.

The network is always built whole (`channels` and `blocks` fix its shapes), from the run's
seed, so every variant of a seed starts from the same weights and the init check can hold.
An ablation only changes what the forward pass uses:

- `width` (<= channels): the first `width` channels of block 1 (and 2x that in later blocks)
  are used; the others are multiplied by zero after their activation, so they get no gradient
  and contribute nothing;
- `depth` (<= blocks): how many conv blocks run; the classifier reads the last one's pooled
  channels (zero-padded to the widest block, so the same classifier serves every depth);
- `batchnorm`: the BatchNorm layers are used or skipped;
- `dropout`: dropout on the pooled features, in training only.

Blocks: conv 3x3 -> [BN] -> ReLU; block 1 has `channels` channels and is followed by a 2x2
max-pool, later blocks have 2 x `channels`. Then global average pooling and a linear layer.
`effective_weights` gives each used layer's weight matrix restricted to the used channels
(what the spectra and the parameter count describe).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class ModelConfig:
    channels: int = 8  # block 1's channels as built; later blocks have twice as many
    blocks: int = 3  # conv blocks as built
    width: int = 8  # block 1's channels used (<= channels)
    depth: int = 2  # conv blocks used (<= blocks)
    batchnorm: bool = True
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.width <= self.channels:
            raise ValueError(f"width={self.width} must lie in 1..channels={self.channels}")
        if not 1 <= self.depth <= self.blocks:
            raise ValueError(f"depth={self.depth} must lie in 1..blocks={self.blocks}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout={self.dropout} must lie in [0, 1)")


class TinyCNN(nn.Module):
    """The whole network as built; `config` says which parts the forward pass uses."""

    def __init__(self, config: ModelConfig, *, in_channels: int = 1, classes: int = 10):
        super().__init__()
        self.config = config
        built = [config.channels] + [2 * config.channels] * (config.blocks - 1)
        inputs = [in_channels, *built[:-1]]
        self.convs = nn.ModuleList(nn.Conv2d(c_in, c_out, 3, padding=1)
                                   for c_in, c_out in zip(inputs, built, strict=True))
        self.norms = nn.ModuleList(nn.BatchNorm2d(c) for c in built)
        self.fc = nn.Linear(max(built), classes)
        used = [config.width] + [2 * config.width] * (config.blocks - 1)
        self.used = used[: config.depth]  # channels used per active block
        self.in_channels = in_channels
        # not buffers: they are the variant's choice, not state, and must not make the initial
        # states of two variants differ
        self._masks = [(torch.arange(c) < u).float().view(1, -1, 1, 1)
                       for c, u in zip(built, self.used, strict=False)]  # used: active blocks only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.config.depth):
            x = self.convs[i](x)
            if self.config.batchnorm:
                x = self.norms[i](x)
            x = F.relu(x)
            if self.used[i] < x.shape[1]:
                x = x * self._masks[i]
            if i == 0:
                x = F.max_pool2d(x, 2)
        features = x.mean(dim=(2, 3))
        if features.shape[1] < self.fc.in_features:
            features = F.pad(features, (0, self.fc.in_features - features.shape[1]))
        features = F.dropout(features, self.config.dropout, self.training)
        return self.fc(features)

    def effective_weights(self) -> dict[str, torch.Tensor]:
        """{layer: weight matrix (out, in) of the used channels}: conv kernels flattened to
        (out, in x 3 x 3); the classifier's columns of the last block's used channels."""
        weights = {}
        inputs = self.in_channels
        for i, used in enumerate(self.used):
            kernel = self.convs[i].weight.detach()[:used, :inputs]
            weights[f"conv{i + 1}"] = kernel.reshape(used, -1)
            inputs = used
        weights["fc"] = self.fc.weight.detach()[:, :inputs]
        return weights

    def used_parameters(self) -> int:
        """Parameters the variant uses: weights and biases of its used channels (and BN's)."""
        count, inputs = 0, self.in_channels
        for used in self.used:
            count += used * inputs * 9 + used + (2 * used if self.config.batchnorm else 0)
            inputs = used
        return count + self.fc.out_features * (inputs + 1)


def parameter_count(model: nn.Module) -> int:
    """Every parameter as built, used or not."""
    return sum(p.numel() for p in model.parameters())
