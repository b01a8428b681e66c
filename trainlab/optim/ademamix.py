"""AdEMAMix (Pagliardini, Ablin, Grangier 2024, "The AdEMAMix Optimizer: Better, Faster, Older",
arXiv 2409.03137): Adam with a second, much slower momentum added to the fast one.

Per parameter, t the parameter's 1-based step (its own clock), lr the scheduled learning rate:

    alpha_t = alpha * t / T_a                  if alpha_warmup = T_a and t < T_a, else alpha
    beta3_t = 0.5 ** (1 / H),  H = (1 - a) h(beta1) + a h(beta3),  a = t / T_b
                                               if beta3_warmup = T_b and t < T_b, else beta3
              h(beta) = ln 0.5 / ln(beta + 1e-8)       (half-lives interpolated from beta1's)
    m1 <- beta1 m1 + (1 - beta1) g;   m2 <- beta3_t m2 + (1 - beta3_t) g;   nu <- beta2 nu + (1 - beta2) g^2
    theta <- theta (1 - lr wd) - lr (m1 / (1 - beta1^t) + alpha_t m2) / (sqrt(nu) / sqrt(1 - beta2^t) + eps)

m1 and nu are bias-corrected, m2 is not; the decay is decoupled and acts on the pre-step theta.
With alpha = 0 this is torch.optim.AdamW exactly. Source: apple/ml-ademamix `pytorch/ademamix.py`
(the PyTorch schedules, +1e-8 included; Optax's run one step behind).
"""

from __future__ import annotations

import math

import torch

from trainlab.optim import lowprec
from trainlab.optim.base import ElementwiseOptimizer
from trainlab.optim.registration import Registration
from trainlab.optim.validation import check_non_negative, check_range


def ademamix_rule(p, g, states, s):
    """One tensor's AdEMAMix update, out of place; s = AdEMAMix._scalars(...)."""
    decay, one_minus_b1, one_minus_b2, one_minus_b3, inv_bias1, inv_sqrt_bias2, alpha, eps, neg_lr = s
    m1, m2, nu = states
    m1 = torch.lerp(m1, g, one_minus_b1)
    m2 = torch.lerp(m2, g, one_minus_b3)
    nu = torch.lerp(nu, g * g, one_minus_b2)
    denom = nu.sqrt() * inv_sqrt_bias2 + eps
    return p * decay + (m1 * inv_bias1 + m2 * alpha) / denom * neg_lr, m1, m2, nu


def _half_life(beta: float) -> float:
    return math.log(0.5) / math.log(beta + 1e-8)


