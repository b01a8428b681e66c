"""Freezing parameters: no gradient, no optimizer state, no update.

A frozen parameter (`requires_grad=False`) gets no `.grad`, so autograd neither computes nor stores
it, and trainlab's and torch's optimizers skip it (they skip `p.grad is None`) and never create its
state -- provided it never had a gradient. Building the optimizer after freezing, from
`trainable_parameters(model)`, also keeps it out of the param groups entirely (the clean way).

Two ways to choose what to freeze:
- `freeze(model, modules=[...], first_k=...)`: a fixed rule, before training.
- `ChangeBasedFreezer`: during training, freeze the parameter tensors that have stopped moving
  (criterion below), in the spirit of freeze-as-you-go schemes such as FAR (Freeze-And-Reconfigure).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from trainlab.errors import UsageError


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters that still require grad: build the optimizer from these after freezing."""
    return [p for p in model.parameters() if p.requires_grad]


def parameter_units(model: nn.Module) -> list[tuple[str, list[str]]]:
    """(module name, names of the parameters it registers itself) in registration order.

    These are the units `first_k` counts: e.g. ByteGPT's units are "" (the root, owning `position`),
    "embed", "blocks.0.ln1", "blocks.0.attn.qkv", ... A Linear is one unit (weight and bias).
    """
    units = []
    for module_name, module in model.named_modules(remove_duplicate=False):
        own = [name for name, _ in module.named_parameters(recurse=False, remove_duplicate=False)]
        if own:
            prefix = f"{module_name}." if module_name else ""
            units.append((module_name, [prefix + name for name in own]))
    return units


def freeze(model: nn.Module, modules: Sequence[str] | str | None = None, first_k: int | None = None) -> list[str]:
    """Set `requires_grad=False` on the parameters chosen; returns their names in model order.

    `modules`: rules matched against every dotted prefix of each parameter name, with shell-style
    wildcards: "blocks.0" freezes everything under blocks.0, "embed.weight" one tensor,
    "blocks.*.attn" every attention. A rule that matches no parameter is a UsageError (a typo must
    not silently freeze nothing). `first_k`: the first k units of `parameter_units(model)`, i.e. the
    k parameter-owning modules nearest the input in registration order. Both may be given (union).
    Gradients already stored on the frozen parameters are dropped.
    """
    if modules is None and first_k is None:
        raise UsageError("freeze needs modules=[...] or first_k=N")
    # every name a parameter is reachable by (a tied weight has several), matched by identity
    aliases = dict(model.named_parameters(remove_duplicate=False))
    chosen: set[int] = set()
    if isinstance(modules, str):
        modules = [modules]
    for rule in modules or []:
        matched = {id(p) for n, p in aliases.items() if _matches(rule, n)}
        if not matched:
            raise UsageError(f"freeze rule {rule!r} matches no parameter; module names look like: {_examples(model)}")
        chosen |= matched
    if first_k is not None:
        units = parameter_units(model)
        if isinstance(first_k, bool) or not isinstance(first_k, int) or not 1 <= first_k <= len(units):
            raise UsageError(
                f"first_k must be an int from 1 to {len(units)} (the model's parameter-owning modules), got {first_k!r}"
            )
        for _, unit in units[:first_k]:
            chosen.update(id(aliases[n]) for n in unit)
    frozen = []
    for name, p in model.named_parameters():
        if id(p) in chosen:
            p.requires_grad_(False)
            p.grad = None
            frozen.append(name)
    return frozen


def _matches(rule: str, name: str) -> bool:
    parts = name.split(".")
    return any(fnmatch.fnmatchcase(".".join(parts[:i]), rule) for i in range(1, len(parts) + 1))


def _examples(model: nn.Module, limit: int = 8) -> str:
    units = [name or "(root)" for name, _ in parameter_units(model)]
    shown = ", ".join(units[:limit])
    return shown + (f", ... ({len(units)} in all)" if len(units) > limit else "")


