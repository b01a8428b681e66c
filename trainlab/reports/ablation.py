"""The modifier and low-precision ablation, generated from the leaderboard: every variant on the
board (`lion[cautious=true]`, `adamw[state_dtype=int8]`, ...) against its own base on the same
held-out seeds, study k beside study k.

Each (variant, workload) is one exact sign test on the paired runs (`scoring.verdicts.paired_test`);
the family is every variant on every workload, corrected with Holm's method. The state column is
the variant's optimizer state over its base's (deterministic bytes, no test needed).
"""

from __future__ import annotations

import math
from typing import Any

from trainlab.algorithms.registry import split_options
from trainlab.scoring.verdicts import holm, paired_test


def variants(algorithms: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(variant, its base, its options) for every bracketed name whose base is also on the board."""
    out = []
    for name in algorithms:
        base, options = split_options(name)
        if options and base in algorithms:
            out.append((name, base, options))
    return out


def ablation_section(verdicts, memory: dict) -> list[str]:
    """Markdown: a heading, how to read it, and one row per variant and workload; nothing when no
    variant and its base are both on the board."""
    pairs = variants(verdicts.algorithms)
    tests = {}
    for variant, base, _ in pairs:
        for w in verdicts.workloads:
            a, b = verdicts.cells.get((variant, w)), verdicts.cells.get((base, w))
            if a and b:
                tests[(variant, w)] = paired_test(_ranks(a), _ranks(b))
    if not tests:
        return []
    significant = holm({key: t.p for key, t in tests.items()})
    lines = [
        "## Modifiers and low precision, each against its base",
        "",
        "Every variant on the board against its own base on the same held-out seeds (paired, study k "
        "beside study k): held-out steps to the target (medians), wins-losses of the variant, and the "
        "verdict of an exact sign test with Holm's correction over every row. State: the variant's "
        "optimizer state over its base's.",
        "",
        "| variant | base | workload | steps: variant vs base | wins-losses | verdict | state vs base |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant, base, _ in pairs:
        for w in verdicts.workloads:
            t = tests.get((variant, w))
            if t is None:
                continue
            if significant[(variant, w)]:
                verdict = "fewer steps" if t.wins > t.losses else "more steps"
            else:
                verdict = "not separable"
            mine, theirs = verdicts.medians.get((variant, w), math.inf), verdicts.medians.get((base, w), math.inf)
            lines.append(
                f"| {variant} | {base} | {w} | {_steps(mine)} vs {_steps(theirs)} | {t.wins}-{t.losses} | "
                f"{verdict} | {_state_ratio(memory, variant, base, w)} |"
            )
    return lines + [""]


def _ranks(studies: list[list[dict[str, Any]]]) -> list[list[tuple]]:
    return [[tuple(r["rank"]) for r in runs] for runs in studies]


def _steps(value: float) -> str:
    return f"{value:.0f}" if math.isfinite(value) else "miss"


def _state_ratio(memory: dict, variant: str, base: str, workload: str) -> str:
    mine, theirs = memory.get((variant, workload), {}).get("state"), memory.get((base, workload), {}).get("state")
    return f"{mine / theirs:.2f}x" if mine is not None and theirs else "n/a"
