"""The subcommands. Each turns parsed arguments into library calls and prints the outcome."""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import torch

from trainlab.algorithms import DEFAULT_ALGORITHMS, make_algorithm, parse_hparam_overrides, valid_hparams
from trainlab.benchmark.race import RacePlan, run_race
from trainlab.cli.options import parse_seeds, parse_workload_options, split_list
from trainlab.errors import UsageError
from trainlab.reports import format_table, summarize, write_report
from trainlab.store import ResultsStore
from trainlab.utils.device import choose_device
from trainlab.workloads import DEFAULT_WORKLOADS, builtin_names, create_workload, workload_class


def _setup_runtime(args: argparse.Namespace) -> torch.device:
    if args.threads is not None:
        if args.threads <= 0:
            raise UsageError(f"--threads must be a positive integer, got {args.threads}")
        torch.set_num_threads(args.threads)
    return choose_device(args.device)


def _workloads(args: argparse.Namespace):
    names = split_list(args.workloads, "workloads") if args.workloads else list(DEFAULT_WORKLOADS)
    options = parse_workload_options(args.workload_option, names)
    return [create_workload(name, **options[name]) for name in names]


def race(args: argparse.Namespace) -> int:
    device = _setup_runtime(args)
    workloads = _workloads(args)
    names = split_list(args.algorithms, "algorithms") if args.algorithms else list(DEFAULT_ALGORITHMS)
    overrides = parse_hparam_overrides(args.hparams, names)
    algorithms = [make_algorithm(name, overrides[name]) for name in names]
    seeds = parse_seeds(args.seeds)
    store = ResultsStore(args.store)
    plan = RacePlan(workloads, algorithms, seeds, device, stop_at_target=args.stop_at_target,
                    grad_norm_kind=args.record_grad_norms, label=args.label)
    print(f"race: {len(workloads)} workload(s) x {len(algorithms)} algorithm(s) x {len(seeds)} seed(s) "
          f"on {device} ({torch.get_num_threads()} threads); store {store.url}", flush=True)
    race_id, results = run_race(plan, store, progress=False if args.no_progress else None)
    print(f"\nrace {race_id} summary\n")
    print(format_table(summarize(store.trials(race_id))))
    if not args.no_report:
        report = write_report(store, args.report_dir, race_id)
        print(f"\nreport: {report}")
    failed = len(workloads) * len(algorithms) * len(seeds) - len(results)
    return 1 if failed else 0


def list_(args: argparse.Namespace) -> int:
    from trainlab import optim
    from trainlab.schedules import SCHEDULE_HPARAMS
    from trainlab.workloads.base import COMMON_OPTIONS

    if args.what in ("workloads", "all"):
        print("workloads (default race: " + ", ".join(DEFAULT_WORKLOADS) + ")")
        for name in builtin_names():
            cls = workload_class(name)
            arrow = ">=" if cls.higher_is_better else "<="
            print(f"  {name:<12} {cls.description}")
            print(f"  {'':<12} target {cls.metric} {arrow} {cls.default_target:g}, "
                  f"{cls.default_step_budget} steps, batch {cls.default_batch_size}, "
                  f"eval every {cls.default_eval_every}")
            if cls.options:
                print(f"  {'':<12} options: " + "; ".join(
                    f"{k} ({o.help}, default {o.default})" for k, o in cls.options.items()))
        print("  every workload also takes: " + ", ".join(COMMON_OPTIONS) + "\n")
    if args.what in ("algorithms", "all"):
        print("algorithms (OPTIMIZER[+SCHEDULE]; default race: " + ", ".join(DEFAULT_ALGORITHMS) + ")")
        for name in optim.available():
            entry = optim.entry(name)
            hp = ", ".join(f"{k}={v}" for k, v in valid_hparams(name, "cosine").items())
            print(f"  {name:<12} {entry.summary}\n  {'':<12} {hp}\n  {'':<12} cite: {entry.citation}")
        print()
    if args.what in ("schedules", "all"):
        print("schedules")
        for name, hp in SCHEDULE_HPARAMS.items():
            print(f"  {name:<12} " + (", ".join(f"{k}={v}" for k, v in hp.items()) or "(no hyperparameters)"))
    return 0


