"""Distillation training: what it learns from, label smoothing, data fractions, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.distill.model import StudentConfig, build_student
from harness.distill.task import TaskConfig, gold_rationale, make_data
from harness.distill.train import TrainConfig, fit, kept_problems, transitions


def test_transitions_pair_each_step_with_the_state_before_it():
    digits = np.array([[3, 9, 8]])
    states, inputs, targets = transitions(digits, gold_rationale(digits, 10))
    assert states.tolist() == [0, 3, 2]
    assert inputs.tolist() == [3, 9, 8]
    assert targets.tolist() == [3, 2, 0]


def test_data_fractions_keep_nested_prefixes_and_at_least_one_problem():
    assert [kept_problems(120, f) for f in (0.1, 0.5, 1.0)] == [12, 60, 120]
    assert kept_problems(3, 0.01) == 1


def weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_training_is_fixed_by_the_seed_and_lowers_the_loss():
    data = make_data(TaskConfig(train_problems=30), seed=0)
    runs = []
    for _ in range(2):
        model = build_student(StudentConfig(), seed=5)
        losses = fit(model, data.train_digits, data.train_rationales, TrainConfig(epochs=5),
                     seed=5)
        runs.append(weights(model))
    assert losses[-1] < losses[0]
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))


def test_a_data_fraction_trains_on_the_first_problems_only():
    data = make_data(TaskConfig(train_problems=20), seed=1)
    half = build_student(StudentConfig(), seed=2)
    fit(half, data.train_digits, data.train_rationales,
        TrainConfig(epochs=3, data_fraction=0.5), seed=2)
    first = build_student(StudentConfig(), seed=2)
    fit(first, data.train_digits[:10], data.train_rationales[:10], TrainConfig(epochs=3), seed=2)
    assert all(torch.equal(a, b) for a, b in zip(weights(half), weights(first), strict=True))


def test_label_smoothing_caps_the_students_confidence_at_its_target():
    """Trained to convergence on a perfect teacher, the right state gets 1 - eps + eps/base."""
    data = make_data(TaskConfig(train_problems=60, teacher_correct=1.0, teacher_slip=0.0),
                     seed=0)
    model = build_student(StudentConfig(), seed=0)
    fit(model, data.train_digits, data.train_rationales,
        TrainConfig(epochs=30, lr=1.0, label_smoothing=0.2), seed=0)
    states, inputs, targets = transitions(data.train_digits, data.train_rationales)
    with torch.no_grad():
        probs = torch.softmax(model(states, inputs), dim=-1)
    right = probs.gather(1, targets[:, None]).mean()
    assert float(right) == pytest.approx(0.8 + 0.2 / 10, abs=0.02)


@pytest.mark.parametrize("options", [{"data_fraction": 0.0}, {"data_fraction": 1.5},
                                     {"label_smoothing": 1.0}])
def test_out_of_range_knobs_are_refused(options):
    with pytest.raises(ValueError):
        TrainConfig(**options)
