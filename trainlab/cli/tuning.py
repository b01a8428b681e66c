"""`trainlab tune`, `worker` and `score`: tuning experiments in an Optuna store, and their scores."""

from __future__ import annotations

import argparse
import json
import os
import sys

from trainlab.cli import parents
from trainlab.cli.options import (
    parse_seeds,
    parse_workload_options,
    search_space_files,
    split_list,
    trial_options,
)
from trainlab.cli.race import WORKLOADS_HELP
from trainlab.errors import UsageError


def add_parsers(sub) -> None:
    tune = sub.add_parser(
        "tune",
        help="tune algorithms with quasi-random studies, evaluate on held-out seeds, score",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="AlgoPerf-style external tuning. For every algorithm and workload: --studies "
        "studies of --trials configurations drawn quasi-randomly (scrambled Halton, Optuna's "
        "QMCSampler) from the algorithm's workload-agnostic search space; each study's best "
        "configuration is re-run on --eval-seeds, scored on the held-out split (protocol "
        "held-out), then scored with performance profiles. Every trial is stored in Optuna "
        "studies in --store; rerunning the same command resumes after a crash.",
        epilog="examples:\n"
        "  trainlab tune --name cmp --algorithms adamw,nadamw,sgd --trials 5 --studies 3\n"
        "  trainlab tune --name lion --algorithms lion --search-space my_lion.json --workers 2\n"
        "  trainlab tune --name packed --algorithms adamw --compress-activations 4\n"
        "  trainlab tune --name dp --algorithms adamw --workloads mnist1d_mlp --nproc 2   # DDP trials\n"
        "  trainlab worker --name cmp --store postgresql://me@db/trainlab   # on another machine\n"
        "  trainlab score --name cmp --baseline adamw",
        parents=[
            parents.workload_options(),
            parents.runtime(),
            parents.store(),
            parents.heartbeat(),
            parents.report_dir("trainlab-results/tune-report"),
            parents.trial_config(),
            parents.progress(),
            parents.curve_prediction(),
            parents.data_parallel(),
        ],
    )
    tune.add_argument(
        "--name", required=True, help="experiment name (the same name and options resume a stopped experiment)"
    )
    tune.add_argument(
        "--algorithms",
        "--algorithm",
        required=True,
        metavar="LIST",
        help="comma-separated algorithms (OPTIMIZER or OPTIMIZER+SCHEDULE)",
    )
    tune.add_argument("--workloads", default=None, metavar="LIST", help=WORKLOADS_HELP)
    tune.add_argument("--trials", type=int, default=5, help="configurations per study (default: 5)")
    tune.add_argument(
        "--studies", type=int, default=3, help="independent studies per algorithm and workload (default: 3)"
    )
    tune.add_argument(
        "--eval-seeds",
        default="0,1,2",
        metavar="LIST",
        help="seeds for re-running each study's best configuration; tuning trials use "
        "seeds from 1,000,000 on, so these never repeat one (default: 0,1,2)",
    )
    tune.add_argument(
        "--protocol",
        default="held-out",
        choices=["held-out", "same-split"],
        help="held-out: score the best configurations' re-runs on --eval-seeds with the "
        "target checked on the test split; same-split: score the best tuning trial "
        "itself (common practice, optimistic) (default: held-out)",
    )
    tune.add_argument("--seed", type=int, default=0, help="QMC seed of study 0; study K uses SEED+K (default: 0)")
    tune.add_argument(
        "--search-space",
        action="append",
        default=[],
        metavar="[ALG=]FILE",
        help="search space JSON for an algorithm (AlgoPerf format, e.g. "
        '{"lr": {"min": 1e-4, "max": 1e-2, "scaling": "log"}}); default: the space '
        "registered with the optimizer (docs/search_spaces.md)",
    )
    tune.add_argument(
        "--workers", type=int, default=1, help="trial processes on this machine, this one included (default: 1)"
    )
    tune.add_argument(
        "--variants",
        action="store_true",
        help="also run each study's best configuration on the workloads' variants "
        "(robustness check; reported, not scored)",
    )
    tune.add_argument(
        "--full-budget",
        action="store_true",
        help="train every trial to its full step budget instead of stopping at the "
        "target (the time to target is the same either way)",
    )
    tune.add_argument(
        "--select-by",
        default="time",
        choices=["time", "steps"],
        help="a study's best configuration: least training time to the target "
        "(AlgoPerf) or least steps (reproducible on a busy machine) (default: time)",
    )
    tune.add_argument(
        "--prune-by-curve",
        action="store_true",
        help="stop a tuning trial once its learning-curve prediction is converged and its interval "
        "excludes the target (recorded as a miss, status pruned); evaluation runs are never stopped "
        "(default: off; measure it first with `trainlab score --replay-pruner`)",
    )
    tune.add_argument(
        "--baseline",
        default=None,
        metavar="ALG",
        help="algorithm the geometric-mean speedup is relative to (default: the first)",
    )
    tune.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything (names, search spaces, data, store) and print the plan; run nothing",
    )
    tune.set_defaults(func=tune_command)

    worker = sub.add_parser(
        "worker",
        help="run queued trials of a tuning experiment (joins from any machine)",
        description="Claim and run queued trials of experiment --name from --store until the experiment "
        "is finished. Start as many as you like, on any machine that can reach the store "
        "(PostgreSQL for several machines). Trials train with the experiment's own trial "
        "configuration (memory savers, precision), stored with its plan.",
        parents=[parents.runtime(), parents.store(), parents.heartbeat(), parents.progress()],
    )
    worker.add_argument("--name", required=True, help="experiment name (as given to trainlab tune)")
    worker.add_argument(
        "--exit-when-idle",
        action="store_true",
        help="exit when nothing is queued instead of waiting for the experiment to finish",
    )
    worker.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    worker.set_defaults(func=worker_command)

    score = sub.add_parser(
        "score",
        help="score a tuning experiment and write its report",
        description="Performance profiles, benchmark scores, speedups and bootstrap "
        "intervals of a stored tuning experiment; writes report.md, "
        "plots, scores.json and scores.tex.",
        parents=[parents.store(), parents.heartbeat(), parents.curve_prediction()],
    )
    score.add_argument("--name", default=None, help="experiment name (default: the only one in the store)")
    score.add_argument(
        "--replay-pruner",
        action="store_true",
        help="instead of scoring, replay `tune --prune-by-curve` over the stored tuning curves: the "
        "training time it would save, the trials it would stop that reached the target, and the "
        "studies whose chosen configuration would change (prints JSON; trains nothing)",
    )
    score.add_argument(
        "--baseline", default=None, metavar="ALG", help="algorithm the speedups are relative to (default: the first)"
    )
    score.add_argument(
        "--protocol",
        default=None,
        choices=["held-out", "same-split"],
        help="score as the experiment ran (default), or score a held-out experiment's "
        "best tuning trials themselves (same-split) to compare the two",
    )
    score.add_argument(
        "--out",
        default="trainlab-results/tune-report",
        metavar="DIR",
        help="output folder (default: trainlab-results/tune-report)",
    )
    score.set_defaults(func=score_command)


