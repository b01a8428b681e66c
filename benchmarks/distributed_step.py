"""Optimizer steps on 1 and 2 processes (FSDP2, gloo on CPU / NCCL on CUDA): time and state per rank.

For every registered optimizer, in one run: the median `step()` time on one process, and on 2
FSDP2 ranks (1 thread each on CPU) the median `step()` time, the bytes of optimizer state on rank 0,
and, for the matrix methods, the share of the step spent in the all-gathers their whole-matrix
update needs (measured by timing the same gathers, `full_tensor()` of every matrix parameter and
its gradient, on their own). The model is transformer-shaped: `--layers` blocks of a d x 4d and a
4d x d matrix plus biases.

    python benchmarks/distributed_step.py --width 256 --layers 2 --steps 20
    python benchmarks/distributed_step.py --width 64 --layers 1 --steps 3 --only adamw,galore   # smoke test

Ratios, not absolute times: "2 ranks / 1" is each rank's step time over one process's (elementwise
methods halve their work per rank; matrix methods do the whole update on every rank, plus the
gathers); "state / 1 process" is rank 0's state bytes over one process's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.multiprocessing as mp
from torch import nn

from trainlab import optim


def build(width: int, layers: int) -> nn.Module:
    torch.manual_seed(0)
    blocks = []
    for _ in range(layers):
        blocks += [nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)]
    return nn.Sequential(*blocks)


def timed_steps(model: nn.Module, opt, x: torch.Tensor, steps: int, warmup: int, sync) -> float:
    times = []
    for i in range(warmup + steps):
        opt.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        sync()
        start = time.perf_counter()
        opt.step()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def rank_main(rank: int, args, names: list[str], init: str, out: str) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    cuda = torch.cuda.is_available() and args.device != "cpu"
    device = torch.device(f"cuda:{rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.set_num_threads(1)
    dist.init_process_group("nccl" if cuda else "gloo", init_method=init, rank=rank, world_size=2)
    mesh = init_device_mesh(device.type, (2,))

    def sync():
        if cuda:
            torch.cuda.synchronize(device)
        dist.barrier()

    results = {}
    x = torch.randn(args.batch, args.width, generator=torch.Generator().manual_seed(rank)).to(device)
    for name in names:
        model = build(args.width, args.layers).to(device)
        for layer in model:
            if isinstance(layer, nn.Linear):
                fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        opt = optim.create(name, model.parameters(), lr=1e-3)
        step = timed_steps(model, opt, x, args.steps, args.warmup, sync)
        gather = 0.0
        if hasattr(opt, "coverage"):  # a matrix method: time the gathers its update makes
            matrices = [p for p in model.parameters() if p.ndim >= 2]
            times = []
            for _ in range(args.steps):
                sync()
                start = time.perf_counter()
                for p in matrices:
                    p.full_tensor()
                    p.grad.full_tensor()
                sync()
                times.append(time.perf_counter() - start)
            gather = statistics.median(times)
        results[name] = (step, optim.state_bytes(opt), gather)
    if rank == 0:
        torch.save(results, out)
    dist.destroy_process_group()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto", help="auto (CUDA with 2 GPUs if present) or cpu")
    parser.add_argument("--only", default=None, help="comma-separated optimizers (default: all)")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else optim.available()
    torch.set_num_threads(1)
    single = {}
    device = torch.device("cuda:0" if torch.cuda.is_available() and args.device != "cpu" else "cpu")
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    x = torch.randn(args.batch, args.width, generator=torch.Generator().manual_seed(0)).to(device)
    for name in names:
        model = build(args.width, args.layers).to(device)
        opt = optim.create(name, model.parameters(), lr=1e-3)
        single[name] = (timed_steps(model, opt, x, args.steps, args.warmup, sync), optim.state_bytes(opt))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.pt")
        mp.start_processes(rank_main, args=(args, names, f"file://{tmp}/init", out), nprocs=2, start_method="spawn")
        two = torch.load(out, weights_only=False)
    params = sum(p.numel() for p in build(args.width, args.layers).parameters())
    print(
        f"{params / 1e6:.2f} M parameters ({args.layers} x [{args.width}x{4 * args.width}, "
        f"{4 * args.width}x{args.width}]), batch {args.batch}, median of {args.steps} steps, "
        f"{device.type}, 1 thread per process, torch {torch.__version__}\n"
    )
    print("| optimizer | 2 ranks / 1 process (step time) | state on rank 0 / 1 process | gathers / step (2 ranks) |")
    print("|---|---:|---:|---:|")
    for name in names:
        (t1, b1), (t2, b2, gather) = single[name], two[name]
        share = f"{gather / t2:.0%}" if gather else "--"
        print(
            f"| {name} | {t2 / t1:.2f} | {b2 / b1:.2f} | {share} |"
            if b1
            else f"| {name} | {t2 / t1:.2f} | -- | {share} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
