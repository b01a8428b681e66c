"""A workload whose validation metric follows a script, to test when the runner scores a trial."""

from __future__ import annotations

import torch

from support_workloads import TinyRegression


class ScriptedMetric(TinyRegression):
    name = "scripted_metric"
    metric = "accuracy"
    higher_is_better = True
    default_target = 0.5

    def __init__(self, script: list[float], **options) -> None:
        super().__init__(**options)
        self.script = list(script)
        self.calls = 0

    @torch.no_grad()
    def evaluate(self, model, split):
        value = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return {"accuracy": value, "loss": 1.0 - value}
