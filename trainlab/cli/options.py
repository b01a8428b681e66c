"""Parsing of the list- and key=value-shaped options shared by several subcommands."""

from __future__ import annotations

import re
from typing import Any

from trainlab.benchmark.trial_options import TrialOptions
from trainlab.errors import UsageError
from trainlab.utils.named_items import named_items


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
    raw = named_items(items, workloads, "--workload-option", "workload", "text_lm.text_file=my.txt")
    return {name: {key: text.strip() for key, text in values.items()} for name, values in raw.items()}


def trial_options(args, **run: Any) -> TrialOptions:
    """A subcommand's `TrialOptions`: the memory savers of `parents.trial_config()`, the data-parallel
    settings of `parents.data_parallel()` where it takes them, and `run` (its own: stop_at_target,
    continual, ...). Only the text is parsed here; `TrialOptions` checks every value, once."""
    bits: int | str | None = None
    if args.compress_activations is not None:
        text = args.compress_activations.strip().lower()
        if text not in ("2", "4", "8", "adaptive"):
            raise UsageError(
                f"--compress-activations must be one of 2, 4, 8, adaptive; got {args.compress_activations!r}"
            )
        bits = text if text == "adaptive" else int(text)
    rules = tuple(split_list(args.freeze, "freeze")) if args.freeze is not None else ()
    parallel = {k: getattr(args, k) for k in ("nproc", "strategy", "trial_timeout") if hasattr(args, k)}
    return TrialOptions(
        compress_activations=bits,  # type: ignore[arg-type]
        precision=args.precision,
        freeze=rules,
        freeze_change=args.freeze_change,
        **parallel,
        **run,
    )


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
