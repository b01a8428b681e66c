"""Checkpoints inside a trial: a trial killed at any moment resumes from its last checkpoint and ends
with the same parameters, curve and record, bit for bit, as one that never stopped.

A checkpoint is written at an evaluation (the clock is paused there, so writing costs no training
time) once `checkpoint_every` steps have passed since the last one. It holds the model and optimizer
`state_dict`s (every optimizer's whole state: SOAP's bases, Schedule-Free's averages, GaLore's
projectors), the schedule's position, the RNG states, the record so far (evaluations, predictions,
whether and when the target was met) and the training seconds on the clock. The data position is
not stored: the batch stream is a function of the seed, so a resumed trial draws and discards the
batches already trained on. Written atomically (a temporary file, then a rename), so a kill during
the write leaves the previous checkpoint whole.

The clock: a resumed trial continues from the checkpoint's training seconds; the steps between the
checkpoint and the kill are trained again and charged once (the lost work is not charged), and the
time to draw and discard batches is off the clock. A completed trial deletes its checkpoint.

The file is named by the trial's identity (workload and its options, algorithm and its
hyperparameters, seed, trial options), so the same trial rerun in the same folder, a resumed race's
for one, finds it and any other trial does not.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from trainlab.algorithms import TrainingAlgorithm

VERSION = 1


def path_for(trial: Any, seed: int) -> Path | None:
    """Where `trial` keeps its checkpoint, or None when checkpoints are off."""
    o = trial.options
    if not o.checkpoint_every or not o.checkpoint_dir:
        return None
    identity = {
        "workload": trial.workload.describe(),
        "algorithm": trial.result.algorithm,
        "hparams": trial.result.hparams,
        "seed": seed,
        "options": o.to_dict([k for k in o.to_dict() if not k.startswith("checkpoint")]),
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Path(o.checkpoint_dir) / f"{trial.workload.name}-seed{seed}-{digest}.pt"


def supported(algorithm: Any) -> bool:
    """Checkpoints cover trainlab's own algorithms (an AlgoPerf submission's state is its own)."""
    return type(algorithm) is TrainingAlgorithm


def save(trial: Any, path: Path, step: int, train_seconds: float) -> None:
    algorithm = trial.algorithm
    state = {
        "version": VERSION,
        "step": step,
        "train_seconds": train_seconds,
        "model": trial.model.state_dict(),
        "optimizer": algorithm.optimizer.state_dict(),
        "scheduler": algorithm.scheduler.state_dict(),
        "grad_norms": list(algorithm._grad_norms),
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "result": trial.result,
        "peak_state": trial.peak_state,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def restore(trial: Any, path: Path) -> tuple[int, float] | None:
    """Load `path` into `trial` if it exists: (step, training seconds) it resumes from, else None.
    The model comes back in evaluation form, as it was saved; the batches trained on are drawn and
    discarded."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location=trial.device, weights_only=False)
    if state.get("version") != VERSION:
        return None
    algorithm = trial.algorithm
    trial.model.load_state_dict(state["model"])
    algorithm.optimizer.load_state_dict(state["optimizer"])
    algorithm.scheduler.load_state_dict(state["scheduler"])
    algorithm._grad_norms = list(state["grad_norms"])
    torch.set_rng_state(state["rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    result = state["result"]
    result.resumed_from = state["step"]
    trial.result = result
    trial.peak_state = state["peak_state"]
    for _ in range(state["step"]):
        next(trial.batches)
    return state["step"], state["train_seconds"]


def remove(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)
