"""fit()'s checkpoints, resume, best-weight selection and cropped windows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from harness.chords.model import ModelConfig, build_model
from harness.chords.synthetic import Song, SyntheticConfig, make_dataset
from harness.chords.train import Batches, CheckpointError, TrainConfig, fit

CONFIG = ModelConfig()
PARTS = ("ctc", "ar")
TRAIN = TrainConfig(steps=6, batch_size=4, log_every=1, checkpoint_every=2)
CROPPED = dataclasses.replace(TRAIN, crop_frames=12, validate_every=3)


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def songs():
    return make_dataset(SyntheticConfig(n_train=12, n_eval=0), seed=3).train


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in model.state_dict().items()}


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def mean_weights(model) -> dict[str, float]:
    """Validation scores that change with every step (any function of the weights would do)."""
    return {part: float(next(getattr(model, part).parameters()).detach().mean())
            for part in PARTS}


def interrupt_at(step: int):
    def log(at: int, values: dict) -> None:
        if at == step:
            raise Interrupt

    return log


@pytest.mark.parametrize("config", [TRAIN, CROPPED], ids=["whole_songs", "cropped_validated"])
def test_interrupted_and_resumed_run_ends_bitwise_like_a_straight_one(songs, config, tmp_path):
    validate = mean_weights if config.validate_every else None
    straight = build_model(CONFIG, seed=7, train_parts=PARTS)
    expected = fit(straight, songs, config, seed=7, validate=validate)

    path = tmp_path / "run.pt"
    model = build_model(CONFIG, seed=7, train_parts=PARTS)
    with pytest.raises(Interrupt):
        fit(model, songs, config, seed=7, log=interrupt_at(5), checkpoint=path, validate=validate)
    resumed = build_model(CONFIG, seed=7, train_parts=PARTS)  # a fresh process, say
    logged = []
    result = fit(resumed, songs, config, seed=7, checkpoint=path, validate=validate,
                 log=lambda step, values: logged.append(step))  # fmt: skip

    assert logged[0] == 5  # resumed after the checkpoint of step 4, not from scratch
    assert result == expected
    assert_bitwise_equal(state(resumed), state(straight))
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temporary file left behind


def test_checkpointing_does_not_change_the_run(songs, tmp_path):
    plain = build_model(CONFIG, seed=2, train_parts=["ar"])
    saved = build_model(CONFIG, seed=2, train_parts=["ar"])
    assert fit(plain, songs, TRAIN, seed=2) == fit(
        saved, songs, TRAIN, seed=2, checkpoint=tmp_path / "a.pt"
    )
    assert_bitwise_equal(state(saved), state(plain))


def test_a_finished_checkpoint_reloads_without_training(songs, tmp_path):
    path = tmp_path / "done.pt"
    trained = build_model(CONFIG, seed=1, train_parts=["ctc"])
    losses = fit(trained, songs, TRAIN, seed=1, checkpoint=path)
    again = build_model(CONFIG, seed=1, train_parts=["ctc"])
    logged = []
    assert fit(again, songs, TRAIN, seed=1, checkpoint=path, log=lambda *a: logged.append(a)) == (
        losses
    )
    assert logged == []
    assert_bitwise_equal(state(again), state(trained))


def test_how_often_to_log_or_save_may_change_on_resume(songs, tmp_path):
    path = tmp_path / "run.pt"
    first = build_model(CONFIG, seed=1, train_parts=["ctc"])
    result = fit(first, songs, TRAIN, seed=1, checkpoint=path)
    other = dataclasses.replace(TRAIN, log_every=3, checkpoint_every=5)
    again = build_model(CONFIG, seed=1, train_parts=["ctc"])
    # accepted (no CheckpointError), and the finished run is reloaded, not retrained
    assert fit(again, songs, other, seed=1, checkpoint=path) == result
    assert_bitwise_equal(state(again), state(first))


@pytest.mark.parametrize(
    "change, named",
    [
        ({"config": dataclasses.replace(TRAIN, lr=0.02)}, "train"),
        ({"config": dataclasses.replace(TRAIN, crop_frames=30)}, "train"),
        ({"model": ModelConfig(ctc_kernel=5)}, "shapes"),
        ({"parts": ["ctc", "ar"]}, "parts"),
        ({"seed": 8}, "seed"),
        ({"songs": slice(0, 11)}, "songs"),
    ],
)
def test_a_checkpoint_of_another_run_is_refused_naming_the_file(songs, tmp_path, change, named):
    path = tmp_path / "other.pt"
    fit(build_model(CONFIG, seed=7, train_parts=["ctc"]), songs, TRAIN, seed=7, checkpoint=path)
    parts = change.get("parts", ["ctc"])
    model = build_model(change.get("model", CONFIG), seed=7, train_parts=parts)
    before = state(model)
    with pytest.raises(CheckpointError, match=rf"{path}.*another run.*\b{named}: checkpoint"):
        fit(model, songs[change.get("songs", slice(None))], change.get("config", TRAIN),
            seed=change.get("seed", 7), checkpoint=path)  # fmt: skip
    assert_bitwise_equal(state(model), before)


def test_an_unreadable_checkpoint_is_refused_naming_the_file(songs, tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=rf"{path}.*unreadable"):
        fit(build_model(CONFIG, seed=0, train_parts=["ctc"]), songs, TRAIN, seed=0, checkpoint=path)


def test_validation_restores_each_parts_best_scoring_weights(songs):
    config = TrainConfig(steps=8, batch_size=4, validate_every=2, log_every=100)
    # ctc is best at step 4 (step 8 only ties it), ar at step 6
    scores = {2: {"ctc": 0.3, "ar": 0.1}, 4: {"ctc": 0.9, "ar": 0.2},
              6: {"ctc": 0.5, "ar": 0.7}, 8: {"ctc": 0.9, "ar": 0.4}}
    seen: dict[int, dict[str, torch.Tensor]] = {}

    def validate(model) -> dict[str, float]:
        step = 2 * (len(seen) + 1)
        seen[step] = state(model)
        return scores[step]

    logged = []

    def log(step: int, values: dict) -> None:
        logged.append((step, values.get("val/ctc"), values.get("val/ar")))

    model = build_model(CONFIG, seed=4, train_parts=PARTS)
    result = fit(model, songs, config, seed=4, validate=validate, log=log)

    assert sorted(seen) == [2, 4, 6, 8]
    assert (result["best_step/ctc"], result["best_score/ctc"]) == (4, 0.9)
    assert (result["best_step/ar"], result["best_score/ar"]) == (6, 0.7)
    assert {"loss/ctc", "loss/ar"} < result.keys()
    final = state(model)
    assert_bitwise_equal({k: v for k, v in final.items() if k.startswith("ctc.")},
                         {k: v for k, v in seen[4].items() if k.startswith("ctc.")})
    assert_bitwise_equal({k: v for k, v in final.items() if k.startswith("ar.")},
                         {k: v for k, v in seen[6].items() if k.startswith("ar.")})
    assert not torch.equal(seen[4]["ctc.encoder.weight"], seen[8]["ctc.encoder.weight"])
    assert logged == [(2, 0.3, 0.1), (4, 0.9, 0.2), (6, 0.5, 0.7), (8, 0.9, 0.4)]


def test_selection_keeps_the_parts_decoupled(songs):
    """Combined's CTC part ends exactly as ctc_only's: one part's scores never move the other."""
    config = TrainConfig(steps=6, batch_size=4, validate_every=2, log_every=100)

    def validate(model) -> dict[str, float]:
        return {part: -float(next(getattr(model, part).parameters()).detach().abs().sum())
                for part in ("ctc", "ar") if next(getattr(model, part).parameters()).requires_grad}

    alone = build_model(CONFIG, seed=5, train_parts=["ctc"])
    both = build_model(CONFIG, seed=5, train_parts=PARTS)
    fit(alone, songs, config, seed=5, validate=validate)
    fit(both, songs, config, seed=5, validate=validate)
    assert_bitwise_equal(state(alone.ctc), state(both.ctc))


