"""The subcommands. Each turns parsed arguments into library calls and prints the outcome."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from trainlab.algorithms import DEFAULT_ALGORITHMS, make_algorithm, parse_hparam_overrides, valid_hparams
from trainlab.benchmark.race import RacePlan, prepare, run_race
from trainlab.cli.options import parse_seeds, parse_trial_config, parse_workload_options, split_list
from trainlab.errors import UsageError
from trainlab.reports import format_table, summarize, write_report
from trainlab.store import ResultsStore
from trainlab.utils.device import choose_device
from trainlab.workloads import DEFAULT_WORKLOADS, builtin_names, workload_class
from trainlab.workloads.variants import variants_of


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


def race(args: argparse.Namespace) -> int:
    device = _setup_runtime(args)
    trial = parse_trial_config(args)
    workloads = _workloads(args)
    names = split_list(args.algorithms, "algorithms") if args.algorithms else list(DEFAULT_ALGORITHMS)
    overrides = parse_hparam_overrides(args.hparams, names)
    seeds = parse_seeds(args.seeds)
    plan = RacePlan(workloads, names, seeds, device, stop_at_target=args.stop_at_target,
                    grad_norm_kind=args.record_grad_norms, label=args.label, overrides=overrides,
                    trial=trial, untuned=args.untuned,
                    search_spaces=_search_space_files(args.search_space, names))
    prepare(plan)   # every name, hyperparameter, freeze rule and data file checked before anything runs
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
            hp = ", ".join(f"{k}={v}" for k, v in valid_hparams(name, entry.schedule).items())
            print(f"  {name:<12} {entry.summary}\n  {'':<12} race defaults (+{entry.schedule}): {hp}")
            if entry.state_bytes:
                print(f"  {'':<12} state: {entry.state_bytes}")
            print(f"  {'':<12} cite: {entry.citation}")
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
    if args.fraction is not None and not 0.0 < args.fraction <= 1.0:
        raise UsageError(f"--fraction must be in (0, 1], got {args.fraction}")
    lrs = _floats(args.lrs, "lrs")
    multipliers = _floats(args.multipliers, "multipliers")
    seeds = parse_seeds(args.seeds)
    baselines = split_list(args.baselines, "baselines") if args.baselines else []
    for name in baselines:
        make_algorithm(name)
    workloads = _workloads(args)
    trial = parse_trial_config(args)
    trial.check(device, workloads)
    records, tuning = [], []
    for workload in workloads:
        if not args.tune_only:
            record = set_target(workload, lrs, seeds, args.fraction, device, log=_log, config=trial)
            records.append(record)
            workload.target = record.target
        for name in baselines:
            tuning.append(tune_lr(workload, name, multipliers, device, log=_log, config=trial))
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
    from trainlab.benchmark.refine import refinement_plan

    device = _setup_runtime(args)
    optimizer_name, _ = parse_name(args.algorithm)
    compare = split_list(args.compare, "compare") if args.compare else []
    overrides = parse_hparam_overrides(args.hparams, [optimizer_name])[optimizer_name]
    seeds = parse_seeds(args.seeds)
    trial = parse_trial_config(args)
    workloads = _workloads(args)
    store = ResultsStore(args.store)
    plan = refinement_plan(args.algorithm if "+" in args.algorithm else optimizer_name, workloads,
                           compare, seeds, args.pass1_seed, device, overrides, trial, args.label, log=_log)
    names = plan.algorithms
    print(f"pass 2: {len(workloads)} workload(s) x {', '.join(names)} x {len(seeds)} seed(s)", flush=True)
    race_id, results = run_race(plan, store, progress=False if args.no_progress else None)
    print(f"\nrace {race_id} summary\n")
    print(format_table(summarize(store.trials(race_id))))
    report_path = write_report(store, args.report_dir, race_id)
    print(f"\nreport: {report_path}")
    return 0 if len(results) == len(workloads) * len(names) * len(seeds) else 1


# ---- tuning: trainlab tune / worker / score ---------------------------------------------------
def _tuning_storage(args: argparse.Namespace, create: bool = True):
    from trainlab.tuning.storage import open_storage
    if args.heartbeat_interval < 1 or args.grace_period <= args.heartbeat_interval:
        raise UsageError(f"--heartbeat-interval must be >= 1 s and --grace-period longer than it "
                         f"(got {args.heartbeat_interval} and {args.grace_period})")
    return open_storage(args.store, args.heartbeat_interval, args.grace_period, create=create)


def _search_space_files(items: list[str], algorithms: list[str]) -> dict[str, str]:
    files: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            if len(algorithms) != 1:
                raise UsageError(f"--search-space {item!r}: with several algorithms write ALGORITHM=FILE.json")
            name, path = algorithms[0], item
        if name not in algorithms:
            raise UsageError(f"--search-space {item!r} names {name!r}, which is not tuned here "
                             f"({', '.join(algorithms)})")
        files[name] = path
    return files


def build_tuning_plan(args: argparse.Namespace, device: torch.device | None = None):
    """`trainlab tune`'s options -> a checked `TuningPlan` (`trainlab.tuning.build.build_plan`)."""
    from trainlab.tuning.build import build_plan

    algorithms = split_list(args.algorithms, "algorithms")
    specs = split_list(args.workloads, "workloads") if args.workloads else list(DEFAULT_WORKLOADS)
    names = [workload_class(spec).name for spec in specs]
    return build_plan(
        args.name, algorithms, specs, parse_workload_options(args.workload_option, names),
        search_space_files=_search_space_files(args.search_space, algorithms), trials=args.trials,
        studies=args.studies, eval_seeds=parse_seeds(args.eval_seeds) if args.eval_seeds else [],
        protocol=args.protocol, seed=args.seed, stop_at_target=not args.full_budget,
        variants=args.variants, select_by=args.select_by, trial=parse_trial_config(args), device=device)


