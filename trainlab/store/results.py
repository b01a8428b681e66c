"""What one trial produces: its evaluations and its summary (the unit the store commits)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

FINISHED = ("completed", "diverged", "pruned")  # trial statuses that carry a result (a miss or not)


@dataclass
class EvalRecord:
    step: int
    train_seconds: float  # training time on the clock when this evaluation began
    train_loss: float  # mean training loss over the steps since the previous evaluation
    metric: float  # the workload's validation metric
    validation_loss: float
    eval_seconds: float  # wall time of this evaluation (not on the clock)


@dataclass
class TrialResult:
    workload: str
    algorithm: str
    seed: int
    hparams: dict[str, Any]
    metric_name: str
    higher_is_better: bool
    target: float
    step_budget: int
    status: str = "completed"  # completed | diverged | pruned | failed
    reached: bool = False
    time_to_target: float = math.inf  # training seconds at the first evaluation meeting the target
    steps_to_target: int | None = None
    final_metric: float = math.nan  # validation metric at the last evaluation
    best_metric: float = math.nan
    test_metric: float = math.nan  # test metric of the final weights (untimed)
    steps: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    param_bytes: int = 0
    grad_bytes: int = 0
    state_bytes: int = 0  # optimizer state: the largest seen at an evaluation or at the end
    peak_memory_bytes: int = 0
    peak_memory_source: str = ""  # "cuda_max_allocated" or "params+grads+state+activations"
    saved_activation_bytes: int | None = None  # peak bytes held by saved-tensor hooks in a step (measured)
    compress_activations: int | str | None = None  # 2, 4, 8, "adaptive" or None (off)
    precision: str = "fp32"  # fp32 | bf16-autocast | bf16
    frozen_params: int = 0  # parameter entries (scalars) frozen by the freeze rules
    covered_params: int | None = None  # entries a matrix method projected, whitened or split
    coverage: float | None = None  # covered_params / trainable entries (None: elementwise)
    worst_after_target: float | None = None  # worst metric from first reaching the target on
    stability_gap: float | None = None  # how far that falls short of the target (scoring.stability)
    error: str | None = None
    evals: list[EvalRecord] = field(default_factory=list)
    grad_norms: list[float] | None = None
    # learning-curve predictions made as the trial went (`trainlab.scoring.curves.Prediction.as_dict`)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    # continual evaluation (`race --eval-subset N --eval-every E`): (step, metric, loss) on the fixed
    # subset, and stability after the target from that per-step curve
    continual_every: int | None = None
    continual_subset: int | None = None
    continual: list[tuple[int, float, float]] = field(default_factory=list)
    continual_worst_after_target: float | None = None
    continual_stability_gap: float | None = None
    outer_gradients: int | None = None  # SSO: target-space gradients taken (one per step)
    inner_steps: int | None = None  # SSO: parameter steps on the surrogates
    resumed_from: int | None = None  # the step of the checkpoint this trial resumed from, if any

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("evals")
        data.pop("grad_norms")
        data.pop("predictions")
        data.pop("continual")
        return data
