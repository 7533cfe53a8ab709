"""Training a SignModel: freezing, what EMA leaves alone, checkpoints and resume, pretraining."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from harness.signs.checkpoint import CheckpointError, load
from harness.signs.corpus import CorpusConfig, make_corpus
from harness.signs.evaluation import score
from harness.signs.lexicon import LexiconConfig, make_lexicon
from harness.signs.model import ModelConfig, build_model
from harness.signs.pretrain import PretrainConfig, pretrain_encoder
from harness.signs.train import TrainConfig, fit

LEXICON = LexiconConfig(words=32, text_dim=8, sign_dim=3, frames=3)
MODEL = ModelConfig(text_dim=8, sign_dim=3, encoder_hidden=8, decoder_hidden=8, frames=3)
TRAIN = TrainConfig(steps=8, batch_size=4, lr=0.5, clip=1.0, ema_decay=0.9, log_every=1,
                    checkpoint_every=3)
PRETRAIN = PretrainConfig(steps=6, log_every=1, checkpoint_every=2)


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def world():
    lexicon = make_lexicon(LEXICON, seed=3)
    return lexicon, make_corpus(lexicon, CorpusConfig(train=24, eval=8, words=2), seed=3)


def fresh(freeze: bool = True, seed: int = 5):
    torch.manual_seed(seed)
    return build_model(MODEL, freeze_encoder=freeze)


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def interrupt_at(step: int):
    def log(at: int, values: dict) -> None:
        if at == step:
            raise Interrupt

    return log


def test_variants_start_from_one_init_whatever_trains(world):
    assert same(state(fresh(freeze=True)), state(fresh(freeze=False)))


def test_a_frozen_encoder_stays_bitwise_the_pretrained_one(world):
    lexicon, corpus = world
    frozen, tuned = fresh(freeze=True), fresh(freeze=False)
    encoder = state(frozen.encoder)
    fit(frozen, lexicon.text, corpus.train, TRAIN, seed=1)
    fit(tuned, lexicon.text, corpus.train, TRAIN, seed=1)
    assert same(state(frozen.encoder), encoder)
    assert not same(state(tuned.encoder), encoder)
    assert not same(state(frozen.decoder), state(fresh().decoder))


def test_ema_changes_the_scores_but_not_the_raw_weights_or_the_training_loss(world):
    lexicon, corpus = world
    with_ema, without = fresh(), fresh()
    a = fit(with_ema, lexicon.text, corpus.train, TRAIN, seed=1)
    b = fit(without, lexicon.text, corpus.train, dataclasses.replace(TRAIN, ema_decay=None),
            seed=1)
    assert same(state(with_ema), state(without))
    assert a.loss == b.loss
    assert (score(with_ema, a, lexicon.text, corpus.eval)["pose"]
            != score(without, b, lexicon.text, corpus.eval)["pose"])
    assert same(state(with_ema), state(without))  # scoring swapped the average back out


def test_an_interrupted_run_resumes_and_ends_bitwise_like_a_straight_one(world, tmp_path):
    lexicon, corpus = world
    straight = fresh(freeze=False)
    expected = fit(straight, lexicon.text, corpus.train, TRAIN, seed=1)
    path = tmp_path / "run.pt"
    with pytest.raises(Interrupt):  # after the checkpoint at step 6, before step 8's
        fit(fresh(freeze=False), lexicon.text, corpus.train, TRAIN, seed=1,
            log=interrupt_at(7), checkpoint=path)
    steps: list[int] = []
    resumed = fresh(freeze=False)
    result = fit(resumed, lexicon.text, corpus.train, TRAIN, seed=1, checkpoint=path,
                 log=lambda step, values: steps.append(step))
    assert steps == [7, 8]
    assert same(state(resumed), state(straight))
    assert result.loss == expected.loss
    assert all(torch.equal(a, b) for a, b in zip(result.ema.shadow, expected.ema.shadow,
                                                 strict=True))


def test_a_checkpoint_of_another_run_is_not_resumed_but_trained_over(world, tmp_path):
    """Refused, never failed: a rerun whose start differs (other torch threads draw other
    floats in the pretraining stage) trains from the start and replaces the file."""
    lexicon, corpus = world
    path = tmp_path / "run.pt"
    fit(fresh(), lexicon.text, corpus.train, TRAIN, seed=1, checkpoint=path)
    straight = fit(fresh(), lexicon.text, corpus.train, TRAIN, seed=2)
    with pytest.warns(UserWarning, match=r"another run \(seed: checkpoint 1, this run 2\)"):
        other = fit(fresh(), lexicon.text, corpus.train, TRAIN, seed=2, checkpoint=path)
    assert other.loss == straight.loss
    with pytest.warns(UserWarning, match="ema_decay"):
        fit(fresh(), lexicon.text, corpus.train, dataclasses.replace(TRAIN, ema_decay=0.5),
            seed=2, checkpoint=path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable"):
        load(path, {})
    with pytest.warns(UserWarning, match="unreadable"):
        fit(fresh(), lexicon.text, corpus.train, TRAIN, seed=1, checkpoint=path)


def test_pretraining_learns_the_text_view_and_resumes_bitwise(world, tmp_path):
    lexicon, _ = world
    straight = pretrain_encoder(lexicon, MODEL, PRETRAIN, seed=4)
    path = tmp_path / "pretrain.pt"
    with pytest.raises(Interrupt):
        pretrain_encoder(lexicon, MODEL, PRETRAIN, seed=4, log=interrupt_at(5),
                         checkpoint=path)
    resumed = pretrain_encoder(lexicon, MODEL, PRETRAIN, seed=4, checkpoint=path)
    assert resumed["loss"] == straight["loss"]
    assert same(resumed["weights"], straight["weights"])
    longer = pretrain_encoder(lexicon, MODEL, dataclasses.replace(PRETRAIN, steps=200), seed=4)
    assert longer["loss"] < 0.1 * straight["loss"]