def test_validation_must_score_every_trained_part(songs):
    config = TrainConfig(steps=2, batch_size=4, validate_every=1)
    model = build_model(CONFIG, seed=0, train_parts=PARTS)
    with pytest.raises(ValueError, match=r"score for each trained part \['ctc', 'ar'\]"):
        fit(model, songs, config, seed=0, validate=lambda m: {"ctc": 1.0})


def test_without_validation_the_result_is_the_last_losses(songs):
    result = fit(build_model(CONFIG, seed=4, train_parts=["ar"]), songs, TRAIN, seed=4)
    assert set(result) == {"loss/ar"}


def test_windows_hold_whole_segments_and_their_chords():
    """Frame i's features hold i, so each window shows where it was cut from."""
    rng = np.random.default_rng(0)
    songs = []
    for n in (40, 9, 70):
        frames = np.repeat(rng.integers(-1, 5, size=n), rng.integers(1, 6, size=n))[:n]
        features = np.tile(np.arange(n, dtype=np.float32)[:, None], (1, 3))
        songs.append(Song(f"s{n}", features, frames, np.array([0]), np.zeros((1, 2)), 10.0))
    batches, size = Batches(songs), 16
    for _ in range(50):
        index = rng.permutation(3)
        features, lengths, targets, target_lengths = batches.windows(index, rng, size)
        for row, i in enumerate(index):
            length, start, frames = int(lengths[row]), int(features[row, 0, 0]), songs[i].frames
            end = start + length
            assert 0 < length <= min(size, len(frames))
            assert torch.equal(features[row, :length, 0], torch.arange(start, end).float())
            assert not features[row, length:].any()
            cut_inside = start > 0 and frames[start - 1] == frames[start]
            cut_inside |= end < len(frames) and frames[end - 1] == frames[end]
            window = frames[start:end]
            assert not cut_inside or len(np.unique(window)) <= 2  # only a long chord is cut
            mapped = window[window >= 0]
            expected = mapped[np.diff(mapped, prepend=-1) != 0]
            assert targets[row, : int(target_lengths[row])].tolist() == expected.tolist()


