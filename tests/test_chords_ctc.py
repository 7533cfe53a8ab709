"""The CTC part at a lower rate (ctc_pool), the decoding blank penalty and per-part learning rates:
what the real tier uses to get the CTC head off the blank."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from harness.chords.decode import _outputs, ctc_best_path, ctc_greedy, predict
from harness.chords.metrics import edit_distance
from harness.chords.model import CTCPart, ModelConfig, build_model
from harness.chords.synthetic import SyntheticConfig, make_dataset
from harness.chords.train import Batches, TrainConfig, fit

POOLED = ModelConfig(ctc_pool=4)
PARTS = ("ctc", "ar")


@pytest.fixture(scope="module")
def songs():
    return make_dataset(SyntheticConfig(n_train=12, n_eval=0), seed=3).train


def test_a_pooled_output_reads_the_mean_of_its_frames():
    part = CTCPart(dataclasses.replace(POOLED, feature_dim=8, num_classes=5, ctc_kernel=1))
    features = torch.randn(2, 10, 8)  # 10 frames: windows of 4, 4 and 2 (+2 zero frames)
    means = torch.nn.functional.pad(features, (0, 0, 0, 2)).unflatten(1, (3, 4)).mean(2)
    expected = torch.log_softmax(part.encoder(means.transpose(1, 2)).transpose(1, 2), -1)
    assert torch.allclose(part.pooled(features), expected, atol=1e-6)


def test_frame_rate_outputs_repeat_each_pooled_output_over_its_frames():
    part = CTCPart(dataclasses.replace(POOLED, feature_dim=8, num_classes=5))
    features = torch.randn(3, 10, 8)
    pooled, frames = part.pooled(features), part(features)
    assert pooled.shape == (3, 3, 6) and frames.shape == (3, 10, 6)
    assert torch.equal(frames, pooled.repeat_interleave(4, dim=1)[:, :10])


def test_pool_1_is_the_frame_rate_convolution():
    part = CTCPart(dataclasses.replace(ModelConfig(), feature_dim=8, num_classes=5))
    features = torch.randn(2, 7, 8)
    direct = torch.log_softmax(part.encoder(features.transpose(1, 2)).transpose(1, 2), -1)
    assert torch.equal(part(features), direct)


def test_a_songs_pooled_outputs_do_not_depend_on_its_batch(songs):
    """A song padded in a batch (zero frames past its end) reads like the song alone."""
    model = build_model(POOLED, seed=0, train_parts=PARTS)
    features, lengths, _, _ = Batches(songs).take(np.arange(len(songs)))
    together = model.ctc(features)
    for row, song in enumerate(songs):
        alone = model.ctc(torch.from_numpy(song.features).unsqueeze(0))[0]
        assert torch.allclose(together[row, : lengths[row]], alone, atol=1e-5)


def test_pool_below_1_is_refused():
    with pytest.raises(ValueError, match="ctc_pool must be at least 1"):
        build_model(ModelConfig(ctc_pool=0), seed=0, train_parts=PARTS)


def test_the_ctc_loss_counts_pooled_outputs():
    """A sequence that needs more outputs than ceil(T / pool) is impossible: loss 0
    (zero_infinity), while the same sequence at frame rate is possible."""
    config = dataclasses.replace(POOLED, feature_dim=8, num_classes=5)
    features, lengths = torch.randn(1, 8, 8), torch.tensor([8])
    targets, target_lengths = torch.tensor([[1, 2, 3]]), torch.tensor([3])  # 3 tokens, 2 outputs
    pooled = CTCPart(config).loss(features, lengths, targets, target_lengths)
    frame_rate = CTCPart(dataclasses.replace(config, ctc_pool=1)).loss(
        features, lengths, targets, target_lengths)
    assert pooled.item() == 0.0 and frame_rate.item() > 0


def sequence_error(pool: int) -> float:
    """Greedy CTC's edit distance per chord on unseen songs of long segments (24-32 frames)."""
    data = SyntheticConfig(n_train=64, n_eval=16, noise_sigma=0.3, min_frames=24, max_frames=32)
    dataset = make_dataset(data, seed=0)
    model = build_model(ModelConfig(ctc_pool=pool), seed=0, train_parts=["ctc"])
    fit(model, dataset.train, TrainConfig(steps=60, batch_size=16, lr=0.05), seed=0)
    outputs = predict(model, dataset.eval, parts=["ctc"])
    edits = sum(edit_distance(song.sequence.tolist(), out.ctc_sequence.tolist())
                for song, out in zip(dataset.eval, outputs, strict=True))
    return edits / sum(len(song.sequence) for song in dataset.eval)


