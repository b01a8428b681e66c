"""Schedules by name, as the algorithms and the CLI refer to them.

Each factory takes the trial's step budget and the algorithm's hyperparameters (it reads only the
ones it knows, e.g. `warmup_fraction`) and returns a pure schedule.
"""

from __future__ import annotations

from typing import Any, Callable

from trainlab.schedules.core import Schedule, constant, cosine_decay, linear_decay


def _warmup_steps(total_steps: int, hparams: dict[str, Any]) -> int:
    fraction = float(hparams.get("warmup_fraction", 0.05))
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"warmup_fraction must be in [0, 1), got {fraction!r}")
    return int(fraction * total_steps)


SCHEDULES: dict[str, Callable[[int, dict[str, Any]], Schedule]] = {
    "constant": lambda total, hp: constant(),
    "cosine": lambda total, hp: cosine_decay(total, _warmup_steps(total, hp)),
    "linear": lambda total, hp: linear_decay(total, _warmup_steps(total, hp)),
}
# Hyperparameters a schedule reads, with their defaults (listed by `trainlab list`).
SCHEDULE_HPARAMS: dict[str, dict[str, Any]] = {
    "constant": {},
    "cosine": {"warmup_fraction": 0.05},
    "linear": {"warmup_fraction": 0.05},
}


def build_schedule(name: str, total_steps: int, hparams: dict[str, Any]) -> Schedule:
    try:
        factory = SCHEDULES[name]
    except KeyError:
        raise ValueError(f"unknown schedule {name!r}; available: {', '.join(sorted(SCHEDULES))}") from None
    return factory(total_steps, hparams)
