"""EMA of weights: the update rule, what it averages, swapping averaged weights in and out."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.signs.ema import EMA


def model() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    net[0].requires_grad_(False)  # frozen: not averaged
    return net


def set_trainable(net: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in net.parameters():
            if p.requires_grad:
                p.fill_(value)


def test_one_update_is_decay_times_average_plus_rest_times_weight():
    net = model()
    ema = EMA(net, decay=0.9)
    before = [s.clone() for s in ema.shadow]
    set_trainable(net, 1.0)
    ema.update()
    for old, new in zip(before, ema.shadow, strict=True):
        assert torch.allclose(new, 0.9 * old + 0.1)
    assert ema.updates == 1


def test_constant_weights_are_approached_geometrically():
    net = model()
    ema = EMA(net, decay=0.8)
    start = [s.clone() for s in ema.shadow]
    set_trainable(net, 2.0)
    for _ in range(5):
        ema.update()
    for first, now in zip(start, ema.shadow, strict=True):
        assert torch.allclose(now, 2.0 + 0.8**5 * (first - 2.0))


def test_only_trainable_parameters_are_averaged():
    net = model()
    ema = EMA(net, decay=0.5)
    assert len(ema.shadow) == 2  # the second layer's weight and bias
    assert all(p.requires_grad for p in ema.params)


def test_averaged_swaps_the_average_in_and_the_raw_weights_back():
    net = model()
    ema = EMA(net, decay=0.5)
    set_trainable(net, 4.0)
    ema.update()
    raw = [p.detach().clone() for p in net.parameters()]
    with ema.averaged():
        for param, shadow in zip(ema.params, ema.shadow, strict=True):
            assert torch.equal(param, shadow)
    with pytest.raises(RuntimeError), ema.averaged():
        raise RuntimeError("evaluation failed")
    for param, saved in zip(net.parameters(), raw, strict=True):
        assert torch.equal(param, saved)


def test_state_round_trip_and_mismatch():
    net = model()
    ema = EMA(net, decay=0.9)
    set_trainable(net, 3.0)
    ema.update()
    other = EMA(model(), decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1
    assert all(torch.equal(a, b) for a, b in zip(other.shadow, ema.shadow, strict=True))
    with pytest.raises(ValueError, match="decay"):
        EMA(model(), decay=0.5).load_state_dict(ema.state_dict())


@pytest.mark.parametrize("decay", [1.0, -0.1, 1.5])
def test_decay_outside_zero_one_is_refused(decay):
    with pytest.raises(ValueError, match="weight of the old average"):
        EMA(model(), decay=decay)
