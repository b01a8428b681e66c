"""AdamW and SGD+Nesterov from torch.optim, with trainlab's checks and their registrations.

trainlab uses torch's own implementations for these two baselines (foreach and fused kernels,
exactly what users compare against); `adamw(cautious=True)`, `mars=True` or a low-precision option
(`state_dtype`, `weight_update`: `trainlab.optim.lowprec`) builds trainlab's AdamW rule instead
(`trainlab.optim.adamw`); the thin factories check values first, so a bad one is a
one-line error before any training, and register the facts trainlab keeps about them. AdamW's
default is torch's fused kernel where it runs (`TRAINLAB_FUSED=0`: torch's default, foreach).
"""

from __future__ import annotations

import torch

from trainlab.optim import lowprec
from trainlab.optim.fused import switched_on
from trainlab.optim.modifiers import MARS_GAMMA, options
from trainlab.optim.registration import Registration
from trainlab.optim.validation import check_betas, check_non_negative, check_range


def adamw(
    params,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    cautious: bool = False,
    mars: bool = False,
    mars_gamma: float = MARS_GAMMA,
    cautious_wd: bool = False,
    state_dtype: str = "param",
    weight_update: str = "exact",
    foreach: bool | None = None,
    fused: bool | None = None,
):
    check_non_negative("lr", lr)
    check_betas(betas)
    check_non_negative("eps", eps)
    check_non_negative("weight_decay", weight_decay)
    options(cautious, mars, mars_gamma, cautious_wd)
    low = lowprec.active(lowprec.options(state_dtype, weight_update))
    if cautious or mars or cautious_wd or low:  # trainlab's AdamW rule (the plain one is torch's arithmetic)
        from trainlab.optim.adamw import AdamW

        return AdamW(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            cautious=cautious,
            mars=mars,
            mars_gamma=mars_gamma,
            cautious_wd=cautious_wd,
            state_dtype=state_dtype,
            weight_update=weight_update,
            foreach=foreach is not False,
            fused=fused,
        )
    params = [dict(item, params=list(item["params"])) if isinstance(item, dict) else item for item in params]
    if fused is None and foreach is None:
        fused = _fused_by_default(params) or None
    return torch.optim.AdamW(
        params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=foreach, fused=fused
    )


def _fused_by_default(params: list) -> bool:
    """torch's fused AdamW kernel (one pass, prebuilt: no compilation) where it runs: floating
    parameters on CPUs and CUDA devices; torch's own default there is the slower foreach chain."""
    tensors = [p for item in params for p in (item["params"] if isinstance(item, dict) else [item])]
    tensors = [p for p in tensors if isinstance(p, torch.Tensor)]
    on_device = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in tensors)
    return switched_on() and bool(tensors) and on_device


def sgd(
    params,
    lr: float = 0.1,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 0.0,
    foreach: bool | None = None,
):
    check_non_negative("lr", lr)
    check_range("momentum", momentum, 0.0, 1.0, high_open=True)
    check_non_negative("weight_decay", weight_decay)
    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0, weight_decay=weight_decay, foreach=foreach
    )


# The baselines' race defaults are workload-agnostic: one value per hyperparameter for every
# workload (docs/targets.md); only their learning rate is tuned per built-in workload. Their spaces
# follow AlgoPerf's baseline search spaces (docs/search_spaces.md).
REGISTRATIONS = (
    Registration(
        "adamw",
        adamw,
        "AdamW (torch.optim implementation, foreach/fused paths)",
        "Loshchilov & Hutter, Decoupled Weight Decay Regularization, ICLR 2019",
        race_defaults={"lr": 4e-3, "betas": (0.9, 0.999), "weight_decay": 0.01, "warmup_fraction": 0.05},
        search_space={
            "lr": {"min": 1e-3, "max": 3e-2, "scaling": "log"},
            "one_minus_beta1": {"min": 0.03, "max": 0.3, "scaling": "log"},
            "beta2": {"feasible_points": [0.999]},
            "weight_decay": {"min": 1e-3, "max": 0.1, "scaling": "log"},
            "warmup_fraction": {"feasible_points": [0.02, 0.05, 0.1]},
        },
        state_bytes="8 B/param (exp_avg, exp_avg_sq) + 4 B per tensor (step)",
        reference="torch.optim.AdamW itself (trainlab checks the values and picks torch's fused path)",
    ),
    Registration(
        "sgd",
        sgd,
        "SGD with Nesterov momentum (torch.optim implementation)",
        "Sutskever et al., On the importance of initialization and momentum, ICML 2013",
        linear_update=True,
        race_defaults={"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4, "warmup_fraction": 0.05},
        search_space={
            "lr": {"min": 0.02, "max": 0.8, "scaling": "log"},
            "momentum": {"min": 0.8, "max": 0.98, "scaling": "linear"},
            "nesterov": {"feasible_points": [True]},
            "weight_decay": {"min": 1e-5, "max": 1e-3, "scaling": "log"},
            "warmup_fraction": {"feasible_points": [0.02, 0.05, 0.1]},
        },
        state_bytes="4 B/param (momentum_buffer)",
        reference="torch.optim.SGD itself (trainlab checks the values; Nesterov only with momentum)",
    ),
)
