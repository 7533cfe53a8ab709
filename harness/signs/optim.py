"""Plain SGD with momentum, without torch.optim.

torch.optim's first optimizer imports torch._dynamo, about a second on a small CPU, paid again
by every pytest-xdist worker: more than this domain's whole training takes. The update is the
textbook one (heavy-ball momentum, no dampening, no weight decay); nothing here needs more.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class SGD:
    """``SGD(model.parameters(), lr=0.1, momentum=0.9)``: zero_grad, step, state_dict."""

    def __init__(self, params: Iterable[torch.nn.Parameter], *, lr: float,
                 momentum: float = 0.0):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.momentum = lr, momentum
        self.velocity = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for param in self.params:
            param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for param, velocity in zip(self.params, self.velocity, strict=True):
            if param.grad is None:
                continue
            velocity.mul_(self.momentum).add_(param.grad)
            param.add_(velocity, alpha=-self.lr)

    def state_dict(self) -> dict[str, list[torch.Tensor]]:
        return {"velocity": [v.clone() for v in self.velocity]}

    def load_state_dict(self, state: dict[str, list[torch.Tensor]]) -> None:
        if len(state["velocity"]) != len(self.velocity):
            raise ValueError(f"optimizer state for {len(state['velocity'])} parameters, this "
                             f"optimizer has {len(self.velocity)}")
        for mine, saved in zip(self.velocity, state["velocity"], strict=True):
            mine.copy_(saved)
