"""Harness overhead: trainlab's runner against a plain PyTorch loop doing the same work.

Both sides train the same model from the same initialisation on the same batches (drawn by the
workload's own batch iterator), with AdamW and the same warm-up + cosine LambdaLR, and both evaluate
on the validation split every `eval_every` steps with the evaluation excluded from the timing. The
plain loop is what a careful user would write; the runner adds the clock and its device syncs, loss
bookkeeping, the algorithm's hooks, memory accounting and progress reporting. Runs alternate
plain/runner so drift in machine speed hits both; the ratio of median seconds per training step is
reported, goal < 1.03. (Evaluating between steps evicts caches, so the steps right after an evaluation
are slower in both loops: comparing against a loop that never evaluates would charge that to the
harness; `--no-eval` shows that comparison too.)

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


def plain_loop(workload, spec, seed: int, device: torch.device, evaluate: bool = True) -> float:
    """Seconds per training step of a hand-written loop (evaluations untimed, as in the runner)."""
    splits = workload.splits().to(device)
    torch.manual_seed(seed)
    model = workload.init_model().to(device)
    helper = TrainingAlgorithm(spec, model, workload.step_budget)  # same optimizer + schedule objects
    optimizer, scheduler = helper.optimizer, helper.scheduler
    batches = workload.batches(splits.train, torch.Generator().manual_seed(seed))
    model.train()
    elapsed = 0.0
    synchronize(device)
    start = time.perf_counter()
    for step in range(1, workload.step_budget + 1):
        x, y = next(batches)
        optimizer.zero_grad(set_to_none=True)
        loss = workload.loss(model, (x, y))
        loss.backward()
        optimizer.step()
        scheduler.step()
        if evaluate and (step % workload.eval_every == 0 or step == workload.step_budget):
            synchronize(device)
            elapsed += time.perf_counter() - start
            model.eval()
            workload.evaluate(model, splits.validation)
            model.train()
            start = time.perf_counter()
    synchronize(device)
    elapsed += time.perf_counter() - start
    return elapsed / workload.step_budget


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
    parser.add_argument(
        "--no-eval",
        action="store_true",
        help="compare against a plain loop that never evaluates (charges cache effects of evaluation to the harness)",
    )
    args = parser.parse_args()
    device = choose_device(args.device)
    workload = create_workload(args.workload, step_budget=args.steps)
    spec = make_algorithm("adamw", workload=workload.name)
    plain_loop(workload, spec, 0, device)  # warm-up: caches, allocator, data
    plain, harness = [], []
    for _ in range(args.repeats):
        plain.append(plain_loop(workload, spec, 0, device, evaluate=not args.no_eval))
        harness.append(runner_loop(workload, spec, 0, device))
    p, h = statistics.median(plain), statistics.median(harness)
    print(
        f"workload {workload.name}, {args.steps} steps x {args.repeats} repeats on {device} "
        f"({torch.get_num_threads()} threads), evaluation every {workload.eval_every} steps"
        + (" in the runner only" if args.no_eval else " in both loops")
    )
    print("| loop | median ms/step | min ms/step |\n|---|---|---|")
    print(f"| plain PyTorch | {1e3 * p:.3f} | {1e3 * min(plain):.3f} |")
    print(f"| trainlab runner | {1e3 * h:.3f} | {1e3 * min(harness):.3f} |")
    print(f"\nharness overhead: runner / plain = {h / p:.4f} ({100 * (h / p - 1):+.2f} % per step; goal < +3 %)")


if __name__ == "__main__":
    main()
