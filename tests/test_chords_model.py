"""ChordModel and fit(): surgical freezing, no shared weights, bitwise reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.chords.model import ARPart, ChordModel, ModelConfig, build_model
from harness.chords.synthetic import SyntheticConfig, make_dataset
from harness.chords.train import TrainConfig, fit, trained_parts

CONFIG = ModelConfig()
TRAIN = TrainConfig(steps=6, batch_size=4, log_every=2)
VARIANTS = {"ctc_only": ("ctc",), "ar_only": ("ar",), "combined": ("ctc", "ar")}


@pytest.fixture(scope="module")
def songs():
    return make_dataset(SyntheticConfig(n_train=12, n_eval=0), seed=3).train


@pytest.fixture(scope="module")
def trained(songs):
    """Each variant trained once from seed 7: (model, returned losses, logged calls)."""
    runs = {}
    for name, parts in VARIANTS.items():
        model = build_model(CONFIG, seed=7, train_parts=parts)
        logged = []
        losses = fit(model, songs, TRAIN, seed=7, log=lambda s, v, out=logged: out.append((s, v)))
        runs[name] = model, losses, logged
    return runs


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_unknown_part_is_refused_naming_the_valid_ones():
    with pytest.raises(ValueError, match=r"\['ctc', 'ar'\]"):
        build_model(CONFIG, seed=0, train_parts=["ctc", "decoder"])


def test_parts_share_no_parameter():
    model = build_model(CONFIG, seed=0, train_parts=["ctc", "ar"])
    names = {part: {n for n, _ in getattr(model, part).named_parameters()} for part in model.PARTS}
    storages = {
        part: {p.untyped_storage().data_ptr() for p in getattr(model, part).parameters()}
        for part in model.PARTS
    }
    assert names["ctc"] and names["ar"]
    assert not storages["ctc"] & storages["ar"]
    # Every parameter of the model belongs to exactly one part.
    assert sum(len(n) for n in names.values()) == len(list(model.parameters()))
    assert {n.split(".")[0] for n, _ in model.named_parameters()} == set(ChordModel.PARTS)


def test_same_seed_same_init_whatever_the_parts():
    inits = [weights(build_model(CONFIG, seed=5, train_parts=p)) for p in VARIANTS.values()]
    assert_bitwise_equal(inits[0], inits[1])
    assert_bitwise_equal(inits[0], inits[2])
    other = weights(build_model(CONFIG, seed=6, train_parts=["ctc"]))
    assert not torch.equal(inits[0]["ctc.encoder.weight"], other["ctc.encoder.weight"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_freezing_is_surgical(variant):
    model = build_model(CONFIG, seed=0, train_parts=VARIANTS[variant])
    assert trained_parts(model) == list(VARIANTS[variant])
    for part in model.PARTS:
        flags = {p.requires_grad for p in getattr(model, part).parameters()}
        assert flags == {part in VARIANTS[variant]}


@pytest.mark.parametrize("variant", ["ctc_only", "ar_only"])
def test_frozen_part_is_bitwise_unchanged_and_trained_part_moves(trained, variant):
    model, _, _ = trained[variant]
    init = build_model(CONFIG, seed=7, train_parts=[])
    (part,) = VARIANTS[variant]
    frozen = "ar" if part == "ctc" else "ctc"
    assert_bitwise_equal(weights(getattr(model, frozen)), weights(getattr(init, frozen)))
    moved = weights(getattr(model, part))
    assert all(not torch.equal(moved[n], p) for n, p in weights(getattr(init, part)).items())


def test_combined_equals_each_part_trained_alone(trained):
    """Separate optimizers, no shared weight: training together changes nothing per part."""
    combined, combined_losses, _ = trained["combined"]
    for variant, (part,) in [("ctc_only", ("ctc",)), ("ar_only", ("ar",))]:
        alone, losses, _ = trained[variant]
        assert_bitwise_equal(weights(getattr(combined, part)), weights(getattr(alone, part)))
        assert combined_losses[f"loss/{part}"] == losses[f"loss/{part}"]


def test_fit_is_deterministic(songs, trained):
    model, losses, _ = trained["combined"]
    again = build_model(CONFIG, seed=7, train_parts=["ctc", "ar"])
    assert fit(again, songs, TRAIN, seed=7) == losses
    assert_bitwise_equal(weights(again), weights(model))


def test_fit_logs_and_returns_the_trained_parts_losses(trained):
    _, losses, logged = trained["ar_only"]
    assert [step for step, _ in logged] == [2, 4, 6]
    assert all(set(values) == {"loss/ar"} for _, values in logged)
    assert logged[-1][1] == losses
    _, losses, _ = trained["combined"]
    assert set(losses) == {"loss/ctc", "loss/ar"}
    assert all(v > 0 and v == v for v in losses.values())  # positive, not NaN


def test_fit_with_nothing_to_train_does_nothing(songs):
    model = build_model(CONFIG, seed=1, train_parts=[])
    before = weights(model)
    assert fit(model, songs, TRAIN, seed=1) == {}
    assert_bitwise_equal(weights(model), before)


def test_both_parts_learn():
    """On clean songs, a few steps at a high rate cut both losses (the CTC one off its plateau)."""
    clean = make_dataset(SyntheticConfig(n_train=8, n_eval=0, noise_sigma=0.1), seed=0).train
    logged = []
    model = build_model(CONFIG, seed=0, train_parts=["ctc", "ar"])
    config = TrainConfig(steps=30, batch_size=8, lr=0.05, log_every=1)
    fit(model, clean, config, seed=0, log=lambda step, values: logged.append(values))
    for key in ("loss/ctc", "loss/ar"):
        assert logged[-1][key] < logged[0][key] / 4, [values[key] for values in logged]


def test_segment_start_recursion_matches_its_definition():
    """P(next starts at t) = leave(t) * sum over s < t of P(start s) * stay(s+1 .. t-1)."""
    rng = np.random.default_rng(0)
    positions = 7
    start = rng.dirichlet(np.ones(positions))
    stay = rng.uniform(0.05, 0.95, size=positions)
    leave = rng.uniform(0.05, 0.95, size=positions)
    expected = [
        leave[t] * sum(start[s] * np.prod(stay[s + 1 : t]) for s in range(t))
        for t in range(positions)
    ]
    start, stay, leave = (
        torch.tensor(np.log([x]), dtype=torch.float32) for x in (start, stay, leave)
    )
    got = ARPart.advance(start, stay.cumsum(1), leave).exp()[0]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("stay_bias", [None, -40.0])
def test_ar_loss_and_gradients_stay_finite_on_long_songs(stay_bias):
    """Real songs have thousands of frames, padded beside short ones; sums of log stays over
    them reach -1e5 (all the more when every frame ends its segment): float32 must cope."""
    torch.manual_seed(0)
    part = ARPart(CONFIG)
    if stay_bias is not None:
        with torch.no_grad():
            part.membership[1] = stay_bias
    lengths, target_lengths = torch.tensor([6000, 50]), torch.tensor([40, 5])
    features = torch.randn(2, 6000, CONFIG.feature_dim)
    targets = torch.randint(1, CONFIG.num_classes, (2, 40))
    loss = part.loss(features, lengths, targets, target_lengths)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in part.parameters())
