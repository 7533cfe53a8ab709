"""Decoding: the student writes its own rationale, step by step, from its own states.

Greedy takes the most likely state; sampling draws from softmax(logits / temperature) with the
seed's fixed uniforms (task.sample_categorical), so a lower temperature changes only which state
a draw lands on, never the draw itself.
"""

from __future__ import annotations

import numpy as np
import torch

from harness.distill.model import Student
from harness.distill.task import sample_categorical

DECODINGS = ("greedy", "sampling")


@torch.no_grad()
def generate(model: Student, digits: np.ndarray, *, decoding: str, temperature: float,
             uniforms: np.ndarray) -> np.ndarray:
    """The student's rationales for `digits` (problems x steps); the answer is the last
    column. `uniforms` (same shape) are the draws sampling uses; greedy ignores them and the
    temperature."""
    if decoding not in DECODINGS:
        raise ValueError(f"decoding={decoding!r}; choose one of {', '.join(DECODINGS)}")
    if decoding == "sampling" and not temperature > 0:
        raise ValueError(f"temperature={temperature} must be > 0 for sampling")
    inputs = torch.as_tensor(digits, dtype=torch.long)
    states = torch.zeros(len(digits), dtype=torch.long)
    out = np.empty(digits.shape, dtype=np.int64)
    for k in range(digits.shape[1]):
        logits = model(states, inputs[:, k])
        if decoding == "greedy":
            chosen = logits.argmax(dim=-1).numpy()
        else:
            probs = torch.softmax(logits / temperature, dim=-1).double().numpy()
            chosen = sample_categorical(probs, uniforms[:, k])
        out[:, k] = chosen
        states = torch.as_tensor(chosen, dtype=torch.long)
    return out
