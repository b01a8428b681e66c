"""`trainlab race`, `report`, `refine` and `set-targets`: races to the target and what is built on them."""

from __future__ import annotations

import argparse

from trainlab.cli import parents
from trainlab.cli.options import parse_seeds, search_space_files, split_list, trial_options
from trainlab.errors import UsageError

WORKLOADS_HELP = "comma-separated workload names, .py files or modules (default: mnist1d_mlp,mnist1d_cnn,text_lm)"


def add_parsers(sub) -> None:
    race = sub.add_parser(
        "race",
        help="train algorithms on workloads and time each to its target",
        description="Run every (workload, algorithm, seed) trial, store each as it finishes, print the "
        "summary and write the report.",
        parents=[
            parents.workload_options(),
            parents.runtime(),
            parents.store(),
            parents.report_dir("trainlab-results/report"),
            parents.trial_config(),
            parents.progress(),
            parents.curve_prediction(),
            parents.data_parallel(),
        ],
    )
    race.add_argument("--workloads", default=None, metavar="LIST", help=WORKLOADS_HELP)
    race.add_argument(
        "--algorithms",
        default=None,
        metavar="LIST",
        help="comma-separated algorithms, each OPTIMIZER or OPTIMIZER+SCHEDULE "
        "(default: adamw,nadamw,sgd, each with warm-up + cosine)",
    )
    race.add_argument(
        "--seeds",
        default="0",
        metavar="LIST",
        help="comma-separated integer seeds; each seeds model init and batch order (default: 0)",
    )
    race.add_argument(
        "--hparams",
        action="append",
        default=[],
        metavar="ALG.KEY=VALUE",
        help="override a hyperparameter of one algorithm, e.g. adamw.lr=3e-3 (VALUE is a Python literal; repeatable)",
    )
    race.add_argument(
        "--stop-at-target",
        action="store_true",
        help="end each trial at its first evaluation meeting the target (faster; the "
        "final metric is then the metric at the target)",
    )
    race.add_argument(
        "--record-grad-norms",
        choices=["l1", "l2"],
        default=None,
        help="record each step's gradient norm (for refined schedules; costs a little time)",
    )
    race.add_argument(
        "--search-space",
        action="append",
        default=[],
        metavar="ALG=FILE",
        help="an AlgoPerf submission's tuning_search_space.json (list or dict form): the race "
        "uses its first point (list) or centre (dict); default: the file beside the "
        "submission, if any",
    )
    race.add_argument(
        "--untuned",
        action="store_true",
        help="use every algorithm's workload-agnostic defaults, not the configuration the "
        "leaderboard tuned for a built-in workload (the leaderboard's self-tuning view)",
    )
    race.add_argument(
        "--predict",
        action="store_true",
        help="after each evaluation past the prediction level, fit the validation curve and print and "
        "store its prediction: the metric by the step budget and the step reaching the target, with "
        "intervals (untimed; never stops a trial)",
    )
    race.add_argument(
        "--eval-subset",
        type=int,
        default=None,
        metavar="N",
        help="continual evaluation: also evaluate on the first N validation examples (windows for "
        "text_lm) every --eval-every steps, untimed, and report stability after the target from that "
        "per-step curve (the stability-gap view); the score still comes from the full evaluations",
    )
    race.add_argument(
        "--eval-every",
        type=int,
        default=None,
        metavar="E",
        help="with --eval-subset: steps between continual evaluations (default: 1, every step); the "
        "full evaluations keep the workload's cadence (set it with --workload-option W.eval_every=K)",
    )
    race.add_argument(
        "--batch-scaling",
        choices=["linear", "sqrt", "auto"],
        default=None,
        help="when a workload trains at another batch size (--workload-option W.batch_size=B), carry "
        "each algorithm's lr from the workload's default batch size: times B/B0 (linear, SGD), its "
        "square root (sqrt, Adam), or each optimizer's registered rule (auto); an lr set with --hparams "
        "is kept as given (default: off, the lr is used unchanged)",
    )
    race.add_argument("--label", default=None, help="a free-text label stored with the race")
    race.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="N",
        help="checkpoint each trial at an evaluation once N steps have passed since the last one "
        "(untimed); a killed race rerun with the same command resumes its unfinished trial from there, "
        "bit for bit (default: off)",
    )
    race.add_argument(
        "--checkpoint-dir",
        default="trainlab-results/checkpoints",
        metavar="DIR",
        help="where --checkpoint-every writes (default: trainlab-results/checkpoints); a finished "
        "trial deletes its own",
    )
    race.add_argument(
        "--new-race",
        action="store_true",
        help="start a new race even when the store holds one with the same arguments (default: resume "
        "it, keeping its finished trials and rerunning the ones that did not finish)",
    )
    race.set_defaults(func=run_race_command)

    report = sub.add_parser(
        "report",
        help="write the Markdown + PNG report of a stored race",
        description="Write report.md and PNG plots for one race of a results store.",
        parents=[parents.store()],
    )
    report.add_argument(
        "--race", type=int, default=None, metavar="ID", help="race id (default: the newest race in the store)"
    )
    report.add_argument(
        "--out",
        default="trainlab-results/report",
        metavar="DIR",
        help="output folder (default: trainlab-results/report)",
    )
    report.set_defaults(func=report_command)

    refine = sub.add_parser(
        "refine",
        help="derive a schedule from a first run's gradient norms and race it",
        description="Schedule refinement (Defazio et al. 2023): pass 1 trains OPTIMIZER+linear on "
        "--pass1-seed recording per-step gradient norms (L1 for Adam-like, L2 for SGD-like "
        "optimizers); the refined schedule is derived per workload; pass 2 races "
        "OPTIMIZER+refined against the --compare schedules on the evaluation seeds, and "
        "writes the report.",
        parents=[
            parents.workload_options(),
            parents.runtime(),
            parents.store(),
            parents.report_dir("trainlab-results/refine-report"),
            parents.trial_config(),
            parents.progress(),
        ],
    )
    refine.add_argument(
        "--algorithm",
        default="adamw",
        metavar="OPTIMIZER",
        help="optimizer to refine, without a schedule (default: adamw)",
    )
    refine.add_argument("--workloads", default=None, metavar="LIST", help=WORKLOADS_HELP)
    refine.add_argument(
        "--compare",
        default="cosine,linear",
        metavar="LIST",
        help="schedules to race the refined one against (default: cosine,linear)",
    )
    refine.add_argument("--seeds", default="0,1,2", metavar="LIST", help="evaluation seeds for pass 2 (default: 0,1,2)")
    refine.add_argument(
        "--pass1-seed",
        type=int,
        default=1000,
        metavar="SEED",
        help="seed of the first (recording) run; must not be an evaluation seed (default: 1000)",
    )
    refine.add_argument(
        "--hparams",
        action="append",
        default=[],
        metavar="OPT.KEY=VALUE",
        help="override a hyperparameter for every schedule, e.g. adamw.lr=3e-3 (repeatable)",
    )
    refine.add_argument("--label", default=None, help="a free-text label stored with the race")
    refine.set_defaults(func=refine_command)


