"""Learning rate against batch size (`trainlab batch-sweep`): the laws of Granziol et al. (JMLR
2022), measured.

Protocol, per workload, algorithm and batch size B (B0 the workload's default batch):
1. Grid: the algorithm's configuration for the workload (the leaderboard's where it has one) has an
   lr tuned at B0; the grid is that lr carried to B by the optimizer's registered rule (linear for
   SGD, square root otherwise), times 2^j for j in -span..span. Centring the grid on the rule only
   decides where to look: the measured exponent does not depend on it unless the answer falls on the
   grid's edge, which the report flags (a largest stable lr at the top is then only a lower bound).
2. Short runs of `short_steps` at every grid lr, seed 0: an lr trains **stably** if its loss stays
   finite and its mean training loss over the last quarter is below that over the first quarter.
   The **largest stable lr** is the largest such grid lr; the **best lr** the stable one with the
   best validation metric at the end of the short run (ties: the smaller lr).
3. Full runs at the best lr, on `seeds`, to the workload's target with its step budget: steps and
   training seconds to target (Lion's "gain grows with the batch size" is read off these).
4. Fit: least squares of log lr against log B, for the largest stable and the best lr; the paper
   predicts slope 1 for SGD and 1/2 for Adam. Lanczos (`trainlab.benchmark.hessian`) gives the top
   eigenvalue of the mini-batch Hessian at initialisation, averaged over a few batches, so
   2 / lambda_max can be set beside the largest stable SGD lr.

Every run is a trial in the results store under one race, so an interrupted sweep resumes: a run
whose (workload, algorithm, batch size, lr, seed, steps) is stored is not run again.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from trainlab.algorithms import AlgorithmSpec, make_algorithm
from trainlab.algorithms.rules import default_rule
from trainlab.benchmark.hessian import lanczos_top_eigenvalue
from trainlab.benchmark.runner import run_trial
from trainlab.benchmark.trial_options import TrialOptions
from trainlab.errors import UsageError
from trainlab.schedules import scale_lr
from trainlab.store import ResultsStore
from trainlab.store.results import TrialResult
from trainlab.utils.environment import describe
from trainlab.workloads import Workload


def fit_exponent(batches: Iterable[float], lrs: Iterable[float]) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line log lr = slope * log B + intercept."""
    x, y = np.log(np.asarray(list(batches), float)), np.log(np.asarray(list(lrs), float))
    if len(x) < 2 or np.ptp(x) == 0:
        raise ValueError("an exponent needs lrs at two or more batch sizes")
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def stable(result: TrialResult) -> bool:
    """Finite throughout, and the last quarter's mean training loss below the first quarter's."""
    losses = [e.train_loss for e in result.evals if e.step > 0]
    if result.status == "diverged" or len(losses) < 2 or not all(math.isfinite(v) for v in losses):
        return False
    return losses[-1] < losses[0]


@dataclass
class SweepPoint:
    workload: str
    algorithm: str
    batch_size: int
    grid: list[float]
    stable: list[bool] = field(default_factory=list)
    metrics: list[float] = field(default_factory=list)  # validation metric at the short run's end
    largest_stable: float | None = None
    best: float | None = None
    edge: bool = False  # the largest stable lr is the grid's top (a lower bound) or none is stable
    steps_to_target: list[float] = field(default_factory=list)  # full runs at the best lr, per seed
    seconds_to_target: list[float] = field(default_factory=list)
    lambda_max: float | None = None  # top Hessian eigenvalue at initialisation (Lanczos)


