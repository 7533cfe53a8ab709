"""The task: running sums of digits, written out step by step, with a teacher that slips.

A problem is `steps` digits in 0..base-1; its rationale is the running sum modulo `base`
(state_k = (state_{k-1} + digit_k) mod base, state_0 = 0) and its answer the last state. One
wrong step makes the answer wrong (later steps only carry the error), as in a chain of thought.

The teacher's soft labels are known in closed form: at each step it writes the right state with
probability `teacher_correct`, each off-by-one neighbour with `teacher_slip`, and spreads the
rest evenly. So its answers are right with probability about teacher_correct ** steps, and the
student that learns its step function perfectly and decodes greedily beats it: the mode of
every step is the right state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TaskConfig:
    base: int = 10  # digits and states are 0..base-1
    steps: int = 6  # reasoning steps per problem
    train_problems: int = 120  # teacher rationales at data fraction 1.0
    eval_problems: int = 1000  # sampling noise small beside the knobs' effects
    teacher_correct: float = 0.85
    teacher_slip: float = 0.05  # for each of the two off-by-one neighbours

    def __post_init__(self) -> None:
        if self.base < 4:
            raise ValueError(f"base={self.base}: need >= 4 (right state, two neighbours, rest)")
        rest = 1 - self.teacher_correct - 2 * self.teacher_slip
        if not (self.teacher_correct > self.teacher_slip >= 0 and rest >= -1e-12):
            raise ValueError(f"teacher_correct={self.teacher_correct}, teacher_slip="
                             f"{self.teacher_slip}: the right state must be the most likely and "
                             "the probabilities must sum to at most 1")


def gold_rationale(digits: np.ndarray, base: int) -> np.ndarray:
    """The right states of every step: running sums modulo `base`, shape of `digits`."""
    return np.cumsum(digits, axis=-1) % base


def teacher_probs(states: np.ndarray, digits: np.ndarray, config: TaskConfig) -> np.ndarray:
    """The teacher's soft labels for the next state, shape (*states.shape, base)."""
    base = config.base
    right = (np.asarray(states) + np.asarray(digits)) % base
    rest = (1 - config.teacher_correct - 2 * config.teacher_slip) / (base - 3)
    probs = np.full((*right.shape, base), max(rest, 0.0))
    cells = np.indices(right.shape)
    for offset, mass in ((0, config.teacher_correct), (1, config.teacher_slip),
                         (-1, config.teacher_slip)):
        probs[(*cells, (right + offset) % base)] = mass
    return probs


def sample_categorical(probs: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws, one per row of `probs`, from the given uniforms in [0, 1).

    Drawing from fixed uniforms makes decodings that differ only in their probabilities (another
    temperature, another student) use common random numbers: their paired differences are the
    probabilities' effect, not the luck of the draw."""
    cdf = np.cumsum(probs, axis=-1)
    cdf /= cdf[..., -1:]
    return np.minimum((cdf <= uniforms[..., None]).sum(axis=-1), probs.shape[-1] - 1)


def teacher_rationales(digits: np.ndarray, config: TaskConfig,
                       rng: np.random.Generator) -> np.ndarray:
    """Rationales the teacher writes, step by step: a slip is carried into later steps."""
    states = np.zeros(digits.shape[0], dtype=np.int64)
    out = np.empty_like(digits)
    for k in range(digits.shape[1]):
        probs = teacher_probs(states, digits[:, k], config)
        states = sample_categorical(probs, rng.random(digits.shape[0]))
        out[:, k] = states
    return out


@dataclass(frozen=True, eq=False)
class DistillData:
    """One seed's data: the teacher's training rationales and the eval problems.

    `eval_uniforms` are the draws sampling decoders use (one per eval problem and step), fixed
    per seed so that every decoding of a seed is compared on the same luck."""

    config: TaskConfig
    train_digits: np.ndarray  # (train_problems, steps)
    train_rationales: np.ndarray  # the teacher's, slips included
    eval_digits: np.ndarray  # (eval_problems, steps)
    eval_uniforms: np.ndarray  # (eval_problems, steps) in [0, 1)

    @property
    def eval_gold(self) -> np.ndarray:
        return gold_rationale(self.eval_digits, self.config.base)


def make_data(config: TaskConfig, seed: int) -> DistillData:
    """Train and eval problems of one seed (independent streams, so that a bigger training
    set never changes the eval problems)."""
    train_rng, eval_rng = (np.random.default_rng([seed, stream]) for stream in (0, 1))
    shape = (config.train_problems, config.steps)
    train_digits = train_rng.integers(0, config.base, size=shape)
    rationales = teacher_rationales(train_digits, config, train_rng)
    eval_shape = (config.eval_problems, config.steps)
    eval_digits = eval_rng.integers(0, config.base, size=eval_shape)
    return DistillData(config, train_digits, rationales, eval_digits, eval_rng.random(eval_shape))
