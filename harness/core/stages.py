"""Stages: intermediate results that several runs share, each computed once per session.

A run asks for a stage (a trained model, embeddings, a preprocessed dataset) by name and by
the part of its config the stage depends on. Runs whose dependencies agree get the same stage:
a temperature sweep trains one model per (variant, seed) when the training stage ignores the
temperature; an embedder x classifier grid embeds once per (embedder, seed) when the embedding
stage depends only on the embedder.

A stage is stored like a run (a row of the store's `runs` table, kind "stage", claimed before
it is computed, so xdist workers compute it once) and its value in a folder beside the store,
written without pickle and read back without executing anything (`save`/`load`): JSON for
the structure, numpy's `.npz` (allow_pickle=False) for arrays, torch's weights-only format for
tensors.

    state = run.stage("train", lambda: train(run.config), ignore=["temperature"])
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.study import Knobs, format_value

VALUE_FILE = "value.json"
ARRAYS_FILE = "arrays.npz"
TENSORS_FILE = "tensors.pt"
ANY_SEED = -1  # the seed column of a stage that does not depend on the seed


class StageError(ValueError):
    """A stage is asked for wrongly, or its value cannot be stored; the message says the fix."""


@dataclass(frozen=True)
class StageSpec:
    """One stage: its name, the tier and the config subset it depends on, and the seed (or
    ANY_SEED). The variant's name is not part of it: variants are their config overrides, so
    two variants that agree on what a stage depends on share it."""

    study: str
    tier: str
    name: str
    seed: int
    config: Mapping[str, Any] = field(compare=False, hash=False)  # what it depends on
    shown: Knobs = ()  # the depended-on knob values, for the id

    kind = "stage"

    @property
    def knobs(self) -> Knobs:
        """None: a stage's identity is its config subset, not a knob setting."""
        return ()

    @property
    def variant(self) -> str:
        return self.name

    @property
    def key(self) -> str:
        return json.dumps(["stage", self.study, self.tier, self.name, self.config, self.seed],
                          sort_keys=True)

    @property
    def id(self) -> str:
        """`train-synthetic-seed1-3fa9c2d1`, `embed-synthetic-embedder=bow-seed0-...`: the
        digest tells apart stages of one name whose dependencies differ beyond the knobs."""
        digest = hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()
        parts = [self.name, self.tier, *(f"{k}={format_value(v)}" for k, v in self.shown)]
        if self.seed != ANY_SEED:
            parts.append(f"seed{self.seed}")
        return "-".join([*parts, digest[:8]])


def depends_on(config: Mapping[str, Any], *, only: Sequence[str] | None = None,
               ignore: Sequence[str] = ()) -> dict[str, Any]:
    """The part of a run's `config` a stage depends on: the keys in `only` (paths such as
    "model/width" reach into nested dicts), or everything but the keys in `ignore`.

    A key that is not in the config is an error: a misspelt name must not silently make a
    stage depend on everything (or share it across settings it differs in).
    """
    if only is not None and ignore:
        raise StageError("give only= (what the stage depends on) or ignore= (what it does not "
                         "depend on), not both")
    for name, paths in (("only", only or ()), ("ignore", ignore)):
        if isinstance(paths, str):
            raise StageError(f"{name}= takes a list of config keys, e.g. {name}=[{paths!r}]")
        for path in paths:
            if not _has(config, path):
                raise StageError(f"{name}= names {path!r}, which the run's config does not "
                                 f"have (its keys: {', '.join(map(str, config)) or 'none'})")
    if only is not None:
        picked: dict[str, Any] = {}
        for path in only:
            _put(picked, path, _get(config, path))
        return _plain(picked)
    kept = json.loads(json.dumps(_plain(dict(config))))
    for path in ignore:
        _drop(kept, path)
    return kept


def _parts(path: str) -> list[str]:
    return [part for part in str(path).split("/") if part]


def _has(config: Mapping[str, Any], path: str) -> bool:
    node: Any = config
    for part in _parts(path):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _get(config: Mapping[str, Any], path: str) -> Any:
    node: Any = config
    for part in _parts(path):
        node = node[part]
    return node


