"""The subcommands. Each turns parsed arguments into library calls and prints the outcome."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from trainlab.algorithms import DEFAULT_ALGORITHMS, make_algorithm, parse_hparam_overrides, valid_hparams
from trainlab.benchmark.race import RacePlan, run_race
from trainlab.benchmark.runner import PRECISIONS
from trainlab.cli.options import parse_seeds, parse_workload_options, split_list
from trainlab.errors import UsageError
from trainlab.reports import format_table, summarize, write_report
from trainlab.store import ResultsStore
from trainlab.utils.device import choose_device
from trainlab.workloads import DEFAULT_WORKLOADS, builtin_names, workload_class


def _setup_runtime(args: argparse.Namespace) -> torch.device:
    if args.threads is not None:
        if args.threads <= 0:
            raise UsageError(f"--threads must be a positive integer, got {args.threads}")
        torch.set_num_threads(args.threads)
    return choose_device(args.device)


def _workloads(args: argparse.Namespace):
    """Resolve workload specs (names, files, modules); options are addressed by workload name."""
    specs = split_list(args.workloads, "workloads") if args.workloads else list(DEFAULT_WORKLOADS)
    classes = [workload_class(spec) for spec in specs]
    names = [cls.name for cls in classes]
    options = parse_workload_options(args.workload_option, names)
    return [cls(**options[cls.name]) for cls in classes]


def _memory_options(args: argparse.Namespace) -> tuple[int | str | None, str, list[str] | None]:
    """--compress-activations, --precision, --freeze, checked with one-line errors."""
    bits = args.compress_activations
    if bits is not None:
        allowed = {"2": 2, "4": 4, "8": 8, "adaptive": "adaptive"}
        if bits.strip().lower() not in allowed:
            raise UsageError(f"--compress-activations must be one of 2, 4, 8, adaptive; got {bits!r}")
        bits = allowed[bits.strip().lower()]
    if args.precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}; got {args.precision!r}")
    rules = split_list(args.freeze, "freeze") if args.freeze is not None else None
    return bits, args.precision, rules


def race(args: argparse.Namespace) -> int:
    device = _setup_runtime(args)
    bits, precision, rules = _memory_options(args)
    workloads = _workloads(args)
    names = split_list(args.algorithms, "algorithms") if args.algorithms else list(DEFAULT_ALGORITHMS)
    overrides = parse_hparam_overrides(args.hparams, names)
    seeds = parse_seeds(args.seeds)
    plan = RacePlan(workloads, names, seeds, device, stop_at_target=args.stop_at_target,
                    grad_norm_kind=args.record_grad_norms, label=args.label, overrides=overrides,
                    compress_activations=bits, precision=precision, freeze=rules,
                    freeze_change=args.freeze_change)
    for workload in workloads:  # every name and hyperparameter checked before anything runs
        for name in names:
            plan.spec(name, workload)
    plan.check_memory_options()  # freeze rules too: a typo fails before any training
    store = ResultsStore(args.store)
    print(f"race: {len(workloads)} workload(s) x {len(names)} algorithm(s) x {len(seeds)} seed(s) "
          f"on {device} ({torch.get_num_threads()} threads); store {store.url}", flush=True)
    race_id, results = run_race(plan, store, progress=False if args.no_progress else None)
    print(f"\nrace {race_id} summary\n")
    print(format_table(summarize(store.trials(race_id))))
    if not args.no_report:
        report = write_report(store, args.report_dir, race_id)
        print(f"\nreport: {report}")
    failed = len(workloads) * len(names) * len(seeds) - len(results)
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
    """Phase 1: targets from tuned AdamW; phase 2: per-workload lrs of the race baselines."""
    import json

    from trainlab.benchmark.targets import set_target, to_markdown, tune_lr
    from trainlab.utils.environment import describe

    device = _setup_runtime(args)
    if not 0.0 < args.fraction <= 1.0:
        raise UsageError(f"--fraction must be in (0, 1], got {args.fraction}")
    lrs = _floats(args.lrs, "lrs")
    multipliers = _floats(args.multipliers, "multipliers")
    seeds = parse_seeds(args.seeds)
    baselines = split_list(args.baselines, "baselines") if args.baselines else []
    for name in baselines:
        make_algorithm(name)
    workloads = _workloads(args)
    records, tuning = [], []
    for workload in workloads:
        if not args.tune_only:
            record = set_target(workload, lrs, seeds, args.fraction, device, log=_log)
            records.append(record)
            workload.target = record.target
        for name in baselines:
            tuning.append(tune_lr(workload, name, multipliers, device, log=_log))
    env = describe(device)
    command = "trainlab " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["set-targets"] else "trainlab set-targets"
    text = to_markdown(records, tuning, command,
                       f"{env['device']}, {env['num_threads']} threads, torch {env['torch_version']}, "
                       f"commit {env['git_commit']}")
    print("\n" + text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    if args.write_defaults:
        data = {"targets": {r.workload: round(r.target, 4) for r in records},
                "learning_rates": {}}
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


def refine(args: argparse.Namespace) -> int:
    """Two passes (Defazio et al. 2023): record gradient norms under linear decay, derive the refined
    schedule per workload, then race it against the comparison schedules on the evaluation seeds."""
    from trainlab.algorithms.registry import parse_name
    from trainlab.benchmark.runner import run_trial
    from trainlab.schedules.refined import KIND_NORM, kind_for

    device = _setup_runtime(args)
    optimizer_name, _ = parse_name(args.algorithm)
    if "+" in args.algorithm:
        raise UsageError(f"--algorithm takes an optimizer name without a schedule (got {args.algorithm!r}); "
                         "the schedules come from --compare and the refinement")
    kind = kind_for(optimizer_name)
    compare = split_list(args.compare, "compare") if args.compare else []
    names = [f"{optimizer_name}+{s}" for s in compare] + [f"{optimizer_name}+refined"]
    overrides = parse_hparam_overrides(args.hparams, [optimizer_name])[optimizer_name]
    seeds = parse_seeds(args.seeds)
    if args.pass1_seed in seeds:
        raise UsageError(f"--pass1-seed {args.pass1_seed} is also an evaluation seed: the refined "
                         "schedule would be evaluated on the run it was derived from")
    workloads = _workloads(args)
    first = f"{optimizer_name}+linear"
    for workload in workloads:  # every name and hyperparameter checked before anything runs
        for name in names[:-1] + [first]:
            make_algorithm(name, overrides, workload=workload.name)
    store = ResultsStore(args.store)
    plan = RacePlan(workloads, names, seeds, device, label=args.label or f"refine {optimizer_name}",
                    overrides={name: dict(overrides) for name in names})
    for workload in workloads:
        spec = make_algorithm(first, overrides, workload=workload.name)
        print(f"pass 1: {workload.name} / {first} / seed {args.pass1_seed}, recording "
              f"{KIND_NORM[kind].upper()} gradient norms", flush=True)
        result = run_trial(workload, spec, args.pass1_seed, device, grad_norm_kind=KIND_NORM[kind])
        reached = f"step {result.steps_to_target}" if result.reached else "missed"
        print(f"pass 1: {workload.name}: {result.metric_name} {result.final_metric:.4f}, target {reached}; "
              f"refined schedule derived from {len(result.grad_norms)} norms", flush=True)
        plan.workload_overrides[(names[-1], workload.name)] = {"grad_norms": result.grad_norms,
                                                                "refine_kind": kind}
    print(f"pass 2: {len(workloads)} workload(s) x {', '.join(names)} x {len(seeds)} seed(s)", flush=True)
    race_id, results = run_race(plan, store, progress=False if args.no_progress else None)
    print(f"\nrace {race_id} summary\n")
    print(format_table(summarize(store.trials(race_id))))
    report_path = write_report(store, args.report_dir, race_id)
    print(f"\nreport: {report_path}")
    return 0 if len(results) == len(workloads) * len(names) * len(seeds) else 1
