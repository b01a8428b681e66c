"""The subcommands. Each turns parsed arguments into library calls and prints the outcome."""

from __future__ import annotations

import argparse
import json
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
                    freeze_change=args.freeze_change, untuned=args.untuned,
                    search_spaces=_search_space_files(args.search_space, names))
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
    from trainlab.algorithms.rules import kind_for
    from trainlab.schedules.refined import KIND_NORM

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


def build_tuning_plan(args: argparse.Namespace):
    """Everything `trainlab tune` needs, checked before any trial: names, spaces, data, seeds."""
    from trainlab.algorithms.registry import parse_name
    from trainlab.tuning.plan import TuningPlan
    from trainlab.algorithms.search_space import check_search_space, load_search_space

    algorithms = split_list(args.algorithms, "algorithms")
    specs = split_list(args.workloads, "workloads") if args.workloads else list(DEFAULT_WORKLOADS)
    classes = [workload_class(spec) for spec in specs]
    options = parse_workload_options(args.workload_option, [c.name for c in classes])
    from trainlab.algorithms.external import is_external, origin
    from trainlab.algorithms.submission import is_submission, submission_origin

    files = _search_space_files(args.search_space, algorithms)
    spaces, origins = {}, {}
    for algorithm in algorithms:
        if is_submission(algorithm):
            origins[algorithm], files[algorithm] = submission_origin(algorithm, files.get(algorithm))
            spaces[algorithm] = check_search_space(load_search_space, algorithm, files[algorithm]).to_json()
            continue
        optimizer_name = parse_name(algorithm)[0]
        if is_external(optimizer_name):
            origins[optimizer_name] = origin(optimizer_name)
            if algorithm not in files:
                raise UsageError(f"{algorithm!r} has no built-in search space: give one with "
                                 f"--search-space {algorithm}=FILE.json (AlgoPerf format)")
        source = files.get(algorithm, optimizer_name)
        spaces[algorithm] = check_search_space(load_search_space, algorithm, source).to_json()
    eval_seeds = parse_seeds(args.eval_seeds) if args.eval_seeds else []
    plan = TuningPlan(name=args.name, algorithms=algorithms, workloads=specs, trials=args.trials,
                      studies=args.studies, eval_seeds=eval_seeds, protocol=args.protocol, seed=args.seed,
                      search_spaces=spaces,
                      workload_options={spec: options[cls.name] for spec, cls in zip(specs, classes)},
                      stop_at_target=not args.full_budget, variants=args.variants,
                      workload_names={spec: cls.name for spec, cls in zip(specs, classes)},
                      select_by=args.select_by, origins=origins)
    plan.check()
    for spec, cls in zip(specs, classes):
        workload = cls(**options[cls.name])
        workload.splits()  # a missing corpus or a bad data path fails now, not in a worker
        if args.variants:
            for variant in variants_of(workload.name):
                workload_class(variant)
    return plan


def tune(args: argparse.Namespace) -> int:
    from trainlab.benchmark.progress import TrialBar
    from trainlab.tuning.coordinator import run_experiment
    from trainlab.tuning.outcomes import collect

    device = _setup_runtime(args)
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    plan = build_tuning_plan(args)
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
          + f"; {args.workers} worker(s) on {device}; store {store_url}",
          flush=True)
    bars = None if args.no_progress else (lambda label, steps: TrialBar(label, steps))
    run_experiment(storage, store_url, plan, device, workers=args.workers, threads=args.threads,
                   heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period,
                   report=lambda line: print(line, flush=True), progress_factory=bars,
                   variants_of=variants_of if plan.variants else None)
    outcomes = collect(storage, plan)
    return _print_scores(outcomes, args, None if args.no_report else args.report_dir)


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
