"""fit(): a deterministic CPU training loop with a fixed step budget.

Every variant gets the same number of steps and the same batches (drawn from a generator seeded
by ``seed``, whichever parts train), so the study compares parts, not budgets or data. Each
trained part has its own Adam optimizer and its own gradient clipping, and the loss is the sum of
the trained parts' losses: a part's gradient is then exactly the gradient of its own loss, and
training ctc and ar together is bitwise identical to training each alone. (One optimizer
clipping the global norm would couple the parts.)

Real-tier runs last minutes, so fit can also:

- checkpoint (``checkpoint=PATH``, every ``checkpoint_every`` steps and at the end): the step,
  the weights, every optimizer's state, the batch generator's state and the best-so-far, written
  atomically. A run finds its file and resumes from it, ending bitwise where an uninterrupted run
  ends; a finished run's file makes the call a cheap reload. The file carries a signature of
  everything that shapes the trajectory (train config, model config and parameter shapes, parts,
  seed, songs): resuming someone else's run would silently mix two experiments, so it is refused.
- select (``validate=fn``, every ``validate_every`` steps and at the end): keep, part by part,
  the weights that score best and load them at the end. Per part, because a shared choice of step
  would couple the parts again: combined's CTC part would then depend on its AR part's scores.
- crop (``crop_frames``): train on random windows of long songs. The AR loss costs time and memory
  linear in frames x segments, so whole Billboard songs (~4,500 frames, ~100 segments) make a
  step ~50x dearer than a window of 600 frames; windows also give more, less correlated batches.

None of this draws random numbers or changes the arithmetic when left off, so default runs stay
bitwise what they were.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.chords.model import ChordModel
from harness.chords.optim import Adam
from harness.chords.synthetic import Song

CHECKPOINT_FORMAT = 2  # 2: best weights kept per part
# How often things happen, not what happens: changing them on resume leaves the weights alone.
_NOT_IN_SIGNATURE = ("log_every", "checkpoint_every")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 80
    batch_size: int = 16
    lr: float = 0.01
    part_lr: dict[str, float] = field(default_factory=dict)  # per-part lr, e.g. {"ctc": 0.003}
    clip: float = 1.0  # max gradient norm, per part
    log_every: int = 10
    checkpoint_every: int = 0  # steps between checkpoints (0: only at the end), with checkpoint=
    validate_every: int = 0  # steps between validations (0: only at the end), with validate=
    crop_frames: int = 0  # > 0: train on random windows of at most this many frames a song


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed: unreadable, or made for another run."""


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
        self.frames = [song.frames for song in songs]

    def take(self, index: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(features (B, T, D), lengths (B,), targets (B, S), target_lengths (B,))."""
        index = torch.as_tensor(index)
        lengths, target_lengths = self.lengths[index], self.target_lengths[index]
        features = self.features[index, : int(lengths.max())]
        targets = self.targets[index, : int(target_lengths.max())]
        return features, lengths, targets, target_lengths

    def windows(
        self, index: np.ndarray, rng: np.random.Generator, size: int
    ) -> tuple[torch.Tensor, ...]:
        """Like ``take``, but a random window of at most ``size`` frames from each song.

        The window is trimmed to chord changes, so that it holds whole segments only (a sliver
        of a chord at a window's edge would be a target hardly in the features) unless one chord
        outlasts it. Targets are its runs of mapped frames, equal neighbours merged (as
        billboard's loader does over unmapped frames), since CTC targets must not repeat.
        """
        crops = []  # (song, start, end, target sequence)
        for i, offset in zip(index, rng.random(len(index)), strict=True):
            frames = self.frames[i]
            start = int(offset * (max(len(frames) - size, 0) + 1))
            end = min(start + size, len(frames))
            changes = np.flatnonzero(np.diff(frames[start:end])) + start + 1
            if len(changes) >= 2:  # keep the whole segments between the first and last change
                start = int(changes[0]) if start > 0 else start
                end = int(changes[-1]) if end < len(frames) else end
            mapped = frames[start:end][frames[start:end] >= 0]
            crops.append((i, start, end, mapped[np.diff(mapped, prepend=-1) != 0]))
        lengths = torch.tensor([end - start for _, start, end, _ in crops])
        target_lengths = torch.tensor([len(sequence) for *_, sequence in crops])
        features = torch.zeros(len(crops), int(lengths.max()), self.features.shape[2])
        targets = torch.zeros(len(crops), max(int(target_lengths.max()), 1), dtype=torch.long)
        for row, (i, start, end, sequence) in enumerate(crops):
            features[row, : end - start] = self.features[i, start:end]
            targets[row, : len(sequence)] = torch.from_numpy(sequence)
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
    checkpoint: Path | None = None,
    validate: Callable[[ChordModel], dict[str, float]] | None = None,
) -> dict[str, float]:
    """Train the unfrozen parts for ``config.steps`` steps; returns the last step's losses
    (``{"loss/ctc": ..., "loss/ar": ...}``, trained parts only), also passed to ``log`` every
    ``log_every`` steps and at the last one.

    ``checkpoint``: a file to save to and resume from (module docstring). ``validate``: scores
    each trained part, ``{"ctc": ..., "ar": ...}`` (higher is better), every ``validate_every``
    steps and at the last; each part's best-scoring weights (the earliest among ties) end in the
    model, and the result gains ``best_step/<part>`` and ``best_score/<part>``; steps that
    validate also log ``val/<part>``. After an interruption, steps since the last checkpoint are
    trained (and logged) again.
    """
    parts = trained_parts(model)
    if not parts:
        return {}
    unknown = sorted(set(config.part_lr) - set(model.PARTS))
    if unknown:
        raise ValueError(f"part_lr names unknown part(s) {unknown}; valid parts are "
                         f"{list(model.PARTS)}")
    optimizers = [Adam(getattr(model, p).parameters(), lr=config.part_lr.get(p, config.lr))
                  for p in parts]
    data = Batches(songs)
    rng = np.random.default_rng(seed)
    batch_size = min(config.batch_size, len(songs))
    state: dict[str, Any] = {"step": 0, "losses": {}, "best": {}}
    signature = _signature(model, songs, config, seed=seed, parts=parts)
    if checkpoint is not None and Path(checkpoint).exists():
        state = _resume(Path(checkpoint), signature, model, optimizers, rng)
    for step in range(state["step"] + 1, config.steps + 1):
        index = rng.choice(len(songs), size=batch_size, replace=False)
        if config.crop_frames > 0:
            batch = data.windows(index, rng, config.crop_frames)
        else:
            batch = data.take(index)
        part_losses = [getattr(model, part).loss(*batch) for part in parts]
        for optimizer in optimizers:
            optimizer.zero_grad()
        sum(part_losses).backward()
        for optimizer in optimizers:
            torch.nn.utils.clip_grad_norm_(optimizer.params, config.clip)
            optimizer.step()
        losses = {f"loss/{p}": loss.item() for p, loss in zip(parts, part_losses, strict=True)}
        state["step"], state["losses"] = step, losses
        scores = {}
        if validate is not None and _due(step, config.validate_every, config.steps):
            scores = _part_scores(validate(model), parts)
            for part, score in scores.items():
                best = state["best"].get(part)
                if best is None or score > best["score"]:
                    state["best"][part] = {"step": step, "score": score,
                                           "weights": _copy(getattr(model, part))}
        if checkpoint is not None and _due(step, config.checkpoint_every, config.steps):
            _save(Path(checkpoint), signature, state, model, optimizers, rng)
        if log is not None and (step % config.log_every == 0 or step == config.steps or scores):
            log(step, {**losses, **{f"val/{part}": score for part, score in scores.items()}})
    result = dict(state["losses"])
    for part, best in state["best"].items():
        getattr(model, part).load_state_dict(best["weights"])
        result |= {f"best_step/{part}": best["step"], f"best_score/{part}": best["score"]}
    return result


def _part_scores(scores: dict[str, float], parts: list[str]) -> dict[str, float]:
    """validate()'s answer checked: a score for every trained part, no other."""
    if not isinstance(scores, dict) or set(scores) != set(parts):
        raise ValueError(f"validate() must return a score for each trained part {parts}, "
                         f"e.g. {{'ctc': 0.7}}; it returned {scores!r}")
    return {part: float(scores[part]) for part in parts}


def _due(step: int, every: int, last: int) -> bool:
    return step == last or (every > 0 and step % every == 0)


def _copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def _signature(
    model: ChordModel, songs: Sequence[Song], config: TrainConfig, *, seed: int, parts: list[str]
) -> dict[str, Any]:
    """What must match for a checkpoint to continue this very run (plain values, to compare)."""
    songs_hash = hashlib.sha1()
    for song in songs:
        songs_hash.update(f"{song.id}:{len(song.frames)}:{len(song.sequence)};".encode())
    train = {k: v for k, v in asdict(config).items() if k not in _NOT_IN_SIGNATURE}
    return {
        "format": CHECKPOINT_FORMAT,
        "train": train,
        "model": asdict(model.config),
        "shapes": {name: list(value.shape) for name, value in model.state_dict().items()},
        "parts": parts,
        "seed": seed,
        "songs": songs_hash.hexdigest(),
    }


def _save(
    path: Path,
    signature: dict[str, Any],
    state: dict[str, Any],
    model: ChordModel,
    optimizers: list[Adam],
    rng: np.random.Generator,
) -> None:
    """Write the run's state atomically: a crash mid-write leaves the previous checkpoint."""
    payload = {
        "signature": signature,
        **state,
        "model": model.state_dict(),
        "optimizers": [optimizer.state_dict() for optimizer in optimizers],
        "rng": rng.bit_generator.state,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _resume(
    path: Path,
    signature: dict[str, Any],
    model: ChordModel,
    optimizers: list[Adam],
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Load a checkpoint into the run's objects; returns its step, losses and best-so-far."""
    try:
        payload = torch.load(path, weights_only=True)
        theirs = payload["signature"]
    except Exception as exc:
        raise CheckpointError(
            f"cannot resume from checkpoint {path}: it is unreadable ({exc!r}); delete it to "
            "start the run afresh"
        ) from exc
    if theirs != signature:
        differ = sorted(k for k in signature | theirs if theirs.get(k) != signature.get(k))
        details = "; ".join(
            f"{k}: checkpoint {theirs.get(k)!r}, this run {signature.get(k)!r}" for k in differ
        )
        raise CheckpointError(
            f"checkpoint {path} was made for another run ({details}); delete it or pass another "
            "checkpoint path"
        )
    model.load_state_dict(payload["model"])
    for optimizer, saved in zip(optimizers, payload["optimizers"], strict=True):
        optimizer.load_state_dict(saved)
    rng.bit_generator.state = payload["rng"]
    return {key: payload[key] for key in ("step", "losses", "best")}
