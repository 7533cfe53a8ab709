"""Pretraining the text encoder on a text-only task: predict each word's text view.

The task sees the whole vocabulary and regresses the encoder's output onto the lexicon's text
view ``s = A x`` (lexicon.py), full batch, with momentum SGD. It ends close to its optimum, so
the pretrained encoder says what text says about a word and little else: the shifted part of
how the word is signed is what fine-tuning has to add. Seeded by the run's seed alone, so every
variant of a seed shares one pretrained encoder (a stage: computed once, reused).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from harness.signs import checkpoint as ckpt
from harness.signs.lexicon import Lexicon
from harness.signs.model import ModelConfig, TextEncoder
from harness.signs.optim import SGD


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 300
    lr: float = 0.1
    momentum: float = 0.9
    log_every: int = 50
    checkpoint_every: int = 0  # 0: no checkpoints (with checkpoint=, every N steps)


def pretrain_encoder(lexicon: Lexicon, model: ModelConfig, config: PretrainConfig, *,
                     seed: int, log: Callable[[int, dict[str, float]], None] | None = None,
                     checkpoint: Path | None = None) -> dict[str, object]:
    """``{"weights": encoder state dict, "loss": final MSE}``; resumes from ``checkpoint``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = TextEncoder(model)
    optimizer = SGD(encoder.parameters(), lr=config.lr, momentum=config.momentum)
    text, target = torch.from_numpy(lexicon.text), torch.from_numpy(lexicon.text_view)
    signature = {"task": "text_view", "model": asdict(model), "seed": seed,
                 "lexicon": asdict(lexicon.config),
                 **{k: v for k, v in asdict(config).items() if k in ("steps", "lr", "momentum")}}
    done, loss = 0, float("nan")
    saved = ckpt.resume(checkpoint, signature)
    if saved is not None:
        encoder.load_state_dict(saved["encoder"])
        optimizer.load_state_dict(saved["optimizer"])
        done, loss = saved["step"], saved["loss"]
    for step in range(done + 1, config.steps + 1):
        batch_loss = F.mse_loss(encoder(text), target)
        optimizer.zero_grad()
        batch_loss.backward()
        optimizer.step()
        loss = batch_loss.item()
        if log is not None and (step % config.log_every == 0 or step == config.steps):
            log(step, {"pretrain/loss": loss})
        if checkpoint is not None and config.checkpoint_every and (
                step % config.checkpoint_every == 0 or step == config.steps):
            ckpt.save(checkpoint, signature, {"encoder": encoder.state_dict(), "step": step,
                                              "optimizer": optimizer.state_dict(), "loss": loss})
    return {"weights": {k: v.detach().clone() for k, v in encoder.state_dict().items()},
            "loss": loss}
