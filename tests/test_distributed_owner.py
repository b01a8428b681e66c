"""Owner-rank matrix updates (trainlab/optim/owners.py) with real gloo processes, on 2 and 3 ranks.

Every registered matrix method (every `OwnerUpdates` subclass, so a new one is covered with no
change here) trains the 48-80-64-10 MLP of tests/test_distributed.py for 5 steps under DDP and
FSDP2, owners on (the default) and off (`distributed="replicated"`): on 3 ranks the assignment is
uneven and FSDP2's shards are too (80 rows: 27, 27, 26; 10 rows: 4, 4, 2). Checked here:

- every rank ends where the replicated design ends, bit for bit, and within 1e-6 of one process on
  the whole batch (tests/test_distributed.py's tolerance; in float64, Newton-Schulz included, so
  that 3 ranks' all-reduce rounding, which SWAN's whitening amplifies to 3e-2 in float32, stays far
  below it). SOAP's eigenbases of rank-deficient statistics amplify any rounding (see there): it
  trains on the whole batch on every rank and is compared with one process on 2 ranks only (the
  average of 3 equal gradients is not bit-equal to one);
- a matrix's state is held by its owner only, the owners are `assign`'s, and the owners' state
  bytes sum to one process's for each matrix (nothing is copied);
- with a process group passed to DDP and the optimizer (ranks 0 and 1 of 3), owners are among them;
- a `gathered_state_dict` saved on 2 FSDP2 ranks after 5 steps resumes on 3 ranks (owners
  re-assigned, state moved) and ends 5 steps later where the uninterrupted 2-rank run ends.
"""

from __future__ import annotations


import os

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from trainlab import optim
from trainlab.optim.owners import OwnerUpdates, assign

STEPS = 5
LR = 1e-2
BATCH = 48  # divides by 2 and 3
BASIS_SENSITIVE = {"soap"}  # tests/test_distributed.py's docstring
MATRIX_METHODS = [
    n for n in optim.available() if isinstance(f := optim.entry(n).factory, type) and issubclass(f, OwnerUpdates)
]

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(48, 80), nn.ReLU(), nn.Linear(80, 64), nn.ReLU(), nn.Linear(64, 10)).double()


def _create(name: str, params, **options):
    """The method with Newton-Schulz in float64, as the model (the module docstring says why)."""
    if "ns_dtype" in optim.entry(name).hyperparameters():
        options["ns_dtype"] = "float64"
    return optim.create(name, params, lr=LR, **options)


def _batches(count: int = STEPS) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(BATCH, 48, generator=g, dtype=torch.float64), torch.randint(0, 10, (BATCH,), generator=g))
        for _ in range(count)
    ]


def _wrap(model: nn.Module, strategy: str, world: int) -> nn.Module:
    if strategy == "ddp":
        return nn.parallel.DistributedDataParallel(model)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (world,))
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh)
    return fully_shard(model, mesh=mesh)


def _train(model, optimizer, batches, rank: int | None, world: int, split: bool) -> None:
    for x, y in batches:
        if rank is not None and split:
            x, y = x.chunk(world)[rank], y.chunk(world)[rank]
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def _whole(p: torch.Tensor) -> torch.Tensor:
    return (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone()


def _bytes(state: dict) -> int:
    return sum(
        (v.to_local() if hasattr(v, "to_local") else v).nbytes for v in state.values() if isinstance(v, torch.Tensor)
    )


def _rank(rank: int, world: int, tmp: str) -> None:
    from trainlab.optim.checkpoint import gathered_state_dict, load_gathered_state_dict

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp}/init{world}", rank=rank, world_size=world)
    out: dict = {}
    pair = torch.distributed.new_group([0, 1]) if world == 3 else None  # a user's process group
    for name in MATRIX_METHODS:
        split = name not in BASIS_SENSITIVE
        if pair is not None and rank < 2:  # DDP on ranks 0 and 1 of 3: owners among those two
            model = nn.parallel.DistributedDataParallel(_model(), process_group=pair)
            optimizer = _create(name, model.parameters(), process_group=pair)
            _train(model, optimizer, _batches(), rank, 2, split)
            params = list(model.parameters())
            held = [_bytes(optimizer.state[p]) if p in optimizer.state else None for p in params]
            out[(name, "pair")] = ([_whole(p) for p in params], held, [optimizer.owner_of(p) for p in params])
        for strategy in ("ddp", "fsdp2"):
            for mode in ("auto", "replicated"):
                model = _wrap(_model(), strategy, world)
                optimizer = _create(name, model.parameters(), distributed=mode)
                _train(model, optimizer, _batches(), rank, world, split)
                params = list(model.parameters())
                held = [_bytes(optimizer.state[p]) if p in optimizer.state else None for p in params]
                owners = [optimizer.owner_of(p) for p in params]
                out[(name, strategy, mode)] = ([_whole(p) for p in params], held, owners)
        # the checkpoint: saved on 2 ranks after 5 steps, resumed on 3
        batches = _batches(2 * STEPS)
        model = _wrap(_model(), "fsdp2", world)
        # SOAP: no eigenbasis refresh after the restart (it would amplify 3 ranks' rounding, above)
        optimizer = _create(name, model.parameters(), **({"precondition_frequency": 100} if name == "soap" else {}))
        if world == 2:
            _train(model, optimizer, batches[:STEPS], rank, world, split)
            saved, weights = gathered_state_dict(optimizer), [_whole(p) for p in model.parameters()]
            if rank == 0:
                torch.save((saved, weights), f"{tmp}/{name}.ckpt")
        else:
            saved, weights = torch.load(f"{tmp}/{name}.ckpt", weights_only=False)
            with torch.no_grad():
                for p, w in zip(model.parameters(), weights):
                    p.to_local().copy_(w.chunk(world)[rank])
            load_gathered_state_dict(optimizer, saved)
            out[(name, "loaded")] = [
                _bytes(optimizer.state[p]) if p in optimizer.state else None for p in model.parameters()
            ]
        _train(model, optimizer, batches[STEPS:], rank, world, split)
        out[(name, "resumed")] = [_whole(p) for p in model.parameters()]
    torch.save(out, f"{tmp}/out{world}_{rank}.pt")
    torch.distributed.destroy_process_group()
    os._exit(0)  # skip teardown: gloo's threads can abort it under load (see data_parallel_rank.py)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[int, list[dict]]:
    tmp = tmp_path_factory.mktemp("owners")
    found = {}
    for world in (2, 3):  # 3 loads the checkpoints 2 saved
        mp.start_processes(_rank, args=(world, str(tmp)), nprocs=world, start_method="spawn")
        found[world] = [torch.load(tmp / f"out{world}_{r}.pt", weights_only=False) for r in range(world)]
    return found


