"""The leaderboard's verdicts (judging protocol v2), generated from the store: where each optimum
lies, intervals whose coverage is checked, paired comparisons with Holm's correction, the speedup
over AdamW with its interval, the target ladder, and "which optimizer when". Every sentence here is
computed; `notes` is the README's prose block, so no figure in it is typed by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from trainlab.scoring import ladder
from trainlab.scoring.verdicts import (
    Interval,
    Paired,
    detectable_ratio,
    holm,
    median_interval,
    paired_test,
    speedup_interval,
    spread,
)

BASELINE = "adamw"
WITHIN = 1.1  # "within 10 % of AdamW's steps"


@dataclass
class Verdicts:
    workloads: list[str]
    algorithms: list[str]
    cells: dict[tuple[str, str], list[list[dict[str, Any]]]]  # (a, w) -> per study -> per seed run
    intervals: dict[tuple[str, str], Interval] = field(default_factory=dict)
    medians: dict[tuple[str, str], float] = field(default_factory=dict)
    tests: dict[tuple[str, str, str], Paired] = field(default_factory=dict)  # (w, a, b): a against b
    rejected: dict[tuple[str, str, str], bool] = field(default_factory=dict)
    best: dict[str, str] = field(default_factory=dict)  # workload -> lowest median
    detectable: dict[str, float] = field(default_factory=dict)
    speedups: dict[str, tuple[float, float, float, int]] = field(default_factory=dict)
    ladder: dict[str, list[float]] = field(default_factory=dict)
    rung_steps: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    taus: dict[str, list[float]] = field(default_factory=dict)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return (
        ordered[len(ordered) // 2]
        if len(ordered) % 2
        else (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2
    )


def judge(outcomes) -> Verdicts:
    plan = outcomes.plan
    workloads = [plan.display(w) for w in plan.workloads]
    seeds = {plan.display(w): plan.eval_seeds_for(w) or [None] for w in plan.workloads}
    v = Verdicts(workloads, list(plan.algorithms), {})
    for run in outcomes.runs:
        studies = v.cells.setdefault((run["algorithm"], run["workload"]), [])
        while len(studies) <= run["study"]:
            studies.append([])
        studies[run["study"]].append(run)
    for studies in v.cells.values():
        for runs in studies:
            runs.sort(key=lambda r: seeds[r["workload"]].index(r["seed"]) if r["seed"] in seeds[r["workload"]] else 0)
    for (a, w), studies in v.cells.items():
        steps = [[r["steps"] for r in runs] for runs in studies if runs]
        if steps:
            v.intervals[(a, w)] = median_interval(steps)
            v.medians[(a, w)] = _median([s for g in steps for s in g])
    for w in workloads:
        present = [a for a in v.algorithms if (a, w) in v.medians]
        if not present:
            continue
        v.best[w] = min(present, key=lambda a: (v.medians[(a, w)], a))
        rivals = {(w, a, BASELINE) for a in present if a != BASELINE and BASELINE in present}
        rivals |= {(w, v.best[w], a) for a in present if a != v.best[w]}
        for key in sorted(rivals):
            _, a, b = key
            v.tests[key] = paired_test(_ranks(v.cells[(a, w)]), _ranks(v.cells[(b, w)]))
        v.rejected.update(holm({k: t.p for k, t in v.tests.items() if k[0] == w}))
        sigma = spread([[[r["steps"] for r in runs] for runs in v.cells[(a, w)]] for a in present])
        studies = plan.studies_for(_spec(plan, w))
        base = v.medians.get((BASELINE, w), math.nan)
        grid = _grid(outcomes.runs, w)
        if math.isfinite(base) and grid:
            comparisons = max(1, sum(k[0] == w for k in v.tests))
            v.detectable[w] = detectable_ratio(*sigma, studies, len(seeds[w]), grid, base, comparisons)
    for a in v.algorithms:
        pairs = {}
        for w in workloads:
            mine, theirs = v.cells.get((a, w)), v.cells.get((BASELINE, w))
            if mine and theirs:
                pairs[w] = [(x["steps"], y["steps"]) for rx, ry in zip(theirs, mine) for x, y in zip(rx, ry)]
        v.speedups[a] = speedup_interval(pairs)
    _climb(v, outcomes)
    return v


def _spec(plan, display: str) -> str:
    return next(w for w in plan.workloads if plan.display(w) == display)


def _grid(runs: list[dict[str, Any]], workload: str) -> int:
    steps = sorted({s for r in runs if r["workload"] == workload for s, _ in r["curve"]})
    return steps[1] - steps[0] if len(steps) > 1 else 0


def _ranks(studies: list[list[dict[str, Any]]]) -> list[list[tuple]]:
    return [[tuple(r["rank"]) for r in runs] for runs in studies]


def _climb(v: Verdicts, outcomes) -> None:
    """The ladder's rungs per workload and every cell's median steps to each."""
    for w in v.workloads:
        base = [r for r in outcomes.runs if r["workload"] == w and r["algorithm"] == BASELINE]
        some = next((r for r in outcomes.runs if r["workload"] == w), None)
        if not base or some is None:
            continue
        target, higher = _target(outcomes, w)
        v.ladder[w] = ladder.rungs(base, target, higher)
        for a in v.algorithms:
            runs = [r for studies in v.cells.get((a, w), []) for r in studies]
            if runs:
                v.rung_steps[(a, w)] = [
                    _median([ladder.steps_to(r["curve"], level, higher) for r in runs]) for level in v.ladder[w]
                ]
        present = [a for a in v.algorithms if (a, w) in v.rung_steps]
        final = [v.rung_steps[(a, w)][-1] for a in present]
        v.taus[w] = [
            ladder.kendall_tau([v.rung_steps[(a, w)][i] for a in present], final) for i in range(len(v.ladder[w]) - 1)
        ]


def _target(outcomes, workload: str) -> tuple[float, bool]:
    from trainlab.workloads import create_workload

    plan = outcomes.plan
    spec = _spec(plan, workload)
    w = create_workload(spec, **plan.workload_options.get(spec, {}))
    return w.target, w.higher_is_better


def fmt_steps(value: float) -> str:
    return f"{value:.0f}" if math.isfinite(value) else "miss"


def fmt_interval(iv: Interval) -> str:
    if not iv.exact:
        return "not bounded"
    if not math.isfinite(iv.low):
        return "[miss, miss]"
    return f"[{fmt_steps(iv.low)}, {'inf' if not math.isfinite(iv.high) else fmt_steps(iv.high)}]"
