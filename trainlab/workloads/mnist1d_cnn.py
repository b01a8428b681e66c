"""`mnist1d_cnn`: MNIST-1D with a small 1-D convolutional network with BatchNorm.

Same data as `mnist1d_mlp`. Model: three Conv1d(k=5) + BatchNorm + ReLU blocks (1 -> 32 -> 32 -> 32
channels, the last two with stride 2), flatten, Linear -> 10 (~14 k parameters). Convolutions see the
translation structure an MLP cannot, so the target is much higher (see docs/targets.md). The budget
is short on purpose: the network saturates near 99 % accuracy, and a target on that plateau would
make time-to-target a coin toss; 600 steps put the target on the rising part of the curve.
"""

from __future__ import annotations

from torch import nn

from trainlab.workloads.mnist1d_common import MNIST1DWorkload


class _ConvNet(nn.Module):
    def __init__(self, channels: int = 32) -> None:
        super().__init__()

        def block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv1d(c_in, c_out, 5, stride=stride, padding=2),
                                 nn.BatchNorm1d(c_out), nn.ReLU())

        self.features = nn.Sequential(block(1, channels, 1), block(channels, channels, 2),
                                      block(channels, channels, 2))
        self.head = nn.Linear(channels * 10, 10)

    def forward(self, x):
        return self.head(self.features(x.unsqueeze(1)).flatten(1))


class MNIST1DCNN(MNIST1DWorkload):
    name = "mnist1d_cnn"
    description = "MNIST-1D (20k train), 3-block 1-D CNN with BatchNorm, validation accuracy"
    default_target = 0.9852    # docs/targets.md: median best of tuned AdamW at 3/4 budget
    default_step_budget = 600
    default_batch_size = 128
    default_eval_every = 50

    def init_model(self) -> nn.Module:
        return _ConvNet()
