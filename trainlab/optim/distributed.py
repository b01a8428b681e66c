"""Optimizers on sharded parameters (FSDP2 / DTensor): what each kind of rule needs to see.

FSDP2 (`torch.distributed.fsdp.fully_shard`) makes every parameter a `DTensor` sharded on dim 0, and
its gradient too (after the reduce-scatter). DDP needs nothing here: every rank holds whole
parameters and the same averaged gradient.

- Elementwise rules are shard-local: `local()` hands them each tensor's local shard, so the foreach
  and fused kernels run on plain tensors (no DTensor dispatch, and ops without a sharding rule, such
  as `_foreach_copy_`, work).
- Matrix rules (an SVD, Newton-Schulz, an eigenbasis) need the whole matrix. `whole()` all-gathers
  the parameter and its gradient, lets the rule update the gathered copy with its state kept whole,
  and writes this rank's rows back into the shard. Every rank computes the same update from the same
  gathered inputs, so the state is replicated, not sharded: per matrix and step it costs two
  all-gathers (parameter and gradient) and one process's optimizer state on every rank. That is now
  the `distributed="replicated"` design; with several ranks the default gives each matrix one owner
  rank (`owners.py`: gathers to the owner, state there only, rows scattered back).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeGuard

import torch

if TYPE_CHECKING:
    from torch.distributed.tensor import DTensor


def is_sharded(p: Any) -> TypeGuard[DTensor]:
    """Whether `p` is a DTensor. Importing torch.distributed.tensor costs most of a second, so it is
    never imported here: no tensor is a DTensor unless something else imported it first."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(p, module.DTensor)


def _local(t: Any) -> Any:
    return t.to_local() if is_sharded(t) else t


def local(
    params: list[torch.Tensor], grads: list[torch.Tensor], states: list[dict[str, Any]]
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[dict[str, Any]]]:
    """The local shards of a bucket for an elementwise rule: parameters, gradients, and each state
    dict with its DTensors replaced by their shards (the rule updates them in place). Unchanged when
    nothing is sharded. A gradient that is still a pending sum (`Partial`) cannot be updated shard by
    shard: that is a `ValueError`. Called for every bucket of every step: without DTensors in the
    process, one dictionary lookup."""
    if "torch.distributed.tensor" not in sys.modules or not any(is_sharded(p) for p in params):
        return params, grads, states
    from torch.distributed.tensor import Partial

    for p, g in zip(params, grads):
        if (
            is_sharded(g)
            and is_sharded(p)
            and (any(isinstance(pl, Partial) for pl in g.placements) or g.placements != p.placements)
        ):
            raise ValueError(
                f"a gradient placed {g.placements} for a parameter placed {p.placements}: an elementwise "
                "rule needs both sharded alike (FSDP2 reduce-scatters gradients to the parameter's placement)"
            )
    return (
        [_local(p) for p in params],
        [_local(g) for g in grads],
        [{k: _local(v) for k, v in s.items()} for s in states],
    )


def keep_new_state(params: list[torch.Tensor], states: list[dict[str, Any]], shards: list[dict[str, Any]]) -> None:
    """State an elementwise rule created lazily on the shards (`local()`), put back as DTensors placed
    like their parameter. Nothing to do when `local()` handed back the state dicts themselves."""
    if shards is states:
        return
    from torch.distributed.tensor import DTensor

    for p, state, shard in zip(params, states, shards):
        if shard is not state and is_sharded(p):
            for key in shard.keys() - state.keys():
                state[key] = DTensor.from_local(shard[key], p.device_mesh, p.placements)


@contextlib.contextmanager
def whole(optimizer: torch.optim.Optimizer, p: torch.Tensor) -> Iterator[torch.Tensor]:
    """`p` itself when it is a plain tensor; for a DTensor, a gathered plain copy with `.grad` (and
    `optimizer.state` moved onto it for the block), whose rows for this rank are written back into
    `p`'s shard on exit."""
    grad = p.grad
    if not is_sharded(p) or not is_sharded(grad):
        yield p
        return
    full = p.full_tensor()
    full.grad = grad.full_tensor()
    state = optimizer.state
    state[full] = state.pop(p) if p in state else {}
    try:
        yield full
    finally:
        state[p] = state.pop(full)
    from torch.distributed.tensor import distribute_tensor

    shard = distribute_tensor(full, p.device_mesh, p.placements, src_data_rank=None)
    p.to_local().copy_(shard.to_local())
