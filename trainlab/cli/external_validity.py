"""`trainlab external-validity`: run (or resume) the AlgoPerf v0.5 external-validity experiment, then
write its report. What the experiment is lives in `trainlab.tuning.external_validity`; the report in
`trainlab.reports.external_validity`."""

from __future__ import annotations

import argparse

from trainlab.cli import parents
from trainlab.errors import UsageError

DEFAULT_OUT = "docs/external_validity"
DEFAULT_STORE = f"{DEFAULT_OUT}/external_validity.db"


def add_parsers(sub) -> None:
    from trainlab.tuning.external_validity import DEFAULT_SUBMISSIONS

    p = sub.add_parser(
        "external-validity",
        help="does trainlab rank the published AlgoPerf v0.5 submissions as AlgoPerf does? (resumable)",
        description="Every published AlgoPerf v0.5 PyTorch submission that runs on this machine, "
        "unmodified, tuned with its own published search space (its 5 listed points, one study), "
        "the best point by steps to the target re-run on held-out seeds 100-104, on mnist1d_mlp "
        "then mnist1d_cnn; scored with trainlab's benchmark score and compared with the published "
        "v0.5 scores (Kendall's tau, Spearman's rho, intervals). Rerun it to resume; writes "
        "report.md, scores.json and ranks.png into --out.",
        parents=[
            parents.store(DEFAULT_STORE, ", committed beside the report"),
            parents.heartbeat(),
            parents.progress(),
        ],
    )
    p.add_argument(
        "--submissions",
        default=DEFAULT_SUBMISSIONS,
        metavar="DIR",
        help=f"the published v0.5 folder, read-only (default: {DEFAULT_SUBMISSIONS})",
    )
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"report folder (default: {DEFAULT_OUT})")
    p.add_argument(
        "--workloads",
        default=None,
        metavar="LIST",
        help="a subset of mnist1d_mlp,mnist1d_cnn (default: both); a subset is an experiment of its own",
    )
    p.add_argument(
        "--step-budget-factor",
        type=float,
        default=1.0,
        metavar="F",
        help="horizon check: every workload's step budget (and so every schedule's step_hint) times F, "
        "an experiment of its own beside the headline one in the store (default: 1)",
    )
    p.add_argument("--score-only", action="store_true", help="run nothing: report what is stored")
    p.add_argument("--workers", type=int, default=1, help="trial processes on this machine (default: 1)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="CPU threads per trial process (default: 1)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    p.add_argument("--dry-run", action="store_true", help="check and print the plan; run nothing")
    p.set_defaults(func=external_validity)


def external_validity(args: argparse.Namespace) -> int:
    from pathlib import Path

    from trainlab.cli.options import split_list
    from trainlab.tuning.external_validity import WORKLOADS, experiment_name, experiment_plan
    from trainlab.tuning.leaderboard import stored_plan

    device = parents.setup_runtime(args)
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    if "://" not in args.store:
        if args.score_only and not Path(args.store).is_file():
            raise UsageError(f"no store at {args.store}: run `trainlab external-validity` first")
        Path(args.store).parent.mkdir(parents=True, exist_ok=True)
    workloads = split_list(args.workloads, "workloads") if args.workloads else list(WORKLOADS)
    name = experiment_name(workloads, args.step_budget_factor)
    storage = parents.tuning_storage(args, create=not args.score_only)
    if args.score_only:
        plan = stored_plan(storage, name)
        if plan is None:
            raise UsageError(f"no {name!r} experiment in {args.store}: run `trainlab external-validity` first")
    else:
        plan = experiment_plan(args.submissions, device, workloads, args.step_budget_factor)
    if args.dry_run:
        print(
            f"{plan.name}: {len(plan.algorithms)} submissions ({', '.join(plan.algorithms)}) on "
            f"{', '.join(plan.workloads)}: {plan.tuning_trials()} tuning trials, then "
            f"{len(plan.eval_seeds)} held-out runs per submission and workload"
        )
        print(f"store {args.store} is reachable (dry run: nothing ran)")
        return 0
    if not args.score_only:
        print(
            f"{plan.name}: {len(plan.algorithms)} submissions, {plan.tuning_trials()} tuning trials; "
            f"{args.workers} worker(s), {args.threads} thread(s) each; store {args.store}",
            flush=True,
        )
        parents.run_plan(args, storage, plan, device)
    from trainlab.reports.external_validity import write_report

    path = write_report(storage, plan, args.out, store=args.store)
    print(f"\nexternal-validity report: {path}")
    return 0
