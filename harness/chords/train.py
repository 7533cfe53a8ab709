"""fit(): a deterministic CPU training loop with a fixed step budget.

Every variant gets the same number of steps and the same batches (drawn from a generator seeded
by ``seed``, whichever parts train), so the study compares parts, not budgets or data. Each
trained part has its own Adam optimizer and its own gradient clipping, and the loss is the sum of
the trained parts' losses: a part's gradient is then exactly the gradient of its own loss, and
training ctc and ar together is bitwise identical to training each alone. (One optimizer
clipping the global norm would couple the parts.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from harness.chords.model import ChordModel
from harness.chords.synthetic import Song

# The first optimizer a process builds imports torch._dynamo (~1.5 s). Pay it at import, so it
# is start-up cost and not charged to whichever run happens to come first.
torch.optim.Adam([torch.zeros(1, requires_grad=True)])


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 80
    batch_size: int = 16
    lr: float = 0.01
    clip: float = 1.0  # max gradient norm, per part
    log_every: int = 10


class Batches:
    """Songs padded once into tensors; ``take`` gathers a batch and trims the padding."""

    def __init__(self, songs: Sequence[Song]):
        self.lengths = torch.tensor([len(song.frames) for song in songs])
        self.target_lengths = torch.tensor([len(song.sequence) for song in songs])
        dim = songs[0].features.shape[1]
        self.features = torch.zeros(len(songs), int(self.lengths.max()), dim)
        self.targets = torch.zeros(len(songs), int(self.target_lengths.max()), dtype=torch.long)
        for i, song in enumerate(songs):
            self.features[i, : len(song.frames)] = torch.from_numpy(song.features)
            self.targets[i, : len(song.sequence)] = torch.from_numpy(song.sequence)

    def take(self, index: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(features (B, T, D), lengths (B,), targets (B, S), target_lengths (B,))."""
        index = torch.as_tensor(index)
        lengths, target_lengths = self.lengths[index], self.target_lengths[index]
        features = self.features[index, : int(lengths.max())]
        targets = self.targets[index, : int(target_lengths.max())]
        return features, lengths, targets, target_lengths


def trained_parts(model: ChordModel) -> list[str]:
    """The parts with trainable parameters, in ``model.PARTS`` order."""
    return [
        part
        for part in model.PARTS
        if any(p.requires_grad for p in getattr(model, part).parameters())
    ]


def fit(
    model: ChordModel,
    songs: Sequence[Song],
    config: TrainConfig,
    *,
    seed: int,
    log: Callable[[int, dict], None] | None = None,
) -> dict[str, float]:
    """Train the unfrozen parts for ``config.steps`` steps; returns the last step's losses
    (``{"loss/ctc": ..., "loss/ar": ...}``, trained parts only), also passed to ``log`` every
    ``log_every`` steps and at the last one."""
    parts = trained_parts(model)
    if not parts:
        return {}
    optimizers = [torch.optim.Adam(getattr(model, p).parameters(), lr=config.lr) for p in parts]
    data = Batches(songs)
    rng = np.random.default_rng(seed)
    batch_size = min(config.batch_size, len(songs))
    losses: dict[str, float] = {}
    for step in range(1, config.steps + 1):
        batch = data.take(rng.choice(len(songs), size=batch_size, replace=False))
        part_losses = [getattr(model, part).loss(*batch) for part in parts]
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        sum(part_losses).backward()
        for optimizer in optimizers:
            torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], config.clip)
            optimizer.step()
        losses = {f"loss/{p}": loss.item() for p, loss in zip(parts, part_losses, strict=True)}
        if log is not None and (step % config.log_every == 0 or step == config.steps):
            log(step, losses)
    return losses
