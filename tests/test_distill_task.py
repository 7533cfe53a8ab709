"""The distillation task: gold rationales, the teacher's known soft labels and its slips."""

from __future__ import annotations

import numpy as np
import pytest

from harness.distill.task import (
    TaskConfig,
    gold_rationale,
    make_data,
    sample_categorical,
    teacher_probs,
    teacher_rationales,
)


def test_gold_rationale_is_the_running_sum_modulo_the_base():
    digits = np.array([[3, 9, 8, 0], [9, 9, 9, 9]])
    assert gold_rationale(digits, 10).tolist() == [[3, 2, 0, 0], [9, 8, 7, 6]]


def test_teacher_soft_labels_put_the_configured_mass_on_right_state_and_neighbours():
    config = TaskConfig(base=10, teacher_correct=0.7, teacher_slip=0.1)
    probs = teacher_probs(np.array([9, 4]), np.array([0, 3]), config)  # right states 9, 7
    assert probs.sum(axis=-1) == pytest.approx([1.0, 1.0])
    assert probs[0, [9, 0, 8]].tolist() == pytest.approx([0.7, 0.1, 0.1])  # wraps around
    assert probs[0, 1:8] == pytest.approx(np.full(7, 0.1 / 7))
    assert probs.argmax(axis=-1).tolist() == [9, 7]


def test_sample_categorical_is_the_inverse_cdf_of_the_uniforms():
    probs = np.array([[0.2, 0.5, 0.3]] * 4)
    assert sample_categorical(probs, np.array([0.0, 0.19, 0.2, 0.999])).tolist() == [0, 0, 1, 2]
    draws = sample_categorical(np.tile([0.2, 0.5, 0.3], (20000, 1)),
                               np.random.default_rng(0).random(20000))
    assert np.bincount(draws, minlength=3) / 20000 == pytest.approx([0.2, 0.5, 0.3], abs=0.01)


def exact_teacher_accuracy(config: TaskConfig) -> float:
    """P(final answer right): the step errors add up modulo the base (a slip is carried)."""
    error = teacher_probs(np.array(0), np.array(0), config)  # P(error = e), e = 0..base-1
    total = np.zeros(config.base)
    total[0] = 1.0
    for _ in range(config.steps):
        total = np.array([sum(total[j] * error[(e - j) % config.base]
                              for j in range(config.base)) for e in range(config.base)])
    return float(total[0])


def test_teacher_answers_are_right_as_often_as_its_soft_labels_say():
    config = TaskConfig(steps=5, teacher_correct=0.8, teacher_slip=0.08)
    rng = np.random.default_rng(1)
    digits = rng.integers(0, 10, size=(40000, 5))
    written = teacher_rationales(digits, config, rng)
    accuracy = np.mean(written[:, -1] == gold_rationale(digits, 10)[:, -1])
    assert accuracy == pytest.approx(exact_teacher_accuracy(config), abs=0.01)
    assert exact_teacher_accuracy(config) > 0.8**5  # slips can cancel


def test_a_perfect_teacher_writes_the_gold_rationale():
    config = TaskConfig(teacher_correct=1.0, teacher_slip=0.0)
    data = make_data(config, seed=3)
    assert (data.train_rationales == gold_rationale(data.train_digits, 10)).all()


def test_data_is_fixed_by_the_seed_and_eval_problems_by_nothing_else():
    small, large = TaskConfig(train_problems=10), TaskConfig(train_problems=50)
    a, b, other = make_data(small, 7), make_data(large, 7), make_data(small, 8)
    assert (a.eval_digits == b.eval_digits).all() and (a.eval_uniforms == b.eval_uniforms).all()
    assert (a.train_digits == make_data(small, 7).train_digits).all()
    assert not (a.eval_digits == other.eval_digits).all()
    assert a.eval_gold.shape == (1000, 6)


@pytest.mark.parametrize("options", [{"base": 3}, {"teacher_correct": 0.3, "teacher_slip": 0.4},
                                     {"teacher_correct": 0.9, "teacher_slip": 0.1}])
def test_impossible_teachers_are_refused(options):
    with pytest.raises(ValueError):
        TaskConfig(**options)
