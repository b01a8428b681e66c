"""Options several subcommands share, declared once as argparse parent parsers, and what they set up.

A subcommand lists the parents it takes (`sub.add_parser(..., parents=[store(), runtime()])`), so
`--store` or `--compress-activations` reads and behaves the same wherever it appears.
"""

from __future__ import annotations

import argparse

from trainlab.errors import UsageError
from trainlab.store import DEFAULT_STORE_URL


def _parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


def store(default: str = DEFAULT_STORE_URL, note: str = "") -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument(
        "--store",
        default=default,
        metavar="URL",
        help=f"results database: a SQLAlchemy URL or a file path (SQLite) (default: {default}{note})",
    )
    return p


def runtime() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument(
        "--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N or mps (default: auto)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads for PyTorch (default: PyTorch's choice, usually one per core)",
    )
    return p


def curve_prediction() -> argparse.ArgumentParser:
    """How learning curves are predicted (`race --predict`, `tune --prune-by-curve`)."""
    p = _parent()
    p.add_argument(
        "--predict-level",
        type=float,
        default=0.25,
        metavar="F",
        help="prediction level: predict only once this fraction of the step budget is trained, "
        "and from 4 evaluations on (default: 0.25)",
    )
    p.add_argument(
        "--convergence-threshold",
        type=float,
        default=0.01,
        metavar="F",
        help="a prediction is converged when the predicted final metric moved by at most this "
        "fraction since the previous evaluation's; only converged predictions stop a trial (default: 0.01)",
    )
    return p


def data_parallel() -> argparse.ArgumentParser:
    """Data-parallel trials (`race --nproc`, `tune --nproc`; trainlab.benchmark.data_parallel)."""
    p = _parent()
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="train each trial data-parallel on N processes, launched with torch.distributed.run (gloo on "
        "CPU, NCCL on CUDA): each rank trains on 1/N of every global batch; rank 0 keeps the clock "
        "(default: 1, one process)",
    )
    p.add_argument(
        "--strategy",
        choices=["ddp", "fsdp2"],
        default="ddp",
        help="with --nproc: wrap the model with DistributedDataParallel or FSDP2's fully_shard (default: ddp)",
    )
    p.add_argument(
        "--trial-timeout",
        type=float,
        default=3600.0,
        metavar="S",
        help="with --nproc: fail a trial (a rank that hangs) still running after S seconds (default: 3600)",
    )
    return p


def prediction_settings(args: argparse.Namespace) -> tuple[float, float]:
    """(prediction level, convergence threshold), checked."""
    if not 0.0 < args.predict_level < 1.0:
        raise UsageError(f"--predict-level must be in (0, 1), got {args.predict_level}")
    if not 0.0 < args.convergence_threshold < 1.0:
        raise UsageError(f"--convergence-threshold must be in (0, 1), got {args.convergence_threshold}")
    return args.predict_level, args.convergence_threshold


def workload_options() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument(
        "--workload-option",
        action="append",
        default=[],
        metavar="W.KEY=VALUE",
        help="set an option of workload W, e.g. text_lm.text_file=my.txt or "
        "mnist1d_mlp.step_budget=500 (repeatable; `trainlab list` shows each "
        "workload's options)",
    )
    return p


def trial_config() -> argparse.ArgumentParser:
    """The memory savers and precision every trial trains with (`trainlab.benchmark.trial_config`)."""
    p = _parent()
    p.add_argument(
        "--compress-activations",
        default=None,
        metavar="{2,4,8,adaptive}",
        help="store the activations saved for backward quantized to 2, 4 or 8 bits, or "
        "with per-tensor bits chosen by GACT ('adaptive', 4 bits on average); "
        "the compression runs on the clock (default: off)",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        metavar="{fp32,bf16-autocast,bf16}",
        help="fp32; bf16-autocast (fp32 weights, forward pass in bf16); or bf16 (bf16 "
        "weights and gradients, optimizer state in the optimizer's own dtype) "
        "(default: fp32)",
    )
    p.add_argument(
        "--freeze",
        default=None,
        metavar="RULE[,RULE...]",
        help="freeze parameters by module name before the optimizer is built, e.g. "
        "blocks.0 or 'blocks.*.attn' (shell wildcards; every rule must match a "
        "parameter of every workload), or first:K for the first K "
        "parameter-owning modules (default: nothing frozen)",
    )
    p.add_argument(
        "--freeze-change",
        type=float,
        default=None,
        metavar="THRESHOLD",
        help="Freeze-And-Reconfigure-style freezing during training: every eval_every "
        "steps (after the first 10 %%), freeze parameter tensors whose relative "
        "change over that window fell below THRESHOLD, e.g. 1e-3 (default: off)",
    )
    return p


