"""Run one trial: one algorithm on one workload with one seed, under the honest clock.

Untimed: moving data to the device, building the model and the optimizer, every evaluation, the
final test evaluation. Timed: drawing each batch, forward, backward, optimizer and schedule step, and
the algorithm's prepare_for_eval / prepare_for_train hooks (as in AlgoPerf). The trial's score is the
training time and step count at the first evaluation whose validation metric meets the target; a trial
that never meets it scores infinity. A non-finite training loss ends the trial as `diverged`.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

import torch

from trainlab.algorithms import AlgorithmSpec, TrainingAlgorithm
from trainlab.benchmark.clock import TrainingClock
from trainlab.benchmark.results import EvalRecord, TrialResult
from trainlab.optim import state_bytes
from trainlab.utils.device import peak_device_memory, reset_peak_device_memory
from trainlab.workloads import Workload


class TrialProgress(Protocol):
    """What the runner reports while it trains (a progress bar, a log, or nothing)."""

    def on_step(self, step: int) -> None: ...
    def on_eval(self, record: EvalRecord, reached: bool) -> None: ...


def run_trial(workload: Workload, spec: AlgorithmSpec, seed: int, device: torch.device,
              progress: TrialProgress | None = None, stop_at_target: bool = False,
              grad_norm_kind: str | None = None) -> TrialResult:
    result = TrialResult(workload=workload.name, algorithm=spec.name, seed=seed,
                         hparams=dict(spec.hparams), metric_name=workload.metric,
                         higher_is_better=workload.higher_is_better, target=workload.target,
                         step_budget=workload.step_budget)

    # ---- set-up: not on the clock ----
    splits = workload.splits().to(device)
    torch.manual_seed(seed)
    model = workload.init_model().to(device)
    algorithm = TrainingAlgorithm(spec, model, workload.step_budget, grad_norm_kind)
    batches = workload.batches(splits.train, torch.Generator().manual_seed(seed))
    result.param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    result.grad_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    reset_peak_device_memory(device)
    model.train()
    clock = TrainingClock(device)
    loss_sum = torch.zeros((), device=device)
    losses_since_eval = 0

    clock.start()
    for step in range(1, workload.step_budget + 1):
        batch = next(batches)
        loss = algorithm.update(model, batch, workload.loss)
        loss_sum += loss
        losses_since_eval += 1
        if progress is not None:
            progress.on_step(step)
        if step % workload.eval_every and step != workload.step_budget:
            continue

        # ---- evaluation: the clock is paused ----
        algorithm.prepare_for_eval(model)
        train_seconds = clock.pause()
        eval_started = time.perf_counter()
        train_loss = (loss_sum / losses_since_eval).item()
        model.eval()
        metrics = workload.evaluate(model, splits.validation)
        model.train()
        record = EvalRecord(step=step, train_seconds=train_seconds, train_loss=train_loss,
                            metric=float(metrics[workload.metric]),
                            validation_loss=float(metrics.get("loss", math.nan)),
                            eval_seconds=time.perf_counter() - eval_started)
        result.evals.append(record)
        result.eval_seconds += record.eval_seconds
        loss_sum.zero_()
        losses_since_eval = 0
        reached_now = workload.reached(record.metric)
        if reached_now and not result.reached:
            result.reached = True
            result.time_to_target = train_seconds
            result.steps_to_target = step
        if progress is not None:
            progress.on_eval(record, result.reached)
        if not math.isfinite(train_loss):
            result.status = "diverged"
            break
        if step == workload.step_budget or (stop_at_target and result.reached):
            break  # the final weights stay in evaluation form for the test evaluation
        clock.resume()
        algorithm.prepare_for_train(model)

    # ---- wrap-up: not on the clock ----
    result.steps = step
    result.train_seconds = result.evals[-1].train_seconds
    result.final_metric = result.evals[-1].metric
    finite = [r.metric for r in result.evals if math.isfinite(r.metric)]
    if finite:
        result.best_metric = max(finite) if workload.higher_is_better else min(finite)
    if result.status != "diverged":
        model.eval()
        result.test_metric = float(workload.evaluate(model, splits.test)[workload.metric])
    result.state_bytes = state_bytes(algorithm.optimizer)
    peak = peak_device_memory(device)
    if peak is not None:
        result.peak_memory_bytes, result.peak_memory_source = peak, "cuda_max_allocated"
    else:
        result.peak_memory_bytes = result.param_bytes + result.grad_bytes + result.state_bytes
        result.peak_memory_source = "params+grads+state"
    if grad_norm_kind is not None:
        result.grad_norms = algorithm.grad_norms()
    return result
