"""Lion, EvoLved Sign Momentum (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms",
arXiv 2302.06675, Algorithm 2 / Program 1).

Per parameter, with lr the (scheduled) learning rate and lambda the weight decay:

    theta <- theta * (1 - lr * lambda)              # decoupled weight decay, applied first
    c      = beta1 * m + (1 - beta1) * g            # interpolation, used only for the update
    theta <- theta - lr * sign(c)                   # torch.sign(0) = 0
    m     <- beta2 * m + (1 - beta2) * g            # momentum updated AFTER the step, with beta2

Source: the official code google/automl, lion/lion_pytorch.py, and lion/README.md (defaults and
guidance: lr 3-10x smaller than AdamW's, weight decay 3-10x larger, betas (0.95, 0.98) for stability).
"""

from __future__ import annotations

import torch

from trainlab.optim.base import ElementwiseOptimizer
from trainlab.optim.validation import check_betas, check_non_negative


class Lion(ElementwiseOptimizer):
    """Lion (Chen et al. 2023, arXiv 2302.06675, Program 1): sign of an interpolated momentum.

    Update (per element): theta *= 1 - lr*wd; theta -= lr * sign(beta1*m + (1-beta1)*g);
    m = beta2*m + (1-beta2)*g.
    Defaults: lr 1e-4, betas (0.9, 0.99), weight_decay 0, as in google/automl lion/lion_pytorch.py.
    State bytes: numel * element_size (exp_avg only): 4 B/param for fp32 params, 2 B/param for bf16.
    bf16 params: the momentum is kept in the parameter's dtype (what torch.optim does, and what
    `load_state_dict` casts state to); Lion's update is a sign, so bf16 momentum changes little
    beyond the sign of near-zero entries. Runs without error on bf16.
    """

    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0, foreach: bool = True) -> None:
        check_non_negative("lr", lr)
        check_betas(betas)
        check_non_negative("weight_decay", weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay, foreach=foreach)
        super().__init__(params, defaults)

    def _init_state(self, group, p, state) -> None:
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _update_single(self, group, p, g, state, step) -> None:
        lr, wd = group["lr"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        m = state["exp_avg"]
        if wd:
            p.mul_(1 - lr * wd)
        p.add_(m.lerp(g, 1 - beta1).sign_(), alpha=-lr)
        m.lerp_(g, 1 - beta2)

    def _update(self, group, params, grads, states, step) -> None:
        lr, wd = group["lr"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        exp_avgs = [s["exp_avg"] for s in states]
        if wd:
            torch._foreach_mul_(params, 1 - lr * wd)
        directions = torch._foreach_lerp(exp_avgs, grads, 1 - beta1)
        torch._foreach_sign_(directions)
        torch._foreach_add_(params, directions, alpha=-lr)
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta2)
