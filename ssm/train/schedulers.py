"""Learning-rate schedules as factories ``f(optimizer, total_steps, ...)`` (Hydra ``_partial_``)."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau


def _warmup_steps(total_steps: int, warmup: float) -> int:
    """``warmup`` < 1 is a fraction of the run, otherwise a step count."""
    return int(warmup * total_steps) if warmup < 1 else int(warmup)


def cosine_warmup(optimizer: torch.optim.Optimizer, total_steps: int, warmup: float = 0.1, min_ratio: float = 0.0) -> LambdaLR:
    """Linear warmup, then cosine decay to ``min_ratio`` of each group's lr."""
    warm = _warmup_steps(total_steps, warmup)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / max(1, warm)
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def constant_warmup(optimizer: torch.optim.Optimizer, total_steps: int, warmup: float = 0.05) -> LambdaLR:
    warm = _warmup_steps(total_steps, warmup)
    return LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(1, warm)))


def plateau(optimizer: torch.optim.Optimizer, total_steps: int, factor: float = 0.2, patience: int = 20, mode: str = "min") -> ReduceLROnPlateau:
    """ReduceLROnPlateau on the task's monitored metric (SaShiMi's schedule: factor 0.2, patience 20)."""
    return ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience)


def multistep(optimizer: torch.optim.Optimizer, total_steps: int, milestones: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8),
              gamma: float = 0.5) -> LambdaLR:
    """The lr times ``gamma`` at each milestone, given as fractions of the run (< 1) or step counts.

    The s4 reference's ``multistep`` (MultiStepLR per epoch; BIDMC: epochs 100, 200, ... of 500 with
    gamma 0.5) is milestones 0.2, 0.4, ... here: the same points of the run, independent of how many
    steps an epoch has."""
    if not 0 < gamma <= 1:
        raise ValueError(f"multistep: `gamma` must be in (0, 1], got {gamma}")
    if any(m <= 0 for m in milestones):
        raise ValueError(f"multistep: `milestones` must be positive fractions of the run or step counts, got {list(milestones)}")
    steps = sorted(_warmup_steps(total_steps, m) for m in milestones)
    return LambdaLR(optimizer, lambda step: gamma ** sum(step >= s for s in steps))
