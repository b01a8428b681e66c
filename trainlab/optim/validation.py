"""Argument checks shared by every optimizer: one message style, naming the parameter and range."""

from __future__ import annotations

import math


def check_non_negative(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_betas(betas, names=("beta1", "beta2")) -> None:
    try:
        values = tuple(betas)
    except TypeError:
        raise ValueError(f"betas must be a pair of numbers in [0, 1), got {betas!r}") from None
    if len(values) != len(names):
        raise ValueError(f"betas must have {len(names)} values in [0, 1), got {betas!r}")
    for name, beta in zip(names, values):
        if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not 0.0 <= beta < 1.0:
            raise ValueError(f"{name} (in betas) must be in [0, 1), got {beta!r}")


def check_range(name: str, value: float, low: float, high: float, *, low_open=False, high_open=False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must be in {left}{low}, {high}{right}, got {value!r}")


def check_adam_hparams(lr: float, betas, eps: float, weight_decay: float) -> None:
    """The checks every Adam-family constructor makes, in one place."""
    check_non_negative("lr", lr)
    check_betas(betas)
    check_non_negative("eps", eps)
    check_non_negative("weight_decay", weight_decay)


def check_dense_real(optimizer: str, p) -> None:
    """Reject what no trainlab optimizer implements: sparse gradients and complex parameters."""
    if p.grad.is_sparse:
        raise RuntimeError(f"{optimizer} does not support sparse gradients")
    if p.is_complex():
        raise RuntimeError(f"{optimizer} does not support complex parameters")


def check_int(name: str, value, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
