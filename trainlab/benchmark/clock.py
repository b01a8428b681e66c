"""The one place where training time is measured (AlgoPerf's clock semantics).

The clock starts after model and optimizer set-up, runs through data loading, forward, backward and
the optimizer step, and is paused for every evaluation. Each reading first synchronises the device,
so asynchronous GPU work launched before a pause is charged to training, not to evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from trainlab.utils.device import synchronize


class TrainingClock:
    def __init__(self, device: torch.device, timer: Callable[[], float] = time.perf_counter) -> None:
        self.device = device
        self._timer = timer
        self._accumulated = 0.0
        self._running_since: float | None = None

    def start(self) -> None:
        if self._running_since is not None:
            raise RuntimeError("clock already running")
        synchronize(self.device)
        self._running_since = self._timer()

    resume = start

    def resume_from(self, seconds: float) -> None:
        """Continue a count saved in a checkpoint (before `start`)."""
        if self._running_since is not None:
            raise RuntimeError("clock already running")
        self._accumulated = float(seconds)

    def pause(self) -> float:
        """Stop counting and return the training seconds accumulated so far."""
        if self._running_since is None:
            raise RuntimeError("clock is not running")
        synchronize(self.device)
        self._accumulated += self._timer() - self._running_since
        self._running_since = None
        return self._accumulated