@dataclass
class BatchSweep:
    workloads: list[Workload]
    algorithms: list[str]
    batch_sizes: list[int]
    device: torch.device
    seeds: list[int] = field(default_factory=lambda: [0])
    short_steps: int = 200
    span: int = 4
    lanczos_batches: int = 3
    lanczos_iterations: int = 20
    report: Callable[[str], None] = print

    def check(self) -> None:
        if not self.workloads or not self.algorithms or len(self.batch_sizes) < 2:
            raise UsageError("a batch sweep needs a workload, an algorithm and at least two batch sizes")
        if any(b < 1 for b in self.batch_sizes) or len(set(self.batch_sizes)) != len(self.batch_sizes):
            raise UsageError(f"--batch-sizes must be distinct positive integers, got {self.batch_sizes}")
        if self.short_steps < 8 or self.span < 1:
            raise UsageError("--short-steps must be at least 8 and --span at least 1")
        for workload in self.workloads:
            for name in self.algorithms:
                spec = make_algorithm(name, workload=workload.name)
                if spec.submission or spec.method != "plain" or "lr" not in spec.hparams:
                    raise UsageError(f"batch-sweep sweeps an optimizer's lr: {name!r} has none to sweep")

    def grid(self, spec: AlgorithmSpec, workload: Workload, batch: int) -> list[float]:
        base = type(workload).default_batch_size
        centre = scale_lr(float(spec.hparams["lr"]), base, batch, default_rule(spec.optimizer))
        return [centre * 2.0**j for j in range(-self.span, self.span + 1)]

    def run(self, store: ResultsStore, label: str = "batch-sweep") -> list[SweepPoint]:
        self.check()
        race_id, done = _resume(store, label, self.config(), self.device)
        points, curvature = [], {}
        for workload in self.workloads:
            for name in self.algorithms:
                spec = make_algorithm(name, workload=workload.name)
                for batch in sorted(self.batch_sizes):
                    point = SweepPoint(workload.name, name, batch, self.grid(spec, workload, batch))
                    short = _variant(workload, batch, self.short_steps)
                    for lr in point.grid:
                        result = self._trial(store, race_id, done, short, spec, lr, 0, stop_at_target=False)
                        point.stable.append(stable(result))
                        point.metrics.append(result.final_metric)
                    _choose(point, workload.higher_is_better)
                    if point.best is not None:
                        full = _variant(workload, batch, workload.step_budget)
                        for seed in self.seeds:
                            result = self._trial(
                                store, race_id, done, full, spec, point.best, seed, stop_at_target=True
                            )
                            point.steps_to_target.append(result.steps_to_target or math.inf)
                            point.seconds_to_target.append(result.time_to_target)
                    if (workload.name, batch) not in curvature:  # the model's, not the algorithm's
                        curvature[workload.name, batch] = self._lambda_max(workload, batch)
                    point.lambda_max = curvature[workload.name, batch]
                    self.report(_describe(point))
                    points.append(point)
        return points

    def config(self) -> dict[str, Any]:
        return {
            "kind": "batch-sweep",
            "workloads": [w.describe() for w in self.workloads],
            "algorithms": list(self.algorithms),
            "batch_sizes": sorted(self.batch_sizes),
            "seeds": list(self.seeds),
            "short_steps": self.short_steps,
            "span": self.span,
            "device": str(self.device),
        }

    def _trial(self, store, race_id, done, workload, spec, lr, seed, stop_at_target) -> TrialResult:
        key = (workload.name, spec.name, workload.batch_size, _lr_key(lr), seed, workload.step_budget)
        if key in done:
            return done[key]
        run_spec = dataclasses.replace(spec, hparams={**spec.hparams, "lr": lr})
        hparams = {**run_spec.hparams, "batch_size": workload.batch_size, "steps": workload.step_budget}
        trial_id = store.start_trial(race_id, workload.name, spec.name, seed, hparams)
        result = run_trial(workload, run_spec, seed, self.device, TrialOptions(stop_at_target=stop_at_target))
        result.hparams = hparams
        store.finish_trial(trial_id, result)
        done[key] = result
        return result

    def _lambda_max(self, workload: Workload, batch: int) -> float:
        """Mean over `lanczos_batches` mini-batches of the top Hessian eigenvalue at initialisation."""
        splits = workload.splits().to(self.device)
        torch.manual_seed(0)
        model = workload.init_model().to(self.device)
        sized = _variant(workload, batch, 1)
        batches = sized.batches(splits.train, torch.Generator().manual_seed(0))
        values = []
        for k in range(self.lanczos_batches):
            data = next(batches)
            values.append(
                lanczos_top_eigenvalue(
                    functools.partial(sized.loss, model, data),
                    list(model.parameters()),
                    self.lanczos_iterations,
                    seed=k,
                )
            )
        return float(np.mean(values))


def _variant(workload: Workload, batch: int, steps: int) -> Workload:
    out = copy.copy(workload)  # shares the loaded splits
    out.batch_size, out.step_budget = batch, steps
    out.eval_every = max(1, steps // 4) if steps < workload.step_budget else workload.eval_every
    return out


def _choose(point: SweepPoint, higher_is_better: bool) -> None:
    ok = [i for i, s in enumerate(point.stable) if s]
    if not ok:
        point.edge = True
        return
    point.largest_stable = point.grid[max(ok)]
    point.edge = max(ok) == len(point.grid) - 1
    finite = [i for i in ok if math.isfinite(point.metrics[i])]
    if finite:
        sign = 1.0 if higher_is_better else -1.0
        point.best = point.grid[max(finite, key=lambda i: (sign * point.metrics[i], -i))]


def _lr_key(lr: float) -> str:
    return f"{lr:.6e}"


def _resume(store: ResultsStore, label: str, config: dict[str, Any], device: torch.device):
    """The race of an earlier sweep with the same configuration, and its finished runs by key."""
    for race in store.races():
        if race["label"] == label and race["config"] == config:
            done = {}
            for t in store.trials(race["id"], statuses=("completed", "diverged")):
                h = t["hparams"]
                key = (t["workload"], t["algorithm"], h["batch_size"], _lr_key(h["lr"]), t["seed"], h["steps"])
                done[key] = _stored_result(store, t)
            return race["id"], done
    return store.start_race(config, describe(device), label), {}


def _stored_result(store: ResultsStore, t: dict[str, Any]) -> TrialResult:
    from trainlab.store.results import EvalRecord

    result = TrialResult(
        t["workload"], t["algorithm"], t["seed"], t["hparams"], t["metric_name"], t["higher_is_better"],
        t["target"], t["step_budget"], status=t["status"], reached=bool(t["reached"]),
        time_to_target=t["time_to_target"], steps_to_target=t["steps_to_target"],
        final_metric=math.nan if t["final_metric"] is None else t["final_metric"],
    )  # fmt: skip
    result.evals = [
        EvalRecord(
            e["step"],
            e["train_seconds"],
            math.nan if e["train_loss"] is None else e["train_loss"],
            math.nan if e["metric"] is None else e["metric"],
            math.nan,
            0.0,
        )  # fmt: skip
        for e in store.evals(t["id"])
    ]
    return result


def _describe(p: SweepPoint) -> str:
    steps = ", ".join("miss" if not math.isfinite(s) else str(int(s)) for s in p.steps_to_target)
    lam = f", lambda_max {p.lambda_max:.3g} (2/lambda {2 / p.lambda_max:.3g})" if p.lambda_max else ""
    largest = "none" if p.largest_stable is None else f"{p.largest_stable:.3g}" + (" (grid top)" if p.edge else "")
    best = "none" if p.best is None else f"{p.best:.3g}"
    return (
        f"{p.workload} {p.algorithm} batch {p.batch_size}: largest stable lr {largest}, "
        f"best {best}; steps to target at best [{steps}]{lam}"
    )
