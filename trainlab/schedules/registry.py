"""Schedules by name, as the algorithms and the CLI refer to them (`adamw+wsd`, `sgd+refined`, ...).

Each factory takes the trial's step budget and the algorithm's hyperparameters (it reads only the
ones listed for it in SCHEDULE_HPARAMS, e.g. `warmup_fraction`) and returns a pure schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trainlab.schedules.budget_aware import uba
from trainlab.schedules.core import Schedule, constant, cosine_decay, linear_decay, wsd
from trainlab.schedules.refined import KINDS, refined_schedule


def _warmup_steps(total_steps: int, hparams: dict[str, Any]) -> int:
    fraction = float(hparams.get("warmup_fraction", 0.05))
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"warmup_fraction must be in [0, 1), got {fraction!r}")
    return int(fraction * total_steps)


def _wsd(total: int, hp: dict[str, Any]) -> Schedule:
    defaults = SCHEDULE_HPARAMS["wsd"]
    return wsd(
        total,
        _warmup_steps(total, hp),
        hp.get("decay_fraction", defaults["decay_fraction"]),
        hp.get("cooldown", defaults["cooldown"]),
    )


def _uba(total: int, hp: dict[str, Any]) -> Schedule:
    return uba(total, _warmup_steps(total, hp), hp.get("phi", SCHEDULE_HPARAMS["uba"]["phi"]))


def _refined(total: int, hp: dict[str, Any]) -> Schedule:
    """Needs the first run's per-step gradient norms; `trainlab refine` records and passes them."""
    norms = hp.get("grad_norms")
    if norms is None:
        raise ValueError(
            "refined needs gradient norms from a first run: use `trainlab refine` "
            "(or pass the hyperparameter grad_norms=[...], one norm per step)"
        )
    kind = hp.get("refine_kind")
    if kind not in KINDS:
        raise ValueError(
            f"refined needs refine_kind, one of {', '.join(KINDS)} ('adam' for L1 norms, "
            f"'sgd' for L2 norms; trainlab.algorithms.rules.kind_for gives each "
            f"optimizer's), got {kind!r}"
        )
    return refined_schedule(
        norms, kind, hp.get("refine_tau", SCHEDULE_HPARAMS["refined"]["refine_tau"]), total_steps=total
    )


SCHEDULES: dict[str, Callable[[int, dict[str, Any]], Schedule]] = {
    "constant": lambda total, hp: constant(),
    "cosine": lambda total, hp: cosine_decay(total, _warmup_steps(total, hp)),
    "linear": lambda total, hp: linear_decay(total, _warmup_steps(total, hp)),
    "wsd": _wsd,
    "uba": _uba,
    "refined": _refined,
}
# Hyperparameters a schedule reads, with their defaults (listed by `trainlab list`).
SCHEDULE_HPARAMS: dict[str, dict[str, Any]] = {
    "constant": {},
    "cosine": {"warmup_fraction": 0.05},
    "linear": {"warmup_fraction": 0.05},
    "wsd": {"warmup_fraction": 0.05, "decay_fraction": 0.2, "cooldown": "1-sqrt"},
    # phi = 0.8 is a third-party default, not the paper's recommendation (see budget_aware.py).
    "uba": {"warmup_fraction": 0.05, "phi": 0.8},
    # No warm-up: the refinement makes its own from the recorded norms.
    "refined": {"grad_norms": None, "refine_kind": None, "refine_tau": 0.1},
}


def build_schedule(name: str, total_steps: int, hparams: dict[str, Any]) -> Schedule:
    try:
        factory = SCHEDULES[name]
    except KeyError:
        raise ValueError(f"unknown schedule {name!r}; available: {', '.join(sorted(SCHEDULES))}") from None
    return factory(total_steps, hparams)
