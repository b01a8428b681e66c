"""Evaluation is off the training clock, measured in wall-clock seconds (moved here from the unit
tests, whose assertions must not depend on how busy the machine is).

The same 60-step trial of the tests' tiny regression (4 ms of sleep per training step) runs twice:
once with instant evaluations, once with six 100 ms ones. Training time and each evaluation's clock
reading should agree within `--tolerance` seconds; evaluation seconds are reported apart.

    python benchmarks/clock_excludes_evaluation.py [--tolerance 0.1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from trainlab.algorithms import make_algorithm
from trainlab.benchmark.runner import run_trial
from trainlab.workloads import create_workload

TINY = str(Path(__file__).resolve().parent.parent / "tests" / "support_workloads.py")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tolerance", type=float, default=0.1, help="seconds (default 0.1)")
    args = parser.parse_args()
    spec, cpu = make_algorithm("adamw"), torch.device("cpu")
    fast = run_trial(create_workload(TINY, train_sleep=0.004), spec, 0, cpu)
    slow = run_trial(create_workload(TINY, train_sleep=0.004, eval_sleep=0.1), spec, 0, cpu)
    gaps = [abs(a.train_seconds - b.train_seconds) for a, b in zip(fast.evals, slow.evals)]
    print(f"training seconds: {fast.train_seconds:.3f} (instant evaluations), {slow.train_seconds:.3f} (slow ones)")
    print(f"evaluation seconds of the slow run: {slow.eval_seconds:.3f} (6 x 0.1 s of sleep at least)")
    print(f"largest gap between the runs' clock readings at an evaluation: {max(gaps):.3f} s")
    ok = (
        slow.eval_seconds >= 0.6
        and fast.train_seconds >= 60 * 0.004
        and abs(slow.train_seconds - fast.train_seconds) < args.tolerance
        and max(gaps) < args.tolerance
    )
    print("evaluation is off the clock" if ok else f"FAILED: a gap of {args.tolerance} s or more")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