def build_tuning_plan(args: argparse.Namespace, device=None):
    """`trainlab tune`'s options -> a checked `TuningPlan` (`trainlab.tuning.build.build_plan`)."""
    from trainlab.tuning.build import build_plan
    from trainlab.workloads import DEFAULT_WORKLOADS, workload_class

    algorithms = split_list(args.algorithms, "algorithms")
    specs = split_list(args.workloads, "workloads") if args.workloads else list(DEFAULT_WORKLOADS)
    names = [workload_class(spec).name for spec in specs]
    return build_plan(
        args.name,
        algorithms,
        specs,
        parse_workload_options(args.workload_option, names),
        search_space_files=search_space_files(args.search_space, algorithms),
        trials=args.trials,
        studies=args.studies,
        eval_seeds=parse_seeds(args.eval_seeds) if args.eval_seeds else [],
        protocol=args.protocol,
        seed=args.seed,
        variants=args.variants,
        select_by=args.select_by,
        options=trial_options(args, stop_at_target=not args.full_budget),
        device=device,
        prune=dict(zip(("level", "threshold"), parents.prediction_settings(args))) if args.prune_by_curve else None,
    )


def tune_command(args: argparse.Namespace) -> int:
    from trainlab.tuning.outcomes import collect

    device = parents.setup_runtime(args)
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    plan = build_tuning_plan(args, device)
    if args.baseline is not None and args.baseline not in plan.algorithms:
        raise UsageError(f"--baseline {args.baseline!r} is not tuned here ({', '.join(plan.algorithms)})")
    storage = parents.tuning_storage(args)
    if args.dry_run:
        print(json.dumps(json.loads(plan.to_json()), indent=2))
        print(f"plan {plan.name!r} is valid; store {args.store} is reachable (dry run: nothing ran)")
        return 0
    evaluation = (
        f"evaluation on seeds {','.join(map(str, plan.eval_seeds))}"
        if plan.protocol == "held-out"
        else "no re-runs (same-split)"
    )
    print(
        f"tune {plan.name!r}: {', '.join(plan.algorithms)} on {', '.join(map(plan.display, plan.workloads))}; "
        f"{plan.studies} studies x {plan.trials} trials = {plan.tuning_trials()} tuning trials, then "
        f"{evaluation}; {args.workers} worker(s) on {device}{plan.describe_parallel()}; trials train with "
        f"{plan.options().describe()}; store {args.store}",
        flush=True,
    )
    parents.run_plan(args, storage, plan, device)
    return _print_scores(collect(storage, plan), args, None if args.no_report else args.report_dir)


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


