"""Owner-rank matrix updates: each matrix is updated by one rank, its state held there only.

Why: a matrix rule (Newton-Schulz, eigenbases, an SVD projection) needs the whole matrix. The
replicated design (`distributed.whole`) makes every rank gather every matrix and its gradient,
compute the same update and keep the same state: N ranks do N times one process's matrix work and
hold N copies of its matrix state. Here every matrix parameter gets one owner rank instead (the
design of Distributed Shampoo's DDP/FSDP configs, heavyball and several distributed Muons):

- Assignment (`assign`): greedy, largest first by the method's cost model (`matrix_cost`), each
  matrix to the least-loaded rank, ties by parameter order and then by the lowest rank. It reads
  only shapes and group settings, so every rank derives the same owners with no communication, the
  same again after a restart, and a different world size simply re-derives them (a checkpoint's
  state then moves to the new owners: `checkpoint.py`).
- DDP (plain parameters, the gradient already all-reduced): the owner updates the matrix; the
  others skip it; then the owner broadcasts the new matrix. Communication per step: one broadcast
  per matrix; compute and state per rank: about 1/N of one process's.
- FSDP2 (DTensors sharded `Shard(0)` on a 1-D mesh): the parameter's and gradient's shards are
  gathered to the owner only (not an all-gather), the owner updates the whole matrix, and scatters
  the new rows back as shards: per matrix, two gathers and one scatter of its size in total,
  against two all-gathers that each deliver the whole matrix to every rank.
- All owners compute at once: every rank first computes its own matrices, then the results move,
  with asynchronous collectives issued in parameter order (the same on every rank).

The mode is chosen in one place, `OwnerUpdates.uses_owners`: "auto" (the default) means owners
whenever torch.distributed is initialised with more than one rank in the group; "owner" demands it;
"replicated" keeps the design above for comparison. Other DTensor layouts (HSDP's 2-D mesh, other
placements) fall back to `whole()` for that parameter. Elementwise parts (biases, norms, AdamW-
routed embeddings) never come here: they stay shard-local. "auto" assumes what DDP and FSDP2 give:
every rank of the group steps the same parameters with the same gradient; ranks that train models
of their own in one process group need "replicated". A rank's `state_dict()` holds only the state
of the matrices it owns (a state loaded whole on every rank is dropped on non-owners at the first
step): save `checkpoint.gathered_state_dict`, not rank 0's `state_dict()` alone.

A matrix method opts in by subclassing `OwnerUpdates` (the `MatrixOptimizer` and `SubspaceAdam`
bases already do), naming its matrices in `is_matrix`, and passing its whole-matrix updates to
`update_matrices`; `matrix_cost` is optional (default m n min(m, n), Newton-Schulz's order).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from trainlab.optim.closure import closure_loss
from trainlab.optim.distributed import is_sharded, whole
from trainlab.optim.projector import matrix_shape
from trainlab.optim.validation import check_choice, check_dense_real

MODES = ("auto", "owner", "replicated")
Update = Callable[[torch.Tensor], None]


def assign(costs: list[float], world: int) -> list[int]:
    """Owner rank of each cost: largest first, to the least-loaded rank; ties by position, then rank."""
    loads = [0.0] * world
    owners = [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        rank = min(range(world), key=lambda r: (loads[r], r))
        owners[i] = rank
        loads[rank] += costs[i]
    return owners


def _chunks(rows: int, world: int) -> tuple[int, list[int]]:
    """Shard(0)'s split of `rows` over `world` ranks (torch.chunk's, empty shards at the end): the
    padded chunk size and each rank's row count."""
    size = -(-rows // world) if rows else 0
    counts = [max(0, min(size, rows - r * size)) for r in range(world)]
    return size, counts


def _row_sharded(p: Any) -> bool:
    """A DTensor sharded on dim 0 over a 1-D mesh: what the owner path gathers from and scatters to."""
    from torch.distributed.tensor import Shard

    placements = p.placements
    return (
        p.device_mesh.ndim == 1 and len(placements) == 1 and isinstance(placements[0], Shard) and placements[0].dim == 0
    )


class OwnerUpdates(torch.optim.Optimizer):
    """Base for optimizers with whole-matrix rules: owner-rank updates (module docstring)."""

    def __init__(self, params, defaults: dict[str, Any], distributed: str = "auto", process_group=None) -> None:
        check_choice("distributed", distributed, MODES)
        self.distributed = distributed
        self.process_group = process_group  # DDP's group (None: the default group); FSDP2 uses the mesh's
        self.comm_bytes = 0  # bytes this rank sent and received in the optimizer's own collectives
        # CPU seconds of this thread in the method's own whole-matrix updates: unlike wall time, not
        # inflated by ranks sharing cores (on a GPU it counts only the kernel launches)
        self.compute_seconds = 0.0
        self._owner_cache: dict[int, dict[int, int]] = {}  # world size -> owners
        super().__init__(params, defaults)

    # ---- what a method states ------------------------------------------------------------------

    def is_matrix(self, p: torch.Tensor, group: dict[str, Any]) -> bool:
        """Whether `p` gets the method's whole-matrix rule (else an elementwise one)."""
        raise NotImplementedError

    def matrix_cost(self, p: torch.Tensor, group: dict[str, Any]) -> float:
        """Relative cost of one update of `p`: m n min(m, n), the order of Newton-Schulz and an SVD."""
        m, n = matrix_shape(p)
        return float(m * n * min(m, n))

    # ---- the mode, stated once -----------------------------------------------------------------

    def _group_of(self, p: torch.Tensor):
        return p.device_mesh.get_group() if is_sharded(p) else self.process_group

    def uses_owners(self, group=None) -> bool:
        """Owners for `group`'s ranks: "owner" always, "replicated" never, "auto" (the default)
        whenever torch.distributed is initialised and the group has more than one rank."""
        if self.distributed == "replicated":
            return False
        running = dist.is_available() and dist.is_initialized()
        if self.distributed == "owner" and not running:
            raise RuntimeError('distributed="owner" needs an initialised torch.distributed process group')
        return running and dist.get_world_size(group) > 1

    def owner_of(self, p: torch.Tensor) -> int | None:
        """`p`'s owner rank in its group when owners apply to it (a matrix, plain or row-sharded, in
        a group of several ranks), else None (replicated, or no matrix)."""
        if is_sharded(p) and not _row_sharded(p):
            return None
        group = self._group_of(p)
        if not self.uses_owners(group):
            return None
        return self.owners(dist.get_world_size(group)).get(id(p))

    def owners(self, world: int) -> dict[int, int]:
        """id(parameter) -> owner rank for every matrix parameter, for a group of `world` ranks.
        Derived once (until a param group is added): a matrix never changes owner mid-training."""
        if world not in self._owner_cache:
            matrices = [(p, g) for g in self.param_groups for p in g["params"] if self.is_matrix(p, g)]
            ranks = assign([self.matrix_cost(p, g) for p, g in matrices], world)
            self._owner_cache[world] = {id(p): r for (p, _), r in zip(matrices, ranks)}
        return self._owner_cache[world]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        self._owner_cache.clear()

    # ---- the step ------------------------------------------------------------------------------

    def _step_by_kind(self, closure, matrix_update: Callable, other_update: Callable) -> Any:
        """The step of a method that updates each matrix (`is_matrix`) whole, by its owner, and
        every other parameter in place, one by one: Muon, SWAN, NorMuon, SOAP."""
        loss = closure_loss(closure)
        name = type(self).__name__
        matrices: list[tuple[torch.Tensor, Update]] = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                check_dense_real(name, p)
                if self.is_matrix(p, group):
                    matrices.append((p, functools.partial(matrix_update, group=group)))
                else:
                    other_update(p, group)
        self.update_matrices(matrices)
        return loss

    def update_matrices(self, updates: list[tuple[torch.Tensor, Update]]) -> None:
        """Apply each `(p, update)` (the update runs on a whole plain matrix with `.grad` and reads
        and writes `self.state[matrix]`), each by its owner when owners apply, else replicated."""
        owned: list[tuple[torch.Tensor, Update, Any]] = []
        for p, update in updates:
            group = self._group_of(p)
            grad: Any = p.grad
            if self.owner_of(p) is None or (is_sharded(p) and grad.placements != p.placements):
                self.comm_bytes += _gather_bytes(p) if is_sharded(p) else 0
                with whole(self, p) as matrix:
                    self._timed(update, matrix)
            else:
                owned.append((p, update, group))
        if owned:
            self._owner_step(owned)

    def _owner_step(self, items: list[tuple[torch.Tensor, Update, Any]]) -> None:
        # 1. FSDP2: gather each owner's parameters and gradients (async, in parameter order)
        gathers = [self._gather(p, group) if is_sharded(p) else None for p, _, group in items]
        for pending in gathers:
            if pending is not None:
                for work in pending[2]:
                    work.wait()
        # 2. every rank computes the matrices it owns
        for (p, update, group), pending in zip(items, gathers):
            if self._owner(p, group) != dist.get_rank(group):
                self.state.pop(p, None)  # nothing of a matrix another rank owns stays here
                continue
            if pending is None:
                self._timed(update, p)
                continue
            full = _assemble(pending[0], p)
            full.grad = _assemble(pending[1], p)
            state = self.state
            state[full] = state.pop(p, {})
            try:
                self._timed(update, full)
            finally:
                state[p] = state.pop(full)
            flat = torch.zeros(len(pending[0]) * pending[0][0].numel(), dtype=full.dtype, device=full.device)
            flat[: full.numel()].copy_(full.reshape(-1))
            pending[0][:] = flat.split(pending[0][0].numel())  # the scatter's chunks: the new rows
        # 3. the results go back: broadcast (DDP) or scatter of rows (FSDP2), then wait
        works = []
        for (p, _, group), pending in zip(items, gathers):
            owner, nbytes = self._owner(p, group), p.numel() * p.element_size()
            world = dist.get_world_size(group)
            if pending is None:
                works.append((dist.broadcast(p.detach(), group=group, group_src=owner, async_op=True), None))
                self.comm_bytes += nbytes * (world - 1) if owner == dist.get_rank(group) else nbytes
            else:
                works.append(self._scatter(p, group, owner, pending[0]))
        for work, finish in works:
            work.wait()
            if finish is not None:
                finish()

    def _timed(self, update: Update, matrix: torch.Tensor) -> None:
        start = time.thread_time()
        update(matrix)
        self.compute_seconds += time.thread_time() - start

    def _owner(self, p: torch.Tensor, group) -> int:
        return self.owners(dist.get_world_size(group))[id(p)]

    def _gather(self, p: Any, group):
        """Async gathers of `p`'s and its gradient's row shards (padded to one chunk) to the owner:
        (parameter chunks, gradient chunks, works); the chunk lists are empty on other ranks."""
        world, rank, owner = dist.get_world_size(group), dist.get_rank(group), self._owner(p, group)
        size, _ = _chunks(p.shape[0], world)
        width = p.numel() // p.shape[0] if p.shape[0] else 0
        lists: list[list[torch.Tensor]] = [[], []]
        works = []
        for i, t in enumerate((p, p.grad)):
            local = t.to_local().reshape(-1)
            send = torch.zeros(size * width, dtype=t.dtype, device=local.device)
            send[: local.numel()].copy_(local)
            if rank == owner:
                lists[i] = [torch.empty_like(send) for _ in range(world)]
            works.append(dist.gather(send, lists[i] or None, group=group, group_dst=owner, async_op=True))
            self.comm_bytes += send.numel() * send.element_size() * ((world - 1) if rank == owner else 1)
        return lists[0], lists[1], works

    def _scatter(self, p: Any, group, owner: int, chunks: list[torch.Tensor]):
        world, rank = dist.get_world_size(group), dist.get_rank(group)
        size, _ = _chunks(p.shape[0], world)
        width = p.numel() // p.shape[0] if p.shape[0] else 0
        recv = torch.empty(size * width, dtype=p.dtype, device=p.to_local().device)
        work = dist.scatter(recv, chunks if rank == owner else None, group=group, group_src=owner, async_op=True)
        self.comm_bytes += recv.numel() * recv.element_size() * ((world - 1) if rank == owner else 1)

        def finish() -> None:
            local = p.to_local()
            local.reshape(-1).copy_(recv[: local.numel()])

        return work, finish


def _assemble(chunks: list[torch.Tensor], p: torch.Tensor) -> torch.Tensor:
    """The whole matrix from the owner's padded row chunks."""
    return torch.cat(chunks)[: p.numel()].reshape(p.shape).clone()


def _gather_bytes(p: Any) -> int:
    """What `whole()`'s two all-gathers move on one rank (sent plus received)."""
    world = p.device_mesh.size()
    return 2 * 2 * (world - 1) * p.numel() * p.element_size() // world
