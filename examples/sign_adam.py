"""A 20-line optimizer of your own, raced and tuned by trainlab without registering anything:

trainlab race --algorithms examples/sign_adam.py:SignAdam,adamw --workloads mnist1d_mlp
"""

import torch


class SignAdam(torch.optim.Optimizer):
    """Step along the sign of Adam's first moment (Lion without the interpolation)."""

    def __init__(self, params, lr: float = 1e-3, beta: float = 0.9, weight_decay: float = 0.0):
        if lr <= 0 or not 0 <= beta < 1 or weight_decay < 0:
            raise ValueError(f"need lr > 0, 0 <= beta < 1, weight_decay >= 0; got {lr}, {beta}, {weight_decay}")
        super().__init__(params, dict(lr=lr, beta=beta, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                m = self.state[p].setdefault("exp_avg", torch.zeros_like(p))
                m.lerp_(p.grad, 1 - group["beta"])
                p.mul_(1 - group["lr"] * group["weight_decay"]).add_(m.sign(), alpha=-group["lr"])
