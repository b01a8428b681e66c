"""Shared data plumbing of the two MNIST-1D workloads (they differ only in the model)."""

from __future__ import annotations

import torch
from torch import nn

from trainlab.workloads.base import Batch, Splits, Workload, classification_eval, cross_entropy_per_example
from trainlab.workloads.data.mnist1d import MNIST1DSpec, load_mnist1d


class MNIST1DWorkload(Workload):
    """Ten-class classification of length-40 1-D signals; metric: validation accuracy."""

    metric = "accuracy"
    higher_is_better = True
    data_spec = MNIST1DSpec()

    def load_splits(self) -> Splits:
        arrays = load_mnist1d(self.data_spec)
        as_tensors = lambda xy: (torch.from_numpy(xy[0]), torch.from_numpy(xy[1]))  # noqa: E731
        return Splits(as_tensors(arrays["train"]), as_tensors(arrays["validation"]), as_tensors(arrays["test"]))

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(model(x), y)

    def output_loss(self, outputs, targets, label_smoothing: float = 0.0):
        return cross_entropy_per_example(outputs, targets, label_smoothing)

    def evaluate(self, model: nn.Module, split: Batch) -> dict[str, float]:
        return classification_eval(model, split)
