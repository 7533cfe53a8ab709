"""TinyCNN's images: shapes, determinism by seed, noise as the only signal-to-noise knob, and
the digits split (fixed, stratified, disjoint)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.tinycnn.data import SyntheticConfig, digits, synthetic, templates
from harness.tinycnn.fixtures import image_data

SMALL = SyntheticConfig(n_train=40, n_eval=30)


def test_synthetic_shapes_and_types():
    data = synthetic(SMALL, seed=0)
    assert data.train_x.shape == (40, 1, 8, 8) and data.eval_x.shape == (30, 1, 8, 8)
    assert data.train_x.dtype == np.float32 and data.train_y.dtype == np.int64
    assert data.shape == (1, 8, 8) and data.classes == 10
    assert set(np.unique(data.train_y)) <= set(range(10))


def test_synthetic_is_a_function_of_the_seed():
    a, b, c = synthetic(SMALL, 1), synthetic(SMALL, 1), synthetic(SMALL, 2)
    assert np.array_equal(a.train_x, b.train_x) and np.array_equal(a.eval_y, b.eval_y)
    assert not np.array_equal(a.train_x, c.train_x)


def test_templates_are_zero_mean_unit_rms_and_distinct():
    patterns = templates(SyntheticConfig(), np.random.default_rng(0))
    assert patterns.shape == (10, 8, 8)
    np.testing.assert_allclose(patterns.mean(axis=(1, 2)), 0, atol=1e-12)
    np.testing.assert_allclose((patterns ** 2).mean(axis=(1, 2)), 1)
    assert not np.allclose(patterns, patterns.transpose(0, 2, 1))  # transposing changes them


def test_noise_changes_only_the_noise():
    quiet = synthetic(SyntheticConfig(n_train=20, n_eval=10, noise=0.0, shift=0), 3)
    noisy = synthetic(SyntheticConfig(n_train=20, n_eval=10, noise=2.0, shift=0), 3)
    assert np.array_equal(quiet.train_y, noisy.train_y)
    residual = noisy.train_x - quiet.train_x
    assert residual.std() == pytest.approx(2.0, rel=0.15)


def test_digits_split_is_fixed_stratified_and_disjoint():
    data = digits()
    assert data.train_x.shape[1:] == (1, 8, 8) and data.classes == 10
    assert len(data.train_y) + len(data.eval_y) == 1797
    assert len(data.eval_y) == pytest.approx(0.25 * 1797, abs=10)
    assert np.bincount(data.eval_y).min() >= 40  # every class in the eval set
    assert data.train_x.mean() == pytest.approx(0, abs=1e-5)
    rows = {x.tobytes() for x in data.eval_x}
    assert sum(x.tobytes() in rows for x in data.train_x) <= 2  # the data has a few duplicates


def test_image_data_picks_the_dataset_from_the_config():
    config = {"dataset": "synthetic", "data": {"n_train": 8, "n_eval": 4}}
    assert image_data(config, 0).train_x.shape[0] == 8
    assert image_data({"dataset": "digits"}, 0) is digits()
    with pytest.raises(ValueError, match="cifar"):
        image_data({"dataset": "cifar"}, 0)
