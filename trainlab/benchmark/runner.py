"""Run one trial: one algorithm on one workload with one seed, under the honest clock.

Untimed: moving data to the device, building the model and the optimizer, every evaluation, the
final test evaluation. Timed: drawing each batch, forward, backward, optimizer and schedule step, and
the algorithm's prepare_for_eval / prepare_for_train hooks (as in AlgoPerf). The trial's score is the
training time and step count at the first evaluation whose validation metric meets the target; a trial
that never meets it scores infinity. A step is a training batch: an AlgoPerf submission whose
`update_params` draws several (LAWA's inner loop) advances the step count, the budget and the
evaluation cadence by all of them, as AlgoPerf's clock charges them. A non-finite training loss
ends the trial as `diverged` at the step it appears (checking it costs one host-device sync per
step, which is on the clock).

One trial is three steps: `set_up` (model, data, algorithm, memory savers; untimed), `train` (the
timed loop, the only code that touches the clock, with its hooks: evaluation, the caller's `monitor`
after each one (curve prediction, pruning), continual evaluation, progress, stop-at-target and
divergence), and `finish` (the record). Its options are one `TrialOptions`; with `nproc` > 1,
`run_trial` launches it data-parallel (`trainlab.benchmark.data_parallel`), whose ranks run the same
three steps.

Memory savers (`trainlab.memory`), fields of `TrialOptions`, all off by default; with all off
the timed loop is exactly the plain one (the workload's own loss function goes to the algorithm, no hooks, no autocast):
- `freeze`: module-name rules (`trainlab.memory.freeze`), or `first:K` for the model's first K
  parameter-owning modules, applied right after the model is built and before the optimizer, so
  frozen parameters get no gradient, no optimizer state and no update.
- `freeze_change`: a threshold for Freeze-And-Reconfigure-style freezing during training
  (`trainlab.memory.ChangeBasedFreezer`): every `eval_every` steps, after the first 10 % of the
  budget, parameter tensors whose relative change over that window fell below the threshold are
  frozen and dropped from the optimizer with their state, up to 90 % of the parameter entries (so
  something always trains). Measuring the change is part of the algorithm, so it is on the clock.
- `precision`: "fp32"; "bf16-autocast" (fp32 parameters, the forward pass and loss of every timed
  step under bf16 autocast; evaluation runs in fp32, as the weights are fp32); "bf16" (parameters and
  buffers cast to bf16 before the optimizer is built, so its state follows the optimizer's own dtype
  policy; training forward and every evaluation run under bf16 autocast, which casts the fp32 data).
- `compress_activations`: 2, 4, 8 or "adaptive" (GACT bits, 4 bits on average, adapting at the first
  step and every 1000 after): an `ActivationCompressor` wraps the forward pass of every timed step.
  Compressing (and, for "adaptive", its sensitivity probes) is the algorithm's cost, so it is on the clock.

Saved-activation bytes (the peak bytes held by saved-tensor hooks during a step: measured, not
estimated) are recorded for every trial, without charging the clock for measuring them:
- compression on: the compressor measures what it holds on every timed step; the trial records its
  peak over all steps (it has to run anyway, so measuring adds nothing).
- compression off: one untimed probe step at set-up, before the clock starts: forward and backward on
  the trial's first batch (drawn from a separate iterator with the same seed) inside a
  `SavedTensorMeter`, with the same precision and frozen parameters as training. Its gradients are
  discarded, the model's buffers (BatchNorm statistics) and the RNG states are restored, so the trial
  trains exactly as it would without the probe, and the timed steps carry no hooks at all. Batches of
  a fixed shape save the same bytes every step, so one step is the per-step peak.
Peak memory: on CUDA `torch.cuda.max_memory_allocated` over the timed steps; elsewhere the sum of
parameters, gradients, optimizer state and saved-activation bytes ("params+grads+state+activations").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from trainlab.algorithms import AlgorithmSpec
from trainlab.algorithms.algoperf_spec import TrainingCompleteError
from trainlab.algorithms.sso import SSOAlgorithm
from trainlab.algorithms.submission import SubmissionAlgorithm
from trainlab.benchmark import checkpoint
from trainlab.benchmark.clock import TrainingClock
from trainlab.benchmark.data_parallel import run_parallel_trial
from trainlab.benchmark.probes import continual_eval
from trainlab.benchmark.trial_options import DEFAULT, TrialOptions
from trainlab.benchmark.trial_setup import Trial, set_up
from trainlab.scoring import after_target, worst_since
from trainlab.store.results import EvalRecord, TrialResult
from trainlab.utils.device import peak_device_memory, reset_peak_device_memory
from trainlab.workloads import Workload


class TrialProgress(Protocol):
    """What the runner reports while it trains (a progress bar, a log, or nothing)."""

    def on_step(self, step: int) -> None: ...
    def on_eval(self, record: EvalRecord, reached: bool) -> None: ...


Monitor = Callable[[TrialResult], bool]


def run_trial(
    workload: Workload,
    spec: AlgorithmSpec,
    seed: int,
    device: torch.device,
    options: TrialOptions = DEFAULT,
    *,
    progress: TrialProgress | None = None,
    monitor: Monitor | None = None,
    distributed: Any = None,
) -> TrialResult:
    """Train `spec` on `workload` with `seed` under the clock (see module doc), as `options` say.
    `monitor`, called after every evaluation with the clock paused (a learning-curve predictor, a
    pruner), may append to the result's predictions; returning True stops a trial that has not
    reached the target as `pruned`. With `options.nproc` > 1 the trial is launched on that many
    processes and rank 0's result returns (no progress, no monitor). `distributed`
    (`trainlab.benchmark.data_parallel.DataParallel`, on every rank of such a launch): wraps the
    model (DDP or FSDP2) before the optimizer is built, gives each rank its slice of every global
    batch, and averages the loss over ranks so that all ranks take the same decisions."""
    if options.nproc > 1 and distributed is None:
        return run_parallel_trial(workload, spec, seed, device, options)
    trial = set_up(workload, spec, seed, device, options, distributed)
    saved = checkpoint.path_for(trial, seed)
    train(trial, progress, monitor, saved)
    result = finish(trial)
    checkpoint.remove(saved)  # finished: the store has the result
    return result


# ---- the timed loop: the only code that touches the clock ----


def train(
    trial: Trial, progress: TrialProgress | None = None, monitor: Monitor | None = None, saved: Path | None = None
) -> None:
    """Step, evaluate at the workload's cadence, stop at the budget, a divergence, the target (with
    `stop_at_target`), a prune, or an AlgoPerf submission's end of training."""
    workload, algorithm, model, result = trial.workload, trial.algorithm, trial.model, trial.result
    budget, continual = workload.step_budget, trial.options.continual
    reset_peak_device_memory(trial.device)
    clock = TrainingClock(trial.device)
    window = _LossWindow(torch.zeros((), device=trial.device))
    step = done_at = 0  # done_at: the step after which a submission declared training complete
    since = 0  # the step of the last checkpoint
    resumed = checkpoint.restore(trial, saved) if saved is not None else None
    if resumed is not None:  # the record so far, on the clock's own count; the model in eval form
        step, since = resumed[0], resumed[0]
        clock.resume_from(resumed[1])
        algorithm.prepare_for_train(model)
        result = trial.result
    clock.start()
    while step < budget:
        before, step = step, step + 1
        try:
            batch: Any = algorithm.next_batch(trial.batches, model)  # a tuple, or a submission's dict
            loss = algorithm.update(model, batch, trial.training_loss)
            if trial.distributed is not None:
                loss = trial.distributed.mean(loss)
            # steps are batches: a submission's update_params that drew several (LAWA) counts them all
            step = max(step, getattr(algorithm, "batches_drawn", step))
        except TrainingCompleteError:
            done_at = step = before  # nothing trained this step: evaluate what the last one left
            if step == 0 or (result.evals and result.evals[-1].step == step):
                break
        if not done_at:
            if trial.freezer is not None:
                trial.freezer.step()
            window.add(loss)
            if progress is not None:
                progress.on_step(step)
            if not math.isfinite(loss.item()):  # diverged: a NaN never recovers; the last evaluation stands
                result.status, trial.diverged_seconds = "diverged", clock.pause()
                break
            if continual is not None and step // continual[0] != before // continual[0]:
                clock.pause()
                result.eval_seconds += continual_eval(trial, step)
                clock.resume()
            if step // workload.eval_every == before // workload.eval_every and step < budget:
                continue  # no evaluation boundary crossed
        algorithm.prepare_for_eval(model)  # on the clock, as in AlgoPerf
        last = bool(done_at) or step >= budget
        seconds = clock.pause()
        if _evaluate(trial, step, seconds, window, progress, monitor, last):
            break  # the final weights stay in evaluation form for the test evaluation
        if saved is not None and step - since >= (trial.options.checkpoint_every or 0):
            checkpoint.save(trial, saved, step, seconds)  # the clock is paused: writing is free
            since = step
        clock.resume()
        algorithm.prepare_for_train(model)
    result.steps = step
    if not result.evals and result.status != "diverged":  # ended before its first step
        clock.pause()
        result.status = "completed"
        result.evals.append(EvalRecord(0, 0.0, math.nan, math.nan, math.nan, 0.0))


