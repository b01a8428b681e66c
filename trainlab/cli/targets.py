"""`trainlab set-targets`: the workloads' validation targets and the race baselines' learning rates."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from trainlab.cli import parents
from trainlab.cli.options import parse_seeds, split_list, trial_options
from trainlab.errors import UsageError


def add_parsers(sub) -> None:
    targets = sub.add_parser(
        "set-targets",
        help="run the target-setting protocol and tune baseline lrs",
        description="AlgoPerf-style target setting: tune AdamW's learning rate on a grid at 3/4 of each "
        "workload's step budget, re-run the best on fresh seeds and take the median best "
        "validation metric; then tune each race baseline's learning rate at the full budget.",
        parents=[parents.workload_options(), parents.runtime(), parents.trial_config()],
    )
    targets.add_argument(
        "--workloads",
        default=None,
        metavar="LIST",
        help="workloads to set targets for (default: the three default workloads)",
    )
    targets.add_argument(
        "--lrs",
        default="1e-3,2e-3,4e-3,8e-3,1.6e-2,3.2e-2",
        metavar="LIST",
        help="AdamW learning rates for target setting (default: 1e-3 to 3.2e-2 in factors of 2)",
    )
    targets.add_argument(
        "--seeds",
        default="100,101,102",
        metavar="LIST",
        help="seeds for the re-runs of the best learning rate (default: 100,101,102)",
    )
    targets.add_argument(
        "--fraction",
        type=float,
        default=None,
        help="target-setting budget as a fraction of the race budget (default: each "
        "workload's own, 3/4 unless it sets target_setting_steps; text_lm: 900 "
        "of 2400 steps)",
    )
    targets.add_argument(
        "--baselines",
        default="adamw,nadamw,sgd",
        metavar="LIST",
        help="algorithms whose lr to tune per workload after setting the target "
        "(default: adamw,nadamw,sgd; empty string to skip)",
    )
    targets.add_argument(
        "--multipliers",
        default="0.25,0.5,1,2,4,8",
        metavar="LIST",
        help="lr grid for baselines, as multiples of each one's default lr (default: 0.25,0.5,1,2,4,8)",
    )
    targets.add_argument(
        "--tune-only",
        action="store_true",
        help="skip target setting: tune baseline lrs against each workload's current "
        "target (set it with --workload-option W.target=VALUE)",
    )
    targets.add_argument(
        "--out", default=None, metavar="FILE", help="also write the Markdown record to FILE (e.g. docs/targets.md)"
    )
    targets.add_argument(
        "--write-defaults",
        default=None,
        metavar="JSON",
        help="write targets and tuned lrs as JSON (trainlab/algorithms/tuned.json "
        "is the file the race reads its baseline lrs from)",
    )
    targets.set_defaults(func=set_targets_command)


def set_targets_command(args: argparse.Namespace) -> int:
    """Phase 1: targets from tuned AdamW; phase 2: per-workload lrs of the race baselines."""
    from trainlab.algorithms import make_algorithm
    from trainlab.benchmark.targets import set_target, to_markdown, tune_lr
    from trainlab.utils.environment import describe

    device = parents.setup_runtime(args)
    if args.fraction is not None and not 0.0 < args.fraction <= 1.0:
        raise UsageError(f"--fraction must be in (0, 1], got {args.fraction}")
    lrs = _floats(args.lrs, "lrs")
    multipliers = _floats(args.multipliers, "multipliers")
    seeds = parse_seeds(args.seeds)
    baselines = split_list(args.baselines, "baselines") if args.baselines else []
    for name in baselines:
        make_algorithm(name)
    workloads = parents.build_workloads(args)
    options = trial_options(args)
    options.check(device, workloads)
    records, tuning = [], []
    for workload in workloads:
        if not args.tune_only:
            record = set_target(workload, lrs, seeds, args.fraction, device, log=_log, options=options)
            records.append(record)
            workload.target = record.target
        for name in baselines:
            tuning.append(tune_lr(workload, name, multipliers, device, log=_log, options=options))
    env = describe(device)
    command = "trainlab " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["set-targets"] else "trainlab set-targets"
    text = to_markdown(
        records,
        tuning,
        command,
        f"{env['device']}, {env['num_threads']} threads, torch {env['torch_version']}, commit {env['git_commit']}",
    )
    print("\n" + text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    if args.write_defaults:
        data: dict = {"targets": {r.workload: round(r.target, 4) for r in records}, "learning_rates": {}}
        for r in tuning:
            data["learning_rates"].setdefault(r.workload, {})[r.algorithm] = r.best_lr
        Path(args.write_defaults).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return 0


def _floats(text: str, what: str) -> list[float]:
    out = []
    for item in split_list(text, what):
        try:
            value = float(item)
        except ValueError:
            raise UsageError(f"--{what}: {item!r} is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise UsageError(f"--{what}: {item!r} must be a positive number")
        out.append(value)
    return out


def _log(message: str) -> None:
    print(message, flush=True)
