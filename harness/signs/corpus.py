"""Sentences and their pose sequences: what the text-to-sign model trains and is scored on.

A sentence is a few words drawn from the lexicon; its pose sequence is the words' signs one
after the other. Training poses carry Gaussian jitter on every joint coordinate, as poses
estimated from video do; evaluation poses are clean, so the scores measure the model, not the
pose estimator. The jitter is what makes raw SGD weights noisy, and averaging them (EMA) useful.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.signs.lexicon import Lexicon


@dataclass(frozen=True)
class CorpusConfig:
    train: int = 512  # sentences
    eval: int = 128
    words: int = 4  # per sentence
    jitter: float = 0.15  # SD of the training poses' noise, per coordinate (shoulder width 1)


@dataclass(frozen=True, eq=False)
class Split:
    tokens: np.ndarray  # (sentences, words) word ids
    poses: np.ndarray  # (sentences, words * frames, JOINTS, 2)


@dataclass(frozen=True, eq=False)
class Corpus:
    config: CorpusConfig
    train: Split
    eval: Split


def make_corpus(lexicon: Lexicon, config: CorpusConfig, seed: int) -> Corpus:
    """Train sentences with jittered poses and clean eval sentences, from the seed."""
    rng = np.random.default_rng([seed, 0xC0A9])

    def split(count: int, jitter: float) -> Split:
        tokens = rng.integers(0, lexicon.config.words, size=(count, config.words))
        signs = lexicon.signs[tokens]  # (count, words, frames, joints, 2)
        poses = signs.reshape(count, -1, *signs.shape[3:])
        if jitter > 0:
            poses = poses + jitter * rng.standard_normal(poses.shape)
        return Split(tokens, poses.astype(np.float32))

    return Corpus(config, split(config.train, config.jitter), split(config.eval, 0.0))
