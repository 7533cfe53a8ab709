"""Scores of a student: production exact match beside a token-accuracy proxy.

The production metric grades the generated answer (the last state of the student's own
rationale) by exact match, as a grader of final answers would. Token accuracy, the proxy many
training loops report, scores each step under teacher forcing (the gold previous state given)
by its most likely state: it never sees decoding, so a decoding bug is invisible to it.
"""

from __future__ import annotations

import numpy as np
import torch

from harness.distill.generate import generate
from harness.distill.model import Student
from harness.distill.task import DistillData
from harness.distill.train import transitions


@torch.no_grad()
def token_accuracy(model: Student, digits: np.ndarray, gold: np.ndarray) -> float:
    """Teacher-forced, argmax accuracy of single steps on the gold rationales."""
    states, inputs, targets = transitions(digits, gold)
    return float((model(states, inputs).argmax(dim=-1) == targets).double().mean())


def score(model: Student, data: DistillData, *, decoding: str, temperature: float
          ) -> dict[str, dict[str, float]]:
    """Metrics of one decoding on the seed's eval problems, grouped for the tables."""
    gold = data.eval_gold
    written = generate(model, data.eval_digits, decoding=decoding, temperature=temperature,
                       uniforms=data.eval_uniforms)
    return {
        "answer": {"exact_match": float(np.mean(written[:, -1] == gold[:, -1]))},
        "rationale": {"exact_match": float(np.mean((written == gold).all(axis=1))),
                      "step_acc": float(np.mean(written == gold))},
        "proxy": {"token_acc": token_accuracy(model, data.eval_digits, gold)},
    }
