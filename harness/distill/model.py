"""The student: one reasoning step, (previous state, next digit) -> logits of the next state.

Small on purpose (about 6,000 weights): it has to learn each step from the teacher's examples
and does not discover modular arithmetic for steps it never saw, so the amount of training data
matters, as it does for the notebook's real student.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class StudentConfig:
    base: int = 10
    embed: int = 16
    hidden: int = 128


class Student(nn.Module):
    def __init__(self, config: StudentConfig):
        super().__init__()
        self.config = config
        self.state_embed = nn.Embedding(config.base, config.embed)
        self.digit_embed = nn.Embedding(config.base, config.embed)
        self.hidden = nn.Linear(2 * config.embed, config.hidden)
        self.out = nn.Linear(config.hidden, config.base)

    def forward(self, states: torch.Tensor, digits: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.state_embed(states), self.digit_embed(digits)], dim=-1)
        return self.out(torch.relu(self.hidden(x)))


def build_student(config: StudentConfig, seed: int) -> Student:
    """A student whose initial weights depend on the seed only."""
    torch.manual_seed(seed)
    return Student(config)