def test_cropped_training_runs_on_long_songs_and_learns():
    """Few cheap windows of long songs must still lower both losses."""
    data = SyntheticConfig(n_train=8, n_eval=0, noise_sigma=0.1, min_segments=40, max_segments=40)
    long_songs = make_dataset(data, seed=0).train
    logged = []
    model = build_model(CONFIG, seed=0, train_parts=PARTS)
    config = TrainConfig(steps=30, batch_size=8, lr=0.05, log_every=1, crop_frames=40)
    fit(model, long_songs, config, seed=0, log=lambda step, values: logged.append(values))
    for key in ("loss/ctc", "loss/ar"):
        assert logged[-1][key] < logged[0][key] / 3, [values[key] for values in logged]


def test_long_songs_decode_in_windows_joined_at_the_edges(songs):
    """decode_frames: each window decoded alone; a chord cut by an edge is counted once."""
    windowed = build_model(dataclasses.replace(CONFIG, decode_frames=20), seed=0, train_parts=PARTS)
    fit(windowed, songs, TrainConfig(steps=10, batch_size=4, lr=0.05, crop_frames=20), seed=0)
    whole = build_model(CONFIG, seed=0, train_parts=PARTS)
    whole.load_state_dict(windowed.state_dict())
    features, lengths, _, _ = Batches(songs).take(np.arange(len(songs)))
    decoded = windowed.ar.greedy(features, lengths)
    for song, sequence in zip(songs, decoded, strict=True):
        expected: list[int] = []
        for start in range(0, len(song.frames), 20):
            window = torch.from_numpy(song.features[start : start + 20]).unsqueeze(0)
            (piece,) = whole.ar.greedy(window, torch.tensor([window.shape[1]]))
            expected += piece[1:] if expected and piece and piece[0] == expected[-1] else piece
        assert sequence == expected
    assert any(len(song.frames) > 20 for song in songs)
    short = lengths.clamp(max=15)  # songs no longer than a window decode as they are
    assert windowed.ar.greedy(features[:, :15], short) == whole.ar.greedy(features[:, :15], short)