def worker_command(args: argparse.Namespace) -> int:
    from trainlab.tuning.coordinator import run_worker

    device = parents.setup_runtime(args)
    storage = parents.tuning_storage(args)
    ran = run_worker(
        storage,
        args.name,
        device,
        parent_pid=args.parent_pid,
        exit_when_idle=args.exit_when_idle,
        progress_factory=parents.progress_bars(args),
        report=lambda line: print(f"[worker {os.getpid()}] {line}", flush=True),
    )
    print(f"[worker] ran {ran} trial(s)", flush=True)
    return 0


def score_command(args: argparse.Namespace) -> int:
    from trainlab.tuning.experiment import list_experiments, load_plan
    from trainlab.tuning.outcomes import collect

    storage = parents.tuning_storage(args, create=False)
    if args.name is None:
        names = list_experiments(storage)
        if not names:
            raise UsageError("no tuning experiments in this store: run `trainlab tune` first")
        if len(names) > 1:
            raise UsageError(f"this store has several experiments ({', '.join(names)}): pick one with --name")
        args.name = names[0]
    plan = load_plan(storage, args.name)
    if args.baseline is not None and args.baseline not in plan.algorithms:
        raise UsageError(
            f"--baseline {args.baseline!r} is not an algorithm of {plan.name!r} ({', '.join(plan.algorithms)})"
        )
    if args.replay_pruner:
        return _replay_pruner(storage, plan, args)
    if args.protocol == "held-out" and plan.protocol != "held-out":
        raise UsageError(f"experiment {plan.name!r} ran the same-split protocol: it has no held-out runs to score")
    return _print_scores(collect(storage, plan, args.protocol), args, args.out)


def _replay_pruner(storage, plan, args: argparse.Namespace) -> int:
    from trainlab.tuning.pruning import replay

    level, threshold = parents.prediction_settings(args)
    result = replay(storage, plan, level, threshold)
    if not result.trials:
        raise UsageError(f"experiment {plan.name!r} has no completed tuning trial with a stored curve to replay")
    out = {
        "experiment": plan.name,
        "prediction_level": level,
        "convergence_threshold": threshold,
        **result.summary(),
        "by_workload": result.by_workload,
        "wrongly_stopped_trials": result.wrong,
        "changed_studies": result.changed,
    }
    print(json.dumps(out, indent=2))
    return 0
