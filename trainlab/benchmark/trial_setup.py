"""A trial's set-up, off the clock: model, data, algorithm and memory savers, in the order that fixes
its random draws (and so its numbers). What each saver does is documented in `trainlab.benchmark.runner`."""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from trainlab.algorithms import AlgorithmSpec, TrainingAlgorithm
from trainlab.algorithms.sso import SSOAlgorithm
from trainlab.algorithms.submission import SubmissionAlgorithm, load_submission, submission_batch_size
from trainlab.benchmark.probes import probe_saved_bytes
from trainlab.benchmark.trial_options import TrialOptions, apply_freeze
from trainlab.memory import ActivationCompressor, ChangeBasedFreezer, bf16_autocast, cast_model_bf16
from trainlab.store.results import TrialResult
from trainlab.workloads import Workload

ADAPTIVE_AVERAGE_BITS = 4.0
ADAPTIVE_INTERVAL = 1000


@dataclass
class Trial:
    """One trial, set up off the clock: what the timed loop and the wrap-up work on."""

    workload: Workload
    options: TrialOptions
    device: torch.device
    result: TrialResult
    model: torch.nn.Module
    algorithm: Any  # TrainingAlgorithm, SSOAlgorithm or SubmissionAlgorithm
    splits: Any
    batches: Iterator
    training_loss: Callable
    evaluate: Callable
    distributed: Any = None
    freezer: ChangeBasedFreezer | None = None
    compressor: ActivationCompressor | None = None
    fine_split: Any = None  # continual evaluation's subset
    diverged_seconds: float = math.nan
    peak_state: int = 0  # optimizer-state bytes: the largest seen at an evaluation


def set_up(
    workload: Workload,
    spec: AlgorithmSpec,
    seed: int,
    device: torch.device,
    options: TrialOptions,
    distributed: Any = None,
) -> Trial:
    """Everything before the clock starts, in an order that fixes the RNG draws (and so the numbers)."""
    options.check(device)
    options.check_algorithm(spec.name, submission=spec.submission, sso=spec.method == "sso")
    result = TrialResult(
        workload=workload.name,
        algorithm=spec.name,
        seed=seed,
        hparams=dict(spec.hparams),
        metric_name=workload.metric,
        higher_is_better=workload.higher_is_better,
        target=workload.target,
        step_budget=workload.step_budget,
        compress_activations=options.compress_activations,
        precision=options.precision,
    )
    if spec.submission:  # an AlgoPerf submission trains the plain model, at its own batch size
        workload = _submission_batch(workload, spec, result)
    splits = workload.splits().to(device)
    torch.manual_seed(seed)
    model = workload.init_model().to(device)
    if options.freeze:
        result.frozen_params = apply_freeze(model, options.freeze, workload.name)
    if options.precision == "bf16":
        cast_model_bf16(model)
    if distributed is not None:
        model = distributed.wrap(model)
    algorithm = (
        SubmissionAlgorithm(spec, model, workload, seed)
        if spec.submission
        else SSOAlgorithm(spec, model, workload, workload.step_budget)
        if spec.method == "sso"
        else TrainingAlgorithm(spec, model, workload.step_budget, options.grad_norm_kind)
    )
    covered = algorithm.coverage()
    if covered is not None:
        result.covered_params = covered[0]
        result.coverage = covered[0] / covered[1] if covered[1] else 0.0
    trial = Trial(
        workload,
        options,
        device,
        result,
        model,
        algorithm,
        splits,
        iter(()),
        workload.loss,
        workload.evaluate,
        distributed,
    )
    _savers_and_data(trial, seed)
    return trial


def _submission_batch(workload: Workload, spec: AlgorithmSpec, result: TrialResult) -> Workload:
    size, origin = submission_batch_size(load_submission(spec.name), workload)
    if size != workload.batch_size:
        workload = copy.copy(workload)
        workload.batch_size = size
    result.hparams["batch_size_source"] = f"{size}: {origin}"
    return workload


def _savers_and_data(trial: Trial, seed: int) -> None:
    """The freezer, the batches, the byte counts, the compressor (or the untimed activation probe),
    the training loss and the evaluation the loop calls."""
    workload, model, options, result = trial.workload, trial.model, trial.options, trial.result
    if options.freeze_change is not None:
        trial.freezer = ChangeBasedFreezer(
            model,
            window=workload.eval_every,
            threshold=float(options.freeze_change),
            start_step=workload.step_budget // 10,
            max_fraction=0.9,
            optimizer=trial.algorithm.optimizer,
        )
    batches = workload.batches(trial.splits.train, torch.Generator().manual_seed(seed))
    trial.batches = map(trial.distributed.shard, batches) if trial.distributed is not None else batches
    result.param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    result.grad_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    model.train()
    autocast = options.precision != "fp32"
    if options.compress_activations is not None:
        trial.compressor = ActivationCompressor(
            options.compress_activations,
            model=model,
            seed=seed,
            average_bits=ADAPTIVE_AVERAGE_BITS,
            adapt_interval=ADAPTIVE_INTERVAL,
        )
    else:
        result.saved_activation_bytes = probe_saved_bytes(
            workload, model, trial.splits, seed, trial.device, autocast, trial.distributed
        )
    trial.training_loss = _training_loss(workload, trial.device, autocast, trial.compressor)
    # bf16 parameters need bf16 inputs: evaluate under autocast too (fp32 weights evaluate in fp32)
    if options.precision == "bf16":
        trial.evaluate = _autocast_evaluate(workload, trial.device)
    if options.continual is not None:
        trial.fine_split = workload.subset(getattr(trial.splits, options.eval_split), options.continual[1])
        result.continual_every, result.continual_subset = options.continual


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
