"""Parsing of the list- and key=value-shaped options shared by several subcommands."""

from __future__ import annotations

from typing import Any

from trainlab.errors import UsageError


def split_list(text: str, what: str) -> list[str]:
    items = [part.strip() for part in text.split(",") if part.strip()]
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
            raise UsageError(f"bad --workload-option {item!r}: write WORKLOAD.KEY=VALUE, "
                             "e.g. text_lm.text_file=my.txt")
        if name not in out:
            raise UsageError(f"--workload-option {item!r} names workload {name!r}, which is not in this "
                             f"run ({', '.join(workloads)})")
        out[name][key] = raw.strip()  # the workload converts it to the option's declared type
    return out
