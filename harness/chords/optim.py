"""Adam as torch.optim.Adam computes it on CPU, without torch.optim's start-up cost.

The first torch.optim optimizer a process builds imports torch._dynamo: about 1 s on a 2-core
CPU, as long as ``import torch`` itself, paid again by every pytest-xdist worker before its first
run. This is the same update, in the same floating-point order, as torch.optim.Adam's default
single-tensor CPU path (no weight decay, amsgrad or maximize), so training is bitwise what it
is with torch.optim.Adam (tests/test_chords_optim.py holds the two side by side).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class Adam:
    """``Adam(model.parameters(), lr=1e-3)``; zero_grad, step and state_dict as in torch."""

    def __init__(self, params: Iterable[torch.nn.Parameter], *, lr: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        # per parameter, as torch keeps it: a parameter without a gradient takes no step
        self.steps = [0] * len(self.params)
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format)
                        for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format)
                           for p in self.params]

    def zero_grad(self) -> None:
        for param in self.params:
            param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        for i, param in enumerate(self.params):
            if param.grad is None:
                continue
            self.steps[i] += 1
            exp_avg, exp_avg_sq, grad = self.exp_avg[i], self.exp_avg_sq[i], param.grad
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step = float(self.steps[i])  # torch counts in a float tensor and reads it back
            step_size = self.lr / (1 - beta1**step)
            bias_correction2_sqrt = (1 - beta2**step) ** 0.5
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)

    def state_dict(self) -> dict[str, list]:
        return {"steps": list(self.steps), "exp_avg": [t.clone() for t in self.exp_avg],
                "exp_avg_sq": [t.clone() for t in self.exp_avg_sq]}

    def load_state_dict(self, state: dict[str, list]) -> None:
        if len(state["steps"]) != len(self.params):
            raise ValueError(f"optimizer state for {len(state['steps'])} parameters, "
                             f"this optimizer has {len(self.params)}")
        self.steps = list(state["steps"])
        for mine, saved in zip(self.exp_avg + self.exp_avg_sq,
                               state["exp_avg"] + state["exp_avg_sq"], strict=True):
            mine.copy_(saved)
