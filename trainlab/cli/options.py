"""Parsing of the list- and key=value-shaped options shared by several subcommands."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from trainlab.errors import UsageError

if TYPE_CHECKING:
    from trainlab.benchmark.trial_config import TrialConfig


def split_list(text: str, what: str) -> list[str]:
    # commas inside brackets belong to the item: `adamw[cautious=true,mars=true],lion`
    items = [part.strip() for part in re.split(r",(?![^\[]*\])", text) if part.strip()]
    if not items:
        raise UsageError(f"--{what} is empty: give a comma-separated list")
    duplicates = sorted({i for i in items if items.count(i) > 1})
    if duplicates:
        raise UsageError(f"--{what} names {duplicates[0]!r} twice")
    return items


def parse_seeds(text: str) -> list[int]:
    seeds = []
    for item in split_list(text, "seeds"):
        try:
            seeds.append(int(item))
        except ValueError:
            raise UsageError(f"--seeds: {item!r} is not an integer (e.g. --seeds 0,1,2)") from None
        if seeds[-1] < 0:
            raise UsageError(f"--seeds: {item!r} is negative; seeds are integers >= 0")
    return seeds


def parse_workload_options(items: list[str], workloads: list[str]) -> dict[str, dict[str, Any]]:
    """`NAME.KEY=VALUE` items -> {workload: {key: value}} (values converted by the workload)."""
    out: dict[str, dict[str, Any]] = {w: {} for w in workloads}
    for item in items:
        head, sep, raw = item.partition("=")
        name, dot, key = head.rpartition(".")
        if not sep or not dot or not key:
            raise UsageError(f"bad --workload-option {item!r}: write WORKLOAD.KEY=VALUE, e.g. text_lm.text_file=my.txt")
        if name not in out:
            raise UsageError(
                f"--workload-option {item!r} names workload {name!r}, which is not in this run ({', '.join(workloads)})"
            )
        out[name][key] = raw.strip()  # the workload converts it to the option's declared type
    return out


def parse_trial_config(args) -> "TrialConfig":
    """--compress-activations, --precision, --freeze, --freeze-change -> a `TrialConfig`, with errors
    that name the flag."""
    from trainlab.benchmark.trial_config import PRECISIONS, TrialConfig

    bits: int | Literal["adaptive"] | None = None
    if args.compress_activations is not None:
        allowed: dict[str, int | Literal["adaptive"]] = {"2": 2, "4": 4, "8": 8, "adaptive": "adaptive"}
        text = args.compress_activations.strip().lower()
        if text not in allowed:
            raise UsageError(
                f"--compress-activations must be one of 2, 4, 8, adaptive; got {args.compress_activations!r}"
            )
        bits = allowed[text]
    if args.precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}; got {args.precision!r}")
    if args.freeze_change is not None and not args.freeze_change > 0:
        raise UsageError(f"--freeze-change must be a positive threshold, got {args.freeze_change}")
    rules = tuple(split_list(args.freeze, "freeze")) if args.freeze is not None else ()
    return TrialConfig(bits, args.precision, rules, args.freeze_change)


def search_space_files(items: list[str], algorithms: list[str]) -> dict[str, str]:
    """--search-space [ALG=]FILE items -> {algorithm: file}."""
    files: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            if len(algorithms) != 1:
                raise UsageError(f"--search-space {item!r}: with several algorithms write ALGORITHM=FILE.json")
            name, path = algorithms[0], item
        if name not in algorithms:
            raise UsageError(
                f"--search-space {item!r} names {name!r}, which is not tuned here ({', '.join(algorithms)})"
            )
        files[name] = path
    return files
