"""`trainlab leaderboard`: run (or resume, or grow) the leaderboard's two experiments, then score.

What the experiments are lives in `trainlab.tuning.leaderboard`; this module checks the input,
runs them with local workers and writes the report (`trainlab.reports.leaderboard`).
"""

from __future__ import annotations

import argparse

from trainlab.cli import parents
from trainlab.errors import UsageError

# judging protocol v2 (`trainlab.tuning.leaderboard`); the v1 board stays in docs/leaderboard/ as
# the record its README rows came from, rescorable with --store docs/leaderboard/leaderboard.db
DEFAULT_STORE = "docs/leaderboard/v2/leaderboard.db"
DEFAULT_OUT = "docs/leaderboard/v2"


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "leaderboard",
        help="tune and score every registered algorithm (resumable; adds new ones)",
        description="The leaderboard under judging protocol v2: every algorithm tuned (3 independent "
        "studies of 5 quasi-random draws, 3 on text_lm, each study's learning rate then bracketed "
        "and refined; the best of each study re-run on the paired held-out seeds 100-104, 100-102 "
        "on text_lm at 1200 steps) and untuned at its workload-agnostic defaults (5 runs, 3 on "
        "text_lm), then one report. Rerun it to resume; name more --algorithms to add them: only "
        "their trials run.",
        parents=[
            parents.store(DEFAULT_STORE, ", committed beside the report"),
            parents.heartbeat(),
            parents.progress(),
        ],
    )
    p.add_argument(
        "--algorithms",
        default=None,
        metavar="LIST",
        help="algorithms to add or run, bracketed variants included, e.g. lion[cautious=true] (default: every "
        "registered optimizer and the variants in trainlab.tuning.leaderboard.VARIANTS)",
    )
    p.add_argument(
        "--rerun",
        default=None,
        metavar="LIST",
        help="delete these stored algorithms' trials (both experiments) and run them again: for "
        "an algorithm whose implementation changed; the others' trials are kept",
    )
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"report folder (default: {DEFAULT_OUT})")
    p.add_argument(
        "--only",
        default="both",
        choices=["both", "tuned", "self"],
        help="run only the tuned or only the self-tuning experiment (default: both)",
    )
    p.add_argument("--score-only", action="store_true", help="run nothing: score what is stored and write the report")
    p.add_argument("--workers", type=int, default=2, help="trial processes on this machine (default: 2)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="CPU threads per trial process (default: 1)")
    p.add_argument(
        "--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N or mps (default: auto)"
    )
    p.add_argument(
        "--write-configs",
        default=None,
        metavar="FILE",
        help="also write each finished (algorithm, workload)'s chosen configuration as JSON "
        "(the Makefile writes trainlab/algorithms/leaderboard.json, which races use)",
    )
    p.add_argument("--dry-run", action="store_true", help="check and print the plans; run nothing")
    p.set_defaults(func=leaderboard)


def leaderboard(args: argparse.Namespace) -> int:
    from pathlib import Path

    from trainlab.tuning.leaderboard import SELF_TUNING_NAME, TUNED_NAME, leaderboard_plans, stored_plan
    from trainlab.tuning.storage import open_storage

    device = parents.setup_runtime(args)
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    algorithms = _algorithms(args)
    if "://" not in args.store:
        Path(args.store).parent.mkdir(parents=True, exist_ok=True)
    storage = open_storage(args.store, args.heartbeat_interval, args.grace_period, create=True)
    if args.score_only:  # score what is stored, as it is: algorithms not yet run are not on the board
        stored = [stored_plan(storage, name) for name in (TUNED_NAME, SELF_TUNING_NAME)]
        if stored[0] is None:
            raise UsageError(f"no leaderboard in {args.store}: run `trainlab leaderboard` first")
        tuned, self_ = stored[0], stored[1] or leaderboard_plans(storage, stored[0].algorithms)[1]
    else:
        tuned, self_ = leaderboard_plans(storage, algorithms)
    if args.rerun:
        algorithms = _forget_rerun(args, storage, (tuned, self_), algorithms)
    if args.dry_run:
        for plan in (tuned, self_):
            print(
                f"{plan.name}: {len(plan.algorithms)} algorithms ({', '.join(plan.algorithms)}), "
                f"{plan.tuning_trials()} trials before evaluation runs"
            )
        print(f"store {args.store} is reachable (dry run: nothing ran)")
        return 0
    if not args.score_only:
        _run(args, storage, device, [p for p in (tuned, self_) if args.only in ("both", _kind(p, tuned))], algorithms)
    from trainlab.reports.leaderboard import write_leaderboard

    path = write_leaderboard(storage, tuned, self_, args.out, store=args.store)
    print(f"\nleaderboard report: {path}")
    if args.write_configs:
        _write_configs(storage, tuned, args.write_configs)
    return 0


def _kind(plan, tuned) -> str:
    return "tuned" if plan is tuned else "self"


def _algorithms(args: argparse.Namespace) -> list[str]:
    """--algorithms, each name checked, else every registered optimizer and the board's variants."""
    if not args.algorithms:
        from trainlab.tuning.leaderboard import default_algorithms

        return default_algorithms()
    from trainlab.algorithms.registry import parse_name
    from trainlab.algorithms.submission import is_submission, load_submission
    from trainlab.cli.options import split_list

    algorithms = split_list(args.algorithms, "algorithms")
    for a in algorithms:  # each name checked now, in one line
        if is_submission(a):
            load_submission(a)
        else:
            parse_name(a)
    return algorithms


def _forget_rerun(args: argparse.Namespace, storage, plans, algorithms: list[str]) -> list[str]:
    """--rerun: delete the named algorithms' stored trials, so the run below queues them afresh."""
    from trainlab.cli.options import split_list
    from trainlab.tuning.leaderboard import forget, stored_plan

    rerun = split_list(args.rerun, "rerun")
    if args.score_only or args.dry_run:
        raise UsageError("--rerun deletes and runs trials: drop --score-only / --dry-run")
    for plan in plans:
        if stored_plan(storage, plan.name) is not None:
            deleted = forget(storage, plan, rerun)
            print(f"leaderboard: {plan.name}: deleted {deleted} stored trials of {', '.join(rerun)}", flush=True)
    return sorted(set(algorithms) | set(rerun))


def _run(args: argparse.Namespace, storage, device, plans, algorithms: list[str]) -> None:
    """Run (or resume) each chosen experiment to its end."""
    from trainlab.tuning.leaderboard import check_workloads

    check_workloads(algorithms)
    for plan in plans:
        print(
            f"leaderboard: {plan.name}: {len(plan.algorithms)} algorithms, "
            f"{plan.tuning_trials()} trials before evaluation runs; {args.workers} worker(s), "
            f"{args.threads} thread(s) each; store {args.store}",
            flush=True,
        )
        parents.run_plan(args, storage, plan, device)


def _write_configs(storage, tuned, target: str) -> None:
    """The race configurations, written only from a finished board: races keep the last finished one."""
    import json
    from pathlib import Path

    from trainlab.tuning.leaderboard import race_configs

    configs = race_configs(storage, tuned)
    count = sum(len(v) for v in configs["configs"].values())
    from trainlab.algorithms.submission import is_submission

    wanted = sum(not is_submission(a) for a in tuned.algorithms) * len(tuned.workloads)
    if count < wanted:
        print(f"race configurations not written: {count} of {wanted} algorithm-workload pairs are finished")
    else:
        Path(target).write_text(json.dumps(configs, indent=2, sort_keys=True) + "\n")
        print(f"race configurations: {target} ({count} algorithm-workload pairs)")