def _summary_and_report(store, race_id: int, report_dir: str | None) -> None:
    from trainlab.reports import format_table, summarize, write_report

    print(f"\nrace {race_id} summary\n")
    print(format_table(summarize(store.trials(race_id))))
    if report_dir:
        print(f"\nreport: {write_report(store, report_dir, race_id)}")


def run_race_command(args: argparse.Namespace) -> int:
    import torch

    from trainlab.algorithms import DEFAULT_ALGORITHMS, parse_hparam_overrides
    from trainlab.benchmark.race import RacePlan, prepare, run_race
    from trainlab.store import ResultsStore

    device = parents.setup_runtime(args)
    options = trial_options(
        args,
        stop_at_target=args.stop_at_target,
        grad_norm_kind=args.record_grad_norms,
        predict=(args.predict_level, args.convergence_threshold) if args.predict else None,
        continual=_continual(args),
        checkpoint_every=args.checkpoint_every,
        checkpoint_dir=args.checkpoint_dir if args.checkpoint_every else None,
    )
    workloads = parents.build_workloads(args)
    names = split_list(args.algorithms, "algorithms") if args.algorithms else list(DEFAULT_ALGORITHMS)
    seeds = parse_seeds(args.seeds)
    plan = RacePlan(
        workloads,
        names,
        seeds,
        device,
        label=args.label,
        overrides=parse_hparam_overrides(args.hparams, names),
        options=options,
        untuned=args.untuned,
        search_spaces=search_space_files(args.search_space, names),
        batch_scaling=args.batch_scaling,
    )
    prepare(plan)  # every name, hyperparameter, freeze rule and data file checked before anything runs
    store = ResultsStore(args.store)
    print(
        f"race: {len(workloads)} workload(s) x {len(names)} algorithm(s) x {len(seeds)} seed(s) "
        f"on {device} ({torch.get_num_threads()} threads); store {store.url}",
        flush=True,
    )
    race_id, _ = run_race(
        plan,
        store,
        progress=False if args.no_progress else None,
        resume=not args.new_race,
        report=lambda line: print(line, flush=True),
    )
    _summary_and_report(store, race_id, None if args.no_report else args.report_dir)
    finished = store.trials(race_id, statuses=("completed", "diverged", "pruned"))
    return 1 if len(finished) < len(workloads) * len(names) * len(seeds) else 0


