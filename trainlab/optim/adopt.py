"""ADOPT (Taniguchi et al. 2024, "ADOPT: Modified Adam Can Converge with Any beta2 with the Optimal
Rate", NeurIPS 2024, arXiv 2411.02853), Algorithm 2 (with clipping), as the official code
iShohei220/adopt, src/adopt/adopt.py, computes it. Per parameter, with t = 1, 2, ... this
parameter's step count and lr the scheduled learning rate:

    g     <- g + weight_decay * theta          # unless decouple (L2 decay, the official default)
    t = 1:  v <- g^2                           # initialisation only: theta and m do not move
    t > 1:  n      = clip(g / max(sqrt(v), eps), (t - 1)^(1/4))   # v is the PREVIOUS step's
            m     <- lerp(m, n, 1 - beta1)
            theta <- theta * (1 - lr * weight_decay)             # only if decouple
            theta <- theta - lr * m
            v     <- beta2 * v + (1 - beta2) * g^2

The clip bound is the official code's `step ** 0.25` with its 0-based step, which counts the
initialisation step: 1 at the first update (pytorch-optimizer 4.1.0 uses t^(1/4) with t 1-based,
2^(1/4) at the first update). The first step is part of the same pure rule: its scalars switch the
update off (neg_step 0, decay 1, clip 0, 1 - beta1 0, and v's coefficients (0, 1)), so the fused
kernel serves every step. Defaults: lr 1e-3, betas (0.9, 0.9999), eps 1e-6, weight_decay 0,
decouple False (the official code's). State: exp_avg and exp_avg_sq, 8 B/param in fp32.
"""

from __future__ import annotations

import torch

from trainlab.optim import lowprec
from trainlab.optim.base import ElementwiseOptimizer
from trainlab.optim.modifiers import MARS_GAMMA, compose, options
from trainlab.optim.registration import Registration
from trainlab.optim.validation import check_adam_hparams


def adopt_direction(p, g, states, s):
    """One tensor's ADOPT direction (the new m) and new moments, out of place."""
    l2, eps, clip, neg_clip, one_minus_beta1, beta2, one_minus_beta2 = s
    m, v = states
    g = g + p * l2
    normed = torch.clamp_max(torch.clamp_min(g / torch.clamp_min(v.sqrt(), eps), neg_clip), clip)
    m = torch.lerp(m, normed, one_minus_beta1)
    return m, m, v * beta2 + g * g * one_minus_beta2


adopt_rule = compose(adopt_direction)


class ADOPT(ElementwiseOptimizer):
    """ADOPT (arXiv 2411.02853, Algorithm 2; update rule in the module docstring).

    `decouple=True` applies weight decay AdamW's way (theta *= 1 - lr * wd, from the second step
    on, as the official code) instead of adding it to the gradient. Modifiers `cautious` and
    `mars` (`mars_gamma`): `trainlab.optim.modifiers`.
    State bytes: 2 * numel * element_size (exp_avg, exp_avg_sq), 8 B/param for fp32 params.
    """

    _state_keys = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.9999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        decouple: bool = False,
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
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            decouple=bool(decouple),
            foreach=foreach,
            fused=fused,
        )
        super().__init__(params, {**defaults, **options(cautious, mars, mars_gamma, cautious_wd), **lowprec_options})

    def _init_state(self, group, p, state) -> None:
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _direction_scalars(self, group, step):
        lr, wd, (beta1, beta2) = group["lr"], group["weight_decay"], group["betas"]
        decouple = group["decouple"]
        l2 = 0.0 if decouple else wd
        if step == 1:  # v <- g^2; no update (every term that would move theta or m is zero)
            return 1.0, 0.0, l2, group["eps"], 0.0, 0.0, 0.0, 0.0, 1.0
        clip = (step - 1) ** 0.25
        decay = 1 - lr * wd if decouple else 1.0
        return decay, -lr, l2, group["eps"], clip, -clip, 1 - beta1, beta2, 1 - beta2

    def _direction(self, group):
        return adopt_direction


REGISTRATION = Registration(
    "adopt",
    ADOPT,
    "ADOPT: Adam with the previous step's second moment, clipped (any beta2 converges)",
    "Taniguchi et al., ADOPT: Modified Adam Can Converge with Any beta2 with the Optimal Rate, NeurIPS 2024 "
    "(arXiv 2411.02853)",
    # betas and eps: the official code's defaults (iShohei220/adopt); lr, decay and warm-up: AdamW's
    # race defaults (docs/targets.md), since ADOPT's update is Adam-sized and the paper runs it at
    # Adam's hyperparameters; decay decoupled, as the official README says to set it in place of
    # AdamW (`decouple=True`)
    race_defaults={
        "lr": 4e-3,
        "betas": (0.9, 0.9999),
        "eps": 1e-6,
        "weight_decay": 0.01,
        "decouple": True,
        "warmup_fraction": 0.05,
    },
    # AdamW's space (docs/search_spaces.md) with ADOPT's beta2 and decoupled decay
    search_space={
        "lr": {"min": 1e-3, "max": 3e-2, "scaling": "log"},
        "one_minus_beta1": {"min": 0.03, "max": 0.3, "scaling": "log"},
        "beta2": {"feasible_points": [0.9999]},
        "weight_decay": {"min": 1e-3, "max": 0.1, "scaling": "log"},
        "decouple": {"feasible_points": [True]},
        "warmup_fraction": {"feasible_points": [0.02, 0.05, 0.1]},
    },
    state_bytes="8 B/param (exp_avg, exp_avg_sq)",
)