def tune(args: argparse.Namespace) -> int:
    from trainlab.benchmark.progress import TrialBar
    from trainlab.tuning.coordinator import run_experiment
    from trainlab.tuning.outcomes import collect

    device = _setup_runtime(args)
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    plan = build_tuning_plan(args, device)
    if args.baseline is not None and args.baseline not in plan.algorithms:
        raise UsageError(f"--baseline {args.baseline!r} is not tuned here ({', '.join(plan.algorithms)})")
    storage = _tuning_storage(args)
    store_url = args.store
    if args.dry_run:
        print(json.dumps(json.loads(plan.to_json()), indent=2))
        print(f"plan {plan.name!r} is valid; store {store_url} is reachable (dry run: nothing ran)")
        return 0
    total = plan.tuning_trials()
    print(f"tune {plan.name!r}: {', '.join(plan.algorithms)} on {', '.join(map(plan.display, plan.workloads))}; "
          f"{plan.studies} studies x {plan.trials} trials = {total} tuning trials, then "
          + (f"evaluation on seeds {','.join(map(str, plan.eval_seeds))}" if plan.protocol == "held-out"
             else "no re-runs (same-split)")
          + f"; {args.workers} worker(s) on {device}; trials train with {_trial_text(plan)}; store {store_url}",
          flush=True)
    bars = None if args.no_progress else (lambda label, steps: TrialBar(label, steps))
    run_experiment(storage, store_url, plan, device, workers=args.workers, threads=args.threads,
                   heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period,
                   report=lambda line: print(line, flush=True), progress_factory=bars,
                   variants_of=variants_of if plan.variants else None)
    outcomes = collect(storage, plan)
    return _print_scores(outcomes, args, None if args.no_report else args.report_dir)


def _trial_text(plan) -> str:
    from trainlab.benchmark.trial_config import TrialConfig
    return TrialConfig.from_dict(plan.trial).describe()


def _print_scores(outcomes, args: argparse.Namespace, report_dir: str | None) -> int:
    from trainlab.reports.tuning_report import score_experiment, write_tuning_report

    if report_dir:
        command = "trainlab " + " ".join(sys.argv[1:]) if len(sys.argv) > 1 else None
        path, scores = write_tuning_report(outcomes, report_dir, args.baseline, command)
    else:
        scores = {"time": score_experiment(outcomes, "time", args.baseline)}
    print(f"\nscores of {outcomes.plan.name!r} (time to target)\n")
    print(scores["time"].table())
    if outcomes.missing:
        print("\nincomplete: " + "; ".join(outcomes.missing))
    if report_dir:
        print(f"\nreport: {path}")
    return 0


def worker(args: argparse.Namespace) -> int:
    from trainlab.benchmark.progress import TrialBar
    from trainlab.tuning.coordinator import run_worker

    device = _setup_runtime(args)
    storage = _tuning_storage(args)
    bars = None if args.no_progress else (lambda label, steps: TrialBar(label, steps))
    ran = run_worker(storage, args.name, device, parent_pid=args.parent_pid,
                     exit_when_idle=args.exit_when_idle, progress_factory=bars,
                     report=lambda line: print(f"[worker {__import__('os').getpid()}] {line}", flush=True))
    print(f"[worker] ran {ran} trial(s)", flush=True)
    return 0


def score(args: argparse.Namespace) -> int:
    from trainlab.tuning.experiment import list_experiments, load_plan
    from trainlab.tuning.outcomes import collect

    storage = _tuning_storage(args, create=False)
    if args.name is None:
        names = list_experiments(storage)
        if not names:
            raise UsageError("no tuning experiments in this store: run `trainlab tune` first")
        args.name = names[-1] if len(names) == 1 else None
        if args.name is None:
            raise UsageError(f"this store has several experiments ({', '.join(names)}): pick one with --name")
    plan = load_plan(storage, args.name)
    if args.baseline is not None and args.baseline not in plan.algorithms:
        raise UsageError(f"--baseline {args.baseline!r} is not an algorithm of {plan.name!r} "
                         f"({', '.join(plan.algorithms)})")
    if args.protocol == "held-out" and plan.protocol != "held-out":
        raise UsageError(f"experiment {plan.name!r} ran the same-split protocol: it has no held-out "
                         "runs to score")
    return _print_scores(collect(storage, plan, args.protocol), args, args.out)
