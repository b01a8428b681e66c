"""A target ladder: steps to easier targets, so "miss" is not the only thing a slow method can say.

The primary target is the median best of tuned AdamW; a method that misses it by a hair and one
that never learns both read "miss". The ladder adds rungs below it: the metric tuned AdamW's
held-out runs reach at 25, 50 and 75 % of their steps to the target (median over its runs), read off
the stored validation curves. Every run's steps to each rung come from its own curve, so no trial
is rerun. Whether the ranking holds across rungs is AlgoPerf's target-relaxation question, answered
with Kendall's tau-b between each rung's order and the target's.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

FRACTIONS = (0.25, 0.5, 0.75)


def reached(value: float, level: float, higher: bool) -> bool:
    return math.isfinite(value) and (value >= level if higher else value <= level)


def steps_to(curve: Sequence[tuple[int, float]], level: float, higher: bool) -> float:
    """The first evaluated step whose metric meets `level`; inf if none does."""
    for step, metric in curve:
        if metric is not None and reached(float(metric), level, higher):
            return float(step)
    return math.inf


def metric_at(curve: Sequence[tuple[int, float]], step: float) -> float | None:
    """The metric of the last evaluation at or before `step` (None before the first one)."""
    last = None
    for s, metric in curve:
        if s > step:
            break
        last = metric
    return None if last is None else float(last)


def rungs(baseline_runs: list[dict[str, Any]], target: float, higher: bool) -> list[float]:
    """The ladder's levels, easiest first, ending with the target itself (just the target when the
    baseline's runs never reached it)."""
    hits = [r for r in baseline_runs if math.isfinite(r["steps"])]
    if not hits:
        return [target]
    levels = []
    for fraction in FRACTIONS:
        seen = [metric_at(r["curve"], fraction * r["steps"]) for r in hits]
        values = [v for v in seen if v is not None and math.isfinite(v)]
        if values:
            levels.append(statistics.median(values))
    return levels + [target]


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either order counted as neither agreeing nor disagreeing; inf is
    the largest value); NaN when either order is all ties."""
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx = (x[i] > x[j]) - (x[i] < x[j])
            dy = (y[i] > y[j]) - (y[i] < y[j])
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif dx == dy:
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denominator if denominator else math.nan