def _continual(args: argparse.Namespace) -> tuple[int, int] | None:
    if args.eval_subset is None:
        if args.eval_every is not None:
            raise UsageError(
                "--eval-every sets the cadence of continual evaluation and needs --eval-subset N; "
                "the full evaluations' cadence is a workload option (--workload-option W.eval_every=K)"
            )
        return None
    return (1 if args.eval_every is None else args.eval_every), args.eval_subset


def report_command(args: argparse.Namespace) -> int:
    from trainlab.reports import write_report
    from trainlab.store import ResultsStore

    store = ResultsStore(args.store, create=False)
    print(f"report: {write_report(store, args.out, args.race)}")
    return 0


def refine_command(args: argparse.Namespace) -> int:
    """Two passes (Defazio et al. 2023): record gradient norms under linear decay, derive the refined
    schedule per workload, then race it against the comparison schedules on the evaluation seeds."""
    from trainlab.algorithms import parse_hparam_overrides
    from trainlab.algorithms.registry import parse_name
    from trainlab.benchmark.race import run_race
    from trainlab.benchmark.refine import refinement_plan
    from trainlab.store import ResultsStore

    device = parents.setup_runtime(args)
    optimizer_name, _ = parse_name(args.algorithm)
    compare = split_list(args.compare, "compare") if args.compare else []
    overrides = parse_hparam_overrides(args.hparams, [optimizer_name])[optimizer_name]
    seeds = parse_seeds(args.seeds)
    options = trial_options(args)
    workloads = parents.build_workloads(args)
    store = ResultsStore(args.store)
    plan = refinement_plan(
        args.algorithm if "+" in args.algorithm else optimizer_name,
        workloads,
        compare,
        seeds,
        args.pass1_seed,
        device,
        overrides,
        options,
        args.label,
        log=_log,
    )
    names = plan.algorithms
    print(f"pass 2: {len(workloads)} workload(s) x {', '.join(names)} x {len(seeds)} seed(s)", flush=True)
    race_id, results = run_race(plan, store, progress=False if args.no_progress else None, resume=False)
    _summary_and_report(store, race_id, None if args.no_report else args.report_dir)
    return 0 if len(results) == len(workloads) * len(names) * len(seeds) else 1


def _log(message: str) -> None:
    print(message, flush=True)
