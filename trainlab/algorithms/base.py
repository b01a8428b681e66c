"""The submission side of a race: an algorithm is optimizer + schedule + hyperparameters.

`AlgorithmSpec` is the declarative description (what gets stored and reported); `build()` turns it
into a `TrainingAlgorithm` for one trial, which is all the runner ever calls: `update()` once per
timed step, and `prepare_for_eval()` / `prepare_for_train()` around each evaluation (AlgoPerf's
prepare_for_eval: Schedule-Free swaps its evaluation weights in there). The runner owns the clock; the
algorithm never sees it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from trainlab import optim
from trainlab.schedules import as_lr_scheduler, build_schedule

# Hyperparameters the algorithm itself reads (neither optimizer nor schedule).
ALGORITHM_HPARAMS: dict[str, Any] = {"grad_clip": None}


@dataclass(frozen=True)
class AlgorithmSpec:
    name: str                               # what the user typed, e.g. "adamw" or "adamw+linear"
    optimizer: str                          # a name in trainlab.optim's registry
    schedule: str                           # a name in trainlab.schedules' registry
    hparams: Mapping[str, Any] = field(default_factory=dict)  # every effective value, defaults included
    description: str = ""

    def optimizer_hparams(self) -> dict[str, Any]:
        entry = optim.entry(self.optimizer)
        known = set(entry.hyperparameters()) | entry.switches()
        return {k: v for k, v in self.hparams.items() if k in known}

    def schedule_hparams(self) -> dict[str, Any]:
        from trainlab.schedules import SCHEDULE_HPARAMS
        return {k: v for k, v in self.hparams.items() if k in SCHEDULE_HPARAMS[self.schedule]}


class TrainingAlgorithm:
    """One trial's optimizer, schedule and update rule, built from an `AlgorithmSpec`."""

    def __init__(self, spec: AlgorithmSpec, model: nn.Module, total_steps: int,
                 grad_norm_kind: str | None = None) -> None:
        self.spec = spec
        params = [p for p in model.parameters() if p.requires_grad]
        self.params = params
        self.optimizer = optim.create(spec.optimizer, params, **spec.optimizer_hparams())
        self.schedule = build_schedule(spec.schedule, total_steps, spec.schedule_hparams())
        self.scheduler = as_lr_scheduler(self.optimizer, self.schedule)
        self.grad_clip = spec.hparams.get("grad_clip")
        if grad_norm_kind not in (None, "l1", "l2"):
            raise ValueError(f"grad_norm_kind must be None, 'l1' or 'l2', got {grad_norm_kind!r}")
        self.grad_norm_kind = grad_norm_kind
        self._grad_norms: list[torch.Tensor] = []

    def update(self, model: nn.Module, batch: Sequence[torch.Tensor],
               loss_fn: Callable[[nn.Module, Sequence[torch.Tensor]], torch.Tensor]) -> torch.Tensor:
        """One training step: forward, backward, optional clip, optimizer and schedule step."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, batch)
        loss.backward()
        if self.grad_norm_kind is not None:
            grads = [p.grad for p in self.params if p.grad is not None]
            order = 1.0 if self.grad_norm_kind == "l1" else 2.0
            norms = torch._foreach_norm(grads, order)
            self._grad_norms.append(torch.linalg.vector_norm(torch.stack(norms), order))
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip, foreach=True)
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()

    def prepare_for_eval(self, model: nn.Module) -> None:
        """Swap in evaluation weights for optimizers that keep them apart (Schedule-Free: `.eval()`)."""
        swap = getattr(self.optimizer, "eval", None)
        if callable(swap):
            swap()

    def prepare_for_train(self, model: nn.Module) -> None:
        swap = getattr(self.optimizer, "train", None)
        if callable(swap):
            swap()

    def grad_norms(self) -> list[float]:
        """Per-step gradient norms recorded so far (for schedules refined from a first run)."""
        return [float(v) for v in torch.stack(self._grad_norms).tolist()] if self._grad_norms else []
