"""`MatrixOptimizer`: a matrix rule for the hidden matrices, AdamW for the rest, in one optimizer.

SWAN and Muon share this shape (as do their official recipes): a group key switches the matrix rule
on, ndim >= 2 parameters of such groups get it, and every other parameter gets AdamW in torch's form
with fp32 moments. This base writes the shared part once: the recipe's groups, coverage, the step
loop, and the AdamW update.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from trainlab.optim.owners import OwnerUpdates
from trainlab.optim.projection import adam_direction, adam_moments_
from trainlab.optim.state import KeepsSavedStateDtypes


class MatrixOptimizer(OwnerUpdates, KeepsSavedStateDtypes):
    matrix_key: ClassVar[str]  # the group key that switches the matrix rule on
    # the recipes' layout (`trainlab.optim.selection.recipe_groups`): hidden matrices by the matrix
    # rule (the class default), embeddings, head and 1-D parameters by AdamW
    matrix_group: ClassVar[dict[str, Any]] = {}
    fallback_group: ClassVar[dict[str, Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if hasattr(cls, "matrix_key"):
            cls.fallback_group = {cls.matrix_key: False}

    def coverage(self) -> tuple[int, int]:
        """(entries the matrix rule updates, all entries): what the method treats unlike AdamW."""
        groups = [(p, g) for g in self.param_groups for p in g["params"]]
        return (sum(p.numel() for p, g in groups if self._by_matrix_rule(p, g)), sum(p.numel() for p, _ in groups))

    def _by_matrix_rule(self, p: torch.Tensor, group: dict[str, Any]) -> bool:
        return bool(group[self.matrix_key]) and p.ndim >= 2

    def is_matrix(self, p: torch.Tensor, group: dict[str, Any]) -> bool:
        return self._by_matrix_rule(p, group)

    def _matrix_update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        raise NotImplementedError

    def _other_update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        return self._step_by_kind(closure, self._matrix_update, self._other_update)

    def _adamw_update(
        self, p: torch.Tensor, lr: float, betas: tuple[float, float], eps: float, weight_decay: float
    ) -> None:
        """torch.optim.AdamW's rule (decay before the update) with fp32 moments."""
        state = self.state[p]
        if "step" not in state:
            state["step"] = 0
            fp32: dict[str, Any] = dict(dtype=torch.float32, memory_format=torch.preserve_format)
            state["exp_avg"] = torch.zeros_like(p, **fp32)
            state["exp_avg_sq"] = torch.zeros_like(p, **fp32)
        beta1, beta2 = betas
        if weight_decay:
            p.mul_(1 - lr * weight_decay)
        state["step"] += 1
        assert p.grad is not None
        adam_moments_(state["exp_avg"], state["exp_avg_sq"], p.grad.float(), beta1, beta2)
        psi, c = adam_direction(state["exp_avg"], state["exp_avg_sq"], state["step"], beta1, beta2, eps, "torch")
        p.add_(psi.mul_(c).to(p.dtype), alpha=-lr)
