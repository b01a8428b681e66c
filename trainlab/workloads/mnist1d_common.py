"""Shared data plumbing of the two MNIST-1D workloads (they differ only in the model)."""

from __future__ import annotations

import torch

from trainlab.workloads.base import ClassificationWorkload, Splits
from trainlab.workloads.data.mnist1d import MNIST1DSpec, load_mnist1d


class MNIST1DWorkload(ClassificationWorkload):
    """Ten-class classification of length-40 1-D signals; metric: validation accuracy."""

    data_spec = MNIST1DSpec()

    def load_splits(self) -> Splits:
        arrays = load_mnist1d(self.data_spec)
        as_tensors = lambda xy: (torch.from_numpy(xy[0]), torch.from_numpy(xy[1]))  # noqa: E731
        return Splits(as_tensors(arrays["train"]), as_tensors(arrays["validation"]), as_tensors(arrays["test"]))
