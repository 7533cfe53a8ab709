"""A synthetic sign lexicon whose text side only partly says how a word is signed.

Every word has text features ``x`` (think of fixed subword features). How it is signed is
set by a descriptor ``z = C x`` (``sign_dim`` numbers: handshape, location, movement), rendered
as a few frames of arm motion. What a text-only pretraining task can teach about a word is a
*shifted* view ``s = A x`` with ``A = cos(shift) C + sin(shift) C_perp``, where ``C_perp`` is
orthogonal to ``C``: text and signing agree on part of each word and differ on the rest.

Why fine-tuning the encoder helps by construction: an encoder pretrained to output ``s`` and then
frozen hands the decoder ``s`` only. With ``x`` standard normal, ``C x`` and ``C_perp x`` are
independent, so the best guess of ``z`` from ``s`` is ``cos(shift) s`` and a fraction
``sin(shift)**2`` of every descriptor's variance is out of the frozen decoder's reach; an encoder
that is fine-tuned on signs can learn ``C x`` itself. At ``shift = 0`` the two views agree and
freezing costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.signs import skeleton


@dataclass(frozen=True)
class LexiconConfig:
    words: int = 256
    text_dim: int = 16  # text features per word
    sign_dim: int = 6  # descriptor numbers per sign; also the encoder's output size
    frames: int = 6  # frames per sign
    shift: float = 0.9  # radians between the text view and the sign view (0: they agree)
    motion: float = 0.35  # radians of joint angle per unit of descriptor

    def __post_init__(self) -> None:
        if 2 * self.sign_dim > self.text_dim:
            raise ValueError(f"text_dim {self.text_dim} must be at least 2 * sign_dim "
                             f"({2 * self.sign_dim}): the sign view and its orthogonal shift each "
                             "need sign_dim directions of the text features")


@dataclass(frozen=True, eq=False)
class Lexicon:
    config: LexiconConfig
    text: np.ndarray  # (words, text_dim) text features x
    descriptors: np.ndarray  # (words, sign_dim) z = C x: how each word is signed
    text_view: np.ndarray  # (words, sign_dim) s = A x: what text pretraining can learn
    signs: np.ndarray  # (words, frames, JOINTS, 2) each word's sign, clean

    @property
    def pose_dim(self) -> int:
        return skeleton.JOINTS * 2


def make_lexicon(config: LexiconConfig, seed: int) -> Lexicon:
    """The lexicon of one seed: text features, both views and every word's rendered sign."""
    rng = np.random.default_rng([seed, 0x5167])
    text = rng.standard_normal((config.words, config.text_dim))
    basis, _ = np.linalg.qr(rng.standard_normal((config.text_dim, config.text_dim)))
    sign_rows = basis[:, : config.sign_dim].T
    other_rows = basis[:, config.sign_dim: 2 * config.sign_dim].T
    shifted = np.cos(config.shift) * sign_rows + np.sin(config.shift) * other_rows
    descriptors, text_view = text @ sign_rows.T, text @ shifted.T
    # angles over a sign: a start pose, an end pose and an arc in between, each linear in z
    scale = config.motion / np.sqrt(config.sign_dim)
    start, end, arc = (scale * rng.standard_normal((config.sign_dim, skeleton.JOINTS))
                       for _ in range(3))
    rest = np.tile(np.array([0.3, 0.9, 0.2, 0.1]), 2)  # elbows bent, hands in front
    t = np.linspace(0.0, 1.0, config.frames)[None, :, None]
    ease = t * t * (3 - 2 * t)
    angles = (rest + (descriptors @ start)[:, None] * (1 - ease) + (descriptors @ end)[:, None]
              * ease + (descriptors @ arc)[:, None] * np.sin(np.pi * t))
    return Lexicon(config, text.astype(np.float32), descriptors.astype(np.float32),
                   text_view.astype(np.float32),
                   skeleton.positions(angles).astype(np.float32))
