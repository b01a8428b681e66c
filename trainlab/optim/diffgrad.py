"""diffGrad (Dubey, Chakraborty, Roy, Mukherjee, Singh, Chaudhuri; IEEE TNNLS 2020, arXiv 1909.11015).

Adam whose first moment is damped, per element, by a "friction" that is small where the gradient is
changing slowly. Paper Eqs. (11)-(20), with t the 1-based step and lambda the (coupled, L2) weight
decay:

    g      <- g + lambda * theta                         # coupled L2, before everything else
    m      <- beta1 * m + (1 - beta1) * g
    v      <- beta2 * v + (1 - beta2) * g^2
    xi     = sigmoid(|g_prev - g|)     in [0.5, 1)       # AbsSig friction, Eq. (19); g_prev = 0 at t=1
    theta  <- theta - lr * sqrt(1 - beta2^t) / (1 - beta1^t) * xi * m / (sqrt(v) + eps)
    g_prev <- g                                          # a copy of the (decayed) gradient

Sources: the paper PDF in shivram1987/diffGrad (commit 4da5b9e) and its code diffGrad_v2.py.

Choices, documented:
- eps placement follows the official code, not Eq. (20): eps is added to sqrt(v) *uncorrected* and
  the bias corrections are folded into the step size lr*sqrt(1-beta2^t)/(1-beta1^t) (the usual
  "efficient Adam" form). Written in Eq. (20)'s form, this is sqrt(v_hat) + eps/sqrt(1-beta2^t):
  only eps's effective size differs (larger early in training), negligible once v is not tiny.
- The friction multiplies only m in the update; the stored m is not modified (paper and code).
- g_prev is stored as a COPY. The original diffGrad.py stored a reference to p.grad, so when the
  gradient buffer was zeroed and refilled in place, g_prev - g was identically 0 and xi = 0.5
  everywhere (diffGrad_v2.py fixed it with .clone(); torch_optimizer.DiffGrad still has the bug).
- g_prev holds the weight-decayed gradient (the official code adds the decay to the gradient in
  place, so that is what it stores); unlike the official code, p.grad itself is left unchanged.
"""

from __future__ import annotations

import math

import torch

from trainlab.optim import lowprec
from trainlab.optim.base import ElementwiseOptimizer
from trainlab.optim.registration import Registration
from trainlab.optim.validation import check_adam_hparams


def diffgrad_rule(p, g, states, s):
    """One tensor's diffGrad update, out of place; s = DiffGrad._scalars(...)."""
    weight_decay, one_minus_beta1, beta2, one_minus_beta2, eps, neg_step = s
    m, v, previous = states
    g = g + p * weight_decay  # coupled L2; weight_decay 0 adds exactly 0
    m = torch.lerp(m, g, one_minus_beta1)
    v = v * beta2 + g * g * one_minus_beta2
    friction = torch.sigmoid(torch.abs(previous - g))
    p = p + friction * m / (v.sqrt() + eps) * neg_step
    return p, m, v, g


class DiffGrad(ElementwiseOptimizer):
    """diffGrad (Dubey et al., IEEE TNNLS 2020, arXiv 1909.11015, Eq. 20): Adam with AbsSig friction.

    Update (per element, see the module docstring for the exact form):
    theta -= lr*sqrt(1-beta2^t)/(1-beta1^t) * sigmoid(|g_prev - g|) * m / (sqrt(v) + eps),
    with coupled L2 weight decay g += wd*theta first.
    Defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0, those of the official
    diffGrad_v2.py (shivram1987/diffGrad).
    State bytes: 3 * numel * element_size (exp_avg, exp_avg_sq, previous_grad): 12 B/param in fp32.
    bf16 params: state is kept in the parameter's dtype (as torch.optim.AdamW; `load_state_dict`
    casts state to it anyway). Runs on bf16; the friction's |g_prev - g| then has bf16 resolution.
    Paths (`trainlab.optim.base`): by default `diffgrad_rule` as one fused kernel, built once per
    machine (previous_grad is rewritten in the same pass; lr, step and decay are kernel inputs);
    fused=False chains `torch._foreach_*` ops; foreach=False applies the rule per tensor.
    """

    _state_keys = ("exp_avg", "exp_avg_sq", "previous_grad")

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        state_dtype: str = "param",
        weight_update: str = "exact",
        foreach: bool = True,
        fused: bool | None = None,
    ) -> None:
        check_adam_hparams(lr, betas, eps, weight_decay)
        lowprec_options = lowprec.options(state_dtype, weight_update)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, foreach=foreach, fused=fused)
        super().__init__(params, {**defaults, **lowprec_options})

    def _init_state(self, group, p, state) -> None:
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["previous_grad"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _scalars(self, group, step):
        beta1, beta2 = group["betas"]
        step_size = group["lr"] * math.sqrt(1 - beta2**step) / (1 - beta1**step)
        return group["weight_decay"], 1 - beta1, beta2, 1 - beta2, group["eps"], -step_size

    def _rule(self, group):
        return diffgrad_rule


REGISTRATION = Registration(
    "diffgrad",
    DiffGrad,
    "diffGrad: Adam with AbsSig friction on the first moment, coupled L2",
    "Dubey et al., diffGrad: An Optimization Method for Convolutional Neural Networks, "
    "IEEE TNNLS 2020 (arXiv 1909.11015)",
    # an Adam variant: AdamW's race lr, the paper's betas and no decay (its coupled L2 is off)
    race_defaults={"lr": 4e-3, "betas": (0.9, 0.999), "weight_decay": 0.0, "warmup_fraction": 0.05},
    search_space={
        "lr": {"min": 0.001, "max": 0.03, "scaling": "log"},
        "one_minus_beta1": {"min": 0.03, "max": 0.3, "scaling": "log"},
        "beta2": {"feasible_points": [0.999]},
        "weight_decay": {"feasible_points": [0.0, 0.0001]},
        "warmup_fraction": {"feasible_points": [0.02, 0.05, 0.1]},
    },
    state_bytes="12 B/param (exp_avg, exp_avg_sq, previous gradient)",
)
