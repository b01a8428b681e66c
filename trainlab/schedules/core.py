"""Learning-rate multipliers as pure functions of the 0-based step (optax style).

A schedule is `f(step) -> float`, usually in [0, 1], multiplied into each param group's base
learning rate. `step` counts optimizer updates already taken: the first update uses f(0), the last
of T uses f(T - 1). No schedule holds mutable state, so the same function can be plotted, tested at single
points, and turned into a `torch.optim.lr_scheduler.LRScheduler` (see `adapter.py`).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence

Schedule = Callable[[int], float]


def _check_total(total_steps: int) -> None:
    if not isinstance(total_steps, int) or total_steps <= 0:
        raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")


def _check_warmup(warmup_steps: int, total_steps: int) -> None:
    if not isinstance(warmup_steps, int) or not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_steps must be an integer in [0, total_steps={total_steps}), got {warmup_steps!r}")


def constant() -> Schedule:
    return lambda step: 1.0


def linear_warmup(warmup_steps: int) -> Schedule:
    """(step + 1) / warmup_steps during warm-up, then 1: the first update is never taken at lr 0."""
    if warmup_steps <= 0:
        return constant()
    return lambda step: min(1.0, (step + 1) / warmup_steps)


def _warmup_then(total_steps: int, warmup_steps: int, decay: Callable[[float], float]) -> Schedule:
    """Linear warm-up, then `decay(progress)` with progress going 0 -> 1 from warm-up's end to T."""
    _check_total(total_steps)
    _check_warmup(warmup_steps, total_steps)
    warm = linear_warmup(warmup_steps)
    span = total_steps - warmup_steps

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return warm(step)
        return decay(min(1.0, (step - warmup_steps) / span))

    return schedule


def cosine_decay(total_steps: int, warmup_steps: int = 0) -> Schedule:
    """Linear warm-up, then half a cosine from 1 down to 0 at step == total_steps."""
    return _warmup_then(total_steps, warmup_steps, lambda x: 0.5 * (1.0 + math.cos(math.pi * x)))


def linear_decay(total_steps: int, warmup_steps: int = 0) -> Schedule:
    """Linear warm-up, then 1 - t/T decay to 0 at step == total_steps (Defazio et al. 2023)."""
    return _warmup_then(total_steps, warmup_steps, lambda x: 1.0 - x)


# Cool-down shapes for WSD: the multiplier as a function of cool-down progress p in [0, 1].
# "1-sqrt" is the shape Hägele et al. (2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed
# Training Durations", arXiv 2405.18392) found to match cosine with a cool-down of ~20% of training.
COOLDOWNS: dict[str, Callable[[float], float]] = {
    "linear": lambda p: 1.0 - p,
    "1-sqrt": lambda p: 1.0 - math.sqrt(p),
    "cosine": lambda p: 0.5 * (1.0 + math.cos(math.pi * p)),
}


def wsd(total_steps: int, warmup_steps: int = 0, decay_fraction: float = 0.2, cooldown: str = "1-sqrt") -> Schedule:
    """Warmup-stable-decay: linear warm-up, hold at 1, then cool down over the last steps to 0.

    The cool-down covers the last `int(decay_fraction * total_steps)` steps and reaches 0 at
    step == total_steps (like `linear_decay`): it starts at exactly 1 and the last update, T - 1,
    gets `cooldown((D - 1) / D)`. Why WSD: the stable phase does not depend on the budget, so one
    long run can be branched into cool-downs at several budgets (Hu et al. 2024, MiniCPM; Hägele
    et al. 2024).
    """
    _check_total(total_steps)
    _check_warmup(warmup_steps, total_steps)
    if not isinstance(decay_fraction, (int, float)) or not 0.0 <= decay_fraction <= 1.0:
        raise ValueError(f"decay_fraction must be a number in [0, 1], got {decay_fraction!r}")
    if cooldown not in COOLDOWNS:
        raise ValueError(f"unknown cooldown {cooldown!r}; allowed: {', '.join(COOLDOWNS)}")
    decay_steps = int(decay_fraction * total_steps)
    decay_start = total_steps - decay_steps
    if decay_start < warmup_steps:
        raise ValueError(
            f"warm-up ({warmup_steps} steps) and cool-down ({decay_steps} steps) overlap "
            f"in total_steps={total_steps}; lower warmup or decay_fraction"
        )
    warm, shape = linear_warmup(warmup_steps), COOLDOWNS[cooldown]

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return warm(step)
        if step < decay_start or decay_steps == 0:
            return 1.0
        return shape(min(1.0, (step - decay_start) / decay_steps))

    return schedule


def _check_boundaries(boundaries: Sequence[int], pieces: int, what: str) -> list[int]:
    bounds = list(boundaries)
    if len(bounds) != pieces - 1:
        raise ValueError(
            f"{what}: need exactly one boundary fewer than pieces, got {len(bounds)} boundaries for {pieces} pieces"
        )
    if any(not isinstance(b, int) or b < 0 for b in bounds) or any(a >= b for a, b in zip(bounds, bounds[1:])):
        raise ValueError(
            f"{what}: boundaries must be non-negative integers in strictly increasing order, got {bounds!r}"
        )
    return bounds


def piecewise_constant(boundaries: Sequence[int], values: Sequence[float]) -> Schedule:
    """Step schedule: `values[i]` from step `boundaries[i-1]` (inclusive) up to `boundaries[i]`.

    `values` has one entry more than `boundaries`; values are absolute multipliers, not the
    successive factors of torch's MultiStepLR, so each piece can be read off directly.
    """
    vals = [float(v) for v in values]
    bounds = _check_boundaries(boundaries, len(vals), "piecewise_constant")
    if not vals or any(not math.isfinite(v) or v < 0 for v in vals):
        raise ValueError(f"piecewise_constant: values must be finite and non-negative, got {list(values)!r}")
    return lambda step: vals[bisect.bisect_right(bounds, step)]


def join(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Run `schedules[i]` from `boundaries[i-1]` on, each seeing the step counted from its own start.

    Like optax's `join_schedules`: schedule i gets `step - boundaries[i-1]`, so a warm-up followed
    by a decay can be written `join([linear_warmup(W), linear_decay(T - W)], [W])`.
    """
    parts = list(schedules)
    bounds = _check_boundaries(boundaries, len(parts), "join")
    if not parts:
        raise ValueError("join: need at least one schedule")
    starts = [0, *bounds]

    def schedule(step: int) -> float:
        i = bisect.bisect_right(bounds, step)
        return parts[i](step - starts[i])

    return schedule


def scale(schedule: Schedule, factor: float) -> Schedule:
    """`factor * schedule(step)`, e.g. to end a join at a floor instead of 0."""
    if not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor < 0:
        raise ValueError(f"scale: factor must be a finite non-negative number, got {factor!r}")
    return lambda step: factor * schedule(step)
