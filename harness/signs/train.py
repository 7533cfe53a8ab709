"""fit(): train a SignModel on sentences with SGD, an optional EMA, and checkpoints.

Every variant of a seed draws the same batches (a generator seeded by the seed alone), takes the
same number of steps at the same learning rate, and differs only in what the config says:
whether the encoder trains (``requires_grad``) and whether weights are averaged. The EMA never
touches the raw weights, so the training loss is bitwise the same with or without it: only an
evaluation of the averaged weights can show what averaging does.

With ``checkpoint=PATH`` the step, weights, optimizer state, EMA and batch generator are saved
every ``checkpoint_every`` steps and at the end; a run that finds its file resumes from it and
ends bitwise where an uninterrupted run ends.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from harness.signs import checkpoint as ckpt
from harness.signs.corpus import Split
from harness.signs.ema import EMA
from harness.signs.model import SignModel
from harness.signs.optim import SGD

# How often things happen, not what happens: a resumed run may change them.
_NOT_IN_SIGNATURE = ("log_every", "checkpoint_every")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 300
    batch_size: int = 16
    lr: float = 0.2  # constant and high: the raw weights stay noisy, as the jitter dictates
    momentum: float = 0.0
    clip: float = 0.0  # > 0: clip the global gradient norm (a high lr must not diverge)
    ema_decay: float | None = 0.98  # None: no averaging
    log_every: int = 25
    checkpoint_every: int = 0  # 0: only at the end (with checkpoint=)


@dataclass
class Trained:
    ema: EMA | None  # evaluate inside ``ema.averaged()`` when there is one
    loss: float  # mean training loss over the last tenth of the steps (raw weights)


def inputs(text: np.ndarray, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """(text features per word (N, words, text_dim), poses (N, frames, pose_dim))."""
    features = torch.from_numpy(text[split.tokens])
    poses = torch.from_numpy(split.poses.reshape(*split.poses.shape[:2], -1))
    return features, poses


def fit(model: SignModel, text: np.ndarray, split: Split, config: TrainConfig, *, seed: int,
        log: Callable[[int, dict[str, float]], None] | None = None,
        checkpoint: Path | None = None) -> Trained:
    """Train the model's trainable parameters for ``config.steps`` steps on ``split``."""
    features, poses = inputs(text, split)
    optimizer = SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    ema = EMA(model, decay=config.ema_decay) if config.ema_decay is not None else None
    rng = np.random.default_rng([seed, 0x7A1])
    batch_size = min(config.batch_size, len(features))
    tail = max(1, config.steps // 10)
    state = {"step": 0, "tail": []}
    signature = _signature(model, split, config, seed)
    saved = ckpt.resume(checkpoint, signature)
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if ema is not None:
            ema.load_state_dict(saved["ema"])
        rng.bit_generator.state = saved["rng"]
        state = {"step": saved["step"], "tail": saved["tail"]}
    for step in range(state["step"] + 1, config.steps + 1):
        index = torch.from_numpy(rng.choice(len(features), size=batch_size, replace=False))
        loss = F.mse_loss(model(features[index]), poses[index])
        optimizer.zero_grad()
        loss.backward()
        if config.clip > 0:
            torch.nn.utils.clip_grad_norm_(optimizer.params, config.clip)
        optimizer.step()
        if ema is not None:
            ema.update()
        value = loss.item()
        if step > config.steps - tail:
            state["tail"].append(value)
        state["step"] = step
        if log is not None and (step % config.log_every == 0 or step == config.steps):
            log(step, {"loss": value})
        if checkpoint is not None and (step == config.steps or (
                config.checkpoint_every and step % config.checkpoint_every == 0)):
            ckpt.save(checkpoint, signature, {
                **state, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "rng": rng.bit_generator.state})
    return Trained(ema, float(np.mean(state["tail"])) if state["tail"] else float("nan"))


def _signature(model: SignModel, split: Split, config: TrainConfig, seed: int) -> dict:
    """What must match for a checkpoint to continue this very run."""
    data = hashlib.sha1(split.tokens.tobytes() + split.poses.tobytes()).hexdigest()
    start = hashlib.sha1()  # the weights it starts from: the pretrained encoder, say
    for name, value in model.state_dict().items():
        start.update(name.encode() + value.detach().numpy().tobytes())
    return {"train": {k: v for k, v in asdict(config).items() if k not in _NOT_IN_SIGNATURE},
            "model": asdict(model.config), "seed": seed, "data": data,
            "start": start.hexdigest(),
            "trainable": [n for n, p in model.named_parameters() if p.requires_grad]}
