"""Decoding: monotonic alignment (against brute force), joint decoding, CTC/AR/uniform helpers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from harness.chords.decode import (
    ctc_greedy,
    joint_frames,
    monotonic_align,
    predict,
    uniform_frames,
)
from harness.chords.model import ModelConfig, build_model
from harness.chords.synthetic import SyntheticConfig, make_dataset
from harness.chords.train import TrainConfig, fit


def runs_of(frames: np.ndarray) -> list[int]:
    """Lengths of the runs of equal neighbours."""
    bounds = np.flatnonzero(np.diff(frames)) + 1
    return [len(run) for run in np.split(frames, bounds)]


def collapse(frames: np.ndarray) -> list[int]:
    """The symbols of the runs of equal neighbours."""
    frames = np.asarray(frames)
    return frames[np.r_[0, np.flatnonzero(np.diff(frames)) + 1]].tolist() if len(frames) else []


def brute_force_best(log_probs: np.ndarray, sequence: list[int]) -> float:
    """Best score over every split of the frames into len(sequence) non-empty runs, in order."""
    frames, best = len(log_probs), -np.inf
    for cuts in itertools.combinations(range(1, frames), len(sequence) - 1):
        bounds = (0, *cuts, frames)
        score = sum(
            log_probs[bounds[j] : bounds[j + 1], symbol].sum() for j, symbol in enumerate(sequence)
        )
        best = max(best, score)
    return best


def path_score(log_probs: np.ndarray, frames: np.ndarray) -> float:
    return float(log_probs[np.arange(len(frames)), frames].sum())


@pytest.mark.parametrize("trial", range(40))
def test_monotonic_align_is_the_exact_optimum(trial):
    rng = np.random.default_rng(trial)
    frames, classes = rng.integers(1, 8), 4
    length = rng.integers(1, frames + 1)
    sequence = [int(c) for c in rng.integers(0, classes, size=length)]
    # Distinct neighbours keep the runs identifiable; repeats further apart are allowed.
    for j in range(1, length):
        while sequence[j] == sequence[j - 1]:
            sequence[j] = int(rng.integers(0, classes))
    log_probs = np.log(rng.dirichlet(np.ones(classes), size=frames))
    aligned = monotonic_align(log_probs, sequence)
    assert len(aligned) == frames
    assert collapse(aligned) == sequence
    assert path_score(log_probs, aligned) == pytest.approx(brute_force_best(log_probs, sequence))


def test_monotonic_align_hand_made_case():
    # Frames favour 2, 2, 1, 1, 1, 3 but the sequence forbids the 1: the middle frames go to the
    # neighbour they prefer second.
    log_probs = np.log(
        np.array(
            [
                [0.1, 0.1, 0.7, 0.1],
                [0.1, 0.1, 0.7, 0.1],
                [0.1, 0.6, 0.2, 0.1],
                [0.1, 0.6, 0.1, 0.2],
                [0.1, 0.6, 0.1, 0.2],
                [0.1, 0.1, 0.1, 0.7],
            ]
        )
    )
    assert monotonic_align(log_probs, [2, 3]).tolist() == [2, 2, 2, 3, 3, 3]
    assert monotonic_align(log_probs, [2, 1, 3]).tolist() == [2, 2, 1, 1, 1, 3]


def test_monotonic_align_edge_cases():
    log_probs = np.log(np.full((3, 5), 0.2))
    # More symbols than frames: the first T get one frame each.
    assert monotonic_align(log_probs, [4, 1, 2, 3]).tolist() == [4, 1, 2]
    assert monotonic_align(log_probs, []).tolist() == [0, 0, 0]  # nothing to align: N
    assert monotonic_align(log_probs, [3]).tolist() == [3, 3, 3]


def test_joint_decoding_recovers_boundaries_on_clean_inputs():
    song = make_dataset(SyntheticConfig(n_train=0, n_eval=1, noise_sigma=0.0), seed=2).eval[0]
    rng = np.random.default_rng(0)
    # CTC-like log-probs: classes + blank (last); the true class only mildly preferred per frame.
    scores = rng.normal(0.0, 0.3, size=(len(song.frames), 62))
    scores[np.arange(len(song.frames)), song.frames] += 1.5
    log_probs = scores - np.log(np.exp(scores).sum(1, keepdims=True))
    assert joint_frames(log_probs, song.sequence).tolist() == song.frames.tolist()


def test_ctc_greedy_collapses_repeats_then_drops_blanks():
    blank = 9
    path = np.array([9, 3, 3, 9, 3, 5, 5, 9, 9, 0])
    assert ctc_greedy(path, blank).tolist() == [3, 3, 5, 0]
    assert ctc_greedy(np.array([blank, blank]), blank).tolist() == []


def test_uniform_frames_spreads_evenly():
    frames = uniform_frames([7, 8, 9], 10)
    assert collapse(frames) == [7, 8, 9]
    assert sorted(runs_of(frames)) == [3, 3, 4]
    assert uniform_frames([1, 2, 3, 4], 2).tolist() == [1, 2]
    assert uniform_frames([], 3).tolist() == [0, 0, 0]


@pytest.fixture(scope="module")
def small_run():
    data = make_dataset(SyntheticConfig(n_train=16, n_eval=5, noise_sigma=0.2), seed=1)
    model = build_model(ModelConfig(), seed=1, train_parts=["ctc", "ar"])
    fit(model, data.train, TrainConfig(steps=30, batch_size=8, lr=0.05), seed=1)
    return model, data.eval


def test_predict_builds_each_variants_system_output(small_run):
    model, songs = small_run
    both = predict(model, songs, parts=["ar", "ctc"])
    ctc = predict(model, songs, parts=["ctc"])
    ar = predict(model, songs, parts=["ar"])
    for song, b, c, a in zip(songs, both, ctc, ar, strict=True):
        assert b.song_id == c.song_id == a.song_id == song.id
        assert c.ar_sequence is None and a.ctc_frames is None and a.ctc_sequence is None
        np.testing.assert_array_equal(c.joint_frames, c.ctc_frames)
        np.testing.assert_array_equal(b.ctc_frames, c.ctc_frames)
        np.testing.assert_array_equal(b.ar_sequence, a.ar_sequence)
        np.testing.assert_array_equal(
            a.joint_frames, uniform_frames(a.ar_sequence, len(song.frames))
        )
        assert len(b.joint_frames) == len(song.frames)
        if len(b.ar_sequence):
            assert collapse(b.joint_frames) == collapse(b.ar_sequence[: len(song.frames)])


def test_predict_batches_do_not_change_the_outputs(small_run):
    model, songs = small_run
    whole = predict(model, songs, parts=["ctc", "ar"])
    pieces = predict(model, songs, parts=["ctc", "ar"], batch_size=2)
    for w, p in zip(whole, pieces, strict=True):
        np.testing.assert_array_equal(w.joint_frames, p.joint_frames)
        np.testing.assert_array_equal(w.ar_sequence, p.ar_sequence)


def test_predict_refuses_unknown_or_no_parts(small_run):
    model, songs = small_run
    with pytest.raises(ValueError, match="ctc"):
        predict(model, songs, parts=["crf"])
    with pytest.raises(ValueError):
        predict(model, songs, parts=[])
