"""Images for TinyCNN: synthetic classes by construction, or scikit-learn's digits.

Synthetic: each class is a smooth random 8x8 template (zero mean, unit RMS), drawn from the
seed; an image is its class template shifted by up to `shift` pixels (circularly) plus i.i.d.
Gaussian pixel noise of standard deviation `noise`. So `noise` is the signal-to-noise knob:
accuracy can only fall as it grows, whatever the model. Train and eval images share the
templates and come from separate random streams.

Real: `sklearn.datasets.load_digits` (1,797 8x8 grey images, 10 classes), split once into
train and eval by a fixed seed (the same split for every run: seeds vary init and batches,
not the test set), scaled to zero mean and unit variance by the train pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np


@dataclass(frozen=True, eq=False)
class ImageData:
    """Images (N, 1, H, W) float32 and labels (N,) int64, train and eval."""

    train_x: np.ndarray
    train_y: np.ndarray
    eval_x: np.ndarray
    eval_y: np.ndarray
    classes: int

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]


@dataclass(frozen=True)
class SyntheticConfig:
    classes: int = 10
    size: int = 8
    n_train: int = 512
    n_eval: int = 512
    noise: float = 1.0  # pixel noise SD; templates have unit RMS
    shift: int = 1  # max shift in pixels, each axis
    smooth: int = 1  # box-blur radius of the templates (0: white noise templates)


def templates(config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """(classes, size, size) smooth random patterns, each zero mean and unit RMS."""
    r, size = config.smooth, config.size
    field = rng.normal(size=(config.classes, size + 2 * r, size + 2 * r))
    blurred = sum(field[:, dy:dy + size, dx:dx + size]
                  for dy in range(2 * r + 1) for dx in range(2 * r + 1))
    blurred = blurred - blurred.mean(axis=(1, 2), keepdims=True)
    return blurred / np.sqrt((blurred ** 2).mean(axis=(1, 2), keepdims=True))


def _images(config: SyntheticConfig, patterns: np.ndarray, n: int,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(config.classes, size=n)
    shifts = rng.integers(-config.shift, config.shift + 1, size=(n, 2))
    images = np.stack([np.roll(patterns[c], tuple(s), axis=(0, 1))
                       for c, s in zip(labels, shifts, strict=True)])
    images = images + config.noise * rng.normal(size=images.shape)
    return images[:, None].astype(np.float32), labels.astype(np.int64)


def synthetic(config: SyntheticConfig, seed: int) -> ImageData:
    """The run's synthetic dataset: templates, train and eval images, all from `seed`."""
    patterns = templates(config, np.random.default_rng([seed, 0]))
    train = _images(config, patterns, config.n_train, np.random.default_rng([seed, 1]))
    evaluation = _images(config, patterns, config.n_eval, np.random.default_rng([seed, 2]))
    return ImageData(*train, *evaluation, classes=config.classes)


@cache
def digits(eval_fraction: float = 0.25, split_seed: int = 0) -> ImageData:
    """scikit-learn's digits, split by a fixed seed, stratified by class; cached per process."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32)
    y = bunch.target.astype(np.int64)
    rng = np.random.default_rng(split_seed)
    eval_index = np.sort(np.concatenate([
        rng.permutation(np.flatnonzero(y == c))[: round(eval_fraction * np.sum(y == c))]
        for c in range(10)]))
    is_eval = np.zeros(len(y), dtype=bool)
    is_eval[eval_index] = True
    mean, std = x[~is_eval].mean(), x[~is_eval].std()
    x = ((x - mean) / std)[:, None]
    return ImageData(x[~is_eval], y[~is_eval], x[is_eval], y[is_eval], classes=10)
