"""score_heads (the heads a variant is scored on), checkpoint selection's scorer, held-out songs."""

from __future__ import annotations

import mir_eval
import numpy as np
import pytest

from harness.chords.decode import predict
from harness.chords.evaluation import score_heads, selector
from harness.chords.fixtures import ChordData
from harness.chords.model import ModelConfig, build_model
from harness.chords.synthetic import SyntheticConfig, make_dataset
from harness.chords.train import TrainConfig, fit


@pytest.fixture(scope="module")
def data():
    return make_dataset(SyntheticConfig(n_train=24, n_eval=6, noise_sigma=0.2), seed=2)


@pytest.fixture(scope="module")
def trained(data):
    model = build_model(ModelConfig(), seed=2, train_parts=["ctc", "ar"])
    fit(model, data.train, TrainConfig(steps=40, batch_size=8, lr=0.05), seed=2)
    return model


def test_each_variant_is_scored_on_its_own_heads(trained, data):
    both = score_heads(trained, data.eval, parts=["ctc", "ar"])
    ctc = score_heads(trained, data.eval, parts=["ctc"])
    assert set(both) == {"ctc", "ar", "joint"} and set(ctc) == {"ctc", "joint"}
    assert "alignment" not in both["ar"]  # the AR head alone has no timing ...
    assert set(both["ar"]["labels"]) == {"seq_err"}  # ... so only its sequence is scored
    # ctc_only's system output is its CTC frames (its sequence error differs: the CTC head's
    # sequence is the greedy collapse, the system's the frames' runs)
    assert ctc["joint"]["alignment"] == ctc["ctc"]["alignment"]
    assert ctc["joint"]["labels"]["majmin"] == ctc["ctc"]["labels"]["majmin"]
    assert both["ctc"] == ctc["ctc"]  # decoding the AR part too leaves the CTC head alone
    only_ar = score_heads(trained, data.eval, parts=["ctc", "ar"], heads={"ar"})
    assert set(only_ar) == {"ar"} and only_ar["ar"] == both["ar"]
    assert both.failures == []


def test_a_ctc_only_system_output_goes_through_mir_eval_once(trained, data, monkeypatch):
    calls = []
    original = mir_eval.chord.evaluate
    monkeypatch.setattr(mir_eval.chord, "evaluate",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    score_heads(trained, data.eval, parts=["ctc"])
    assert len(calls) == len(data.eval)  # ctc and joint heads share the same frames
    calls.clear()
    score_heads(trained, data.eval, parts=["ctc", "ar"])  # joint frames: aligned AR sequence
    differ = sum(not np.array_equal(out.joint_frames, out.ctc_frames)
                 for out in predict(trained, data.eval, parts=["ctc", "ar"]))
    assert differ > 0 and len(calls) == len(data.eval) + differ


def test_a_semitone_shift_hurts_mir_eval_labels_but_not_token_accuracy(trained, data):
    plain = score_heads(trained, data.eval, parts=["ctc"])
    shifted = score_heads(trained, data.eval, parts=["ctc"], label_shift=1)
    assert shifted["ctc"]["proxy"] == plain["ctc"]["proxy"]
    assert shifted["ctc"]["labels"]["majmin"] < plain["ctc"]["labels"]["majmin"] - 0.3
    assert shifted["ctc"]["alignment"]["seg"] == plain["ctc"]["alignment"]["seg"]


def test_selector_scores_each_trained_part_by_its_metric_higher_is_better(trained, data):
    validate = selector(data.eval, {"ctc": "ctc/labels/majmin", "ar": "ar/labels/seq_err"})
    scores = validate(trained)
    metrics = score_heads(trained, data.eval, parts=["ctc", "ar"])
    assert scores == {"ctc": metrics["ctc"]["labels"]["majmin"],
                      "ar": -metrics["ar"]["labels"]["seq_err"]}  # an error: negated


def test_selector_needs_a_metric_per_trained_part_that_exists(trained, data):
    with pytest.raises(ValueError, match=r"no metric for part\(s\) \['ar'\]"):
        selector(data.eval, {"ctc": "ctc/labels/majmin"})(trained)
    with pytest.raises(ValueError, match=r"'ar/alignment/seg' .*not among the scores"):
        selector(data.eval, {"ctc": "ctc/labels/majmin", "ar": "ar/alignment/seg"})(trained)


def test_held_out_songs_come_from_train_only_split_by_song(data):
    chords = ChordData(data.train, data.eval, data.config.feature_dim, {})
    fit_songs, validation = chords.held_out(0.25)
    fit_ids, validation_ids = {s.id for s in fit_songs}, {s.id for s in validation}
    assert fit_ids | validation_ids == {s.id for s in data.train}
    assert not fit_ids & validation_ids and validation_ids
    assert not validation_ids & {s.id for s in data.eval}
    again = ChordData(list(reversed(data.train)), data.eval, data.config.feature_dim, {})
    assert [s.id for s in again.held_out(0.25)[1]] == [s.id for s in validation]
