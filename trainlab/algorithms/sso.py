"""Target-based surrogate optimisation (SSO; Lavington et al., "Target-based Surrogates for
Stochastic Optimization", ICML 2023): how far does one gradient go?

Each outer step spends one gradient of the loss with respect to the model's outputs z (the
"targets": logits here) on a batch, then takes `inner_steps` parameter steps of any inner optimizer
on the surrogate, on the same batch:

    s(theta) = <g, z(theta) - z_t> + ||z(theta) - z_t||^2 / (2 eta N),    g = d loss / d z at z_t,

with N the number of per-example (per-token) loss terms, so that with the loss a mean over them the
surrogate's minimiser in z is z_t - eta * grad l_i for every term: a step of size eta in target
space, which the inner steps project back onto what the model can output (SSO is projected SGD in
target space). The first inner step is the inner optimizer's ordinary step (at z = z_t the
surrogate's gradient is the loss's), so with inner_steps = 1 SSO is its inner optimizer.

Names: `sso` (inner AdamW), `sso[inner=OPTIMIZER]`, optionally `+SCHEDULE` after the bracket. The
inner optimizer starts from its own configuration for the workload (the leaderboard's where it has
one), so a race of `sso[inner=adamw]` beside `adamw` compares like with like. The learning-rate
schedule advances once per outer step. Everything is on the clock; a trial records its outer
gradients (its steps) and inner steps.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from trainlab.algorithms.base import AlgorithmSpec, TrainingAlgorithm
from trainlab.errors import UsageError

# SSO's own hyperparameters, with the race defaults.
SSO_HPARAMS: dict[str, Any] = {
    "target_lr": 1.0,  # eta: the step size in target space
    "inner_steps": 3,  # m: parameter steps on each surrogate
}
DEFAULT_INNER = "adamw"
_NAME = re.compile(r"^sso(?:\[(?P<options>[^\]]*)\])?(?P<schedule>\+.*)?$")


def is_sso(name: str) -> bool:
    return name.strip() == "sso" or name.strip().startswith(("sso[", "sso+"))


def inner_name(name: str) -> str:
    """The inner algorithm's name (OPTIMIZER[+SCHEDULE]) of an SSO name."""
    match = _NAME.match(name.strip())
    if match is None:
        raise UsageError(f"bad SSO name {name!r}: write sso, sso[inner=OPTIMIZER] or sso[inner=OPTIMIZER]+SCHEDULE")
    inner = DEFAULT_INNER
    for option in filter(None, (o.strip() for o in (match["options"] or "").split(","))):
        key, sep, value = option.partition("=")
        if key.strip() != "inner" or not sep or not value.strip():
            raise UsageError(f"bad SSO option {option!r} in {name!r}: the one option is inner=OPTIMIZER")
        inner = value.strip()
    if is_sso(inner):
        raise UsageError(f"{name!r}: the inner optimizer of SSO cannot be SSO")
    return inner + (match["schedule"] or "")


def check_hparams(name: str, hparams: dict[str, Any]) -> None:
    eta, steps = hparams["target_lr"], hparams["inner_steps"]
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not eta > 0:
        raise UsageError(f"algorithm {name!r}: target_lr must be a positive number, got {eta!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UsageError(f"algorithm {name!r}: inner_steps must be a positive integer, got {steps!r}")


def check_workload(spec: AlgorithmSpec, workload) -> None:
    """SSO needs the workload's outputs and its loss on them (the optional part of the contract;
    the base class's `output_loss` only raises). Read by name: algorithms sit beside workloads, not
    above them, so this module does not import the contract."""
    if getattr(type(workload).output_loss, "__qualname__", "") == "Workload.output_loss":
        raise UsageError(
            f"{spec.name} needs workload {workload.name!r} to state its loss on outputs: define "
            "output_loss(outputs, targets, label_smoothing) (every built-in workload does)"
        )


class SSOAlgorithm(TrainingAlgorithm):
    """SSO around the inner optimizer that `TrainingAlgorithm` builds from the spec."""

    def __init__(self, spec: AlgorithmSpec, model: nn.Module, workload, total_steps: int) -> None:
        check_workload(spec, workload)
        super().__init__(spec, model, total_steps)
        self.workload = workload
        self.target_lr = float(spec.hparams["target_lr"])
        self.inner_steps = int(spec.hparams["inner_steps"])
        self.outer_gradients = 0
        self.inner_taken = 0

    def update(
        self,
        model: nn.Module,
        batch: Sequence[torch.Tensor],
        loss_fn: Callable[[nn.Module, Sequence[torch.Tensor]], torch.Tensor],
    ) -> torch.Tensor:
        """One outer step: the target-space gradient, then `inner_steps` surrogate steps."""
        inputs, targets = self.workload.inputs_and_targets(batch)
        outputs = self.workload.outputs(model, inputs)
        losses = self.workload.output_loss(outputs, targets)
        loss = losses.mean()
        # the outer gradient, in target space; its graph through the model is kept for step one
        (grad,) = torch.autograd.grad(loss, outputs, retain_graph=True)
        anchor = outputs.detach()
        scale = 1.0 / (self.target_lr * losses.numel())
        self.outer_gradients += 1
        for k in range(self.inner_steps):
            self.optimizer.zero_grad(set_to_none=True)
            if k == 0:  # at z = z_t the surrogate's gradient in z is g itself
                outputs.backward(grad)
            else:
                z = self.workload.outputs(model, inputs)
                gap = z - anchor
                ((grad * gap).sum() + 0.5 * scale * (gap * gap).sum()).backward()
            if self.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip, foreach=True)
            self.optimizer.step()
            self.inner_taken += 1
        self.scheduler.step()
        return loss.detach()

    def counts(self) -> tuple[int, int]:
        """(outer gradients, inner steps) so far."""
        return self.outer_gradients, self.inner_taken
