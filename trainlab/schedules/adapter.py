"""Turn a pure schedule into a `torch.optim.lr_scheduler.LRScheduler` (LambdaLR underneath).

LambdaLR evaluates its function at 0 on construction and at k after the k-th `scheduler.step()`;
calling `scheduler.step()` after every `optimizer.step()` therefore gives the (k+1)-th update the
multiplier f(k), exactly the convention of `trainlab.schedules.core`.
"""

from __future__ import annotations

import torch

from trainlab.schedules.core import Schedule


def as_lr_scheduler(optimizer: torch.optim.Optimizer, schedule: Schedule) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=schedule)
