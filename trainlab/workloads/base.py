"""The workload contract: what is fixed when algorithms race (AlgoPerf's "workload" side).

A workload owns the model, the data and its splits, the loss, the evaluation metric, the validation
target, the step budget, the default batch size and the evaluation cadence. It never sees the
optimizer or the clock. Subclass `Workload`, fill in the class attributes and four methods, and
`trainlab race --workloads path/to/your_module.py` will run it (see docs/workloads.md, "Your own workload").
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from trainlab.errors import UsageError

Batch = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Option:
    """A constructor option a workload accepts (`--workload-option NAME.KEY=VALUE`). `choices`, when
    given, are the only values allowed; they are checked when the workload is built, so a typo fails
    before any training, and listed in the option's help."""

    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None


# Options every workload accepts: they override the class defaults for one run.
COMMON_OPTIONS: dict[str, Option] = {
    "target": Option(float, None, "validation target (default: the workload's documented one)"),
    "step_budget": Option(int, None, "training steps per trial"),
    "batch_size": Option(int, None, "training batch size"),
    "eval_every": Option(int, None, "evaluate every this many steps"),
}


@dataclass
class Splits:
    """Train / validation / test data as tensors (kept on the CPU until the runner moves them)."""

    train: Batch
    validation: Batch
    test: Batch

    def to(self, device: torch.device) -> Splits:
        move = lambda tensors: tuple(t.to(device) for t in tensors)  # noqa: E731
        return Splits(move(self.train), move(self.validation), move(self.test))


