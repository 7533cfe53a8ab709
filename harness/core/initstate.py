"""Did every variant of a seed start from the same model? Fingerprints of initial states.

An ablation compares variants that differ only in what they train or use: each variant of one
seed must start from the same freshly initialised model, with components frozen surgically,
never from a new model class or a different draw of the RNG. A run records a fingerprint of its
initial state, and the variants of each seed are compared:

    fingerprint_state(model)   # {"ar.embed.weight": "3f9c0b1d2e4a5b6c", ...}
    init_mismatches({"combined": fp_a, "ctc_only": fp_b})
    # ["ctc_only differs from combined: ar.embed.weight, ar.head.bias (+3 more)"]

A tensor's hash covers its dtype, shape and values (CPU bytes, C order, little-endian), never
its device, requires_grad or memory layout, so freezing a part leaves it unchanged and a
tensor hashes like the numpy array of its values. torch and numpy are never imported here: an
object can only be a tensor or an array if its library is already loaded.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator, Mapping
from typing import Any

HASH_CHARS = 16
SHOWN = 3  # tensors named per mismatch line


def fingerprint_state(model_or_state: Any) -> dict[str, str]:
    """{tensor name: short hash of its values (dtype, shape, bytes)} of an nn.Module's
    state_dict() (parameters and persistent buffers, regardless of requires_grad: variants
    freeze different parts), or of a mapping of name -> tensor/np.ndarray (nested mappings
    are joined with "."). Other values (a module's extra state) hash their type and repr."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model_or_state, torch.nn.Module):
        state = model_or_state.state_dict()
    elif isinstance(model_or_state, Mapping):
        state = model_or_state
    else:
        raise TypeError(f"fingerprint_state() takes an nn.Module or a mapping of name -> "
                        f"tensor/array, not {type(model_or_state).__name__}")
    return {name: _hash_value(value) for name, value in _flat(state)}


def combined(fingerprint: Mapping[str, str]) -> str:
    """One short hash of a whole fingerprint (order of the names does not matter)."""
    text = "".join(f"{name}\0{fingerprint[name]}\n" for name in sorted(fingerprint))
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def init_mismatches(inits: Mapping[str, Mapping[str, str]]) -> list[str]:
    """Given variant -> fingerprint for ONE seed (variants that recorded none are absent), one
    line per variant that differs from the first variant's, naming up to 3 tensors that differ
    or that only one of the two has (e.g. "ctc_only differs from combined: ar.embed.weight,
    ar.head.bias (+3 more)"); [] when all agree."""
    if not inits:
        return []
    variants = iter(inits.items())
    reference, expected = next(variants)
    lines = []
    for variant, found in variants:
        names = [name for name in expected if name in found and expected[name] != found[name]]
        names += [f"{name} (only in {reference})" for name in expected if name not in found]
        names += [f"{name} (only in {variant})" for name in found if name not in expected]
        if names:
            more = f" (+{len(names) - SHOWN} more)" if len(names) > SHOWN else ""
            lines.append(f"{variant} differs from {reference}: {', '.join(names[:SHOWN])}{more}")
    return lines


def _flat(state: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, value in state.items():
        if isinstance(value, Mapping):
            yield from _flat(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


def _hash_value(value: Any) -> str:
    torch, numpy = sys.modules.get("torch"), sys.modules.get("numpy")
    if torch is not None and isinstance(value, torch.Tensor):
        dtype, shape, data = _tensor_bytes(torch, value)
    elif numpy is not None and isinstance(value, numpy.ndarray | numpy.generic):
        dtype, shape, data = _array_bytes(numpy, numpy.asarray(value))
    else:
        dtype, shape, data = type(value).__qualname__, (), repr(value).encode()
    digest = hashlib.sha256(f"{dtype}{list(shape)}".encode())
    digest.update(data)
    return digest.hexdigest()[:HASH_CHARS]


def _array_bytes(numpy: Any, array: Any) -> tuple[str, tuple[int, ...], Any]:
    """The array's values as little-endian C-order bytes (a view, not a copy when it can)."""
    if array.dtype.hasobject:
        raise TypeError("an array of Python objects has no bytes to hash")
    data = numpy.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return array.dtype.name, array.shape, data.reshape(-1).view(numpy.uint8)


def _tensor_bytes(torch: Any, tensor: Any) -> tuple[str, tuple[int, ...], Any]:
    """A tensor's values on the CPU; dtypes numpy lacks (bfloat16, float8) as raw bytes."""
    tensor = tensor.detach()
    if tensor.layout != torch.strided:
        tensor = tensor.to_dense()
    tensor = tensor.cpu().resolve_conj().resolve_neg().contiguous()
    dtype, shape = str(tensor.dtype).removeprefix("torch."), tuple(tensor.shape)
    try:
        array = tensor.numpy()
    except TypeError:  # no numpy dtype: its bytes, swapped per element on a big-endian host
        raw = tensor.reshape(-1).view(torch.uint8).numpy()
        if sys.byteorder == "big" and tensor.element_size() > 1:
            raw = raw.reshape(-1, tensor.element_size())[:, ::-1].copy()
        return dtype, shape, raw.reshape(-1)
    numpy = sys.modules["numpy"]  # loaded by tensor.numpy()
    return dtype, shape, _array_bytes(numpy, array)[2]
