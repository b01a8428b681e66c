"""A complete user-defined workload: fit y = sin(3x) + noise with a small MLP.

Run it against the built-in baselines with

    trainlab race --workloads examples/sine_regression.py --algorithms adamw,nadamw

Everything a workload must say is here: data with three disjoint splits, a model, a loss, a metric
with its direction, a target, a step budget, a batch size and an evaluation cadence.
"""

import torch
from torch import nn

from trainlab.workloads import Option, Splits, Workload


class SineRegression(Workload):
    name = "sine_regression"
    description = "y = sin(3x) + noise on [-2, 2], 2-layer MLP, validation mean squared error"
    metric = "mse"
    higher_is_better = False
    default_target = 0.025  # the noise variance is 0.01: 0.025 means "fit the curve well"
    default_step_budget = 600
    default_batch_size = 64
    default_eval_every = 50
    options = {"samples": Option(int, 4000, "number of (x, y) pairs to draw")}

    def load_splits(self) -> Splits:
        g = torch.Generator().manual_seed(1234)  # fixed: the data never depends on the trial seed
        n = self.option_values["samples"]
        x = torch.rand(n, 1, generator=g) * 4 - 2
        y = torch.sin(3 * x) + 0.1 * torch.randn(n, 1, generator=g)
        a, b = int(0.8 * n), int(0.9 * n)
        return Splits((x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:]))

    def init_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(1, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))

    def loss(self, model, batch):
        x, y = batch
        return nn.functional.mse_loss(model(x), y)

    @torch.no_grad()
    def evaluate(self, model, split):
        x, y = split
        mse = nn.functional.mse_loss(model(x), y).item()
        return {"mse": mse, "loss": mse}
