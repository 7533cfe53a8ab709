"""Tests of harness.chords.synthetic: determinism, structure of the songs, and the noise knob."""

from dataclasses import replace

import numpy as np
import pytest

from harness.chords.synthetic import SyntheticConfig, class_embeddings, make_dataset
from harness.chords.vocab import DEFAULT_VOCAB

CONFIG = SyntheticConfig(n_train=64, n_eval=16)


@pytest.fixture(scope="module")
def dataset():
    return make_dataset(CONFIG, seed=3)


def songs_equal(a, b):
    return a.id == b.id and all(
        np.array_equal(getattr(a, f), getattr(b, f))
        for f in ("features", "frames", "sequence", "intervals")
    )


def test_deterministic_per_seed(dataset):
    again = make_dataset(CONFIG, seed=3)
    assert all(map(songs_equal, dataset.train + dataset.eval, again.train + again.eval))
    other = make_dataset(CONFIG, seed=4)
    assert not songs_equal(dataset.eval[0], other.eval[0])


def test_train_and_eval_differ_but_share_embeddings(dataset):
    assert len(dataset.train) == 64 and len(dataset.eval) == 16
    assert dataset.train[0].id == "train-0000" and dataset.eval[7].id == "eval-0007"
    train_sequences = {tuple(s.sequence) for s in dataset.train}
    assert not any(tuple(s.sequence) in train_sequences for s in dataset.eval)
    np.testing.assert_array_equal(dataset.embeddings, make_dataset(CONFIG, seed=9).embeddings)
    assert not np.allclose(
        dataset.embeddings, make_dataset(CONFIG, seed=3, embedding_seed=1).embeddings
    )


def test_embeddings_are_orthonormal():
    e = class_embeddings(61, 64, seed=0)
    assert e.shape == (61, 64)
    np.testing.assert_allclose(e @ e.T, np.eye(61), atol=1e-12)


def test_too_few_dimensions_is_refused():
    with pytest.raises(ValueError, match=r"feature_dim=32 < num_classes=61.*at least 61"):
        class_embeddings(61, 32, seed=0)
    with pytest.raises(ValueError, match="feature_dim"):
        make_dataset(replace(CONFIG, feature_dim=16), seed=0)


def test_song_structure(dataset):
    c = CONFIG
    for song in dataset.train + dataset.eval:
        assert c.min_segments <= len(song.sequence) <= c.max_segments
        assert np.all(song.sequence[1:] != song.sequence[:-1])
        assert song.sequence.dtype == song.frames.dtype == np.int64
        assert song.features.dtype == np.float32
        assert song.features.shape == (len(song.frames), c.feature_dim)
        # The intervals are the runs of the per-frame classes, contiguous from 0.
        starts = np.flatnonzero(np.diff(song.frames, prepend=-1))
        bounds = np.append(starts, len(song.frames)) / c.frame_rate
        np.testing.assert_array_equal(song.intervals[:, 0], bounds[:-1])
        np.testing.assert_array_equal(song.intervals[:, 1], bounds[1:])
        np.testing.assert_array_equal(song.frames[starts], song.sequence)
        lengths = np.diff(bounds) * c.frame_rate
        assert lengths.min() >= c.min_frames - 1e-9 and lengths.max() <= c.max_frames + 1e-9


def test_n_is_rare_and_only_at_the_edges(dataset):
    sequences = [s.sequence for s in dataset.train + dataset.eval]
    assert all(np.all(seq[1:-1] != 0) for seq in sequences)
    share = np.mean(np.concatenate(sequences) == 0)
    assert 0.01 < share < 0.12


def test_reference_gives_vocabulary_labels(dataset):
    song = dataset.eval[0]
    intervals, labels = song.reference()
    assert intervals is song.intervals
    assert labels == DEFAULT_VOCAB.labels(song.sequence)
    assert song.reference(shift=2)[1] == DEFAULT_VOCAB.labels(song.sequence, shift=2)
    assert song.duration == intervals[-1, 1]


def oracle_accuracy(noise_sigma):
    """Per-frame and per-segment accuracy of the nearest embedding."""
    data = make_dataset(replace(CONFIG, noise_sigma=noise_sigma, n_train=0), seed=0)
    frame_hits, segment_hits = [], []
    for song in data.eval:
        frame_hits.append(np.argmax(song.features @ data.embeddings.T, axis=1) == song.frames)
        runs = np.split(song.features, np.flatnonzero(np.diff(song.frames)) + 1)
        means = np.stack([run.mean(axis=0) for run in runs])
        segment_hits.append(np.argmax(means @ data.embeddings.T, axis=1) == song.sequence)
    return np.mean(np.concatenate(frame_hits)), np.mean(np.concatenate(segment_hits))


def test_oracle_accuracy_falls_with_noise():
    accuracies = [oracle_accuracy(sigma) for sigma in (0.25, 0.5, 1.0, 2.0)]
    frame, segment = zip(*accuracies, strict=True)
    assert list(frame) == sorted(frame, reverse=True) and list(segment) == sorted(
        segment, reverse=True
    )
    assert frame[0] > 0.85 and segment[0] > 0.99
    assert segment[1] > frame[1] + 0.3  # averaging over a segment is what makes 0.5 solvable
    assert frame[-1] < 0.1