def progress() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--no-progress", action="store_true", help="no progress bars, one line per trial")
    return p


def report_dir(default: str) -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument(
        "--report-dir", default=default, metavar="DIR", help=f"where to write the report (default: {default})"
    )
    p.add_argument("--no-report", action="store_true", help="write no report")
    return p


def heartbeat() -> argparse.ArgumentParser:
    from trainlab.tuning.storage import DEFAULT_GRACE_PERIOD, DEFAULT_HEARTBEAT_INTERVAL

    p = _parent()
    p.add_argument(
        "--heartbeat-interval",
        type=int,
        default=DEFAULT_HEARTBEAT_INTERVAL,
        metavar="S",
        help=f"seconds between a running trial's heartbeats in the store (default: {DEFAULT_HEARTBEAT_INTERVAL})",
    )
    p.add_argument(
        "--grace-period",
        type=int,
        default=DEFAULT_GRACE_PERIOD,
        metavar="S",
        help="a running trial without a heartbeat for this long belonged to a dead worker: "
        f"it is failed and queued again (default: {DEFAULT_GRACE_PERIOD})",
    )
    return p


# ---- what the shared options set up --------------------------------------------------------------


def setup_runtime(args: argparse.Namespace):
    """--threads applied, --device resolved (`runtime()`)."""
    import torch

    from trainlab.utils.device import choose_device

    if args.threads is not None:
        if args.threads <= 0:
            raise UsageError(f"--threads must be a positive integer, got {args.threads}")
        torch.set_num_threads(args.threads)
    return choose_device(args.device)


def tuning_storage(args: argparse.Namespace, create: bool = True):
    """The Optuna storage behind --store, with the `heartbeat()` settings checked."""
    from trainlab.tuning.storage import open_storage

    if args.heartbeat_interval < 1 or args.grace_period <= args.heartbeat_interval:
        raise UsageError(
            f"--heartbeat-interval must be >= 1 s and --grace-period longer than it "
            f"(got {args.heartbeat_interval} and {args.grace_period})"
        )
    return open_storage(args.store, args.heartbeat_interval, args.grace_period, create=create)


def progress_bars(args: argparse.Namespace):
    """A trial progress-bar factory, or None under --no-progress."""
    if args.no_progress:
        return None
    from trainlab.benchmark.progress import TrialBar

    return lambda label, steps: TrialBar(label, steps)


def build_workloads(args: argparse.Namespace) -> list:
    """The workloads of --workloads (names, files, modules; default: the default race's), each with
    its --workload-option values (addressed by workload name)."""
    from trainlab.cli.options import parse_workload_options, split_list
    from trainlab.workloads import DEFAULT_WORKLOADS, workload_class

    specs = split_list(args.workloads, "workloads") if args.workloads else list(DEFAULT_WORKLOADS)
    classes = [workload_class(spec) for spec in specs]
    options = parse_workload_options(args.workload_option, [cls.name for cls in classes])
    return [cls(**options[cls.name]) for cls in classes]


def run_plan(args: argparse.Namespace, storage, plan, device) -> None:
    """Run (or resume) one tuning experiment to its end with the command line's workers, threads,
    heartbeat and progress options: what `tune` and `leaderboard` share."""
    from trainlab.tuning.coordinator import run_experiment
    from trainlab.workloads.variants import variants_of

    run_experiment(
        storage,
        args.store,
        plan,
        device,
        workers=args.workers,
        threads=args.threads,
        heartbeat_interval=args.heartbeat_interval,
        grace_period=args.grace_period,
        report=lambda line: print(line, flush=True),
        progress_factory=progress_bars(args),
        variants_of=variants_of if plan.variants else None,
    )
