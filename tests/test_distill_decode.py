"""Decoding and scoring, on hand-built students whose right answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.distill.evaluate import score, token_accuracy
from harness.distill.generate import generate
from harness.distill.task import TaskConfig, gold_rationale, make_data, teacher_probs


class Oracle(torch.nn.Module):
    """A student with known logits: `log(teacher soft labels)`, shifted by `offset` states."""

    def __init__(self, config: TaskConfig, offset: int = 0):
        super().__init__()
        self.config, self.offset = config, offset

    def forward(self, states: torch.Tensor, digits: torch.Tensor) -> torch.Tensor:
        probs = teacher_probs((states.numpy() + self.offset) % self.config.base,
                              digits.numpy(), self.config)
        return torch.as_tensor(np.log(probs), dtype=torch.float32)


CONFIG = TaskConfig(eval_problems=4000, teacher_correct=0.7, teacher_slip=0.1)
DATA = make_data(CONFIG, seed=0)


def decode(model: torch.nn.Module, decoding: str, temperature: float = 1.0) -> np.ndarray:
    return generate(model, DATA.eval_digits, decoding=decoding, temperature=temperature,
                    uniforms=DATA.eval_uniforms)


def test_greedy_writes_the_most_likely_rationale_whatever_the_temperature():
    assert (decode(Oracle(CONFIG), "greedy", 0.3) == DATA.eval_gold).all()
    assert (decode(Oracle(CONFIG), "greedy", 5.0) == DATA.eval_gold).all()


def test_sampling_at_temperature_one_decodes_like_the_teacher():
    written = decode(Oracle(CONFIG), "sampling")
    steps_right = (written - np.concatenate([np.zeros((4000, 1), int), written[:, :-1]], axis=1)
                   - DATA.eval_digits) % 10 == 0  # each step right given its own state
    assert steps_right.mean() == pytest.approx(0.7, abs=0.015)


def test_lower_temperatures_sample_the_most_likely_state_more_often():
    gold = DATA.eval_gold[:, -1]
    right = [np.mean(decode(Oracle(CONFIG), "sampling", t)[:, -1] == gold)
             for t in (0.25, 0.5, 1.0, 2.0)]
    assert right == sorted(right, reverse=True)
    assert (decode(Oracle(CONFIG), "sampling", 0.7) == decode(Oracle(CONFIG), "sampling", 0.7)
            ).all()  # the seed's uniforms: no hidden randomness


def test_exact_match_grades_answers_and_token_accuracy_only_single_steps():
    right, wrong = score(Oracle(CONFIG), DATA, decoding="greedy", temperature=1.0), \
        score(Oracle(CONFIG, offset=1), DATA, decoding="greedy", temperature=1.0)
    assert right["answer"]["exact_match"] == right["proxy"]["token_acc"] == 1.0
    assert wrong["answer"]["exact_match"] == wrong["proxy"]["token_acc"] == 0.0
    assert token_accuracy(Oracle(CONFIG), DATA.eval_digits, gold_rationale(DATA.eval_digits, 10)
                          ) == 1.0


def test_token_accuracy_is_blind_to_decoding():
    cold, hot = (score(Oracle(CONFIG), DATA, decoding="sampling", temperature=t)
                 for t in (0.5, 2.0))
    assert cold["proxy"] == hot["proxy"]
    assert cold["answer"]["exact_match"] > hot["answer"]["exact_match"] + 0.3


@pytest.mark.parametrize(("decoding", "temperature"), [("beam", 1.0), ("sampling", 0.0)])
def test_unknown_decodings_and_temperatures_are_refused(decoding, temperature):
    with pytest.raises(ValueError):
        decode(Oracle(CONFIG), decoding, temperature)