@dataclass
class _LossWindow:
    """The training losses since the last evaluation, summed on the device (no sync per step)."""

    total: torch.Tensor
    count: int = 0

    def add(self, loss: torch.Tensor) -> None:
        self.total += loss
        self.count += 1

    def mean_and_reset(self) -> float:
        mean = (self.total / self.count).item() if self.count else math.nan
        self.total.zero_()
        self.count = 0
        return mean


def _evaluate(
    trial: Trial,
    step: int,
    train_seconds: float,
    window: _LossWindow,
    progress: TrialProgress | None,
    monitor: Monitor | None,
    last: bool,
) -> bool:
    """One evaluation, the clock paused: record it, score the target, call the hooks. True: stop."""
    workload, model, result = trial.workload, trial.model, trial.result
    eval_started = time.perf_counter()
    train_loss = window.mean_and_reset()
    model.eval()
    metrics = trial.evaluate(model, getattr(trial.splits, trial.options.eval_split))
    model.train()
    record = EvalRecord(
        step=step,
        train_seconds=train_seconds,
        train_loss=train_loss,
        metric=float(metrics[workload.metric]),
        validation_loss=float(metrics.get("loss", math.nan)),
        eval_seconds=time.perf_counter() - eval_started,
    )
    result.evals.append(record)
    trial.algorithm.record_eval(step, workload.metric, record.metric, record.validation_loss)
    # optimizer state can shrink (FRUGAL's block mode): the record keeps its peak over evaluations
    trial.peak_state = max(trial.peak_state, trial.algorithm.state_bytes())
    result.eval_seconds += record.eval_seconds
    if workload.reached(record.metric) and not result.reached:
        result.reached, result.time_to_target, result.steps_to_target = True, train_seconds, step
    if progress is not None:
        progress.on_eval(record, result.reached)
    if monitor is not None and monitor(result) and not result.reached:
        result.status = "pruned"
        return True
    return last or (trial.options.stop_at_target and result.reached)


