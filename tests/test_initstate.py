"""harness.core.initstate with real torch modules: a seed gives one fingerprint whatever is
frozen, another seed or an extra layer is named, numpy mappings and bfloat16 hash, and the
module never imports torch or numpy itself."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from harness.core.initstate import combined, fingerprint_state, init_mismatches


class Net(nn.Module):
    """Two parts that share no parameter, like the chord model; `extra` adds a layer last."""

    def __init__(self, extra: bool = False) -> None:
        super().__init__()
        self.ctc = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
        self.ar = nn.ModuleDict({"embed": nn.Embedding(5, 4), "head": nn.Linear(4, 5)})
        if extra:
            self.extra = nn.Linear(3, 3)


def init(seed: int, **kwargs) -> Net:
    torch.manual_seed(seed)
    return Net(**kwargs)


def test_same_seed_same_fingerprint_of_every_parameter_and_buffer() -> None:
    model = init(0)
    fingerprint = fingerprint_state(model)
    assert fingerprint == fingerprint_state(init(0))
    assert list(fingerprint) == list(model.state_dict())  # buffers too: BatchNorm's statistics
    assert "ctc.1.running_mean" in fingerprint and "ctc.1.num_batches_tracked" in fingerprint
    assert all(len(value) == 16 for value in fingerprint.values())
    assert combined(fingerprint) == combined(fingerprint_state(init(0)))


def test_another_seed_differs_everywhere_it_draws() -> None:
    a, b = fingerprint_state(init(0)), fingerprint_state(init(1))
    assert combined(a) != combined(b)
    assert a["ctc.0.weight"] != b["ctc.0.weight"]
    assert a["ctc.1.weight"] == b["ctc.1.weight"]  # BatchNorm: ones, whatever the seed
    assert init_mismatches({"combined": a, "ctc_only": b}) == [
        "ctc_only differs from combined: ctc.0.weight, ctc.0.bias, ctc.2.weight (+4 more)"]


def test_freezing_does_not_change_the_fingerprint() -> None:
    frozen = init(0)
    frozen.ar.requires_grad_(False)
    frozen.ctc.eval()
    assert fingerprint_state(frozen) == fingerprint_state(init(0))


def test_a_buffer_that_differs_is_named() -> None:
    changed = init(0)
    changed.ctc[1].running_mean += 1
    assert init_mismatches({"a": fingerprint_state(init(0)),
                            "b": fingerprint_state(changed)}) == [
        "b differs from a: ctc.1.running_mean"]


def test_a_model_with_an_extra_layer_lists_the_extra_tensors() -> None:
    inits = {"combined": fingerprint_state(init(0)),
             "ar_only": fingerprint_state(init(0)),
             "bigger": fingerprint_state(init(0, extra=True))}
    assert init_mismatches(inits) == [
        "bigger differs from combined: extra.weight (only in bigger), extra.bias (only in bigger)"]
    assert init_mismatches({"bigger": inits["bigger"], "combined": inits["combined"]}) == [
        "combined differs from bigger: extra.weight (only in bigger), "
        "extra.bias (only in bigger)"]


def test_all_agree_or_nothing_to_compare() -> None:
    fingerprint = fingerprint_state(init(3))
    assert init_mismatches({"a": fingerprint, "b": dict(fingerprint), "c": fingerprint}) == []
    assert init_mismatches({"a": fingerprint}) == []
    assert init_mismatches({}) == []


def test_names_in_a_mismatch_and_the_count_of_the_rest() -> None:
    a = {f"t{i}": "0" for i in range(6)}
    b = {**a, "t1": "1", "t4": "1", "t5": "1", "new": "1"}
    del b["t0"]
    assert init_mismatches({"a": a, "b": b}) == [
        "b differs from a: t1, t4, t5 (+2 more)"]  # differing first, then one-sided
    assert init_mismatches({"a": a, "b": {**a, "t2": "x"}}) == ["b differs from a: t2"]


def test_a_numpy_mapping_hashes_like_the_tensors_of_its_values() -> None:
    state = {name: value.numpy() for name, value in init(0).state_dict().items()}
    assert fingerprint_state(state) == fingerprint_state(init(0))
    state["ar.head.bias"] = state["ar.head.bias"].copy()
    state["ar.head.bias"][0] += 1e-6
    assert init_mismatches({"a": fingerprint_state(init(0)), "b": fingerprint_state(state)}) == [
        "b differs from a: ar.head.bias"]


def test_dtype_shape_and_values_count_but_not_layout_or_byte_order() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)

    def one(value) -> str:
        return fingerprint_state({"x": value})["x"]

    assert one(x) == one(np.asfortranarray(x)) == one(x.astype(">f4")) == one(torch.tensor(x))
    assert one(torch.tensor(x).T.contiguous().T) == one(x)  # a non-contiguous tensor
    assert len({one(x), one(x.astype(np.float64)), one(x.reshape(3, 2)), one(x + 1)}) == 4
    assert one(np.float32(2.0)) == one(torch.tensor(2.0))  # 0-d


def test_bfloat16() -> None:
    values = torch.linspace(-1, 1, 7)
    half = values.bfloat16()

    def one(value) -> str:
        return fingerprint_state({"x": value})["x"]

    assert one(half) == one(values.bfloat16())
    assert one(half) != one(values) and one(half) != one(values.half())
    changed = half.clone()
    changed[3] += 0.5
    assert one(changed) != one(half)
    assert one(torch.tensor(1.5, dtype=torch.bfloat16)) != one(torch.tensor(2.5).bfloat16())
    assert fingerprint_state(init(0).to(torch.bfloat16)) == fingerprint_state(
        init(0).to(torch.bfloat16))


def test_nested_mappings_and_other_values() -> None:
    fingerprint = fingerprint_state({"enc": {"w": np.zeros(2)}, "step": 3})
    assert set(fingerprint) == {"enc.w", "step"}
    assert fingerprint["step"] != fingerprint_state({"step": 4})["step"]


def test_not_a_state() -> None:
    with pytest.raises(TypeError, match=r"nn\.Module or a mapping"):
        fingerprint_state([1, 2])


def test_importing_loads_neither_torch_nor_numpy() -> None:
    code = ("import sys; from harness.core.initstate import fingerprint_state\n"
            "assert fingerprint_state({'n': 1})\n"
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)
