"""`step(closure)`'s one shared line: torch.optim's contract re-evaluates the loss with gradients
enabled (the step itself runs under no_grad) and returns it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def closure_loss(closure: Callable[[], Any] | None) -> Any:
    """The closure's loss, computed with autograd on; None without a closure."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()