def drop_from_optimizer(optimizer: torch.optim.Optimizer, params: Iterable[torch.Tensor]) -> int:
    """Remove `params` from `optimizer`'s param groups and delete their state; returns bytes freed.

    Param groups are kept even when they become empty, so group indices (LR schedules, per-group
    hyperparameters) stay valid. The optimizer's `state_dict()` then describes fewer parameters: to
    resume from it, freeze the same names before building the optimizer.
    """
    targets = {id(p) for p in params}
    freed = 0
    for group in optimizer.param_groups:
        group["params"] = [p for p in group["params"] if id(p) not in targets]
    for p in [p for p in optimizer.state if id(p) in targets]:
        for value in optimizer.state.pop(p).values():
            if isinstance(value, torch.Tensor):
                freed += value.numel() * value.element_size()
    return freed


class ChangeBasedFreezer:
    """Freeze parameter tensors whose relative change over a window of steps fell below a threshold.

    Criterion: every `window` calls to `step()` (after `optimizer.step()`), for each trainable
    parameter tensor, `r = ||theta_now - theta_then|| / max(||theta_then||, eps)` where `theta_then`
    is its value `window` steps ago; tensors with `r < threshold` are frozen for the rest of training.
    No freezing happens before `start_step` calls (early steps move everything; warm-up LR schedules
    make early changes small for the wrong reason). `max_fraction` caps the fraction of the model's
    parameter entries that may be frozen (the smallest-r tensors go first). `exclude`: name rules (as
    in `freeze`) never frozen, e.g. the output head.

    When `optimizer` is given, newly frozen tensors are removed from it and their state deleted
    (`drop_from_optimizer`); otherwise the runner must do that or rebuild the optimizer.
    Memory cost: one snapshot of the trainable parameters (same dtype and device).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        window: int = 100,
        threshold: float = 1e-3,
        start_step: int = 0,
        max_fraction: float = 1.0,
        exclude: Sequence[str] = (),
        eps: float = 1e-12,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise UsageError(f"window must be a positive int, got {window!r}")
        if not threshold >= 0:
            raise UsageError(f"threshold must be >= 0, got {threshold!r}")
        if not 0.0 <= max_fraction <= 1.0:
            raise UsageError(f"max_fraction must be in [0, 1], got {max_fraction!r}")
        names = [n for n, _ in model.named_parameters()]
        for rule in exclude:
            if not any(_matches(rule, n) for n in names):
                raise UsageError(
                    f"exclude rule {rule!r} matches no parameter; module names look like: {_examples(model)}"
                )
        self.model = model
        self.window = window
        self.threshold = float(threshold)
        self.start_step = int(start_step)
        self.max_fraction = float(max_fraction)
        self.exclude = tuple(exclude)
        self.eps = float(eps)
        self.optimizer = optimizer
        self.steps = 0
        self.frozen: list[str] = []
        self.last_change: dict[str, float] = {}
        self._total = sum(p.numel() for p in model.parameters())
        self._snapshot = self._take_snapshot()

    def _candidates(self) -> dict[str, nn.Parameter]:
        return {
            n: p
            for n, p in self.model.named_parameters()
            if p.requires_grad and not any(_matches(rule, n) for rule in self.exclude)
        }

    @torch.no_grad()
    def _take_snapshot(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self._candidates().items()}

    @torch.no_grad()
    def step(self) -> list[str]:
        """Count one training step; at the end of each window, freeze and return the newly frozen names."""
        self.steps += 1
        if self.steps % self.window:
            return []
        current = self._candidates()
        changes = {}
        for name, p in current.items():
            then = self._snapshot.get(name)
            if then is None:
                continue
            diff = torch.linalg.vector_norm((p.detach() - then).float()).item()
            changes[name] = diff / max(torch.linalg.vector_norm(then.float()).item(), self.eps)
        self.last_change = changes
        newly: list[str] = []
        if self.steps >= self.start_step:
            frozen_numel = sum(p.numel() for p in self.model.parameters() if not p.requires_grad)
            allowed = self.max_fraction * self._total - frozen_numel
            for name in sorted((n for n, r in changes.items() if r < self.threshold), key=lambda n: changes[n]):
                if current[name].numel() > allowed:
                    continue
                allowed -= current[name].numel()
                newly.append(name)
        if newly:
            params = [current[n] for n in newly]
            for p in params:
                p.requires_grad_(False)
                p.grad = None
            if self.optimizer is not None:
                drop_from_optimizer(self.optimizer, params)
            self.frozen.extend(newly)
        self._snapshot = self._take_snapshot()
        return newly
