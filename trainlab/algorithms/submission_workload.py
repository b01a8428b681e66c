"""What an AlgoPerf submission sees of a trainlab workload: AlgoPerf's workload API over it.

Published submissions read more than `model_fn` and `loss_fn`: schedules come from `step_hint`,
LAWA sizes its inner loop from `max_allowed_runtime_sec`, `eval_period_time_sec` and `step_hint`,
logging checks `metrics_logger`. trainlab budgets steps, not seconds, so the two times are nominal:
one nominal second per step, which makes `eval_period_time_sec / (max_allowed_runtime_sec /
step_hint)` the workload's steps between evaluations, the quantity submissions derive from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from trainlab.algorithms.algoperf_spec import ForwardPassMode, LossType, ParameterType, ShapeTuple, Workload


class SubmissionWorkload(Workload):
    """A trainlab workload behind AlgoPerf's PyTorch workload interface."""

    def __init__(self, workload, model: nn.Module) -> None:
        self._workload = workload
        self.eval_results: list[tuple[int, dict[str, float]]] = []
        self.last_loss: torch.Tensor | None = None
        named = list(model.named_parameters())
        self.param_shapes = {n: ShapeTuple(tuple(p.shape)) for n, p in named}
        self.model_params_types = {n: _parameter_type(n, p) for n, p in named}
        owners = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
        last = {id(p) for p in owners[-1].parameters(recurse=False)} if owners else set()
        self._output_params = {n for n, p in named if id(p) in last}

    # properties of the AlgoPerf workload API
    name = property(lambda self: self._workload.name)
    step_hint = property(lambda self: self._workload.step_budget)
    num_train_examples = property(lambda self: int(self._workload.splits().train[0].shape[0]))
    num_validation_examples = property(lambda self: int(self._workload.splits().validation[0].shape[0]))
    eval_batch_size = property(lambda self: self._workload.batch_size)
    target_metric_name = property(lambda self: self._workload.metric)
    validation_target_value = property(lambda self: self._workload.target)
    test_target_value = property(lambda self: self._workload.target)
    max_allowed_runtime_sec = property(lambda self: float(self._workload.step_budget))  # nominal: see module doc
    eval_period_time_sec = property(lambda self: float(self._workload.eval_every))
    loss_type = LossType.SOFTMAX_CROSS_ENTROPY
    metrics_logger = None

    def has_reached_validation_target(self, eval_result: Mapping[str, float]) -> bool:
        value = eval_result.get(f"validation/{self._workload.metric}")
        return value is not None and bool(self._workload.reached(value))

    def is_output_params(self, param_key: str) -> bool:
        """Whether `param_key` belongs to the last module that owns parameters (the output layer)."""
        return param_key in self._output_params

    def model_fn(
        self,
        params: nn.Module,
        augmented_and_preprocessed_input_batch: Mapping[str, Any],
        model_state: Any,
        mode: Any,
        rng: Any,
        update_batch_norm: bool,
        dropout_rate: float | None = None,
    ) -> tuple[torch.Tensor, Any]:
        training = mode == ForwardPassMode.TRAIN
        if params.training != training:
            params.train(training)
        with torch.set_grad_enabled(training):
            outputs = self._workload.outputs(params, augmented_and_preprocessed_input_batch["inputs"])
        return outputs, model_state

    def loss_fn(
        self,
        label_batch: torch.Tensor,
        logits_batch: torch.Tensor,
        mask_batch: Any = None,
        label_smoothing: float = 0.0,
    ) -> dict[str, torch.Tensor]:
        per_example = self._workload.output_loss(logits_batch, label_batch, label_smoothing)
        if mask_batch is not None:
            mask = mask_batch.reshape(-1).to(per_example.dtype)
            per_example = per_example * mask
            count = mask.sum()
        else:
            count = torch.tensor(float(per_example.numel()), device=per_example.device)
        summed = per_example.sum()
        self.last_loss = (summed / count).detach()
        return {"summed": summed, "n_valid_examples": count, "per_example": per_example}


def _parameter_type(name: str, p: torch.Tensor) -> ParameterType:
    if p.ndim >= 3:
        return ParameterType.CONV_WEIGHT
    if "embed" in name:
        return ParameterType.EMBEDDING
    if p.ndim == 2:
        return ParameterType.WEIGHT
    return ParameterType.BIAS if name.endswith("bias") else ParameterType.LAYER_NORM_SCALE
