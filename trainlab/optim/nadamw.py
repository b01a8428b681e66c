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

from trainlab.optim.validation import check_betas, check_non_negative


class NAdamW(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, foreach: bool = True) -> None:
        check_non_negative("lr", lr)
        check_betas(betas)
        check_non_negative("eps", eps)
        check_non_negative("weight_decay", weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, foreach=foreach)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("NAdamW does not support sparse gradients")
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
            # Parameters of one group may have different step counts (e.g. one froze for a while);
            # bucket by step so each bucket shares its bias corrections.
            buckets: dict[int, list[torch.Tensor]] = {}
            for p in params:
                buckets.setdefault(self.state[p]["step"], []).append(p)
            for step, bucket in buckets.items():
                _nadamw_update(bucket, [p.grad for p in bucket],
                               [self.state[p]["exp_avg"] for p in bucket],
                               [self.state[p]["exp_avg_sq"] for p in bucket],
                               step=step, lr=group["lr"], beta1=group["betas"][0],
                               beta2=group["betas"][1], eps=group["eps"],
                               weight_decay=group["weight_decay"], foreach=group["foreach"])
        return loss


def _nadamw_update(params, grads, exp_avgs, exp_avg_sqs, *, step, lr, beta1, beta2, eps,
                   weight_decay, foreach) -> None:
    bias_correction1 = 1 - beta1 ** step
    bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
    if not foreach:
        for p, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs):
            if weight_decay:
                p.mul_(1 - lr * weight_decay)
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            numerator = m.lerp(g, 1 - beta1)
            denominator = (v.sqrt() / bias_correction2_sqrt).add_(eps)
            p.addcdiv_(numerator, denominator, value=-lr / bias_correction1)
        return
    if weight_decay:
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
    numerators = torch._foreach_lerp(exp_avgs, grads, 1 - beta1)
    denominators = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denominators, bias_correction2_sqrt)
    torch._foreach_add_(denominators, eps)
    torch._foreach_addcdiv_(params, numerators, denominators, value=-lr / bias_correction1)
