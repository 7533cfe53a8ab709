"""Scoring a trained SignModel on clean eval sentences, with the weights it would ship."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from harness.signs import metrics
from harness.signs.corpus import Split
from harness.signs.model import SignModel
from harness.signs.train import Trained, inputs

PCK_THRESHOLD = 0.1  # shoulder widths: about a finger's length


def produce(model: SignModel, text: np.ndarray, split: Split) -> np.ndarray:
    """(sentences, frames, joints, 2) poses the model produces for the split's sentences."""
    features, _ = inputs(text, split)
    with torch.no_grad():
        out = model(features).numpy()
    return out.reshape(split.poses.shape)


def score(model: SignModel, trained: Trained, text: np.ndarray, split: Split) -> dict:
    """``{"pose": {mpjpe, dtw_mje, pck}, "train": {loss}}``; the averaged weights when the run
    kept an EMA (what a run with EMA ships), else the raw ones."""
    averaged = trained.ema.averaged() if trained.ema is not None else contextlib.nullcontext()
    with averaged:
        produced = produce(model, text, split)
    return {"pose": {"mpjpe": metrics.mpjpe(produced, split.poses),
                     "dtw_mje": metrics.dtw_mje(produced, split.poses),
                     "pck": metrics.pck(produced, split.poses, PCK_THRESHOLD)},
            "train": {"loss": trained.loss}}
