"""Learning-rate multipliers as pure functions of the 0-based step (optax style).

A schedule is `f(step) -> float` in [0, 1], multiplied into each param group's base learning rate.
`step` counts optimizer updates already taken: the first update uses f(0), the last of T uses
f(T - 1). No schedule holds mutable state, so the same function can be plotted, tested at single
points, and turned into a `torch.optim.lr_scheduler.LRScheduler` (see `adapter.py`).
"""

from __future__ import annotations

import math
from typing import Callable

Schedule = Callable[[int], float]


def _check_total(total_steps: int) -> None:
    if not isinstance(total_steps, int) or total_steps <= 0:
        raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")


def _check_warmup(warmup_steps: int, total_steps: int) -> None:
    if not isinstance(warmup_steps, int) or not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_steps must be an integer in [0, total_steps={total_steps}), "
                         f"got {warmup_steps!r}")


def constant() -> Schedule:
    return lambda step: 1.0


def linear_warmup(warmup_steps: int) -> Schedule:
    """(step + 1) / warmup_steps during warm-up, then 1: the first update is never taken at lr 0."""
    if warmup_steps <= 0:
        return constant()
    return lambda step: min(1.0, (step + 1) / warmup_steps)


def cosine_decay(total_steps: int, warmup_steps: int = 0) -> Schedule:
    """Linear warm-up, then half a cosine from 1 down to 0 at step == total_steps."""
    _check_total(total_steps)
    _check_warmup(warmup_steps, total_steps)
    warm = linear_warmup(warmup_steps)
    span = total_steps - warmup_steps

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return warm(step)
        progress = min(1.0, (step - warmup_steps) / span)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return schedule


def linear_decay(total_steps: int, warmup_steps: int = 0) -> Schedule:
    """Linear warm-up, then 1 - t/T decay to 0 at step == total_steps (Defazio et al. 2023)."""
    _check_total(total_steps)
    _check_warmup(warmup_steps, total_steps)
    warm = linear_warmup(warmup_steps)
    span = total_steps - warmup_steps

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return warm(step)
        return max(0.0, 1.0 - (step - warmup_steps) / span)

    return schedule
