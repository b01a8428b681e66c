"""NAdamW as in the AlgoPerf baseline (Dozat 2016 in the form of Choi et al. 2019, Table 1).

This is *not* `torch.optim.NAdam`: there is no momentum-decay schedule, bias corrections are Adam's,
and weight decay is decoupled. Per parameter, with lr_t the scheduled learning rate:

    theta <- theta * (1 - lr_t * weight_decay)
    m     <- beta1 * m + (1 - beta1) * g
    v     <- beta2 * v + (1 - beta2) * g^2
    m_bar  = beta1 * m + (1 - beta1) * g                  # the Nesterov look-ahead
    theta <- theta - lr_t * (m_bar / (1 - beta1^t)) / (sqrt(v) / sqrt(1 - beta2^t) + eps)

Source: mlcommons/algorithmic-efficiency, algorithms/baselines/*/pytorch_nadamw_full_budget.py.
State: exp_avg and exp_avg_sq, each the parameter's size and dtype (8 B/param in fp32); the step
count is a Python int per parameter and holds no tensor memory.
"""

from __future__ import annotations

import math

import torch

from trainlab.optim import lowprec
from trainlab.optim.base import ElementwiseOptimizer
from trainlab.optim.modifiers import MARS_GAMMA, compose, options
from trainlab.optim.registration import Registration
from trainlab.optim.validation import check_adam_hparams


def nadamw_direction(p, g, states, s):
    """One tensor's NAdamW direction (before -lr / (1 - beta1^t)) and new moments, out of place."""
    one_minus_beta1, beta2, one_minus_beta2, bias_correction2_sqrt, eps = s
    m, v = states
    m = torch.lerp(m, g, one_minus_beta1)
    v = v * beta2 + g * g * one_minus_beta2
    numerator = torch.lerp(m, g, one_minus_beta1)
    denominator = v.sqrt() / bias_correction2_sqrt + eps
    return numerator / denominator, m, v


nadamw_rule = compose(nadamw_direction)  # p * decay + direction * neg_step (trainlab.optim.modifiers)


class NAdamW(ElementwiseOptimizer):
    """NAdamW, the AlgoPerf baseline optimizer (update rule in the module docstring).

    Defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8 (the AlgoPerf PyTorch baseline's), weight_decay 0
    (torch.optim convention; the AlgoPerf baselines tune it).
    State bytes: 2 * numel * element_size (exp_avg, exp_avg_sq), 8 B/param for fp32 params.
    bf16 params: state is kept in the parameter's dtype (as torch.optim.AdamW does, and as
    `load_state_dict` casts it anyway), so bf16 params get bf16 moments; keep fp32 master weights
    where that precision matters.
    Paths (`trainlab.optim.base`): by default `nadamw_rule` as one fused kernel, built once per
    machine (lr, step and decay are kernel inputs); fused=False chains `torch._foreach_*` ops;
    foreach=False applies the rule per tensor.
    Modifiers `cautious` and `mars` (`mars_gamma`): `trainlab.optim.modifiers`.
    """

    _state_keys = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
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
        return nadamw_direction


REGISTRATION = Registration(
    "nadamw",
    NAdamW,
    "NAdamW, the AlgoPerf baseline (Nesterov look-ahead, decoupled decay)",
    "Dozat 2016; Choi et al. 2019 (arXiv 1910.05446); AlgoPerf baseline",
    # workload-agnostic, as AdamW's (docs/targets.md); the space is AlgoPerf's NAdamW one
    race_defaults={"lr": 4e-3, "betas": (0.9, 0.999), "weight_decay": 0.01, "warmup_fraction": 0.05},
    search_space={
        "lr": {"min": 0.001, "max": 0.03, "scaling": "log"},
        "one_minus_beta1": {"min": 0.03, "max": 0.3, "scaling": "log"},
        "beta2": {"feasible_points": [0.999]},
        "weight_decay": {"min": 0.001, "max": 0.1, "scaling": "log"},
        "warmup_fraction": {"feasible_points": [0.02, 0.05, 0.1]},
    },
    state_bytes="8 B/param (exp_avg, exp_avg_sq)",
)
