"""`mnist_cnn` and `cifar10_cnn`: real image classification for users with a GPU and the data on disk.

trainlab downloads nothing at run time, so these workloads read files the user already has
(`trainlab.workloads.data.formats`): pass `--workload-option mnist_cnn.data_dir=PATH` (the four MNIST
IDX files) or `--workload-option cifar10_cnn.data_dir=PATH` (the CIFAR-10 python batches).

Validation is held out from the end of the official training set, deterministically, so the official
test set stays untouched: the last min(10_000, N // 6) of MNIST's N training images and the last
min(5_000, N // 10) of CIFAR-10's. On the full datasets that is the usual 10,000 / 5,000; the
N-proportional cap only matters for tiny fixture folders (tests), which still get a non-empty split.

Targets are placeholders, not yet set by a target-setting run on this data; override them with
`--workload-option NAME.target=VALUE`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from trainlab.errors import UsageError
from trainlab.workloads.base import ClassificationWorkload, Option, Splits
from trainlab.workloads.data.formats import Arrays, load_cifar10_dir, load_mnist_dir

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def _normalize(x: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 NCHW images -> float32 in [0, 1], then per-channel (x - mean) / std."""
    images = torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0)
    shape = (1, len(mean), 1, 1)
    return images.sub_(torch.tensor(mean).view(shape)).div_(torch.tensor(std).view(shape))


def _split(train: Arrays, test: Arrays, holdout: int, prepare: Callable[[np.ndarray], torch.Tensor]) -> Splits:
    """Last `holdout` training examples -> validation; `prepare` turns uint8 images into inputs."""
    (x, y), (x_test, y_test) = train, test
    if not 0 < holdout < len(x):
        raise UsageError(f"training set of {len(x)} images is too small to hold out a validation split")
    cut = len(x) - holdout
    as_batch = lambda xs, ys: (prepare(xs), torch.from_numpy(ys))  # noqa: E731
    return Splits(as_batch(x[:cut], y[:cut]), as_batch(x[cut:], y[cut:]), as_batch(x_test, y_test))


class _ImageWorkload(ClassificationWorkload):
    """Shared plumbing: a required `data_dir` option, cross-entropy loss, accuracy metric."""

    default_batch_size = 128
    options = {"data_dir": Option(str, None, "folder holding the dataset files (required)")}
    data_hint = ""  # what data_dir must contain, for the missing-option message

    def data_dir(self) -> str:
        value = self.option_values.get("data_dir")
        if not value:
            raise UsageError(
                f"workload {self.name} needs {self.data_hint}: pass --workload-option {self.name}.data_dir=PATH"
            )
        return value


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


class _MNISTNet(nn.Module):
    """Two conv-BN-ReLU-maxpool blocks (1 -> 32 -> 64 channels, 28 -> 7 pixels), then a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(_conv_bn_relu(1, 32), nn.MaxPool2d(2), _conv_bn_relu(32, 64), nn.MaxPool2d(2))
        self.head = nn.Linear(64 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class MNISTCNN(_ImageWorkload):
    """MNIST (50k train / 10k validation / 10k test) with a 2-layer CNN; validation accuracy.

    Inputs are [N, 1, 28, 28] float32, scaled to [0, 1] and normalized with the usual MNIST mean
    0.1307 and std 0.3081. Target 0.99 is a placeholder target, not yet set by a target-setting run
    on this data — override with --workload-option mnist_cnn.target=VALUE.
    """

    name = "mnist_cnn"
    description = "MNIST (IDX files from data_dir), 2-layer CNN with BatchNorm, validation accuracy"
    default_target = 0.99
    default_step_budget = 3000
    default_eval_every = 250
    data_hint = "the MNIST IDX files"

    def load_splits(self) -> Splits:
        arrays = load_mnist_dir(self.data_dir())
        holdout = min(10_000, len(arrays["train"][0]) // 6)
        prepare = lambda x: _normalize(x[:, None], (MNIST_MEAN,), (MNIST_STD,))  # noqa: E731
        return _split(arrays["train"], arrays["test"], holdout, prepare)

    def init_model(self) -> nn.Module:
        return _MNISTNet()


class _ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity shortcut (the ResNet basic block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn_relu(channels, channels),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class _CIFARResNet(nn.Module):
    """Three stages (32 / 64 / 128 channels at 32 / 16 / 8 pixels), each a conv-BN-ReLU (stride 2
    after the first) and a residual block; global average pool; linear to 10 classes."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        stages, c_in = [], 3
        for i, width in enumerate(widths):
            stages += [_conv_bn_relu(c_in, width, stride=1 if i == 0 else 2), _ResidualBlock(width)]
            c_in = width
        self.features = nn.Sequential(*stages, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c_in, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class CIFAR10ResNet(_ImageWorkload):
    """CIFAR-10 (45k train / 5k validation / 10k test) with a small ResNet; validation accuracy.

    Inputs are [N, 3, 32, 32] float32, scaled to [0, 1] and normalized per channel with the standard
    CIFAR-10 means and stds. No data augmentation is applied (batches are plain random permutations),
    which caps accuracy below augmented baselines. Target 0.85 is a placeholder target, not yet set
    by a target-setting run on this data — override with --workload-option cifar10_cnn.target=VALUE.
    """

    name = "cifar10_cnn"
    description = "CIFAR-10 (python batches from data_dir), small ResNet, validation accuracy"
    default_target = 0.85
    default_step_budget = 8000
    default_eval_every = 500
    data_hint = "the CIFAR-10 python batches (cifar-10-batches-py)"

    def load_splits(self) -> Splits:
        arrays = load_cifar10_dir(self.data_dir())
        holdout = min(5_000, len(arrays["train"][0]) // 10)
        prepare = lambda x: _normalize(x, CIFAR10_MEAN, CIFAR10_STD)  # noqa: E731
        return _split(arrays["train"], arrays["test"], holdout, prepare)

    def init_model(self) -> nn.Module:
        return _CIFARResNet()
