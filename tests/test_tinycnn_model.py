"""TinyCNN: under 10k parameters, one init for every variant, ablated parts truly unused."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from harness.core.initstate import fingerprint_state
from harness.tinycnn.model import ModelConfig, TinyCNN, parameter_count
from harness.tinycnn.train import TrainConfig, evaluate, fit

VARIANTS = {"baseline": {}, "narrow": {"width": 2}, "shallow": {"depth": 1},
            "no_bn": {"batchnorm": False}, "dropout": {"dropout": 0.3}}


def build(seed: int = 0, **overrides: object) -> TinyCNN:
    torch.manual_seed(seed)
    return TinyCNN(ModelConfig(**overrides))  # type: ignore[arg-type]


def test_the_built_network_has_fewer_than_10k_parameters():
    assert parameter_count(build()) < 10_000
    assert parameter_count(build(channels=12)) < 10_000


def test_every_variant_starts_from_the_same_weights():
    fingerprints = {name: fingerprint_state(build(3, **o)) for name, o in VARIANTS.items()}
    assert all(fp == fingerprints["baseline"] for fp in fingerprints.values())


def test_used_parameters_count_only_the_used_channels_and_layers():
    model = build()
    assert model.used_parameters() == sum(
        p.numel() for name, p in model.named_parameters()
        if not name.startswith(("convs.2", "norms.2")))  # depth 2 of 3 blocks: all but the third
    narrow = build(width=2)
    # conv1 1->2 (+BN), conv2 2->4 (+BN), fc 4->10
    assert narrow.used_parameters() == (2 * 9 + 2 + 4) + (4 * 2 * 9 + 4 + 8) + (10 * 4 + 10)
    assert build(batchnorm=False).used_parameters() == model.used_parameters() - 2 * (8 + 16)


def backward(model: TinyCNN) -> TinyCNN:
    x, y = torch.randn(16, 1, 8, 8), torch.randint(10, (16,))
    F.cross_entropy(model(x), y).backward()
    return model


def test_unused_channels_get_no_gradient():
    model = backward(build(width=2))
    assert model.convs[0].weight.grad[:2].any()
    assert not model.convs[0].weight.grad[2:].any()
    assert not model.convs[1].weight.grad[4:].any()
    assert not model.fc.weight.grad[:, 4:].any()


def test_unused_blocks_get_no_gradient():
    model = backward(build(depth=1))
    assert model.convs[1].weight.grad is None and model.convs[2].weight.grad is None
    assert model.fc.weight.grad[:, :8].any()
    assert not model.fc.weight.grad[:, 8:].any()


def test_effective_weights_are_the_used_submatrices():
    weights = build(width=2).effective_weights()
    assert {k: tuple(v.shape) for k, v in weights.items()} == {
        "conv1": (2, 9), "conv2": (4, 18), "fc": (10, 4)}
    assert set(build(depth=1).effective_weights()) == {"conv1", "fc"}
    assert tuple(build(depth=3).effective_weights()["conv3"].shape) == (16, 144)


@pytest.mark.parametrize("config", [{"width": 0}, {"width": 9}, {"depth": 4}, {"dropout": 1.0}])
def test_config_out_of_range_is_refused(config):
    with pytest.raises(ValueError):
        ModelConfig(**config)


def test_fit_is_deterministic_logs_its_curve_and_decay_shrinks_the_weights():
    x = torch.randn(64, 1, 8, 8).numpy()
    y = torch.randint(10, (64,)).numpy()
    logged: list[tuple[int, float]] = []
    config = TrainConfig(steps=12, batch_size=16, log_every=5)
    runs = []
    for decay, log in ((0.0, lambda s, v: logged.append((s, v))), (0.0, None), (5.0, None)):
        model = build(1)
        loss = fit(model, x, y, TrainConfig(**{**config.__dict__, "weight_decay": decay}),
                   seed=2, log=log)
        runs.append((model, loss))
    assert [s for s, _ in logged] == [5, 10, 12]
    assert runs[0][1] == runs[1][1]
    assert torch.equal(runs[0][0].convs[0].weight, runs[1][0].convs[0].weight)
    assert runs[2][0].convs[0].weight.norm() < runs[0][0].convs[0].weight.norm()
    scores = evaluate(runs[0][0], x, y)
    assert set(scores) == {"acc", "loss"} and 0 <= scores["acc"] <= 1
    assert evaluate(runs[0][0], x, y, transpose=True) != scores
