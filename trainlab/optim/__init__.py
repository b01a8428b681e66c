"""Optimizers: `torch.optim.Optimizer` subclasses, a registry, and exact state accounting."""

from trainlab.optim.nadamw import NAdamW
from trainlab.optim.registry import available, create, entry, linear_update, register, state_bytes
from trainlab.optim import catalog_elementwise, catalog_projection  # noqa: F401  (registers)

__all__ = ["NAdamW", "available", "create", "entry", "linear_update", "register", "state_bytes"]
