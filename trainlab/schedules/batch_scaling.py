"""Carry a tuned learning rate to another batch size.

Granziol, Zohren, Roberts, "Learning Rates as a Function of Batch Size: A Random Matrix Theory
Approach to Neural Network Training" (JMLR 2022, arXiv 2006.09092): the extremal eigenvalues of the
mini-batch Hessian are larger than those of the empirical Hessian and shrink toward them as the batch
grows, so the largest stable learning rate grows with the batch. The paper derives linear growth for
SGD ("linear scaling", generalizing Goyal et al. 2017) and square-root growth for adaptive methods
such as Adam ("square root scaling").

These rules move a learning rate tuned at `base_batch` to `batch`; they say nothing about warm-up
or the step budget, which usually change with the batch as well. Which rule an optimizer takes
follows from its registration (`trainlab.algorithms.rules.default_rule`).
"""

from __future__ import annotations

import math

RULES = ("linear", "sqrt")


def scale_lr(lr: float, base_batch: int, batch: int, rule: str = "linear") -> float:
    """`lr` tuned at `base_batch`, moved to `batch`: times batch/base_batch ("linear") or its root ("sqrt")."""
    if rule not in RULES:
        raise ValueError(f"unknown scaling rule {rule!r}; allowed: {', '.join(RULES)}")
    if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite positive number, got {lr!r}")
    for name, value in (("base_batch", base_batch), ("batch", batch)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    ratio = batch / base_batch
    return lr * (ratio if rule == "linear" else math.sqrt(ratio))
