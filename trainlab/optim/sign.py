"""signSGD and Signum (Bernstein, Wang, Azizzadenesheli, Anandkumar, "signSGD: Compressed
Optimisation for Non-Convex Problems", ICML 2018, arXiv 1802.04434; Algorithms 1 and 2).

Per parameter, with lr the (scheduled) learning rate, beta the momentum and lambda the weight decay:

    signSGD (beta = 0):   theta <- theta * (1 - lr * lambda);  theta <- theta - lr * sign(g)
    Signum  (beta > 0):   m     <- beta * m + (1 - beta) * g   # m_0 = 0
                          theta <- theta * (1 - lr * lambda);  theta <- theta - lr * sign(m)

torch.sign(0) = 0. The paper's algorithms have no weight decay; the optional decay here is decoupled
(AdamW/Lion style: it is not passed through the sign), applied before the signed step.
"""

from __future__ import annotations

import torch

from trainlab.optim import lowprec
from trainlab.optim.base import ElementwiseOptimizer
from trainlab.optim.registration import Registration
from trainlab.optim.validation import check_non_negative, check_range


def signsgd_rule(p, g, states, s):
    """One tensor's signSGD update (momentum 0, stateless), out of place; s = SignSGD._scalars."""
    decay, neg_lr, _ = s
    return (p * decay + torch.sign(g) * neg_lr,)


def signum_rule(p, g, states, s):
    """One tensor's Signum update (momentum > 0), out of place; s = SignSGD._scalars(...)."""
    decay, neg_lr, one_minus_beta = s
    (m,) = states
    m = torch.lerp(m, g, one_minus_beta)
    return p * decay + torch.sign(m) * neg_lr, m


class SignSGD(ElementwiseOptimizer):
    """signSGD (Bernstein et al., ICML 2018, Algorithm 1); with momentum > 0, Signum (Algorithm 2).

    Update: theta *= 1 - lr*wd; theta -= lr * sign(g) (momentum 0), or, with momentum beta > 0,
    m = beta*m + (1-beta)*g; theta -= lr * sign(m).
    Defaults: lr 1e-4, momentum 0, weight_decay 0. The paper gives no default lr (it tunes it per
    task); 1e-4 is trainlab's choice, Lion's default, which has the same per-coordinate step size.
    State bytes: 0 with momentum 0 (stateless; the step count is a Python int); otherwise
    numel * element_size (momentum_buffer), 4 B/param in fp32.
    bf16 params: any momentum is kept in the parameter's dtype (as torch.optim.SGD; `load_state_dict`
    casts state to it anyway). Runs without error on bf16.
    Paths (`trainlab.optim.base`): by default `signsgd_rule` / `signum_rule` as one fused kernel,
    built once per machine (lr, decay and momentum are kernel inputs; momentum 0 selects
    `signsgd_rule`, whose kernel is built once too); fused=False chains `torch._foreach_*` ops;
    foreach=False applies the rule per tensor.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-4,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        state_dtype: str = "param",
        weight_update: str = "exact",
        foreach: bool = True,
        fused: bool | None = None,
    ) -> None:
        check_non_negative("lr", lr)
        check_range("momentum", momentum, 0.0, 1.0, high_open=True)
        check_non_negative("weight_decay", weight_decay)
        lowprec_options = lowprec.options(state_dtype, weight_update)
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, foreach=foreach, fused=fused)
        super().__init__(params, {**defaults, **lowprec_options})

    @staticmethod
    def _buffer(p, state):
        if "momentum_buffer" not in state:  # created lazily, only when momentum is used
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state["momentum_buffer"]

    def _scalars(self, group, step):
        lr = group["lr"]
        return 1 - lr * group["weight_decay"], -lr, 1 - group["momentum"]

    def _rule(self, group):
        return signum_rule if group["momentum"] else signsgd_rule

    def _rule_states(self, group, p, state):
        return (self._buffer(p, state),) if group["momentum"] else ()


class Signum(SignSGD):
    """Signum (Bernstein et al., ICML 2018, Algorithm 2): sign of an exponential momentum.

    Update: m = beta*m + (1-beta)*g; theta *= 1 - lr*wd (decoupled, optional); theta -= lr*sign(m).
    Defaults: lr 1e-4 (trainlab's choice, see SignSGD), momentum 0.9, weight_decay 0.
    State bytes: numel * element_size (momentum_buffer): 4 B/param for fp32 params (0 if momentum=0).
    bf16 params: momentum kept in the parameter's dtype; runs without error.
    Paths: as SignSGD's (the fused kernel of `signum_rule` by default).
    """

    def __init__(
        self,
        params,
        lr: float = 1e-4,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        state_dtype: str = "param",
        weight_update: str = "exact",
        foreach: bool = True,
        fused: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            state_dtype=state_dtype,
            weight_update=weight_update,
            foreach=foreach,
            fused=fused,
        )


# The paper tunes lr per task; every coordinate moves by lr, as with Lion, so Lion's lr and range.
REGISTRATIONS = (
    Registration(
        "signsgd",
        SignSGD,
        "signSGD: step along the sign of the gradient (stateless)",
        "Bernstein et al., signSGD: Compressed Optimisation for Non-Convex Problems, ICML 2018 (arXiv 1802.04434)",
        race_defaults={"lr": 4e-4, "weight_decay": 0.0, "warmup_fraction": 0.05},
        search_space={
            "lr": {"min": 0.0001, "max": 0.01, "scaling": "log"},
            "weight_decay": {"feasible_points": [0.0, 0.0001]},
            "warmup_fraction": {"feasible_points": [0.02, 0.05, 0.1]},
        },
        state_bytes="0 (stateless)",
    ),
    Registration(
        "signum",
        Signum,
        "Signum: step along the sign of an exponential momentum",
        "Bernstein et al., signSGD: Compressed Optimisation for Non-Convex Problems, ICML 2018 (arXiv 1802.04434)",
        race_defaults={"lr": 4e-4, "momentum": 0.9, "weight_decay": 0.0, "warmup_fraction": 0.05},
        search_space={
            "lr": {"min": 0.0001, "max": 0.01, "scaling": "log"},
            "momentum": {"min": 0.8, "max": 0.98, "scaling": "linear"},
            "weight_decay": {"min": 0.001, "max": 0.3, "scaling": "log"},
            "warmup_fraction": {"feasible_points": [0.02, 0.05, 0.1]},
        },
        state_bytes="4 B/param (momentum_buffer)",
    ),
)
