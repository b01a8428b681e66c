"""`create(name, params, **hparams)`, `available()` and `state_bytes(optimizer)`.

Every optimizer is registered with its `Registration` (stated beside its class); its hyperparameters
and their defaults are read from the constructor's signature, so the registry can never disagree
with the class. Installed packages add theirs through the `trainlab.optimizers` entry-point group. An unknown or
ill-typed hyperparameter is an error naming the valid ones: a typo is never silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from trainlab.optim.distributed import is_sharded
from trainlab.optim.registration import Registration

_REGISTRY: dict[str, Registration] = {}
ENTRY_POINT_GROUP = "trainlab.optimizers"
_plugins_loaded = False


def register(registration: Registration) -> None:
    """Add an optimizer (a built-in, a package's, or a user's class wrapped by trainlab)."""
    if not isinstance(registration, Registration):
        raise TypeError(f"register() takes a trainlab.optim.Registration, got {type(registration).__name__}")
    _REGISTRY[registration.name] = registration


def _load_plugins() -> None:
    """Register what installed packages offer in the `trainlab.optimizers` entry-point group: each
    entry point names a `Registration` or a list of them. Loaded once, on first lookup."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found = point.load()
        except Exception as exc:  # a broken plugin must not take the built-ins down with it
            raise ValueError(
                f"entry point {point.name!r} ({point.value}) of group {ENTRY_POINT_GROUP} "
                f"failed to load: {type(exc).__name__}: {exc}"
            ) from None
        for registration in found if isinstance(found, (list, tuple)) else [found]:
            if not isinstance(registration, Registration):
                raise ValueError(
                    f"entry point {point.name!r} ({point.value}) must name a "
                    f"trainlab.optim.Registration or a list of them, got {type(registration).__name__}"
                )
            register(registration)


def available() -> list[str]:
    _load_plugins()
    return sorted(_REGISTRY)


def entry(name: str) -> Registration:
    _load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; available: {', '.join(available())}") from None


def linear_update(name: str) -> bool:
    """Whether optimizer `name`'s update is linear in the gradient (ValueError if unknown)."""
    return entry(name).linear_update


def create(name: str, params: Iterable, **hparams: Any) -> torch.optim.Optimizer:
    """Build optimizer `name` over `params` (tensors or param-group dicts) with checked hparams."""
    found = entry(name)
    defaults = found.hyperparameters()
    allowed = set(defaults) | found.switches()
    for key, value in hparams.items():
        if key not in allowed:
            raise ValueError(f"optimizer {name!r} has no hyperparameter {key!r}; valid: {', '.join(sorted(defaults))}")
        _check_type(name, key, value, defaults.get(key))
    return found.factory(params, **{**found.overrides, **hparams})


def build_kernels(name: str, hparams: dict[str, Any], params: Iterable[torch.Tensor]) -> None:
    """Build now (once per machine; a no-op once built) the fused kernels optimizer `name` would
    build on its first step over `params`' dtypes and devices, by one step of a throwaway instance
    on two-entry tensors: set-up work a race keeps off the clock. Other optimizers: nothing."""
    from trainlab.optim.base import ElementwiseOptimizer

    factory = entry(name).factory
    if isinstance(factory, type) and not issubclass(factory, ElementwiseOptimizer):
        return
    kinds = {(p.dtype, p.device) for p in params if p.requires_grad}
    tiny = [torch.zeros(2, dtype=dtype, device=device, requires_grad=True) for dtype, device in kinds]
    for t in tiny:
        t.grad = torch.ones_like(t)
    throwaway = factory([{"params": [t]} for t in tiny], **hparams) if tiny else None
    if isinstance(throwaway, ElementwiseOptimizer):  # a factory function may build one (adamw[cautious=true])
        throwaway.step()


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
        ok = (
            isinstance(value, (tuple, list))
            and len(value) == len(default)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        )
        kind = f"a sequence of {len(default)} numbers"
    elif isinstance(default, str):
        ok = isinstance(value, str)
        kind = "a string"
    else:
        return
    if not ok:
        raise ValueError(f"optimizer {optimizer!r}: {key} must be {kind} (default {default!r}), got {value!r}")


def state_bytes(optimizer: torch.optim.Optimizer | Any, exclude: Any = ()) -> int:
    """Bytes held by tensors in the optimizer's per-parameter state (shared storage counted once), on
    this process: a sharded (DTensor) state counts its local shard; the total over ranks is the sum
    (e.g. an all-reduce of this number). Given anything else (an AlgoPerf submission's
    optimizer_state), the tensors nested in it, less those sharing storage with `exclude` (the
    model's parameters, which such a state may hold)."""
    seen = {_storage(t) for t in _tensors(list(exclude))}
    total = 0
    values = optimizer.state.values() if isinstance(optimizer, torch.optim.Optimizer) else [optimizer]
    for state in values:
        for value in _tensors(state):
            key = _storage(value)
            if key in seen:
                continue
            seen.add(key)
            total += key[1]
    return total


def total_state_bytes(optimizer: torch.optim.Optimizer, group=None) -> int:
    """`state_bytes` summed over the ranks of the process group (a collective: every rank calls it);
    replicated state counts once per rank that holds it. Without torch.distributed running, this
    process's bytes."""
    local = state_bytes(optimizer)
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return local
    value = torch.tensor([local], dtype=torch.int64)
    torch.distributed.all_reduce(value, group=group)
    return int(value.item())


def _storage(t: torch.Tensor) -> tuple[int, int]:
    if is_sharded(t):
        t = t.to_local()
    return t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()


def _tensors(value: Any):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
