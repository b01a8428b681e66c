"""Whole-state checkpoints that survive a change of world size.

Why: with owner-rank updates (`owners.py`) each matrix's state lives on one rank, chosen from the
world size; elementwise state is sharded with FSDP2's parameters. A checkpoint taken on N ranks and
resumed on M must move each matrix's state to its new owner and re-shard the rest. The simplest
form that does both is one whole state dict, the layout of one process's `optimizer.state_dict()`
(state by parameter index, plain tensors, param groups): `gathered_state_dict` builds it on every
rank (a collective: each owner broadcasts its matrices' state, sharded state is all-gathered), so
rank 0 can `torch.save` it; `load_gathered_state_dict` keeps on each rank what it now owns, and its
own rows of the sharded state. It costs one process's state in memory while saving and loading.
`torch.distributed.checkpoint` (`get_/set_optimizer_state_dict`) is tested with the replicated
design only; with owners no rank holds every parameter's state, so its setter needs
`StateDictOptions(strict=False)`, and that path is not covered by the tests.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from trainlab.optim.distributed import is_sharded
from trainlab.optim.owners import OwnerUpdates


def _params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _owner(optimizer: torch.optim.Optimizer, p: torch.Tensor) -> int | None:
    return optimizer.owner_of(p) if isinstance(optimizer, OwnerUpdates) else None


def gathered_state_dict(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """One process's `state_dict()` layout, with every tensor whole, on every rank (a collective:
    every rank calls it). Without torch.distributed, `optimizer.state_dict()`'s content."""
    state: dict[int, dict[str, Any]] = {}
    for index, p in enumerate(_params(optimizer)):
        owner = _owner(optimizer, p)
        if owner is not None:
            assert isinstance(optimizer, OwnerUpdates)
            group = optimizer._group_of(p)
            mine = dist.get_rank(group) == owner
            box = [dict(optimizer.state[p]) if mine and p in optimizer.state else None]
            dist.broadcast_object_list(box, group=group, group_src=owner)
            saved = box[0]
        else:
            held = optimizer.state.get(p)
            saved = None if held is None else {k: v.full_tensor() if is_sharded(v) else v for k, v in held.items()}
        if saved is not None:
            state[index] = {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in saved.items()}
    groups = optimizer.state_dict()["param_groups"]
    return {"state": state, "param_groups": groups}


def load_gathered_state_dict(optimizer: torch.optim.Optimizer, state_dict: dict[str, Any]) -> None:
    """Install a `gathered_state_dict` on this rank, whatever the world size it was saved on: a
    matrix's state on its owner here only, a sharded parameter's state as this rank's rows (every
    rank calls it; no communication). Param-group settings are restored as `load_state_dict` does.
    State dtypes are kept as saved."""
    groups = optimizer.param_groups
    if len(groups) != len(state_dict["param_groups"]):
        raise ValueError("the saved state has a different number of parameter groups")
    for group, saved in zip(groups, state_dict["param_groups"]):
        if len(group["params"]) != len(saved["params"]):
            raise ValueError("the saved state has a parameter group of a different size")
        group.update({k: v for k, v in saved.items() if k != "params"})
    optimizer.state.clear()
    for index, p in enumerate(_params(optimizer)):
        saved = state_dict["state"].get(index)
        if saved is None:
            continue
        owner = _owner(optimizer, p)
        if owner is not None:
            assert isinstance(optimizer, OwnerUpdates)
            if dist.get_rank(optimizer._group_of(p)) == owner:
                optimizer.state[p] = {k: _moved(v, p) for k, v in saved.items()}
        else:
            optimizer.state[p] = {k: _placed(v, p) for k, v in saved.items()}


def _moved(value: Any, p: torch.Tensor) -> Any:
    device = p.to_local().device if is_sharded(p) else p.device
    return value.to(device=device, copy=True) if torch.is_tensor(value) else value


def _placed(value: Any, p: Any) -> Any:
    """A saved whole tensor shaped like its sharded parameter becomes a DTensor placed like it;
    anything else is copied to the parameter's device."""
    if torch.is_tensor(value) and is_sharded(p) and value.shape == p.shape:
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(_moved(value, p), p.device_mesh, p.placements, src_data_rank=None)
    return _moved(value, p)
