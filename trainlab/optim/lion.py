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

from trainlab.optim import lowprec
from trainlab.optim.base import ElementwiseOptimizer
from trainlab.optim.modifiers import MARS_GAMMA, compose, options
from trainlab.optim.registration import Registration
from trainlab.optim.validation import check_betas, check_non_negative


def lion_direction(p, g, states, s):
    """One tensor's Lion direction and new momentum, out of place; s = (1 - beta1, 1 - beta2)."""
    one_minus_beta1, one_minus_beta2 = s
    (m,) = states
    return torch.sign(torch.lerp(m, g, one_minus_beta1)), torch.lerp(m, g, one_minus_beta2)


# p * (1 - lr * wd) + sign(...) * (-lr): the rule every path runs (with `cautious`/`mars`, the
# group's composition of `lion_direction` instead: trainlab.optim.modifiers)
lion_rule = compose(lion_direction)


class Lion(ElementwiseOptimizer):
    """Lion (Chen et al. 2023, arXiv 2302.06675, Program 1): sign of an interpolated momentum.

    Update (per element): theta *= 1 - lr*wd; theta -= lr * sign(beta1*m + (1-beta1)*g);
    m = beta2*m + (1-beta2)*g.
    Defaults: lr 1e-4, betas (0.9, 0.99), weight_decay 0, as in google/automl lion/lion_pytorch.py.
    State bytes: numel * element_size (exp_avg only): 4 B/param for fp32 params, 2 B/param for bf16.
    bf16 params: the momentum is kept in the parameter's dtype (what torch.optim does, and what
    `load_state_dict` casts state to); Lion's update is a sign, so bf16 momentum changes little
    beyond the sign of near-zero entries. Runs without error on bf16.
    Paths (`trainlab.optim.base`): by default `lion_rule` as one fused kernel, built once per
    machine (lr and decay are kernel inputs); fused=False chains `torch._foreach_*` ops;
    foreach=False applies the rule per tensor. An entry whose interpolation rounds to 0 in one
    path and not the other moves by lr: paths agree to rounding except on such ties.
    Modifiers (`trainlab.optim.modifiers`): `cautious=True` keeps the signs that agree with the
    gradient; `mars=True` feeds MARS's corrected gradient (gamma `mars_gamma`) to the rule (4 B/param
    more state: the previous gradient).
    """

    _state_keys = ("exp_avg",)

    def __init__(
        self,
        params,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
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
        check_non_negative("lr", lr)
        check_betas(betas)
        check_non_negative("weight_decay", weight_decay)
        lowprec_options = lowprec.options(state_dtype, weight_update)
        defaults = dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay, foreach=foreach, fused=fused)
        super().__init__(params, {**defaults, **options(cautious, mars, mars_gamma, cautious_wd), **lowprec_options})

    def _init_state(self, group, p, state) -> None:
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _direction_scalars(self, group, step):
        lr, (beta1, beta2) = group["lr"], group["betas"]
        return 1 - lr * group["weight_decay"], -lr, 1 - beta1, 1 - beta2

    def _direction(self, group):
        return lion_direction


REGISTRATION = Registration(
    "lion",
    Lion,
    "Lion: sign of an interpolated momentum, decoupled decay (4 B/param state)",
    "Chen et al., Symbolic Discovery of Optimization Algorithms, NeurIPS 2023 (arXiv 2302.06675)",
    # the paper: lr 3-10x smaller than AdamW's and decay 3-10x larger, so lr * wd stays equal
    race_defaults={"lr": 4e-4, "betas": (0.9, 0.99), "weight_decay": 0.1, "warmup_fraction": 0.05},
    search_space={
        # wide enough to hold AdamW's range and the paper's 3-10x smaller one, so the leaderboard's
        # test of that claim is not decided by the space
        "lr": {"min": 0.0001, "max": 0.03, "scaling": "log"},
        "one_minus_beta1": {"min": 0.03, "max": 0.3, "scaling": "log"},
        "beta2": {"feasible_points": [0.99]},
        "weight_decay": {"min": 0.001, "max": 1.0, "scaling": "log"},
        "warmup_fraction": {"feasible_points": [0.02, 0.05, 0.1]},
    },
    state_bytes="4 B/param (exp_avg)",
)
