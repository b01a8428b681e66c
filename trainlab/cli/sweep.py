"""`trainlab batch-sweep`: the largest stable and the best learning rate against batch size."""

from __future__ import annotations

import argparse
import sys

from trainlab.cli import parents
from trainlab.cli.options import parse_seeds, split_list

WORKLOADS_HELP = "comma-separated workload names, .py files or modules (default: mnist1d_mlp)"


def add_parsers(sub) -> None:
    sweep = sub.add_parser(
        "batch-sweep",
        help="measure how the largest stable and the best lr grow with the batch size",
        description="Per workload, algorithm and batch size: short runs over a grid of learning rates "
        "(factors of 2 around the algorithm's lr carried from the default batch by its rule) give the "
        "largest stable and the best lr; full runs at the best lr give steps and seconds to the target; "
        "Lanczos gives the top Hessian eigenvalue at initialisation. Fits the exponent of lr in batch "
        "size beside the paper's slopes (1 for SGD, 1/2 for Adam), writes report.md, sweep.json and a "
        "log-log plot. Resumable: runs stored in --store are not run again.",
        parents=[parents.workload_options(), parents.runtime(), parents.store()],
    )
    sweep.add_argument("--workloads", default="mnist1d_mlp", metavar="LIST", help=WORKLOADS_HELP)
    sweep.add_argument("--algorithms", default="sgd,adamw,lion", metavar="LIST", help="(default: sgd,adamw,lion)")
    sweep.add_argument(
        "--batch-sizes", default="16,32,64,128,256,512", metavar="LIST", help="(default: 16,32,64,128,256,512)"
    )
    sweep.add_argument(
        "--seeds", default="0", metavar="LIST", help="seeds of the full runs at the best lr (default: 0)"
    )
    sweep.add_argument(
        "--short-steps", type=int, default=200, help="steps of each stability run on the lr grid (default: 200)"
    )
    sweep.add_argument(
        "--span", type=int, default=4, help="the grid covers the centre lr times 2^-SPAN .. 2^SPAN (default: 4)"
    )
    sweep.add_argument(
        "--out", default="trainlab-results/batch-sweep", metavar="DIR", help="report folder (default: %(default)s)"
    )
    sweep.set_defaults(func=batch_sweep_command)


def batch_sweep_command(args: argparse.Namespace) -> int:
    from trainlab.benchmark.batch_sweep import BatchSweep
    from trainlab.reports.batch_sweep import write_report
    from trainlab.store import ResultsStore

    device = parents.setup_runtime(args)
    sweep = BatchSweep(
        parents.build_workloads(args),
        split_list(args.algorithms, "algorithms"),
        [int(b) for b in _integers(args.batch_sizes)],
        device,
        seeds=parse_seeds(args.seeds),
        short_steps=args.short_steps,
        span=args.span,
        report=lambda line: print(line, flush=True),
    )
    sweep.check()
    store = ResultsStore(args.store)
    points = sweep.run(store)
    path = write_report(points, args.out, "trainlab " + " ".join(sys.argv[1:]) if len(sys.argv) > 1 else None)
    print(f"report: {path}")
    return 0


def _integers(text: str) -> list[int]:
    from trainlab.errors import UsageError

    out = []
    for item in split_list(text, "batch-sizes"):
        if not item.isdigit() or int(item) < 1:
            raise UsageError(f"--batch-sizes: {item!r} is not a positive integer")
        out.append(int(item))
    return out
