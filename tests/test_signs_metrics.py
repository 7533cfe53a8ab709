"""Pose-error metrics: known values, what DTW forgives and what it does not."""

from __future__ import annotations

import numpy as np
import pytest

from harness.signs import metrics


def poses(frames: int = 5, joints: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((2, frames, joints, 2))


def test_mpjpe_is_the_mean_euclidean_joint_distance():
    reference = poses()
    produced = reference.copy()
    produced[..., 0] += 3.0
    produced[..., 1] += 4.0  # every joint 5 away
    assert metrics.mpjpe(produced, reference) == pytest.approx(5.0)
    assert metrics.mpjpe(reference, reference) == 0.0


def test_pck_counts_joints_within_the_threshold():
    reference = np.zeros((1, 2, 2, 2))
    produced = reference.copy()
    produced[0, 0, 0] = [0.05, 0.0]  # within 0.1
    produced[0, 1, 1] = [0.0, 0.5]  # not
    assert metrics.pck(produced, reference, threshold=0.1) == pytest.approx(0.75)


def test_dtw_equals_mpjpe_on_a_uniform_offset_and_zero_on_equal_sequences():
    reference = np.zeros((2, 6, 3, 2))
    produced = reference + np.array([0.3, 0.4])  # every frame 0.5 off, whatever the alignment
    assert metrics.dtw_mje(produced, reference) == pytest.approx(0.5)
    assert metrics.dtw_mje(reference, reference) == 0.0


def test_dtw_forgives_a_frame_of_delay_that_mpjpe_does_not():
    t = np.linspace(0.0, 1.0, 12)
    reference = np.zeros((1, 12, 1, 2))
    reference[0, :, 0, 0] = np.sin(2 * np.pi * t)
    produced = np.roll(reference, 1, axis=1)
    produced[0, 0] = reference[0, 0]  # held first frame, then one frame late
    assert metrics.dtw_mje(produced, reference) < 0.2 * metrics.mpjpe(produced, reference)


def test_dtw_is_at_most_the_diagonal_alignment():
    produced, reference = poses(seed=1), poses(seed=2)
    assert metrics.dtw_mje(produced, reference) <= metrics.mpjpe(produced, reference) + 1e-12


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="sequences, frames, joints, 2"):
        metrics.mpjpe(poses(frames=5), poses(frames=6))