def test_on_long_segments_a_pooled_ctc_head_decodes_the_chords_a_frame_rate_one_garbles():
    """The real tier's problem in small: at one output per 8 frames greedy decoding finds the
    chord sequence (measured: 0 errors), at frame rate it inserts and drops chords (0.64)."""
    assert sequence_error(8) < 0.1
    assert sequence_error(1) > 0.4


def test_greedy_reads_the_same_sequence_at_either_rate():
    rng = np.random.default_rng(0)
    pooled = np.log(rng.dirichlet(np.ones(6), size=9))
    frames = np.repeat(pooled, 4, axis=0)[:34]
    assert np.array_equal(ctc_greedy(pooled.argmax(1), 5), ctc_greedy(frames.argmax(1), 5))


def test_the_blank_penalty_lowers_only_the_blank():
    log_probs = np.log(np.array([[0.1, 0.3, 0.6], [0.5, 0.1, 0.4], [0.05, 0.05, 0.9]]))
    assert ctc_best_path(log_probs).tolist() == [2, 0, 2]
    assert ctc_best_path(log_probs, blank_penalty=1.0).tolist() == [1, 0, 2]  # 0.6/e < 0.3
    assert ctc_best_path(log_probs, blank_penalty=3.0).tolist() == [1, 0, 0]  # ties: first


def test_the_blank_penalty_moves_the_sequence_not_the_frames():
    rng = np.random.default_rng(1)
    log_probs = np.log(rng.dirichlet([1, 1, 1, 8], size=40))  # mostly blank
    plain = _outputs("s", log_probs, None, 40)
    penalised = _outputs("s", log_probs, None, 40, blank_penalty=2.0)
    assert np.array_equal(plain.ctc_frames, penalised.ctc_frames)
    assert np.array_equal(plain.joint_frames, penalised.joint_frames)
    assert len(penalised.ctc_sequence) > len(plain.ctc_sequence)


def test_predict_takes_the_penalty_from_the_model_config(songs):
    model = build_model(ModelConfig(ctc_blank_penalty=2.0), seed=0, train_parts=PARTS)
    for song, out in zip(songs[:4], predict(model, songs[:4], parts=["ctc"]), strict=True):
        log_probs = model.ctc(torch.from_numpy(song.features).unsqueeze(0))[0].detach().numpy()
        expected = ctc_greedy(ctc_best_path(log_probs, 2.0), model.config.num_classes)
        assert np.array_equal(out.ctc_sequence, expected)


def test_a_part_lr_moves_only_its_part_and_keeps_the_parts_decoupled(songs):
    config = TrainConfig(steps=4, batch_size=4)
    faster = dataclasses.replace(config, part_lr={"ctc": 0.05})
    runs = {}
    for name, train, parts in (("plain", config, PARTS), ("faster", faster, PARTS),
                               ("faster_ctc_only", faster, ("ctc",))):
        runs[name] = build_model(ModelConfig(), seed=2, train_parts=parts)
        fit(runs[name], songs, train, seed=2)
    state = {name: model.state_dict() for name, model in runs.items()}
    for key in state["plain"]:
        same = torch.equal(state["plain"][key], state["faster"][key])
        assert same == key.startswith("ar."), key  # only the CTC part trained differently
        if key.startswith("ctc."):  # combined's CTC part is still the CTC-only run's
            assert torch.equal(state["faster"][key], state["faster_ctc_only"][key]), key


def test_a_part_lr_for_an_unknown_part_is_refused(songs):
    model = build_model(ModelConfig(), seed=0, train_parts=PARTS)
    with pytest.raises(ValueError, match=r"part_lr names unknown part\(s\) \['decoder'\]"):
        fit(model, songs, TrainConfig(steps=1, part_lr={"decoder": 0.1}), seed=0)


class Interrupt(Exception):
    pass


def test_a_run_with_part_lr_resumes_from_its_checkpoint(songs, tmp_path):
    """The per-part rates are part of the checkpoint's signature and survive its reload."""
    config = TrainConfig(steps=4, batch_size=4, checkpoint_every=2, part_lr={"ctc": 0.02})
    straight = build_model(POOLED, seed=1, train_parts=PARTS)
    fit(straight, songs, config, seed=1)

    def interrupt(step: int, values: dict) -> None:
        if step == 3:
            raise Interrupt

    path = tmp_path / "run.pt"
    with pytest.raises(Interrupt):
        fit(build_model(POOLED, seed=1, train_parts=PARTS), songs,
            dataclasses.replace(config, log_every=1), seed=1, checkpoint=path, log=interrupt)
    resumed = build_model(POOLED, seed=1, train_parts=PARTS)
    fit(resumed, songs, config, seed=1, checkpoint=path)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