def _reference(name: str) -> tuple[list[torch.Tensor], list[int]]:
    model = _model()
    optimizer = _create(name, model.parameters())
    _train(model, optimizer, _batches(), None, 1, True)
    params = list(model.parameters())
    return [p.detach().clone() for p in params], [
        _bytes(optimizer.state[p]) if p in optimizer.state else 0 for p in params
    ]


def _diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b))


@pytest.mark.parametrize("name", MATRIX_METHODS)
def test_owners_match_one_process_and_hold_the_only_copy_of_each_matrix_state(runs, name):
    torch.set_num_threads(1)
    reference, reference_bytes = _reference(name)
    for world, ranks in runs.items():
        for strategy in ("ddp", "fsdp2"):
            replicated = ranks[0][(name, strategy, "replicated")][0]
            matrices = [i for i, o in enumerate(ranks[0][(name, strategy, "auto")][2]) if o is not None]
            assert matrices, (name, world, strategy)  # the owners applied
            for rank, out in enumerate(ranks):
                params, held, owners = out[(name, strategy, "auto")]
                assert owners == ranks[0][(name, strategy, "auto")][2]  # every rank agrees
                assert all(torch.equal(a, b) for a, b in zip(params, replicated)), (name, world, strategy, rank)
                if name not in BASIS_SENSITIVE or world == 2:  # SOAP on 3: (x/3)*3 is not x in floats
                    diff = _diff(params, reference)
                    assert diff <= 1e-6, (name, world, strategy, rank, diff)
                for i in matrices:
                    if rank != owners[i]:
                        assert held[i] is None, (name, world, strategy, rank, i)  # no state off the owner
            for i in matrices:  # the owners' state is one process's, once
                total = sum(out[(name, strategy, "auto")][1][i] or 0 for out in ranks)
                assert total == reference_bytes[i], (name, world, strategy, i, total, reference_bytes[i])
            # the owners are assign's greedy largest-first assignment (so sizes spread over ranks)
            owners = ranks[0][(name, strategy, "auto")][2]
            optimizer = _create(name, _model().parameters())
            params = [p for g in optimizer.param_groups for p in g["params"]]
            groups = [g for g in optimizer.param_groups for _ in g["params"]]
            costs = [optimizer.matrix_cost(params[i], groups[i]) for i in matrices]
            assert [owners[i] for i in matrices] == assign(costs, world)
            if world == 3:
                assert len({owners[i] for i in matrices}) == 3  # three matrices, three owners


@pytest.mark.parametrize("name", MATRIX_METHODS)
def test_owners_within_a_process_group_the_user_passes(runs, name):
    """DDP over ranks 0 and 1 of 3, the group passed to DDP and the optimizer: owners among the two."""
    reference, _ = _reference(name)
    pair = [out[(name, "pair")] for out in runs[3][:2]]
    owners = pair[0][2]
    assert {o for o in owners if o is not None} == {0, 1} and pair[1][2] == owners
    for rank, (params, held, _) in enumerate(pair):
        assert all(torch.equal(a, b) for a, b in zip(params, pair[0][0]))
        assert _diff(params, reference) <= 1e-6, (name, rank, _diff(params, reference))
        assert all(h is None for h, o in zip(held, owners) if o is not None and o != rank), (name, rank, held)


def test_assign_is_greedy_largest_first_ties_by_parameter_order():
    assert assign([1.0, 5.0, 3.0, 3.0], 2) == [0, 0, 1, 1]  # 5 -> 0, 3 -> 1, 3 -> 1, 1 -> 0
    assert assign([1.0, 1.0, 1.0], 2) == [0, 1, 0]
    assert sorted(assign([2.0] * 7, 3)).count(0) == 3 and assign([], 3) == []
    assert assign([4.0, 1.0], 4) == [0, 1]  # more ranks than matrices: some own none


@pytest.mark.parametrize("name", MATRIX_METHODS)
def test_a_checkpoint_from_2_ranks_resumes_on_3_with_state_on_the_new_owners(runs, name):
    straight = runs[2][0][(name, "resumed")]
    for rank, out in enumerate(runs[3]):
        diff = _diff(out[(name, "resumed")], straight)
        assert diff <= 1e-6, (name, rank, diff)
    owners = runs[3][0][(name, "fsdp2", "auto")][2]
    for i, owner in enumerate(owners):
        if owner is None:
            continue
        holders = [r for r, out in enumerate(runs[3]) if out[(name, "loaded")][i] is not None]
        assert holders in ([owner], []), (name, i, holders, owner)  # [] : SWAN keeps no matrix state
    assert any(not torch.equal(a, b) for a, b in zip(straight, [p.detach() for p in _model().parameters()]))
