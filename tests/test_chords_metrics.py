"""Tests of harness.chords.metrics: fidelity to mir_eval, robustness to bad samples, aggregation."""

import json
from dataclasses import replace
from pathlib import Path

import mir_eval
import numpy as np
import pytest

from harness.chords.metrics import (
    ALIGNMENT,
    LABELS,
    SCORES,
    Estimate,
    EvaluationError,
    edit_distance,
    evaluate,
    frames_to_segments,
    score_song,
)
from harness.chords.synthetic import SyntheticConfig, make_dataset
from harness.chords.vocab import DEFAULT_VOCAB

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mir_eval_chord"


@pytest.fixture(scope="module")
def songs():
    return make_dataset(SyntheticConfig(n_train=0, n_eval=40), seed=0).eval


def estimate(song, shift=0, song_id=None):
    """A timed estimate of ``song`` that is its reference transposed by ``shift`` semitones."""
    ref_intervals, ref_labels = song.reference()
    est_labels = DEFAULT_VOCAB.labels(song.sequence, shift=shift)
    return Estimate(song_id or song.id, ref_intervals, ref_labels, ref_intervals.copy(), est_labels)


def test_score_groups_cover_mir_eval():
    assert len(SCORES) == 15
    assert set(ALIGNMENT) - {"frame_acc"} | set(LABELS) == set(SCORES)


@pytest.mark.parametrize("n", range(10))
def test_reproduces_mir_eval_fixtures(n):
    if not FIXTURES.is_dir():
        pytest.skip(f"mir_eval's chord fixtures are not at {FIXTURES}")
    ref = mir_eval.io.load_labeled_intervals(str(FIXTURES / f"ref{n:02d}.lab"))
    est = mir_eval.io.load_labeled_intervals(str(FIXTURES / f"est{n:02d}.lab"))
    expected = json.loads((FIXTURES / f"output{n:02d}.json").read_text())
    scores = score_song(*ref, *est)
    assert set(expected) == set(SCORES)
    for name in SCORES:
        assert scores[name] == pytest.approx(expected[name], abs=1e-12, rel=0), name
    assert 0.0 <= scores["frame_acc"] <= scores["mirex"] + 1e-12
    assert not hasattr(mir_eval.chord.encode, "cache_info")  # the parse cache is gone


def test_perfect_estimate_scores_one(songs):
    scores = score_song(*songs[0].reference(), *songs[0].reference())
    assert all(scores[name] == 1.0 for name in (*SCORES, "frame_acc"))


def test_enharmonic_spelling_counts_as_the_same_chord():
    intervals = np.array([[0.0, 1.0], [1.0, 2.0]])
    scores = score_song(intervals, ["C#:min", "Bb:7"], intervals, ["Db:min", "A#:7"])
    assert scores["frame_acc"] == 1.0


def test_planted_shift_destroys_labels_not_segmentation(songs):
    metrics, failures = evaluate([estimate(s, shift=1) for s in songs])
    assert not failures
    n_time = sum(np.diff(s.intervals[s.sequence == 0], axis=1).sum() for s in songs)
    n_share = n_time / sum(s.duration for s in songs)
    for name in ("root", "majmin", "sevenths"):
        assert metrics["labels"][name] == pytest.approx(n_share)  # only N survives a transposition
    assert metrics["alignment"]["frame_acc"] == pytest.approx(n_share)
    assert metrics["alignment"]["seg"] == 1.0


def test_one_malformed_sample_is_counted_listed_and_skipped(songs):
    estimates = [estimate(s) for s in songs]
    estimates[7] = replace(estimates[7], est_labels=["C:mjr", *estimates[7].est_labels[1:]])
    metrics, failures = evaluate(estimates)
    assert metrics["eval"] == {"n_samples": 40, "n_failed": 1}
    assert failures == [{"sample": songs[7].id, "error": failures[0]["error"]}]
    assert failures[0]["error"].startswith("InvalidChordException:")
    assert metrics["labels"]["majmin"] == 1.0 and metrics["alignment"]["frame_acc"] == 1.0


@pytest.mark.parametrize(
    "breakage",
    [
        {"est_labels": ["C:mjr"] * 12},  # bad labels
        {"est_labels": ["C:maj"]},  # label count mismatch
        {"est_intervals": np.array([[1.0, 0.0]])},  # bad interval
        {"est_intervals": np.array([0.0, 1.0])},  # intervals of the wrong shape
    ],
)
def test_too_many_failures_raise(songs, breakage):
    estimates = [estimate(s) for s in songs]
    for i in (3, 5, 11):
        estimates[i] = replace(estimates[i], **breakage)
    with pytest.raises(EvaluationError, match=r"3 of 40 samples") as info:
        evaluate(estimates)
    assert [f["sample"] for f in info.value.failures] == [songs[i].id for i in (3, 5, 11)]
    assert all(songs[i].id in str(info.value) for i in (3, 5, 11))
    metrics, failures = evaluate(estimates, max_failure_rate=0.1)
    assert metrics["eval"]["n_failed"] == len(failures) == 3


