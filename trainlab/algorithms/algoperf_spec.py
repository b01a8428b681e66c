"""AlgoPerf's `spec` module as a PyTorch submission sees it, installed as `algoperf.spec` and
`algorithmic_efficiency.spec` (see `algoperf_compat.install`).

The published module imports JAX at its top, so trainlab provides the same names itself: the enums,
the type aliases submissions annotate with (`spec.ParameterContainer`, `spec.OptimizerState`, ...),
`ShapeTuple`, `TrainingCompleteError`, the `Workload` base class and the documented signatures of
the submission functions. Submissions read these names at import time (annotations are evaluated
when a `def` runs), so a missing alias fails the whole file: every name of the published module is
here, with the same values where a submission could compare them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
from torch import nn


class LossType(enum.Enum):
    SOFTMAX_CROSS_ENTROPY = 0
    SIGMOID_CROSS_ENTROPY = 1
    MEAN_SQUARED_ERROR = 2
    CTC_LOSS = 3
    MEAN_ABSOLUTE_ERROR = 4


class ForwardPassMode(enum.Enum):
    TRAIN = 0
    EVAL = 1


class ParameterType(enum.Enum):
    WEIGHT = 0
    BIAS = 1
    CONV_WEIGHT = 2
    BATCH_NORM_SCALE = 3
    BATCH_NORM_BIAS = 4
    LAYER_NORM_SCALE = 5
    LAYER_NORM_BIAS = 6
    EMBEDDING = 7
    ATTENTION_Q = 8
    ATTENTION_K = 9
    ATTENTION_V = 10
    ATTENTION_OUT = 11
    ATTENTION_QKV = 12
    ATTENTION_KV = 13
    ATTENTION_BIAS = 14


class ShapeTuple:
    """A parameter's shape as one leaf (so tree utilities do not iterate into it)."""

    def __init__(self, shape_tuple: tuple[int, ...]) -> None:
        self.shape_tuple = tuple(shape_tuple)

    def __repr__(self) -> str:
        return f"ShapeTuple({self.shape_tuple})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ShapeTuple) and self.shape_tuple == other.shape_tuple

    __hash__ = None  # type: ignore[assignment]  # mutable-style value object, as published


class TrainingCompleteError(Exception):
    """Raised by a submission to end training early; the trial completes with what it has."""


class TrainState(NamedTuple):
    """What the runner tells `update_params(train_state=...)` (v0.6), as trainlab keeps it."""

    accumulated_submission_time: float
    global_step: int
    last_eval_time: float
    training_complete: bool


# The type aliases of the published API (annotations only: any value passes).
Tensor = Any
Shape = tuple[int] | tuple[int, int] | tuple[int, int, int] | tuple[int, int, int, int] | ShapeTuple
ParameterKey = str
ParameterShapeTree = dict[str, dict[str, Shape]]
ParameterContainer = dict[ParameterKey, dict[ParameterKey, Tensor]] | nn.Module
ParameterTypeTree = dict[ParameterKey, dict[ParameterKey, ParameterType]]
RandomState = Any
OptimizerState = dict[str, Any] | tuple[Any, Any]
Hyperparameters = Any
Timing = int
Steps = int
ModelAuxiliaryState = Any
ModelInitState = tuple[ParameterContainer, ModelAuxiliaryState]
UpdateReturn = tuple[OptimizerState, ParameterContainer, ModelAuxiliaryState]


class Workload:
    """The workload interface a submission may read (trainlab's adapter fills it in: see
    `trainlab.algorithms.submission_workload.SubmissionWorkload`). Subclassing it lets a
    submission's `isinstance(workload, spec.Workload)` hold."""

    metrics_logger: Any = None

    def attach_metrics_logger(self, metrics_logger: Any) -> None:
        self.metrics_logger = metrics_logger

    def output_activation_fn(self, logits_batch: torch.Tensor, framework: str) -> torch.Tensor:
        """Logits to probabilities for this workload's loss type (PyTorch only here)."""
        if framework != "pytorch":
            raise ValueError(f"trainlab runs PyTorch submissions only, not framework={framework!r}")
        loss_type = getattr(self, "loss_type", LossType.SOFTMAX_CROSS_ENTROPY)
        if loss_type in (LossType.SOFTMAX_CROSS_ENTROPY, LossType.CTC_LOSS):
            return torch.softmax(logits_batch, dim=-1)
        if loss_type == LossType.SIGMOID_CROSS_ENTROPY:
            return torch.sigmoid(logits_batch)
        return logits_batch


# The submission functions' types, as the published module declares them.
InitOptimizerFn = Callable[
    [Workload, ParameterContainer, ModelAuxiliaryState, Hyperparameters, RandomState], OptimizerState
]
UpdateParamsFn = Callable[..., UpdateReturn]
PrepareForEvalFn = Callable[..., UpdateReturn]
DataSelectionFn = Callable[..., dict[str, Tensor]]


def init_optimizer_state(
    workload: Workload,
    model_params: ParameterContainer,
    model_state: ModelAuxiliaryState,
    hyperparameters: Hyperparameters,
    rng: RandomState,
) -> OptimizerState:
    """The template's signature (a submission defines its own)."""
    raise NotImplementedError


def update_params(
    workload: Workload,
    current_param_container: ParameterContainer,
    current_params_types: ParameterTypeTree,
    model_state: ModelAuxiliaryState,
    hyperparameters: Hyperparameters,
    batch: dict[str, Tensor],
    loss_type: LossType,
    optimizer_state: OptimizerState,
    eval_results: list[tuple[int, float]],
    global_step: int,
    rng: RandomState,
    train_state: dict[str, Any] | None = None,
) -> UpdateReturn:
    """The template's signature (a submission defines its own)."""
    raise NotImplementedError


def prepare_for_eval(
    workload: Workload,
    current_param_container: ParameterContainer,
    current_params_types: ParameterTypeTree,
    model_state: ModelAuxiliaryState,
    hyperparameters: Hyperparameters,
    loss_type: LossType,
    optimizer_state: OptimizerState,
    eval_results: list[tuple[int, float]],
    global_step: int,
    rng: RandomState,
) -> UpdateReturn:
    """The template's signature (optional in a submission)."""
    raise NotImplementedError


def data_selection(
    workload: Workload,
    input_queue: Iterator[dict[str, Any]],
    optimizer_state: OptimizerState,
    current_param_container: ParameterContainer,
    model_state: ModelAuxiliaryState,
    hyperparameters: Hyperparameters,
    global_step: int,
    rng: RandomState,
) -> dict[str, Tensor]:
    """The template's signature (a submission defines its own)."""
    raise NotImplementedError


def get_batch_size(workload_name: str) -> int:
    """The template's signature (a submission defines its own)."""
    raise NotImplementedError