# ---- wrap-up: not on the clock ----


def finish(trial: Trial) -> TrialResult:
    """Scores, the test evaluation and the memory record of a trained trial."""
    workload, result = trial.workload, trial.result
    if result.status == "diverged":
        result.train_seconds, result.final_metric = trial.diverged_seconds, math.nan
    else:
        result.train_seconds, result.final_metric = result.evals[-1].train_seconds, result.evals[-1].metric
    finite = [r.metric for r in result.evals if math.isfinite(r.metric)]
    if finite:
        result.best_metric = max(finite) if workload.higher_is_better else min(finite)
    result.worst_after_target, result.stability_gap, _ = after_target(
        [r.metric for r in result.evals], workload.target, workload.higher_is_better
    )
    if result.reached and result.continual:
        result.continual_worst_after_target, result.continual_stability_gap = worst_since(
            [m for s_, m, _ in result.continual if s_ >= (result.steps_to_target or 0)],
            workload.target,
            workload.higher_is_better,
        )
    if result.status != "diverged":
        trial.model.eval()
        result.test_metric = float(trial.evaluate(trial.model, trial.splits.test)[workload.metric])
    _memory_record(trial)
    if trial.options.grad_norm_kind is not None:
        result.grad_norms = trial.algorithm.grad_norms()
    return result


def _memory_record(trial: Trial) -> None:
    result, model = trial.result, trial.model
    if trial.freezer is not None:  # parameters frozen during training count too
        result.frozen_params = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    result.state_bytes = max(trial.peak_state, trial.algorithm.state_bytes())
    if isinstance(trial.algorithm, SSOAlgorithm):
        result.outer_gradients, result.inner_steps = trial.algorithm.counts()
    if isinstance(trial.algorithm, SubmissionAlgorithm):  # LAWA draws several batches per update_params
        result.hparams["batches_drawn"] = trial.algorithm.batches_drawn
    if trial.compressor is not None:
        result.saved_activation_bytes = trial.compressor.peak_bytes
    peak = peak_device_memory(trial.device)
    if peak is not None:
        result.peak_memory_bytes, result.peak_memory_source = peak, "cuda_max_allocated"
    else:
        result.peak_memory_bytes = (
            result.param_bytes + result.grad_bytes + result.state_bytes + (result.saved_activation_bytes or 0)
        )
        result.peak_memory_source = "params+grads+state+activations"