class AdEMAMix(ElementwiseOptimizer):
    """AdEMAMix (arXiv 2409.03137): Adam plus alpha times a slow EMA (beta3) of the gradient.

    Update: see the module docstring. Defaults: lr 1e-3, betas (0.9, 0.999, 0.9999), alpha 2.0,
    eps 1e-8, weight_decay 0, no warm-ups: apple/ml-ademamix's PyTorch class. The README's recipe
    warms alpha and beta3 up over the whole run (alpha_warmup = beta3_warmup = total steps); races
    do that (`budget_steps`: each warm-up is a fraction of the step budget, 1.0 by default).
    State bytes: 3 * numel * element_size (exp_avg_fast, exp_avg_slow, exp_avg_sq), 12 B/param in fp32.
    Paths: as every elementwise optimizer's (`trainlab.optim.base`): the fused kernel of
    `ademamix_rule` by default, foreach with fused=False, the rule per tensor with foreach=False.
    """

    _state_keys = ("exp_avg_fast", "exp_avg_slow", "exp_avg_sq")
    # constructor argument -> the race hyperparameter giving it as a fraction of the step budget
    budget_steps = {"alpha_warmup": "alpha_warmup_fraction", "beta3_warmup": "beta3_warmup_fraction"}

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float, float] = (0.9, 0.999, 0.9999),
        alpha: float = 2.0,
        alpha_warmup: int | None = None,
        beta3_warmup: int | None = None,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        state_dtype: str = "param",
        weight_update: str = "exact",
        foreach: bool = True,
        fused: bool | None = None,
    ) -> None:
        check_non_negative("lr", lr)
        if not isinstance(betas, (tuple, list)):
            raise ValueError(f"betas must be three numbers (beta1, beta2, beta3), got {betas!r}")
        for i, beta in enumerate(betas, start=1):
            check_range(f"beta{i} (in betas)", beta, 0, 1, high_open=True)
        if len(betas) != 3:
            raise ValueError(f"betas must be three numbers (beta1, beta2, beta3), got {betas!r}")
        check_non_negative("alpha", alpha)
        for name, value in (("alpha_warmup", alpha_warmup), ("beta3_warmup", beta3_warmup)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or an integer >= 1 (steps), got {value!r}")
        check_non_negative("eps", eps)
        check_non_negative("weight_decay", weight_decay)
        lowprec_options = lowprec.options(state_dtype, weight_update)
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            alpha=alpha,
            alpha_warmup=alpha_warmup,
            beta3_warmup=beta3_warmup,
            eps=eps,
            weight_decay=weight_decay,
            foreach=foreach,
            fused=fused,
        )
        super().__init__(params, {**defaults, **lowprec_options})

    def _init_state(self, group, p, state) -> None:
        for key in self._state_keys:
            state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _scalars(self, group, step):
        lr, (beta1, beta2, beta3) = group["lr"], group["betas"]
        alpha, t_alpha, t_beta = group["alpha"], group["alpha_warmup"], group["beta3_warmup"]
        alpha_t = alpha * step / t_alpha if t_alpha is not None and step < t_alpha else alpha
        if t_beta is not None and step < t_beta:
            a = step / t_beta
            beta3 = 0.5 ** (1.0 / ((1 - a) * _half_life(beta1) + a * _half_life(beta3)))
        return (
            1 - lr * group["weight_decay"],
            1 - beta1,
            1 - beta2,
            1 - beta3,
            1 / (1 - beta1**step),
            1 / math.sqrt(1 - beta2**step),
            alpha_t,
            group["eps"],
            -lr,
        )

    def _rule(self, group):
        return ademamix_rule


REGISTRATION = Registration(
    "ademamix",
    AdEMAMix,
    "AdEMAMix: Adam plus a slow EMA of the gradient (alpha, beta3, warm-ups)",
    "Pagliardini, Ablin, Grangier, The AdEMAMix Optimizer: Better, Faster, Older, ICLR 2025 (arXiv 2409.03137)",
    # the README's recipe: alpha 8, wd 0.1, both warm-ups over the whole run; AdamW's race lr
    race_defaults={
        "lr": 4e-3,
        "betas": (0.9, 0.999, 0.9999),
        "alpha": 8.0,
        "weight_decay": 0.1,
        "alpha_warmup_fraction": 1.0,
        "beta3_warmup_fraction": 1.0,
        "warmup_fraction": 0.05,
    },
    search_space={
        "lr": {"min": 1e-3, "max": 3e-2, "scaling": "log"},
        # alpha down to 0 (plain AdamW) and beta3 half-lives of 69-693 steps: runs of 600-2400 steps
        # cannot use the paper's 0.9999 (half-life ~6900 steps), chosen for runs of 256k steps
        "alpha": {"min": 0.0, "max": 8.0, "scaling": "linear"},
        "beta3": {"feasible_points": [0.99, 0.995, 0.999]},
        "weight_decay": {"min": 1e-3, "max": 0.1, "scaling": "log"},
        "warmup_fraction": {"feasible_points": [0.02, 0.05, 0.1]},
    },
    state_bytes="12 B/param (exp_avg_fast, exp_avg_slow, exp_avg_sq)",
)
