"""`trainlab` entry point: argument parsing and the one-line error policy.

Every subcommand validates its input before doing work; a `UsageError` (or argparse's own) becomes
`trainlab: error: ...` on stderr and exit status 2, never a traceback. Each subcommand's module
declares its parser (`add_parsers`, with the shared options of `trainlab.cli.parents`) and binds its
handler with `set_defaults(func=...)`.
"""

from __future__ import annotations

import argparse
import sys

from trainlab import __version__
from trainlab.errors import UsageError

EPILOG = """examples:
  trainlab race                                    # the default race: 3 workloads x 3 algorithms
  trainlab race --workloads text_lm --algorithms adamw,nadamw --seeds 0,1,2
  trainlab race --algorithms adamw --hparams adamw.lr=3e-3 --hparams adamw.betas=(0.9,0.95)
  trainlab race --workloads ./my_workload.py       # your own workload module
  trainlab race --algorithms ./my_opt.py:MyOpt     # your own torch.optim optimizer
  trainlab race --compress-activations 4 --precision bf16-autocast --freeze blocks.0
  trainlab list                                    # workloads, algorithms and hyperparameters
  trainlab report --race 3 --out my-report         # Markdown + PNG report of race 3
  trainlab tune --name cmp --algorithms adamw,sgd --trials 5 --studies 3 --workers 2
  trainlab score --name cmp                        # performance profiles and scores
  trainlab leaderboard --score-only                # rescore the committed leaderboard
  trainlab external-validity --score-only          # AlgoPerf v0.5 submissions: ranked as AlgoPerf?
"""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line on stderr (like every other trainlab error),
    pointing at --help instead of printing the whole usage."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"trainlab: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from trainlab.cli import catalog, external_validity, leaderboard, race, sweep, targets, tuning

    parser = OneLineParser(
        prog="trainlab",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
        description="Choose, trust and afford training algorithms: race them to validation targets "
        "under an honest clock, store every measurement, and report.",
    )
    parser.add_argument("--version", action="version", version=f"trainlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=OneLineParser)
    race.add_parsers(sub)
    targets.add_parsers(sub)
    sweep.add_parsers(sub)
    catalog.add_parsers(sub)
    tuning.add_parsers(sub)
    leaderboard.add_parsers(sub)
    external_validity.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"trainlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("trainlab: interrupted; finished trials are kept in the store", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
