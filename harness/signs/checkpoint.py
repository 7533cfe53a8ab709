"""Training checkpoints: written atomically, resumed only by the run that wrote them.

A checkpoint holds a *signature* (plain values: everything that shapes the trajectory, such as
the config and the seed) beside the state. Resuming a checkpoint whose signature differs would
silently splice two experiments together, so ``load`` refuses it and says which entries differ.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed: unreadable, or written by another run."""


def save(path: Path, signature: dict[str, Any], state: dict[str, Any]) -> None:
    """Write ``state`` with ``signature``; a crash mid-write leaves the previous file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"signature": signature, "state": state}, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path, signature: dict[str, Any]) -> dict[str, Any] | None:
    """The state saved at ``path`` for this ``signature``; None when there is no file."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        payload = torch.load(path, weights_only=True)
        theirs = payload["signature"]
    except Exception as exc:
        raise CheckpointError(f"cannot resume from {path}: unreadable ({exc!r}); delete it to "
                              "start afresh") from exc
    if theirs != signature:
        differ = sorted(k for k in signature.keys() | theirs.keys()
                        if theirs.get(k) != signature.get(k))
        details = "; ".join(f"{k}: checkpoint {theirs.get(k)!r}, this run {signature.get(k)!r}"
                            for k in differ)
        raise CheckpointError(f"checkpoint {path} was written by another run ({details}); "
                              "delete it or use another path")
    return payload["state"]


def resume(path: Path | None, signature: dict[str, Any]) -> dict[str, Any] | None:
    """The saved state to continue from, or None to start afresh, also when the file is
    unreadable or another run's (a warning says which; the next save replaces it). Same code
    and config with other torch threads draw other floats, so a finished run's checkpoint can
    differ from a rerun's start: that must retrain, not fail the run."""
    if path is None:
        return None
    try:
        return load(path, signature)
    except CheckpointError as exc:
        warnings.warn(f"{exc}: training from the start instead", stacklevel=2)
        return None
