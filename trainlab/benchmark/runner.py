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

Memory savers (`trainlab.memory`), the fields of a `TrialConfig`, all off by default; with all off
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

import contextlib
import copy
import math
import time
from typing import Any, Callable, Protocol

import torch

from trainlab.algorithms import AlgorithmSpec, TrainingAlgorithm
from trainlab.algorithms.algoperf_spec import TrainingCompleteError
from trainlab.algorithms.sso import SSOAlgorithm
from trainlab.algorithms.submission import SubmissionAlgorithm, load_submission, submission_batch_size
from trainlab.benchmark.clock import TrainingClock
from trainlab.benchmark.probes import continual_eval, probe_saved_bytes
from trainlab.benchmark.trial_config import TrialConfig, apply_freeze
from trainlab.store.results import EvalRecord, TrialResult
from trainlab.errors import UsageError
from trainlab.memory import ActivationCompressor, ChangeBasedFreezer, bf16_autocast, cast_model_bf16
from trainlab.scoring import after_target, worst_since
from trainlab.utils.device import peak_device_memory, reset_peak_device_memory
from trainlab.workloads import Workload


ADAPTIVE_AVERAGE_BITS = 4.0
ADAPTIVE_INTERVAL = 1000


class TrialProgress(Protocol):
    """What the runner reports while it trains (a progress bar, a log, or nothing)."""

    def on_step(self, step: int) -> None: ...
    def on_eval(self, record: EvalRecord, reached: bool) -> None: ...


def _training_loss(
    workload: Workload, device: torch.device, autocast: bool, compressor: ActivationCompressor | None
) -> Callable:
    """The loss function the algorithm calls each timed step: the workload's own when nothing is on."""
    if not autocast and compressor is None:
        return workload.loss
    cast = (lambda: bf16_autocast(device)) if autocast else contextlib.nullcontext
    hooks = compressor if compressor is not None else contextlib.nullcontext()

    def forward(model, batch):
        with hooks, cast():
            return workload.loss(model, batch)

    if compressor is None or compressor.bits != "adaptive":
        return forward

    def adaptive(model, batch):
        # GACT's controller.iterate, run before this step's forward rather than after the previous
        # step's update (the same weights): its probes see this batch, the first step uses adapted bits.
        def closure():
            with cast():
                workload.loss(model, batch).backward()

        compressor.iterate(closure)
        return forward(model, batch)

    return adaptive


def _autocast_evaluate(workload: Workload, device: torch.device) -> Callable:
    def evaluate(model, split):
        with bf16_autocast(device):
            return workload.evaluate(model, split)

    return evaluate


