"""State helpers shared by optimizers that keep state in a dtype other than the parameter's."""

from __future__ import annotations

from itertools import chain
from typing import Any

import torch


def restore_saved_dtypes(optimizer: torch.optim.Optimizer, state_dict: dict[str, Any]) -> None:
    """Re-install every saved state tensor with its saved dtype, after `Optimizer.load_state_dict`.

    torch's loader casts each state tensor (except "step") to its parameter's dtype; fp32 moments of
    bf16 parameters, or int64 index tensors, would be silently mangled. Call this right after
    `super().load_state_dict(state_dict)`.
    """
    saved_ids = chain.from_iterable(g["params"] for g in state_dict["param_groups"])
    by_id = dict(zip(saved_ids, chain.from_iterable(g["params"] for g in optimizer.param_groups)))
    for pid, saved in state_dict["state"].items():
        p = by_id.get(pid)
        if p is None:
            continue
        for key, value in saved.items():
            if isinstance(value, torch.Tensor):
                optimizer.state[p][key] = value.to(device=p.device, copy=True)


class KeepsSavedStateDtypes(torch.optim.Optimizer):
    """Base for optimizers whose state dtype is not the parameter's (fp32 moments of bf16 weights,
    int64 indices): `load_state_dict` restores every state tensor as it was saved."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        restore_saved_dtypes(self, state_dict)
