"""`create(name, params, **hparams)`, `available()` and `state_bytes(optimizer)`.

Every optimizer is registered with its class; its hyperparameters and their defaults are read from
the constructor's signature, so the registry can never disagree with the class. An unknown or
ill-typed hyperparameter is an error naming the valid ones: a typo is never silently ignored.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch

from trainlab.optim.nadamw import NAdamW
from trainlab.optim.validation import check_betas, check_non_negative, check_range


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable[..., torch.optim.Optimizer]
    summary: str
    citation: str
    overrides: dict[str, Any]  # trainlab's defaults where they differ from the constructor's
    # What a race uses where nothing was tuned for the workload (a user's own workload, the
    # leaderboard's self-tuning view): workload-agnostic values, each with its source where it is set.
    race_defaults: dict[str, Any] = field(default_factory=dict)
    schedule: str = "cosine"   # the default learning-rate schedule of `trainlab race --algorithms NAME`

    def hyperparameters(self) -> dict[str, Any]:
        """Hyperparameter name -> default, excluding `params` and implementation switches."""
        sig = inspect.signature(self.factory)
        found = {}
        for key, p in sig.parameters.items():
            if key in ("params", "self") or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            if key in _IMPLEMENTATION_SWITCHES:
                continue
            found[key] = p.default if p.default is not inspect.Parameter.empty else None
        found.update(self.overrides)
        return found

    def switches(self) -> set[str]:
        """Implementation switches the factory accepts (e.g. `fused`, `foreach`): settable, never tuned."""
        return set(inspect.signature(self.factory).parameters) & _IMPLEMENTATION_SWITCHES


# Switches that choose an implementation, not the mathematics; accepted but not listed as tunable.
_IMPLEMENTATION_SWITCHES = {"foreach", "fused", "capturable", "differentiable", "maximize"}

_REGISTRY: dict[str, Entry] = {}

# Optimizers whose update is the gradient times a scalar (momentum included), so the step grows with
# the gradient's scale. Every other registered rule normalizes the gradient (Adam's second moment, a
# sign, whitening, Adam in a subspace) and is scale-invariant. Batch-size scaling (linear vs square
# root) and schedule refinement (L2 vs L1 gradient norms) both follow from this one fact.
LINEAR_UPDATE: set[str] = {"sgd"}


def linear_update(name: str) -> bool:
    """Whether optimizer `name`'s update is linear in the gradient (ValueError if unknown)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(available())}")
    return name in LINEAR_UPDATE


def register(name: str, factory: Callable[..., torch.optim.Optimizer], summary: str, citation: str,
             *, race_defaults: dict[str, Any] | None = None, schedule: str = "cosine",
             **overrides: Any) -> None:
    _REGISTRY[name] = Entry(name, factory, summary, citation, overrides, dict(race_defaults or {}),
                            schedule)


def available() -> list[str]:
    return sorted(_REGISTRY)


def entry(name: str) -> Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; available: {', '.join(available())}") from None


def create(name: str, params: Iterable, **hparams: Any) -> torch.optim.Optimizer:
    """Build optimizer `name` over `params` (tensors or param-group dicts) with checked hparams."""
    found = entry(name)
    defaults = found.hyperparameters()
    allowed = set(defaults) | (set(inspect.signature(found.factory).parameters) & _IMPLEMENTATION_SWITCHES)
    for key, value in hparams.items():
        if key not in allowed:
            raise ValueError(f"optimizer {name!r} has no hyperparameter {key!r}; "
                             f"valid: {', '.join(sorted(defaults))}")
        _check_type(name, key, value, defaults.get(key))
    return found.factory(params, **{**found.overrides, **hparams})


def _check_type(optimizer: str, key: str, value: Any, default: Any) -> None:
    if default is None:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        kind = "a bool"
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        kind = "a number"
    elif isinstance(default, tuple):
        ok = isinstance(value, (tuple, list)) and len(value) == len(default) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        kind = f"a sequence of {len(default)} numbers"
    elif isinstance(default, str):
        ok = isinstance(value, str)
        kind = "a string"
    else:
        return
    if not ok:
        raise ValueError(f"optimizer {optimizer!r}: {key} must be {kind} (default {default!r}), "
                         f"got {value!r}")


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by tensors in the optimizer's per-parameter state (shared storage counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for state in optimizer.state.values():
        for value in _tensors(state):
            key = (value.untyped_storage().data_ptr(), value.untyped_storage().nbytes())
            if key in seen:
                continue
            seen.add(key)
            total += value.untyped_storage().nbytes()
    return total


def _tensors(value: Any):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


# ---- the registered optimizers ---------------------------------------------------------------

def _adamw(params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
           weight_decay: float = 0.01, foreach: bool | None = None, fused: bool | None = None):
    check_non_negative("lr", lr)
    check_betas(betas)
    check_non_negative("eps", eps)
    check_non_negative("weight_decay", weight_decay)
    return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                             foreach=foreach, fused=fused)


def _sgd(params, lr: float = 0.1, momentum: float = 0.9, nesterov: bool = True,
         weight_decay: float = 0.0, foreach: bool | None = None):
    check_non_negative("lr", lr)
    check_range("momentum", momentum, 0.0, 1.0, high_open=True)
    check_non_negative("weight_decay", weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                           weight_decay=weight_decay, foreach=foreach)


# The baselines' race defaults are workload-agnostic: one value per hyperparameter for every
# workload (docs/targets.md); only their learning rate is tuned per built-in workload.
register("adamw", _adamw, "AdamW (torch.optim implementation, foreach/fused paths)",
         "Loshchilov & Hutter, Decoupled Weight Decay Regularization, ICLR 2019",
         race_defaults={"lr": 4e-3, "betas": (0.9, 0.999), "weight_decay": 0.01, "warmup_fraction": 0.05})
register("nadamw", NAdamW, "NAdamW, the AlgoPerf baseline (Nesterov look-ahead, decoupled decay)",
         "Dozat 2016; Choi et al. 2019 (arXiv 1910.05446); AlgoPerf baseline",
         race_defaults={"lr": 4e-3, "betas": (0.9, 0.999), "weight_decay": 0.01, "warmup_fraction": 0.05})
register("sgd", _sgd, "SGD with Nesterov momentum (torch.optim implementation)",
         "Sutskever et al., On the importance of initialization and momentum, ICML 2013",
         race_defaults={"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4,
                        "warmup_fraction": 0.05})
