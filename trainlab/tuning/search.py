"""Bracketing the learning rate: extend a study's search until its best trial has a worse neighbour
on each side, then refine inside the bracket (judging protocol v2).

Why: five quasi-random draws from a fixed range leave the optimum outside the range whenever the
range was guessed wrong, and a best trial at the range's edge says nothing about what lies beyond
it. After a study's quasi-random draws, its best trial (fewest steps to the target; misses ranked by
their distance to it; divergences and failures last) is *bracketed* on a side when some trial at a
learning rate on that side is strictly worse. While a side is not bracketed, the search tries the
best configuration with the learning rate moved `factor` beyond the furthest trial on that side that
is not worse (at most `max_extensions` times per side: a cell can stay unbracketed, and the report
says so). Once both sides are bracketed, one refinement round tries the geometric midpoints between
the best and its nearest neighbours. Only the learning rate moves; every other value is the best
trial's (a coordinate step).

Everything here is a pure function of the study's finished trials, so a coordinator that restarts
after a crash computes the same next draws and queues exactly what is missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

LR = "lr"
EXTEND_LOW, EXTEND_HIGH, REFINE = "extend-low", "extend-high", "refine"
PHASES = (EXTEND_LOW, EXTEND_HIGH, REFINE)
# refine only where the bracket is wider than this ratio (a midpoint closer than ~10 % to a tried
# value measures noise, not the curve)
MIN_REFINE_RATIO = 1.2


@dataclass(frozen=True)
class SearchRule:
    """The plan's `search` settings; `{}` (old plans, races) means no search beyond the draws."""

    factor: float = 3.0
    max_extensions: int = 3
    refine: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchRule | None:
        if not data:
            return None
        return cls(
            factor=float(data.get("factor", 3.0)),
            max_extensions=int(data.get("max_extensions", 3)),
            refine=bool(data.get("refine", True)),
        )


@dataclass(frozen=True)
class Point:
    """One finished tuning trial of a study, as the search sees it."""

    draw: int
    lr: float
    rank: tuple  # smaller is better: (0, cost) reached, (1, distance) missed, (2,) diverged or failed
    config: dict[str, Any]
    phase: str | None = None  # None for a quasi-random draw


def rank_of(reached: bool, cost: float, best_metric: float | None, target: float | None, higher: bool) -> tuple:
    """A trial's place in its study: reached (by cost), then missed (by distance to the target),
    then diverged or failed. Misses become a distance, so "missed by 0.1 point" beats "never learned"."""
    if reached and math.isfinite(cost):
        return (0, float(cost))
    if best_metric is None or not math.isfinite(best_metric) or target is None:
        return (2,)
    return (1, float(target - best_metric) if higher else float(best_metric - target))


def best_point(points: list[Point]) -> Point:
    return min(points, key=lambda p: (p.rank, p.draw))


def bracket(points: list[Point]) -> tuple[bool, bool]:
    """Whether the best trial has a strictly worse trial at a smaller and at a larger learning rate."""
    best = best_point(points)
    low = any(p.lr < best.lr and p.rank > best.rank for p in points)
    high = any(p.lr > best.lr and p.rank > best.rank for p in points)
    return low, high


def next_trials(points: list[Point], rule: SearchRule) -> list[tuple[str, dict[str, Any]]]:
    """The (phase, config) pairs to run next, or [] when the study's search is settled."""
    if not points:
        return []
    best = best_point(points)
    low, high = bracket(points)
    tried = {round(math.log(p.lr), 9) for p in points}
    out: list[tuple[str, dict[str, Any]]] = []

    def propose(phase: str, lr: float) -> None:
        if round(math.log(lr), 9) not in tried:
            out.append((phase, {**best.config, LR: lr}))

    count = {phase: sum(p.phase == phase for p in points) for phase in PHASES}
    if not low and count[EXTEND_LOW] < rule.max_extensions:
        # beyond the smallest learning rate that is not worse than the best (ties included)
        edge = min(p.lr for p in points if p.lr <= best.lr)
        propose(EXTEND_LOW, edge / rule.factor)
    if not high and count[EXTEND_HIGH] < rule.max_extensions:
        edge = max(p.lr for p in points if p.lr >= best.lr)
        propose(EXTEND_HIGH, edge * rule.factor)
    if out or not (low and high) or not rule.refine or count[REFINE]:
        return out
    below = max(p.lr for p in points if p.lr < best.lr)
    above = min(p.lr for p in points if p.lr > best.lr)
    for phase, neighbour in ((REFINE, below), (REFINE, above)):
        if max(neighbour, best.lr) / min(neighbour, best.lr) > MIN_REFINE_RATIO:
            propose(phase, math.sqrt(neighbour * best.lr))
    return out


def where_best_lies(points: list[Point]) -> dict[str, Any]:
    """For the report: the best learning rate, the range tried, and whether each side is bracketed."""
    best = best_point(points)
    low, high = bracket(points)
    lrs = [p.lr for p in points]
    return {"lr": best.lr, "low": min(lrs), "high": max(lrs), "bracketed_low": low, "bracketed_high": high}