class Workload(abc.ABC):
    """Model + data + loss + metric + target + budget. Subclasses set the ClassVars below."""

    name: ClassVar[str]
    description: ClassVar[str]
    metric: ClassVar[str]  # name of the validation metric, e.g. "accuracy"
    higher_is_better: ClassVar[bool]
    default_target: ClassVar[float]  # from the documented target-setting run
    default_step_budget: ClassVar[int]
    # Steps of the target-setting runs (`trainlab set-targets`); None: 3/4 of the default budget, so
    # races get 4/3 of it, as AlgoPerf v0.5 did. A workload where a race baseline is much slower than
    # AdamW sets it lower, with the reason (text_lm).
    target_setting_steps: ClassVar[int | None] = None
    default_batch_size: ClassVar[int]
    default_eval_every: ClassVar[int]
    options: ClassVar[dict[str, Option]] = {}

    def __init__(self, **options: Any) -> None:
        valid = {**COMMON_OPTIONS, **self.options}
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise UsageError(
                f"workload {self.name!r} has no option {unknown[0]!r}; valid options: {', '.join(sorted(valid))}"
            )
        values: dict[str, Any] = {}
        for key, option in valid.items():
            raw = options.get(key, option.default)
            values[key] = _coerce(self.name, key, raw, option.type) if raw is not None else None
            if option.choices is not None and values[key] not in option.choices:
                raise UsageError(
                    f"workload {self.name!r}: option {key}={values[key]!r} is not one of "
                    f"{', '.join(map(str, option.choices))}"
                )
        self.option_values = {k: v for k, v in values.items() if k in self.options}
        self.target = float(values["target"] if values["target"] is not None else self.default_target)
        pick = lambda key, default: default if values[key] is None else values[key]  # noqa: E731
        self.step_budget = pick("step_budget", self.default_step_budget)
        self.batch_size = pick("batch_size", self.default_batch_size)
        self.eval_every = pick("eval_every", self.default_eval_every)
        for key in ("step_budget", "batch_size", "eval_every"):
            if getattr(self, key) <= 0:
                raise UsageError(f"workload {self.name!r}: {key} must be a positive integer")
        if not math.isfinite(self.target):
            raise UsageError(f"workload {self.name!r}: target must be a finite number")
        self._splits: Splits | None = None

    def target_budget(self) -> int:
        """Steps of this workload's target-setting runs: `target_setting_steps` (else 3/4 of the
        budget), scaled with the budget when an option changed it."""
        steps = self.target_setting_steps
        fraction = 0.75 if steps is None else steps / self.default_step_budget
        return max(1, round(fraction * self.step_budget))

    # -- what a subclass provides -------------------------------------------------------------
    @abc.abstractmethod
    def load_splits(self) -> Splits:
        """Load or generate the data (offline). Called once per workload object and cached."""

    @abc.abstractmethod
    def init_model(self) -> nn.Module:
        """A freshly initialised model; the runner seeds torch's generator before calling it."""

    @abc.abstractmethod
    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Mean training loss of `model` on `batch` (a scalar that `backward()` is called on)."""

    @abc.abstractmethod
    def evaluate(self, model: nn.Module, split: Batch) -> dict[str, float]:
        """{'<metric>': value, 'loss': value} over a whole split, with gradients off."""

    # -- optional: the model's outputs and the loss on them ------------------------------------
    # AlgoPerf submissions call the forward pass (`model_fn`) and the loss (`loss_fn`) separately,
    # so a workload states both; every built-in does. A workload without them races every built-in
    # algorithm, and refuses AlgoPerf submissions with one line.

    def inputs_and_targets(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return batch[0], batch[1]

    def outputs(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        return model(inputs)

    def output_loss(self, outputs: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """Per-example (per-token) losses whose mean is `loss(model, batch)`."""
        raise NotImplementedError(
            f"workload {self.name!r} does not state its loss on outputs: define "
            "output_loss(outputs, targets, label_smoothing) to run AlgoPerf submissions"
        )

    def subset(self, split: Batch, count: int) -> Batch:
        """The first `count` examples of an evaluation split: the fixed subset that continual
        evaluation (`race --eval-subset`) evaluates every few steps. Override for data that is not
        a tuple of equally long tensors (the text workload counts windows)."""
        available = split[0].shape[0]
        if not 1 <= count <= available:
            raise UsageError(
                f"--eval-subset {count}: workload {self.name!r} has {available} evaluation examples; "
                f"choose 1 to {available}"
            )
        return tuple(t[:count] for t in split)

    # -- shared behaviour ----------------------------------------------------------------------
    def splits(self) -> Splits:
        if self._splits is None:
            self._splits = self.load_splits()
        return self._splits

    def batches(self, train: Batch, generator: torch.Generator) -> Iterator[Batch]:
        """Endless mini-batches: a fresh random permutation per epoch, drawn on the data's device.

        Override for data that is not a tuple of equally long tensors (the text workload samples
        random windows instead).
        """
        n = train[0].shape[0]
        device = train[0].device
        while True:
            order = torch.randperm(n, generator=generator).to(device)
            for start in range(0, n - self.batch_size + 1, self.batch_size):
                idx = order[start : start + self.batch_size]
                yield tuple(t[idx] for t in train)

    def reached(self, value: float) -> bool:
        """Whether a validation metric value meets the target."""
        if math.isnan(value):
            return False
        return value >= self.target if self.higher_is_better else value <= self.target

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "target": self.target,
            "step_budget": self.step_budget,
            "batch_size": self.batch_size,
            "eval_every": self.eval_every,
            "options": dict(self.option_values),
        }


def _coerce(workload: str, key: str, raw: Any, kind: type) -> Any:
    if isinstance(raw, kind) and not (kind is int and isinstance(raw, bool)):
        return raw
    try:
        if kind is bool and isinstance(raw, str):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1", "yes")
        return kind(raw)
    except (TypeError, ValueError):
        raise UsageError(f"workload {workload!r}: option {key}={raw!r} is not a valid {kind.__name__}") from None


class ClassificationWorkload(Workload):
    """Inputs to class logits: cross-entropy training loss and accuracy, stated once for MNIST-1D and
    the image workloads (a subclass provides the data and the model)."""

    metric = "accuracy"
    higher_is_better = True

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(model(x), y)

    def output_loss(self, outputs, targets, label_smoothing: float = 0.0):
        return cross_entropy_per_example(outputs, targets, label_smoothing)

    def evaluate(self, model: nn.Module, split: Batch) -> dict[str, float]:
        return classification_eval(model, split)


@torch.no_grad()
def classification_eval(model: nn.Module, split: Batch, batch_size: int = 2048) -> dict[str, float]:
    """Accuracy and mean cross-entropy of a classifier over a split, in large batches."""
    x, y = split
    correct = 0
    total_loss = 0.0
    for start in range(0, x.shape[0], batch_size):
        logits = model(x[start : start + batch_size])
        target = y[start : start + batch_size]
        total_loss += nn.functional.cross_entropy(logits.float(), target, reduction="sum").item()
        correct += (logits.argmax(dim=-1) == target).sum().item()
    n = x.shape[0]
    return {"accuracy": correct / n, "loss": total_loss / n}


def cross_entropy_per_example(
    outputs: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Softmax cross-entropy per example (per position for sequences), in fp32."""
    return nn.functional.cross_entropy(
        outputs.reshape(-1, outputs.shape[-1]).float(),
        targets.reshape(-1),
        reduction="none",
        label_smoothing=label_smoothing,
    )
