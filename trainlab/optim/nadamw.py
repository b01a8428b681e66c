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

from trainlab.optim.base import ElementwiseOptimizer
from trainlab.optim.validation import check_adam_hparams


class NAdamW(ElementwiseOptimizer):
    """NAdamW, the AlgoPerf baseline optimizer (update rule in the module docstring).

    Defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8 (the AlgoPerf PyTorch baseline's), weight_decay 0
    (torch.optim convention; the AlgoPerf baselines tune it).
    State bytes: 2 * numel * element_size (exp_avg, exp_avg_sq), 8 B/param for fp32 params.
    bf16 params: state is kept in the parameter's dtype (as torch.optim.AdamW does, and as
    `load_state_dict` casts it anyway), so bf16 params get bf16 moments; keep fp32 master weights
    where that precision matters.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, foreach: bool = True) -> None:
        check_adam_hparams(lr, betas, eps, weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, foreach=foreach)
        super().__init__(params, defaults)

    def _init_state(self, group, p, state) -> None:
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    @staticmethod
    def _scalars(group, step):
        beta1, beta2 = group["betas"]
        return group["lr"], beta1, beta2, 1 - beta1 ** step, math.sqrt(1 - beta2 ** step)

    def _update_single(self, group, p, g, state, step) -> None:
        lr, beta1, beta2, bias_correction1, bias_correction2_sqrt = self._scalars(group, step)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        if group["weight_decay"]:
            p.mul_(1 - lr * group["weight_decay"])
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        numerator = m.lerp(g, 1 - beta1)
        denominator = (v.sqrt() / bias_correction2_sqrt).add_(group["eps"])
        p.addcdiv_(numerator, denominator, value=-lr / bias_correction1)

    def _update(self, group, params, grads, states, step) -> None:
        lr, beta1, beta2, bias_correction1, bias_correction2_sqrt = self._scalars(group, step)
        exp_avgs = [s["exp_avg"] for s in states]
        exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        if group["weight_decay"]:
            torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        numerators = torch._foreach_lerp(exp_avgs, grads, 1 - beta1)
        denominators = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denominators, bias_correction2_sqrt)
        torch._foreach_add_(denominators, group["eps"])
        torch._foreach_addcdiv_(params, numerators, denominators, value=-lr / bias_correction1)
