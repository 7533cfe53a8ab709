"""harness.chords.optim.Adam: bitwise torch.optim.Adam on CPU, and its state round-trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.chords.model import ModelConfig, build_model
from harness.chords.optim import Adam
from harness.chords.synthetic import SyntheticConfig, make_dataset
from harness.chords.train import Batches


@pytest.fixture(scope="module")
def batches():
    return Batches(make_dataset(SyntheticConfig(n_train=16, n_eval=0), seed=5).train)


def train(optimizer_class, batches, steps: int, *, start=None, lr: float = 0.01):
    """The fit loop's arithmetic (loss, backward, per-part clipping, step) for both parts."""
    model = build_model(ModelConfig(), seed=5, train_parts=["ctc", "ar"])
    optimizer = optimizer_class(model.parameters(), lr=lr)
    rng = np.random.default_rng(5)
    if start is not None:
        model.load_state_dict(start[0])
        optimizer.load_state_dict(start[1])
        rng.bit_generator.state = start[2]
    for _ in range(steps):
        batch = batches.take(rng.choice(16, size=8, replace=False))
        optimizer.zero_grad()
        (model.ctc.loss(*batch) + model.ar.loss(*batch)).backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()), 1.0)
        optimizer.step()
    return model, optimizer, rng


@pytest.mark.parametrize("lr", [0.01, 0.001])
def test_the_same_weights_as_torch_adam_bit_for_bit(batches, lr):
    ours, _, _ = train(Adam, batches, 12, lr=lr)
    theirs, _, _ = train(torch.optim.Adam, batches, 12, lr=lr)
    for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name


def test_state_dict_resumes_bitwise(batches):
    straight, _, _ = train(Adam, batches, 10)
    model, optimizer, rng = train(Adam, batches, 4)
    saved = ({k: v.clone() for k, v in model.state_dict().items()}, optimizer.state_dict(),
             rng.bit_generator.state)
    optimizer.exp_avg[0].add_(1.0)  # the saved state must be a copy, not a view
    resumed, _, _ = train(Adam, batches, 6, start=saved)
    for name, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_a_parameter_without_gradient_takes_no_step():
    used, unused = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    optimizer = Adam([used, unused], lr=0.1)
    (used * 2).sum().backward()
    optimizer.step()
    assert optimizer.steps == [1, 0]
    assert torch.equal(unused, torch.ones(2)) and not torch.equal(used, torch.ones(2))


def test_loading_state_for_other_parameters_is_refused():
    state = Adam([torch.nn.Parameter(torch.ones(2))], lr=0.1).state_dict()
    with pytest.raises(ValueError, match="state for 1 parameters, this optimizer has 2"):
        Adam([torch.nn.Parameter(torch.ones(2))] * 2, lr=0.1).load_state_dict(state)
