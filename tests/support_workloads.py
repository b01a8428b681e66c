"""Small synthetic workloads used by the runner and store tests (and loaded by path in CLI tests)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from torch import nn

from trainlab.workloads import Option, Splits, Workload


class TinyRegression(Workload):
    """Linear regression on fixed synthetic data; `eval_sleep` makes evaluation artificially slow."""

    name = "tiny_regression"
    description = "synthetic linear regression (tests)"
    metric = "mse"
    higher_is_better = False
    default_target = 0.05
    default_step_budget = 60
    default_batch_size = 32
    default_eval_every = 10
    options = {
        "eval_sleep": Option(float, 0.0, "seconds to sleep in every evaluation"),
        "train_sleep": Option(float, 0.0, "seconds to sleep in every training loss call"),
        "rendezvous": Option(str, "", "a folder: each process's first trial waits there for a second process's"),
    }

    def load_splits(self) -> Splits:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1200, 16, generator=g)
        w = torch.randn(16, 1, generator=g)
        y = x @ w + 0.1 * torch.randn(1200, 1, generator=g)
        return Splits((x[:1000], y[:1000]), (x[1000:1100], y[1000:1100]), (x[1100:], y[1100:]))

    def init_model(self) -> nn.Module:
        return nn.Linear(16, 1)

    def loss(self, model, batch):
        if self.option_values["rendezvous"]:
            _meet(Path(self.option_values["rendezvous"]))
        if self.option_values["train_sleep"]:
            time.sleep(self.option_values["train_sleep"])
        x, y = batch
        return nn.functional.mse_loss(model(x), y)

    def output_loss(self, outputs, targets, label_smoothing: float = 0.0):
        return (outputs - targets) ** 2  # per example: their mean is loss()

    @torch.no_grad()
    def evaluate(self, model, split):
        if self.option_values["eval_sleep"]:
            time.sleep(self.option_values["eval_sleep"])
        x, y = split
        mse = nn.functional.mse_loss(model(x), y).item()
        return {"mse": mse, "loss": mse}


_MET: list[bool] = []  # this process has met another one


def _meet(folder: Path, timeout: float = 120.0) -> None:
    """Block this process's first trial until a second process has started one (each leaves its pid
    in `folder`), so a test of two workers knows both ran a trial, however slowly the second started.
    Gives up after `timeout` s (the test then fails on its pid count instead of hanging)."""
    if _MET:
        return
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + timeout
    while len(list(folder.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    _MET.append(True)


WORKLOAD = TinyRegression
