"""The submission side of a race: an algorithm is optimizer + schedule + hyperparameters.

`AlgorithmSpec` is the declarative description (what gets stored and reported); `build()` turns it
into a `TrainingAlgorithm` for one trial, which is all the runner ever calls: `update()` once per
timed step, and `prepare_for_eval()` / `prepare_for_train()` around each evaluation (AlgoPerf's
prepare_for_eval: Schedule-Free swaps its evaluation weights in there). The runner owns the clock; the
algorithm never sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from trainlab import optim
from trainlab.errors import UsageError
from trainlab.optim.selection import coverage, recipe_groups
from trainlab.schedules import SCHEDULE_HPARAMS, as_lr_scheduler, build_schedule

# Hyperparameters the algorithm itself reads (neither optimizer nor schedule). decay_1d: weight decay
# on parameters with fewer than two dimensions too (biases, norm gains); False exempts them, for every
# optimizer alike (`trainlab.optim.selection`). True, the default, is what every stored number used.
ALGORITHM_HPARAMS: dict[str, Any] = {"grad_clip": None, "decay_1d": True}


@dataclass(frozen=True)
class AlgorithmSpec:
    name: str  # what the user typed, e.g. "adamw" or "adamw+linear"
    optimizer: str  # a name in trainlab.optim's registry
    schedule: str  # a name in trainlab.schedules' registry
    hparams: Mapping[str, Any] = field(default_factory=dict)  # every effective value, defaults included
    description: str = ""
    source: str = ""  # where the values came from (defaults, leaderboard, ...)
    submission: bool = False  # an AlgoPerf submission (`algoperf:PATH`): hparams are its point
    method: str = "plain"  # how the optimizer is driven: "plain" steps, or "sso" (trainlab.algorithms.sso)

    def optimizer_hparams(self, total_steps: int | None = None) -> dict[str, Any]:
        """The constructor's arguments. With `total_steps`, an optimizer whose own step counts
        scale with the budget (`budget_steps` on its class: a warm-up inside the method) gets each
        from its fraction, unless the schedule takes that fraction itself."""
        if self.submission:
            return {}
        entry = optim.entry(self.optimizer)
        known = set(entry.hyperparameters()) | entry.switches()
        out = {k: v for k, v in self.hparams.items() if k in known}
        for argument, name in getattr(entry.factory, "budget_steps", {}).items():
            fraction = self.hparams.get(name)
            if total_steps is None or fraction is None or name in SCHEDULE_HPARAMS[self.schedule]:
                continue
            steps = int(round(float(fraction) * total_steps))
            out[argument] = steps if steps > 0 else entry.hyperparameters().get(argument)
        return out

    def schedule_hparams(self) -> dict[str, Any]:
        return {k: v for k, v in self.hparams.items() if k in SCHEDULE_HPARAMS[self.schedule]}

    def submission_hparams(self) -> dict[str, Any]:
        """A submission's hyperparameter point (trainlab's own bookkeeping keys left out)."""
        return {k: v for k, v in self.hparams.items() if k not in ("batch_size_source", "batches_drawn")}


class TrainingAlgorithm:
    """One trial's optimizer, schedule and update rule, built from an `AlgorithmSpec`."""

    def __init__(
        self, spec: AlgorithmSpec, model: nn.Module, total_steps: int, grad_norm_kind: str | None = None
    ) -> None:
        self.spec = spec
        self.params = [p for p in model.parameters() if p.requires_grad]
        # matrix methods get the recipes' groups (hidden matrices apart: trainlab.optim.selection)
        decay_1d = spec.hparams.get("decay_1d", True)
        if not isinstance(decay_1d, bool):
            raise UsageError(f"{spec.name}: decay_1d must be True or False, got {decay_1d!r}")
        groups = recipe_groups(optim.entry(spec.optimizer).factory, model, decay_1d)
        hparams = spec.optimizer_hparams(total_steps)
        self.optimizer = optim.create(spec.optimizer, groups, **hparams)
        # fused kernels are built once per machine, at set-up, never on a trial's clock
        optim.build_kernels(spec.optimizer, hparams, self.params)
        self.schedule = build_schedule(spec.schedule, total_steps, spec.schedule_hparams())
        self.scheduler = as_lr_scheduler(self.optimizer, self.schedule)
        self.grad_clip = spec.hparams.get("grad_clip")
        if grad_norm_kind not in (None, "l1", "l2"):
            raise ValueError(f"grad_norm_kind must be None, 'l1' or 'l2', got {grad_norm_kind!r}")
        self.grad_norm_kind = grad_norm_kind
        self._grad_norms: list[torch.Tensor] = []

    def next_batch(self, batches, model: nn.Module):
        """The next training batch (a submission may choose its own: `data_selection`)."""
        return next(batches)

    def record_eval(self, step: int, metric_name: str, metric: float, loss: float) -> None:
        """Told every evaluation's result (AlgoPerf submissions read them); nothing to do here."""

    def coverage(self) -> tuple[int, int] | None:
        """(entries the method projects, whitens or splits, all entries), or None for a method that
        treats every entry alike (the elementwise ones)."""
        return coverage(self.optimizer)

    def state_bytes(self) -> int:
        """Bytes of optimizer state on this process (`trainlab.optim.state_bytes`)."""
        return optim.state_bytes(self.optimizer)

    def update(
        self,
        model: nn.Module,
        batch: Sequence[torch.Tensor],
        loss_fn: Callable[[nn.Module, Sequence[torch.Tensor]], torch.Tensor],
    ) -> torch.Tensor:
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


def check_applies(spec: AlgorithmSpec, model: nn.Module, workload: str, total_steps: int) -> None:
    """Refuse, before any training, a matrix method that would treat no parameter of `model`
    differently from AdamW: its result would be AdamW's under another name."""
    if spec.submission:
        return
    covered = TrainingAlgorithm(spec, model, total_steps).coverage()
    if covered is None or covered[0] > 0:
        return
    setting = getattr(optim.entry(spec.optimizer).factory, "coverage_setting", None)
    fix = (
        f"lower {spec.name}.{setting} (--hparams {spec.name}.{setting}=...)"
        if setting
        else "give the model a hidden Linear or convolution layer, or race another method"
    )
    raise UsageError(
        f"{spec.name} would treat no parameter of workload {workload!r} differently from "
        f"AdamW (it acts on hidden Linear/conv weights only, see trainlab.optim.selection): "
        f"{fix}"
    )