def _put(target: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = _parts(path)
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value


def _drop(target: dict[str, Any], path: str) -> None:
    *parents, last = _parts(path)
    for part in parents:
        target = target[part]
    del target[last]


def _plain(value: Any) -> Any:
    """JSON-comparable config values; a value JSON cannot hold is refused by name."""
    try:
        return json.loads(json.dumps(value, sort_keys=True))
    except TypeError as exc:
        raise StageError(f"a stage's dependencies must be plain config values: {exc}") from None


# -- values: stored without pickle -----------------------------------------------------------

_ARRAY, _TENSOR, _TUPLE, _DICT, _FLOAT = "__ndarray__", "__tensor__", "__tuple__", "__dict__", \
    "__float__"
_MARKERS = {_ARRAY, _TENSOR, _TUPLE, _DICT, _FLOAT}
SUPPORTED = ("dicts with str keys, lists, tuples, str, int, float, bool, None, numpy arrays and "
             "torch tensors")


class _Encoder:
    """Turns a value into a JSON skeleton plus the arrays and tensors it holds."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.arrays: dict[str, Any] = {}
        self.tensors: dict[str, Any] = {}

    def encode(self, value: Any, where: str = "value") -> Any:
        if value is None or isinstance(value, bool | int | str):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {_FLOAT: repr(value)}
        if isinstance(value, list | tuple):
            items = [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
            return items if isinstance(value, list) else {_TUPLE: items}
        if isinstance(value, Mapping):
            bad = [k for k in value if not isinstance(k, str)]
            if bad:
                raise StageError(f"stage {self.stage!r}: {where} has a key {bad[0]!r} that is "
                                 f"not a str; a stage's value is built of {SUPPORTED}")
            encoded = {k: self.encode(v, f"{where}[{k!r}]") for k, v in value.items()}
            return {_DICT: encoded} if set(value) & _MARKERS else encoded
        numpy = sys.modules.get("numpy")
        if numpy is not None and isinstance(value, numpy.generic):
            return self.encode(value.item(), where)
        if numpy is not None and isinstance(value, numpy.ndarray):
            if value.dtype.hasobject:
                raise StageError(f"stage {self.stage!r}: {where} is a numpy array of Python "
                                 "objects, which cannot be stored without pickle")
            name = f"a{len(self.arrays)}"
            self.arrays[name] = value
            return {_ARRAY: name}
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(value, torch.Tensor):
            name = f"t{len(self.tensors)}"
            self.tensors[name] = value.detach().cpu().contiguous()
            return {_TENSOR: name}
        hint = (" (return model.state_dict() and load it into a fresh model)"
                if torch is not None and isinstance(value, torch.nn.Module) else "")
        raise StageError(f"stage {self.stage!r}: {where} is a {type(value).__name__}, which "
                         f"cannot be stored without pickle{hint}. A stage's value is built of "
                         f"{SUPPORTED}; for anything else pass save=(value, folder) and "
                         f"load=(folder) to run.stage")


def _decode(node: Any, arrays: Mapping[str, Any], tensors: Mapping[str, Any]) -> Any:
    if isinstance(node, list):
        return [_decode(v, arrays, tensors) for v in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (marker, inner), = node.items()
        if marker == _ARRAY:
            return arrays[inner]
        if marker == _TENSOR:
            return tensors[inner]
        if marker == _TUPLE:
            return tuple(_decode(v, arrays, tensors) for v in inner)
        if marker == _FLOAT:
            return float(inner)
        if marker == _DICT:
            return {k: _decode(v, arrays, tensors) for k, v in inner.items()}
    return {k: _decode(v, arrays, tensors) for k, v in node.items()}


def save(value: Any, folder: Path, stage: str) -> None:
    """Write `value` into `folder` (created), without pickle."""
    encoder = _Encoder(stage)
    skeleton = encoder.encode(value)
    folder.mkdir(parents=True, exist_ok=True)
    if encoder.arrays:
        import numpy

        numpy.savez(folder / ARRAYS_FILE, **encoder.arrays)
    if encoder.tensors:
        import torch

        torch.save(encoder.tensors, folder / TENSORS_FILE)
    (folder / VALUE_FILE).write_text(json.dumps(skeleton, allow_nan=False))


def load(folder: Path) -> Any:
    """Read a value `save` wrote; nothing read executes code (no pickle, weights-only torch)."""
    arrays: dict[str, Any] = {}
    tensors: dict[str, Any] = {}
    if (folder / ARRAYS_FILE).exists():
        import numpy

        with numpy.load(folder / ARRAYS_FILE, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    if (folder / TENSORS_FILE).exists():
        import torch

        tensors = torch.load(folder / TENSORS_FILE, weights_only=True, map_location="cpu")
    return _decode(json.loads((folder / VALUE_FILE).read_text()), arrays, tensors)


def replace_folder(folder: Path, write: Any) -> None:
    """Call `write(tmp)` to fill a fresh folder, then put it at `folder` in one rename (a crash
    never leaves a half-written value where a finished one is looked for)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.mkdir()
        write(tmp)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.old")
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
