"""What the runner measures off the clock: the saved-activation probe and continual evaluation
(documented with the runner, `trainlab.benchmark.runner`)."""

from __future__ import annotations

import contextlib
import math
import time

import torch

from trainlab.memory import SavedTensorMeter, bf16_autocast
from trainlab.workloads import Workload


def probe_saved_bytes(
    workload: Workload,
    model: torch.nn.Module,
    splits,
    seed: int,
    device: torch.device,
    autocast: bool,
    distributed=None,
) -> int:
    """Saved-activation bytes of one forward+backward on the trial's first batch (see module doc)."""
    meter = SavedTensorMeter(model)
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    try:
        with torch.random.fork_rng(devices=devices):
            batch = next(iter(workload.batches(splits.train, torch.Generator().manual_seed(seed))))
            if distributed is not None:
                batch = distributed.shard(batch)
            with meter, torch.enable_grad():
                with bf16_autocast(device) if autocast else contextlib.nullcontext():
                    loss = workload.loss(model, batch)
                loss.backward()
            del loss, batch
    finally:
        for p in model.parameters():
            p.grad = None
        with torch.no_grad():
            for b, value in buffers:
                b.copy_(value)
    return meter.peak_bytes


def continual_eval(trial, step: int) -> float:
    """One continual evaluation of a `trainlab.benchmark.trial_setup.Trial` on its fixed subset, run
    while the caller has the clock paused (the evaluation-mode hooks included: this view is a
    diagnostic, not part of the algorithm); its wall seconds."""
    started = time.perf_counter()
    trial.algorithm.prepare_for_eval(trial.model)
    trial.model.eval()
    metrics = trial.evaluate(trial.model, trial.fine_split)
    trial.model.train()
    trial.algorithm.prepare_for_train(trial.model)
    metric = float(metrics[trial.workload.metric])
    trial.result.continual.append((step, metric, float(metrics.get("loss", math.nan))))
    return time.perf_counter() - started
