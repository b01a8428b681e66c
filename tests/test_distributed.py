"""Every registered optimizer under DDP and FSDP2, with real gloo processes spawned here.

Two ranks train a 48-80-64-10 MLP (non-square matrices; GaLore's and Fira's rank 12 < 48) for 5
steps, each on its half of the global batch, and must end where one process ends on the whole batch.
SOAP is the exception that proves the rule: its eigenbases of rank-deficient statistics (every
non-square matrix's larger side) are arbitrary in their null space, so a 1e-7 relative change in the
gradient (the rounding of an all-reduce) moves its parameters by 4e-2 after 5 steps even in one
process. It is checked with the same batch on both ranks, where the averaged gradient is bit-equal
to one process's, as every other optimizer is too. SWAN's whitening lifts the gradient's smallest
singular directions about a thousandfold (that is its job), so the same all-reduce rounding ends
4e-6 away after 5 split steps: its split runs get a 1e-5 tolerance, its whole-batch runs 1e-6.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from trainlab import optim

WORLD = 2
STEPS = 5
LR = 1e-2
BASIS_SENSITIVE = {"soap"}  # see the module docstring
SPLIT_TOLERANCE = {"swan": 1e-5}  # ditto; every other optimizer: 1e-6

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(48, 80), nn.ReLU(), nn.Linear(80, 64), nn.ReLU(), nn.Linear(64, 10))


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(32, 48, generator=g), torch.randint(0, 10, (32,), generator=g)) for _ in range(STEPS)]


def _wrap(model: nn.Module, strategy: str) -> nn.Module:
    if strategy == "ddp":
        return nn.parallel.DistributedDataParallel(model)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (WORLD,))
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh)
    return fully_shard(model, mesh=mesh)


def _train(model: nn.Module, optimizer, batches, rank: int | None, split: bool) -> None:
    for x, y in batches:
        if rank is not None and split:
            x, y = x.chunk(WORLD)[rank], y.chunk(WORLD)[rank]
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def _create(name: str, params) -> torch.optim.Optimizer:
    """The optimizer with matrix methods in the replicated design (owner-rank updates, the default
    with several ranks, are tested in test_distributed_owner.py)."""
    mode = {"distributed": "replicated"} if "distributed" in optim.entry(name).switches() else {}
    return optim.create(name, params, lr=LR, **mode)


def _whole(p: torch.Tensor) -> torch.Tensor:
    return (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone()


def _init(rank: int, tmp: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=WORLD)


def _equivalence_rank(rank: int, tmp: str) -> None:
    _init(rank, tmp)
    out = {}
    for name in optim.available():
        for strategy in ("ddp", "fsdp2"):
            for split in (True, False):
                model = _wrap(_model(), strategy)
                optimizer = _create(name, model.parameters())
                _train(model, optimizer, _batches(), rank, split)
                params = [_whole(p) for p in model.parameters()]
                out[(name, strategy, split)] = (
                    params,
                    optim.state_bytes(optimizer),
                    optim.total_state_bytes(optimizer),
                )
    if rank == 0:
        torch.save(out, f"{tmp}/out.pt")
    torch.distributed.destroy_process_group()
    os._exit(0)  # skip teardown: gloo's threads can abort it under load (see data_parallel_rank.py)


def _reference(name: str) -> tuple[list[torch.Tensor], int, int]:
    """One process's parameters, state bytes, and bytes of its scalar state (torch's step tensors,
    which FSDP2 leaves whole)."""
    model = _model()
    optimizer = optim.create(name, model.parameters(), lr=LR)
    _train(model, optimizer, _batches(), None, True)
    scalars = sum(
        t.element_size() for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t) and t.ndim == 0
    )
    return [p.detach().clone() for p in model.parameters()], optim.state_bytes(optimizer), scalars


def _spawn(fn, tmp: Path) -> None:
    mp.start_processes(fn, args=(str(tmp),), nprocs=WORLD, start_method="spawn")


@pytest.fixture(scope="module")
def distributed_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    _spawn(_equivalence_rank, tmp)
    return torch.load(tmp / "out.pt", weights_only=False)


@pytest.mark.parametrize("name", optim.available())
def test_every_optimizer_matches_one_process_under_ddp_and_fsdp2(distributed_runs, name):
    torch.set_num_threads(1)
    reference, full_state, scalars = _reference(name)
    for strategy in ("ddp", "fsdp2"):
        # split: each rank on half the batch; else both on the whole batch, whose average gradient is
        # one process's bit for bit
        for split in (True, False) if name not in BASIS_SENSITIVE else (False,):
            params, _, _ = distributed_runs[(name, strategy, split)]
            diff = max((a - b).abs().max().item() for a, b in zip(params, reference))
            assert diff <= (SPLIT_TOLERANCE.get(name, 1e-6) if split else 1e-6), (name, strategy, split, diff)
    # bytes on this rank: DDP holds one process's state; FSDP2 shards elementwise state (half here:
    # every dim 0 is even) and keeps a matrix rule's state whole on every rank
    _, ddp_bytes, ddp_total = distributed_runs[(name, "ddp", True)]
    _, fsdp_bytes, fsdp_total = distributed_runs[(name, "fsdp2", True)]
    assert ddp_bytes == full_state and ddp_total == 2 * full_state  # every rank holds it all
    assert fsdp_total == 2 * fsdp_bytes  # the ranks hold equal shares (even dims), summed
    if hasattr(optim.create(name, _model().parameters(), lr=LR), "coverage"):
        assert full_state / 2 <= fsdp_bytes <= full_state, (fsdp_bytes, full_state)  # SWAN's matrices: no state
    else:
        assert 2 * (fsdp_bytes - scalars) == full_state - scalars, (fsdp_bytes, full_state, scalars)


def _checkpoint_rank(rank: int, tmp: str) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    _init(rank, tmp)
    out = {}
    batches = _batches() + _batches()[::-1]
    for name in ("adamw", "galore"):
        model = _wrap(_model(), "fsdp2")
        optimizer = _create(name, model.parameters())
        _train(model, optimizer, batches, rank, True)
        straight = [_whole(p) for p in model.parameters()]
        model = _wrap(_model(), "fsdp2")
        optimizer = _create(name, model.parameters())
        _train(model, optimizer, batches[:STEPS], rank, True)
        state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}
        dcp.save(state, checkpoint_id=os.path.join(tmp, name))
        model = _wrap(_model(), "fsdp2")  # a fresh start: initial weights, empty optimizer state
        optimizer = _create(name, model.parameters())
        state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}
        dcp.load(state, checkpoint_id=os.path.join(tmp, name))
        set_model_state_dict(model, state["model"])
        set_optimizer_state_dict(model, optimizer, state["optim"])
        _train(model, optimizer, batches[STEPS:], rank, True)
        out[name] = (straight, [_whole(p) for p in model.parameters()])
    if rank == 0:
        torch.save(out, f"{tmp}/out.pt")
    torch.distributed.destroy_process_group()
    os._exit(0)  # skip teardown: gloo's threads can abort it under load (see data_parallel_rank.py)


def test_fsdp2_optimizer_state_round_trips_through_distributed_checkpointing(tmp_path):
    """Save after 5 steps on 2 ranks, load into a fresh model and optimizer, train 5 more: bit-equal to
    10 uninterrupted steps, for an elementwise (AdamW) and a projection (GaLore) method."""
    _spawn(_checkpoint_rank, tmp_path)
    for name, (straight, resumed) in torch.load(tmp_path / "out.pt", weights_only=False).items():
        assert all(torch.equal(a, b) for a, b in zip(straight, resumed)), name
        assert any(not torch.equal(a, b) for a, b in zip(straight, [p.detach() for p in _model().parameters()]))
