"""Harness overhead: trainlab's runner against a plain PyTorch loop doing the same work.

Both sides train the same model from the same initialisation on the same batches (drawn by the
workload's own batch iterator), with AdamW and the same warm-up + cosine LambdaLR. The plain loop is
what a user would write; the runner adds the clock, loss bookkeeping, evaluation scheduling (with
evaluation itself excluded from its clock) and progress reporting. Runs alternate plain/runner so
drift in machine speed hits both; the ratio of median seconds per step is reported, goal < 1.03.

    python benchmarks/harness_overhead.py [--workload mnist1d_mlp] [--steps 600] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from trainlab.algorithms import TrainingAlgorithm, make_algorithm
from trainlab.benchmark.progress import RaceProgress
from trainlab.benchmark.runner import run_trial
from trainlab.utils.device import choose_device, synchronize
from trainlab.workloads import create_workload


def plain_loop(workload, spec, seed: int, device: torch.device) -> float:
    """Seconds per training step of a hand-written loop (no evaluation)."""
    splits = workload.splits().to(device)
    torch.manual_seed(seed)
    model = workload.init_model().to(device)
    helper = TrainingAlgorithm(spec, model, workload.step_budget)   # same optimizer + schedule objects
    optimizer, scheduler = helper.optimizer, helper.scheduler
    batches = workload.batches(splits.train, torch.Generator().manual_seed(seed))
    model.train()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(workload.step_budget):
        x, y = next(batches)
        optimizer.zero_grad(set_to_none=True)
        loss = workload.loss(model, (x, y))
        loss.backward()
        optimizer.step()
        scheduler.step()
    synchronize(device)
    return (time.perf_counter() - start) / workload.step_budget


def runner_loop(workload, spec, seed: int, device: torch.device) -> float:
    """Seconds per training step on trainlab's clock (evaluations excluded by the clock itself)."""
    progress = RaceProgress(1, enabled=False).start_trial("bench", workload.step_budget)
    result = run_trial(workload, spec, seed, device, progress=progress)
    progress.bar.close()
    progress.close()
    return result.train_seconds / result.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="mnist1d_mlp", help="workload name (default: mnist1d_mlp)")
    parser.add_argument("--steps", type=int, default=600, help="training steps per run (default: 600)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each loop (default: 5)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    args = parser.parse_args()
    device = choose_device(args.device)
    workload = create_workload(args.workload, step_budget=args.steps)
    spec = make_algorithm("adamw", workload=workload.name)
    plain_loop(workload, spec, 0, device)                       # warm-up: caches, allocator, data
    plain, harness = [], []
    for _ in range(args.repeats):
        plain.append(plain_loop(workload, spec, 0, device))
        harness.append(runner_loop(workload, spec, 0, device))
    p, h = statistics.median(plain), statistics.median(harness)
    print(f"workload {workload.name}, {args.steps} steps x {args.repeats} repeats on {device} "
          f"({torch.get_num_threads()} threads), evaluation every {workload.eval_every} steps")
    print("| loop | median ms/step | min ms/step |\n|---|---|---|")
    print(f"| plain PyTorch | {1e3 * p:.3f} | {1e3 * min(plain):.3f} |")
    print(f"| trainlab runner | {1e3 * h:.3f} | {1e3 * min(harness):.3f} |")
    print(f"\nharness overhead: runner / plain = {h / p:.4f} ({100 * (h / p - 1):+.2f} % per step; goal < +3 %)")


if __name__ == "__main__":
    main()
