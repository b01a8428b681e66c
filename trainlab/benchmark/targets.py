"""Target setting and baseline learning-rate tuning (AlgoPerf's target-setting protocol, CPU-sized).

Phase 1 sets each workload's validation target: AdamW with warm-up + cosine is tuned over a grid of
learning rates at the workload's target-setting budget (`Workload.target_budget()`: 3/4 of the race
budget unless the workload says otherwise), the best learning rate is re-run on fresh seeds, and the
target is the median of their best validation metrics. Races then get the full budget (4/3 of the
target-setting budget, as AlgoPerf v0.5 did; 8/3 on text_lm, where SGD needs twice AdamW's steps),
so every tuned baseline reaches the target.

Phase 2 tunes the learning rate (and only the learning rate) of each race baseline per workload at
the full budget: the grid is the baseline's default lr times `multipliers`; the winner is the lr that
reaches the new target in the fewest steps (steps, not seconds, so machine load cannot sway it).
Tuning uses seeds >= 100 so that races, which default to seed 0, never evaluate on a tuning seed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from trainlab.algorithms import make_algorithm
from trainlab.benchmark.runner import run_trial
from trainlab.benchmark.trial_options import DEFAULT, TrialOptions
from trainlab.workloads import Workload

TUNING_SEED = 1000


@dataclass
class TargetRecord:
    workload: str
    metric: str
    higher_is_better: bool
    budget: int
    race_budget: int
    grid: list[tuple[float, float, float]] = field(default_factory=list)  # lr, best, final
    best_lr: float = math.nan
    reruns: list[tuple[int, float, float]] = field(default_factory=list)  # seed, best, final
    target: float = math.nan


@dataclass
class LrTuningRecord:
    workload: str
    algorithm: str
    rows: list[tuple[float, int | None, float]] = field(default_factory=list)  # lr, steps-to-target, best
    best_lr: float = math.nan


def set_target(
    workload: Workload,
    lrs: list[float],
    seeds: list[int],
    fraction: float | None,
    device: torch.device,
    log: Callable[[str], None] = print,
    options: TrialOptions = DEFAULT,
) -> TargetRecord:
    """`fraction`: target-setting budget as a fraction of the race budget; None: the workload's own.
    `options`: the memory savers and precision every run trains with (a target for that setting)."""
    race_budget = workload.step_budget
    budget = workload.target_budget() if fraction is None else max(1, round(fraction * race_budget))
    record = TargetRecord(workload.name, workload.metric, workload.higher_is_better, budget, race_budget)
    workload.step_budget = record.budget
    try:
        for lr in lrs:
            result = run_trial(workload, make_algorithm("adamw", {"lr": lr}), TUNING_SEED, device, options)
            record.grid.append((lr, result.best_metric, result.final_metric))
            log(f"{workload.name}: adamw lr {lr:g} -> best {result.best_metric:.4f}, final {result.final_metric:.4f}")
        finite = [row for row in record.grid if math.isfinite(row[1])]
        if not finite:
            raise RuntimeError(f"{workload.name}: every learning rate diverged; widen the grid")
        pick = max if workload.higher_is_better else min
        record.best_lr = pick(finite, key=lambda row: row[1])[0]
        for seed in seeds:
            result = run_trial(workload, make_algorithm("adamw", {"lr": record.best_lr}), seed, device, options)
            record.reruns.append((seed, result.best_metric, result.final_metric))
            log(
                f"{workload.name}: adamw lr {record.best_lr:g} seed {seed} -> best {result.best_metric:.4f}, "
                f"final {result.final_metric:.4f}"
            )
        record.target = statistics.median(row[1] for row in record.reruns)
    finally:
        workload.step_budget = race_budget
    return record


def tune_lr(
    workload: Workload,
    algorithm: str,
    multipliers: list[float],
    device: torch.device,
    log: Callable[[str], None] = print,
    options: TrialOptions = DEFAULT,
) -> LrTuningRecord:
    record = LrTuningRecord(workload.name, algorithm)
    base_lr = make_algorithm(algorithm).hparams["lr"]
    for multiplier in multipliers:
        lr = float(f"{base_lr * multiplier:.3g}")
        result = run_trial(workload, make_algorithm(algorithm, {"lr": lr}), TUNING_SEED, device, options)
        record.rows.append((lr, result.steps_to_target, result.best_metric))
        reached = f"step {result.steps_to_target}" if result.reached else "missed"
        log(f"{workload.name}: {algorithm} lr {lr:g} -> target {reached}, best {result.best_metric:.4f}")

    def key(row):
        lr, steps, best = row
        quality = -best if workload.higher_is_better else best
        return (steps is None, steps or 0, quality if math.isfinite(best) else math.inf)

    record.best_lr = min(record.rows, key=key)[0]
    return record


def to_markdown(targets: list[TargetRecord], tuning: list[LrTuningRecord], command: str, environment: str) -> str:
    lines = [
        "# Target-setting record",
        "",
        "Produced by the command below; see `trainlab/benchmark/targets.py` for the protocol.",
        "",
        f"    {command}",
        "",
        f"Environment: {environment}.",
        "",
    ]
    for workload in dict.fromkeys(r.workload for r in tuning):
        if not any(t.workload == workload for t in targets):
            lines += [
                f"## {workload}: baseline learning rates",
                "",
                "| algorithm | lr | steps to target | best |",
                "|---|---|---|---|",
            ]
            lines += _tuning_rows([r for r in tuning if r.workload == workload]) + [""]
    for t in targets:
        arrow = ">=" if t.higher_is_better else "<="
        lines += [
            f"## {t.workload}",
            "",
            f"AdamW + warm-up + cosine, {t.budget} steps (race budget {t.race_budget}), "
            f"seed {TUNING_SEED} for the grid:",
            "",
            "| lr | best validation " + t.metric + " | final |",
            "|---|---|---|",
        ]
        lines += [f"| {lr:g} | {best:.4f} | {final:.4f} |" for lr, best, final in t.grid]
        lines += ["", f"Best lr {t.best_lr:g}, re-run on fresh seeds:", "", "| seed | best | final |", "|---|---|---|"]
        lines += [f"| {seed} | {best:.4f} | {final:.4f} |" for seed, best, final in t.reruns]
        lines += ["", f"**Target: {t.metric} {arrow} {t.target:.4f}** (median of the re-runs)", ""]
        rows = [r for r in tuning if r.workload == t.workload]
        if rows:
            lines += [
                f"Baseline learning rates at the full budget ({t.race_budget} steps), seed {TUNING_SEED}:",
                "",
                "| algorithm | lr | steps to target | best |",
                "|---|---|---|---|",
            ]
            lines += _tuning_rows(rows) + [""]
    return "\n".join(lines) + "\n"


def _tuning_rows(records: list[LrTuningRecord]) -> list[str]:
    lines = []
    for r in records:
        for lr, steps, best in r.rows:
            mark = " **(chosen)**" if lr == r.best_lr else ""
            lines.append(f"| {r.algorithm} | {lr:g}{mark} | {steps if steps else 'missed'} | {best:.4f} |")
    return lines
