"""SignModel: a text encoder and a pose decoder, one class for every variant.

The encoder maps each word's text features to ``sign_dim`` features; the decoder maps each
word's features to its sign's frames (joint positions). Both work word by word: signs in the
synthetic lexicon do not depend on their neighbours, so context would only add cost.

Variants differ in what trains, never in the class: ``freeze_encoder`` sets ``requires_grad``
off on the encoder, so a frozen encoder stays bitwise the pretrained one. No dropout or
normalisation layers: training must be bitwise reproducible, a frozen part bitwise constant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    text_dim: int = 16
    sign_dim: int = 6  # the encoder's output: one number per descriptor dimension
    encoder_hidden: int = 64
    decoder_hidden: int = 64
    frames: int = 6  # per word
    pose_dim: int = 16  # joints x 2


class TextEncoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(config.text_dim, config.encoder_hidden), nn.Tanh(),
                                 nn.Linear(config.encoder_hidden, config.sign_dim))

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        """(..., text_dim) -> (..., sign_dim)."""
        return self.net(text)


class PoseDecoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.frames, self.pose_dim = config.frames, config.pose_dim
        self.net = nn.Sequential(nn.Linear(config.sign_dim, config.decoder_hidden), nn.Tanh(),
                                 nn.Linear(config.decoder_hidden, config.frames * config.pose_dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, words, sign_dim) -> (B, words * frames, pose_dim)."""
        out = self.net(features)
        return out.reshape(out.shape[0], -1, self.pose_dim)


class SignModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = TextEncoder(config)
        self.decoder = PoseDecoder(config)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        """(B, words, text_dim) text features of each word -> (B, words * frames, pose_dim)."""
        return self.decoder(self.encoder(text))


def build_model(config: ModelConfig, *, encoder: Mapping[str, torch.Tensor] | None = None,
                freeze_encoder: bool = False) -> SignModel:
    """A fresh model (torch's global RNG gives the init: seed it first, as run.init_model
    does), the encoder's weights replaced by ``encoder`` (a pretrained state dict) if given."""
    model = SignModel(config)
    if encoder is not None:
        model.encoder.load_state_dict(encoder)
    model.encoder.requires_grad_(not freeze_encoder)
    return model