@pytest.mark.parametrize(
    ("ref", "est", "distance"),
    [
        ("", "", 0),
        ("abc", "abc", 0),
        ("abc", "", 3),
        ("", "ab", 2),
        ("kitten", "sitting", 3),
        (["C:maj", "G:7"], ["C:maj", "A:min", "G:7"], 1),
        ([1, 2, 3, 4], [2, 3, 4, 5], 2),
    ],
)
def test_edit_distance(ref, est, distance):
    assert edit_distance(ref, est) == distance
    assert edit_distance(est, ref) == distance


def test_estimates_at_or_past_the_reference_end_do_not_crash():
    ref = np.array([[0.0, 1.0], [1.0, 2.0]])
    est = np.array([[0.0, 2.0], [2.0, 3.0]])  # the second segment starts exactly at the end
    scores = score_song(ref, ["C:maj", "C:maj"], est, ["C:maj", "G:maj"])
    assert scores["majmin"] == 1.0 and scores["seg"] == 1.0
    outside = score_song(ref, ["N", "C:maj"], np.array([[2.0, 3.0]]), ["C:maj"])
    assert outside["frame_acc"] == 0.5  # nothing inside the span: N throughout


def test_untimed_estimates_get_only_sequence_error(songs):
    ref_labels = songs[0].reference()[1]
    est = Estimate("ar", songs[0].intervals, ref_labels, None, [*ref_labels[1:], "C:maj"])
    metrics, _ = evaluate([est])
    assert metrics == {
        "labels": {"seq_err": edit_distance(ref_labels, est.est_labels) / len(ref_labels)},
        "eval": {"n_samples": 1, "n_failed": 0},
    }


def test_aggregates_weighted_by_duration_and_sequences_by_length():
    short = Estimate("a", np.array([[0.0, 1.0]]), ["C:maj"], np.array([[0.0, 1.0]]), ["C:maj"])
    long = Estimate("b", np.array([[0.0, 3.0]]), ["C:maj"], np.array([[0.0, 3.0]]), ["D:maj"])
    short.ref_sequence, short.est_sequence = ["C:maj"], ["C:maj"]
    long.ref_sequence, long.est_sequence = ["C:maj", "G:maj", "C:maj"], ["D:maj"]
    metrics, _ = evaluate([short, long])
    assert metrics["labels"]["majmin"] == pytest.approx(0.25)
    assert metrics["alignment"]["seg"] == 1.0
    assert metrics["labels"]["seq_err"] == pytest.approx(3 / 4)


def test_mir_eval_runs_once_per_song(songs, monkeypatch):
    calls = []
    original = mir_eval.chord.evaluate
    monkeypatch.setattr(
        mir_eval.chord, "evaluate", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    evaluate([estimate(s) for s in songs[:5]])
    assert len(calls) == 5


def test_a_shared_memo_scores_equal_estimates_once_and_only_those(songs, monkeypatch):
    calls = []
    original = mir_eval.chord.evaluate
    monkeypatch.setattr(
        mir_eval.chord, "evaluate", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    same = [estimate(s) for s in songs[:4]]
    shifted = [estimate(s, shift=1) for s in songs[:4]]
    broken = replace(same[0], est_labels=["C:mjr", *same[0].est_labels[1:]])
    memo: dict = {}
    first, _ = evaluate(same, memo=memo)
    again, _ = evaluate([replace(e) for e in same], memo=memo)  # equal content, new objects
    assert again == first and len(calls) == 4
    other, _ = evaluate(shifted, memo=memo)  # other labels: scored anew
    assert len(calls) == 8 and other["labels"]["majmin"] < first["labels"]["majmin"]
    _, failures = evaluate([broken, *same[1:]], memo=memo, max_failure_rate=0.5)
    assert [f["sample"] for f in failures] == [songs[0].id]  # a failure is never memoised


def test_frames_to_segments():
    intervals, labels = frames_to_segments(["N", "N", "C:maj", "C:maj", "C:maj", "N"], 2.0)
    assert labels == ["N", "C:maj", "N"]
    np.testing.assert_array_equal(intervals, [[0.0, 1.0], [1.0, 2.5], [2.5, 3.0]])
    empty_intervals, empty_labels = frames_to_segments([], 10.0)
    assert empty_intervals.shape == (0, 2) and empty_labels == []


def test_frame_segments_score_like_per_frame_intervals(songs):
    song = songs[1]
    rng = np.random.default_rng(0)
    frames = np.where(
        rng.random(song.frames.size) < 0.3, rng.integers(0, 61, song.frames.size), song.frames
    )
    labels = DEFAULT_VOCAB.labels(frames)
    per_frame = np.arange(len(labels) + 1) / song.frame_rate
    a = score_song(*song.reference(), np.stack([per_frame[:-1], per_frame[1:]], 1), labels)
    b = score_song(*song.reference(), *frames_to_segments(labels, song.frame_rate))
    assert a == pytest.approx(b, abs=1e-12)
