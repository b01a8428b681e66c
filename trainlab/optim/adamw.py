"""trainlab's AdamW rule (Loshchilov & Hutter 2019), for AdamW with the `cautious` and `mars`
modifiers (`trainlab.optim.modifiers`).

The registered `adamw` is torch's own AdamW (`trainlab.optim.torch_builtins`): what users compare
against, and its numbers do not change. Only when a modifier is asked for does `adamw` build this
class, whose plain rule is torch.optim.AdamW's arithmetic, in torch's order:

    theta <- theta * (1 - lr * weight_decay)
    m     <- lerp(m, g, 1 - beta1)
    v     <- beta2 * v + (1 - beta2) * g^2
    theta <- theta - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

(checked against torch.optim.AdamW in tests/test_optim_modifiers.py). State: exp_avg and
exp_avg_sq, 8 B/param in fp32 (step is a Python int: no tensor), plus prev_grad with `mars`.
"""

from __future__ import annotations

import math

import torch

from trainlab.optim import lowprec
from trainlab.optim.base import ElementwiseOptimizer
from trainlab.optim.modifiers import MARS_GAMMA, compose, options
from trainlab.optim.validation import check_adam_hparams


def adamw_direction(p, g, states, s):
    """One tensor's AdamW direction (before -lr / (1 - beta1^t)) and new moments, out of place."""
    one_minus_beta1, beta2, one_minus_beta2, bias_correction2_sqrt, eps = s
    m, v = states
    m = torch.lerp(m, g, one_minus_beta1)
    v = v * beta2 + g * g * one_minus_beta2
    return m / (v.sqrt() / bias_correction2_sqrt + eps), m, v


adamw_rule = compose(adamw_direction)


class AdamW(ElementwiseOptimizer):
    """AdamW as one elementwise rule (foreach, per-tensor and fused paths), with the modifiers.

    Defaults as `trainlab.optim.create("adamw")`: lr 1e-3, betas (0.9, 0.999), eps 1e-8,
    weight_decay 0.01 (torch.optim.AdamW's). `cautious=True`: Cautious AdamW (C-Optim's
    c_adamw.py); `mars=True`: MARS-AdamW (AGI-Arena/MARS's mars.py, eps added after the bias
    correction as there), `mars_gamma` its gamma.
    """

    _state_keys = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        cautious: bool = False,
        mars: bool = False,
        mars_gamma: float = MARS_GAMMA,
        cautious_wd: bool = False,
        state_dtype: str = "param",
        weight_update: str = "exact",
        foreach: bool = True,
        fused: bool | None = None,
    ) -> None:
        check_adam_hparams(lr, betas, eps, weight_decay)
        lowprec_options = lowprec.options(state_dtype, weight_update)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, foreach=foreach, fused=fused)
        super().__init__(params, {**defaults, **options(cautious, mars, mars_gamma, cautious_wd), **lowprec_options})

    def _init_state(self, group, p, state) -> None:
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _direction_scalars(self, group, step):
        lr, (beta1, beta2) = group["lr"], group["betas"]
        return (
            1 - lr * group["weight_decay"],
            -lr / (1 - beta1**step),
            1 - beta1,
            beta2,
            1 - beta2,
            math.sqrt(1 - beta2**step),
            group["eps"],
        )

    def _direction(self, group):
        return adamw_direction