def report(args: argparse.Namespace) -> int:
    store = ResultsStore(args.store, create=False)
    path = write_report(store, args.out, args.race)
    print(f"report: {path}")
    return 0


def fetch_data(args: argparse.Namespace) -> int:
    from trainlab.workloads.data.mnist1d import MNIST1DSpec, load_mnist1d
    from trainlab.workloads.data.text import fetch_shakespeare

    fetch_shakespeare(quiet=args.quiet)
    load_mnist1d(MNIST1DSpec())
    if not args.quiet:
        print("data ready")
    return 0


def set_targets(args: argparse.Namespace) -> int:
    """Tune AdamW's lr on a grid at a reduced budget, re-run the best, take the median best metric."""
    from trainlab.benchmark.runner import run_trial

    device = _setup_runtime(args)
    if not 0.0 < args.fraction <= 1.0:
        raise UsageError(f"--fraction must be in (0, 1], got {args.fraction}")
    lrs = []
    for item in split_list(args.lrs, "lrs"):
        try:
            lrs.append(float(item))
        except ValueError:
            raise UsageError(f"--lrs: {item!r} is not a number") from None
    seeds = parse_seeds(args.seeds)
    workloads = _workloads(args)
    store = ResultsStore(args.store)
    lines = ["# Target-setting record", "",
             f"Command: `trainlab set-targets --lrs {args.lrs} --seeds {args.seeds} "
             f"--fraction {args.fraction}` on {device} ({torch.get_num_threads()} threads).", "",
             "Protocol (after AlgoPerf): AdamW + linear warm-up (5 %) + cosine decay, betas (0.9, 0.999), "
             f"weight decay 0.01. Each learning rate trains once (seed 0) for {args.fraction:g} x the race "
             "step budget; the learning rate with the best validation metric is re-run with the seeds "
             "above; the target is the median over those re-runs of the best validation metric. "
             "Races get the full budget (4/3 of the target-setting budget, as AlgoPerf v0.5 did).", ""]
    for workload in workloads:
        full_budget = workload.step_budget
        workload.step_budget = max(1, round(args.fraction * full_budget))
        lines += [f"## {workload.name}", "",
                  f"Budget {workload.step_budget} steps (race: {full_budget}); metric {workload.metric} "
                  f"({'higher' if workload.higher_is_better else 'lower'} is better).", "",
                  "| lr | seed | best validation metric | final validation metric |", "|---|---|---|---|"]
        better = max if workload.higher_is_better else min
        grid = []
        for lr in lrs:
            spec = make_algorithm("adamw", {"lr": lr})
            result = run_trial(workload, spec, 0, device)
            grid.append((lr, result.best_metric))
            lines.append(f"| {lr:g} | 0 | {result.best_metric:.4f} | {result.final_metric:.4f} |")
            print(f"{workload.name}: lr {lr:g} -> best {result.best_metric:.4f}", flush=True)
        finite = [g for g in grid if math.isfinite(g[1])]
        if not finite:
            raise UsageError(f"{workload.name}: every learning rate diverged; widen --lrs")
        best_lr = better(finite, key=lambda g: g[1])[0]
        reruns = []
        for seed in seeds:
            result = run_trial(workload, make_algorithm("adamw", {"lr": best_lr}), seed, device)
            reruns.append(result.best_metric)
            lines.append(f"| {best_lr:g} | {seed} | {result.best_metric:.4f} | {result.final_metric:.4f} |")
            print(f"{workload.name}: best lr {best_lr:g}, seed {seed} -> best {result.best_metric:.4f}", flush=True)
        target = statistics.median(reruns)
        lines += ["", f"**Target for {workload.name}: {workload.metric} "
                      f"{'>=' if workload.higher_is_better else '<='} {target:.4f}** "
                      f"(best lr {best_lr:g}; median of {len(reruns)} re-runs)", ""]
        print(f"{workload.name}: target {target:.4f}", flush=True)
        workload.step_budget = full_budget
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    del store  # set-targets trains through run_trial only; the store URL is validated above
    return 0