def run_trial(
    workload: Workload,
    spec: AlgorithmSpec,
    seed: int,
    device: torch.device,
    progress: TrialProgress | None = None,
    stop_at_target: bool = False,
    grad_norm_kind: str | None = None,
    *,
    config: TrialConfig | None = None,
    eval_split: str = "validation",
    monitor: Callable[[TrialResult], bool] | None = None,
    continual: tuple[int, int] | None = None,
    distributed: Any = None,
) -> TrialResult:
    """Train `spec` on `workload` with `seed` under the clock (see module doc), with the memory savers
    and precision of `config` (default: none, fp32). `eval_split` is the split whose metric is
    checked against the target: "validation" (races, tuning) or "test" (the held-out evaluation runs
    of a tuning protocol, on data the tuning never selected on). `monitor`, called after every
    evaluation with the clock paused (a learning-curve predictor, a pruner), may append to the
    result's predictions; returning True stops a trial that has not reached the target as `pruned`.
    `continual` = (every E steps, on the first N examples of `eval_split`): continual evaluation.
    `distributed` (`trainlab.benchmark.data_parallel.DataParallel`, on every rank of a data-parallel
    trial): wraps the model (DDP or FSDP2) before the optimizer is built, gives each rank its slice of
    every global batch, and averages the loss over ranks so that all ranks take the same decisions."""
    if eval_split not in ("validation", "test"):
        raise UsageError(f"eval_split must be 'validation' or 'test', got {eval_split!r}")
    if continual is not None and not (continual[0] >= 1 and continual[1] >= 1):
        raise UsageError(f"continual evaluation needs --eval-every >= 1 and --eval-subset >= 1, got {continual}")
    config = config or TrialConfig()
    config.check(device)
    bits, precision, freeze, freeze_change = (
        config.compress_activations,
        config.precision,
        config.freeze,
        config.freeze_change,
    )
    result = TrialResult(
        workload=workload.name,
        algorithm=spec.name,
        seed=seed,
        hparams=dict(spec.hparams),
        metric_name=workload.metric,
        higher_is_better=workload.higher_is_better,
        target=workload.target,
        step_budget=workload.step_budget,
        compress_activations=bits,
        precision=precision,
    )

    if spec.submission:  # an AlgoPerf submission trains the plain model, at its own batch size
        if not config.plain:
            raise UsageError(
                f"{spec.name}: AlgoPerf submissions run without trainlab's memory savers "
                "(no --compress-activations, --precision, --freeze, --freeze-change)"
            )
        if grad_norm_kind is not None:
            raise UsageError(f"{spec.name}: an AlgoPerf submission cannot record gradient norms")
        size, origin = submission_batch_size(load_submission(spec.name), workload)
        if size != workload.batch_size:
            workload = copy.copy(workload)
            workload.batch_size = size
        result.hparams["batch_size_source"] = f"{size}: {origin}"

    # ---- set-up: not on the clock ----
    splits = workload.splits().to(device)
    torch.manual_seed(seed)
    model = workload.init_model().to(device)
    if freeze:
        result.frozen_params = apply_freeze(model, freeze, workload.name)
    if precision == "bf16":
        cast_model_bf16(model)
    if distributed is not None:
        model = distributed.wrap(model)
    autocast = precision != "fp32"
    if spec.method == "sso" and (not config.plain or grad_norm_kind is not None):
        raise UsageError(f"{spec.name}: SSO runs without memory savers and without --record-grad-norms")
    algorithm = (
        SubmissionAlgorithm(spec, model, workload, seed)
        if spec.submission
        else SSOAlgorithm(spec, model, workload, workload.step_budget)
        if spec.method == "sso"
        else TrainingAlgorithm(spec, model, workload.step_budget, grad_norm_kind)
    )
    covered = algorithm.coverage()
    if covered is not None:
        result.covered_params = covered[0]
        result.coverage = covered[0] / covered[1] if covered[1] else 0.0
    freezer = None
    if freeze_change is not None:
        freezer = ChangeBasedFreezer(
            model,
            window=workload.eval_every,
            threshold=float(freeze_change),
            start_step=workload.step_budget // 10,
            max_fraction=0.9,
            optimizer=algorithm.optimizer,
        )
    batches = workload.batches(splits.train, torch.Generator().manual_seed(seed))
    if distributed is not None:
        batches = map(distributed.shard, batches)
    result.param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    result.grad_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    model.train()
    compressor = None
    if bits is not None:
        compressor = ActivationCompressor(
            bits, model=model, seed=seed, average_bits=ADAPTIVE_AVERAGE_BITS, adapt_interval=ADAPTIVE_INTERVAL
        )
    else:
        result.saved_activation_bytes = probe_saved_bytes(workload, model, splits, seed, device, autocast, distributed)
    training_loss = _training_loss(workload, device, autocast, compressor)
    # bf16 parameters need bf16 inputs: evaluate under autocast too (fp32 weights evaluate in fp32)
    evaluate = _autocast_evaluate(workload, device) if precision == "bf16" else workload.evaluate
    fine_split = None
    if continual is not None:
        fine_split = workload.subset(getattr(splits, eval_split), continual[1])
        result.continual_every, result.continual_subset = continual
    reset_peak_device_memory(device)
    clock = TrainingClock(device)
    loss_sum = torch.zeros((), device=device)
    losses_since_eval = 0
    peak_state = 0

    clock.start()
    done_at = 0  # the step after which an AlgoPerf submission declared training complete
    step = 0
    while step < workload.step_budget:
        before, step = step, step + 1
        try:
            batch: Any = algorithm.next_batch(batches, model)  # a tuple, or a submission's dict
            loss = algorithm.update(model, batch, training_loss)
            if distributed is not None:
                loss = distributed.mean(loss)
            # steps are batches: a submission's update_params that drew several (LAWA) counts them all
            step = max(step, getattr(algorithm, "batches_drawn", step))
        except TrainingCompleteError:
            done_at = step = before  # nothing trained this step: evaluate what the last one left
            if step == 0 or (result.evals and result.evals[-1].step == step):
                break
        if not done_at:
            if freezer is not None:
                freezer.step()
            loss_sum += loss
            losses_since_eval += 1
            if progress is not None:
                progress.on_step(step)
            if not math.isfinite(loss.item()):
                # diverged: stop at this step (a NaN never recovers); the last evaluation stands
                result.status = "diverged"
                diverged_seconds = clock.pause()
                break
            if fine_split is not None and continual is not None and step // continual[0] != before // continual[0]:
                result.eval_seconds += continual_eval(
                    result, step, algorithm, model, evaluate, fine_split, clock, workload
                )
            if step // workload.eval_every == before // workload.eval_every and step < workload.step_budget:
                continue  # no evaluation boundary crossed

        # ---- evaluation: the clock is paused ----
        algorithm.prepare_for_eval(model)
        train_seconds = clock.pause()
        eval_started = time.perf_counter()
        train_loss = (loss_sum / losses_since_eval).item() if losses_since_eval else math.nan
        model.eval()
        metrics = evaluate(model, getattr(splits, eval_split))
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
        algorithm.record_eval(step, workload.metric, record.metric, record.validation_loss)
        # optimizer state can shrink (FRUGAL's block mode): report its peak over the evaluations
        peak_state = max(peak_state, algorithm.state_bytes())
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
        if monitor is not None and monitor(result) and not result.reached:
            result.status = "pruned"
            break
        if done_at or step >= workload.step_budget or (stop_at_target and result.reached):
            break  # the final weights stay in evaluation form for the test evaluation
        clock.resume()
        algorithm.prepare_for_train(model)

    # ---- wrap-up: not on the clock ----
    result.steps = step
    if not result.evals and result.status != "diverged":  # ended before its first step
        clock.pause()
        result.status = "completed"
        result.evals.append(EvalRecord(0, 0.0, math.nan, math.nan, math.nan, 0.0))
    if result.status == "diverged":
        result.train_seconds = diverged_seconds
        result.final_metric = math.nan
    else:
        result.train_seconds = result.evals[-1].train_seconds
        result.final_metric = result.evals[-1].metric
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
        model.eval()
        result.test_metric = float(evaluate(model, splits.test)[workload.metric])
    if freezer is not None:  # parameters frozen during training count too
        result.frozen_params = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    result.state_bytes = max(peak_state, algorithm.state_bytes())
    if isinstance(algorithm, SSOAlgorithm):
        result.outer_gradients, result.inner_steps = algorithm.counts()
    if isinstance(algorithm, SubmissionAlgorithm):  # LAWA draws several batches per update_params
        result.hparams["batches_drawn"] = algorithm.batches_drawn
    if compressor is not None:
        result.saved_activation_bytes = compressor.peak_bytes
    peak = peak_device_memory(device)
    if peak is not None:
        result.peak_memory_bytes, result.peak_memory_source = peak, "cuda_max_allocated"
    else:
        result.peak_memory_bytes = (
            result.param_bytes + result.grad_bytes + result.state_bytes + (result.saved_activation_bytes or 0)
        )
        result.peak_memory_source = "params+grads+state+activations"
    if grad_norm_kind is not None:
        result.grad_norms = algorithm.grad_norms()
    return result
