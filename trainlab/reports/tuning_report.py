"""`score_experiment` and `write_tuning_report`: AlgoPerf-style scores of a tuning experiment, as
numbers, a Markdown report with PNG plots, and a paste-ready table.

Scoring (`trainlab.scoring`): per workload the median over studies (of the median over evaluation
seeds) of the cost to target, a miss counting as infinity; performance ratios to the best algorithm
per workload; performance profiles up to r_max = 4 and their normalised area (the benchmark score);
geometric-mean speedup over a baseline; bootstrap intervals over seeds and studies.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainlab.reports import tuning_plots
from trainlab.reports.scoring_tables import scoring_table_latex, scoring_table_markdown
from trainlab.scoring import (
    benchmark_score,
    bootstrap_interval,
    geometric_mean_speedup,
    performance_ratios,
    workload_cost,
)
from trainlab.tuning.outcomes import Outcomes

R_MAX = 4.0
UNITS = {"time": "s", "steps": "steps"}


@dataclass
class Score:
    by: str
    costs: dict[str, dict[str, float]]
    intervals: dict[str, dict[str, tuple[float, float]]]
    ratios: dict[str, dict[str, float]]
    scores: dict[str, float]
    speedups: dict[str, tuple[float, int, int]]
    baseline: str

    def table(self) -> str:
        return scoring_table_markdown(
            self.costs, self.intervals, self.scores, self.speedups, unit=UNITS[self.by], baseline=self.baseline
        )

    def to_json(self) -> dict[str, Any]:
        def clean(x):
            if isinstance(x, float):
                return x if math.isfinite(x) else None
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [clean(v) for v in x]
            return x

        return clean(
            {
                "by": self.by,
                "costs": self.costs,
                "intervals": self.intervals,
                "ratios": self.ratios,
                "scores": self.scores,
                "speedups": self.speedups,
                "baseline": self.baseline,
            }
        )


def score_experiment(
    outcomes: Outcomes, by: str = "time", baseline: str | None = None, resamples: int = 2000, seed: int = 0
) -> Score:
    per_study = outcomes.costs[by]
    algorithms = list(per_study)
    baseline = baseline or algorithms[0]
    name = outcomes.plan.display
    costs = {a: {name(w): workload_cost(v) for w, v in ws.items()} for a, ws in per_study.items()}
    intervals = {
        a: {name(w): bootstrap_interval(v, resamples=resamples, seed=seed) for w, v in ws.items()}
        for a, ws in per_study.items()
    }
    ratios = performance_ratios(costs, R_MAX)
    return Score(
        by, costs, intervals, ratios, benchmark_score(ratios, R_MAX), geometric_mean_speedup(costs, baseline), baseline
    )


def _config_text(config: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in config.items())


def write_tuning_report(
    outcomes: Outcomes, out_dir: str | Path, baseline: str | None = None, command: str | None = None
) -> tuple[Path, dict[str, Score]]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scores = {by: score_experiment(outcomes, by, baseline) for by in ("time", "steps")}
    by_time = scores["time"]
    lines = _header_section(outcomes, command)
    lines += [
        "## Scores (time to target)",
        "",
        "Per workload: median over studies of the median over evaluation seeds of training "
        "seconds to the target (95 % bootstrap interval over studies and seeds); `miss` = "
        f"infinity. Score: normalised area under the performance profile up to r_max = {R_MAX:g} "
        f"(1 = fastest on every workload). Speedup: geometric mean over workloads both reached, "
        f"against {by_time.baseline}.",
        "",
        by_time.table(),
        "",
        "## Scores (steps to target)",
        "",
        scores["steps"].table(),
        "",
    ]
    lines += _plots_section(outcomes, by_time, out)
    lines += _chosen_section(outcomes)
    if outcomes.memory:
        lines += _memory_section(outcomes)
    lines += _variants_section(outcomes)
    (out / "scores.tex").write_text(
        scoring_table_latex(
            by_time.costs, by_time.intervals, by_time.scores, by_time.speedups, unit="s", baseline=by_time.baseline
        )
    )
    (out / "scores.json").write_text(json.dumps({by: s.to_json() for by, s in scores.items()}, indent=2))
    lines += ["Files: `scores.json` (every number above), `scores.tex` (the time table as LaTeX).", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path, scores


def _header_section(outcomes: Outcomes, command: str | None) -> list[str]:
    """What was run, under which protocol and options, and how to run it again."""
    plan = outcomes.plan
    protocol = (
        "held-out: each study's best configuration re-run on evaluation seeds "
        f"{', '.join(map(str, plan.eval_seeds))} (never used in tuning), its time to target "
        "measured on the held-out test split"
        if outcomes.protocol == "held-out"
        else "same-split: the best tuning trial's own result (seed and validation split it was "
        "selected on; optimistic, for comparison with common practice)"
    )
    lines = [
        f"# trainlab tuning experiment `{plan.name}`",
        "",
        f"{len(plan.algorithms)} algorithm(s) x {len(plan.workloads)} workload(s); per pair "
        f"{plan.studies} studies x {plan.trials} quasi-random trials{_per_workload_note(plan)} "
        "(scrambled Halton, study K "
        f"seeded {plan.seed}+K) from each algorithm's workload-agnostic search space.",
        "",
        f"Protocol: {protocol}.",
        "",
        f"Every trial trains with: {plan.options().describe()}.",
        "",
    ]
    if command:
        lines += ["Command:", "", f"    {command}", ""]
    if outcomes.missing:
        lines += ["**Incomplete** (scored as misses until they finish): " + "; ".join(outcomes.missing), ""]
    return lines


def _plots_section(outcomes: Outcomes, by_time: Score, out: Path) -> list[str]:
    """The performance profiles, the per-workload times with intervals, and the tuning curves."""
    profile = tuning_plots.performance_profiles_plot(by_time.ratios, out / "performance_profiles.png", R_MAX)
    lines = ["## Performance profiles", "", f"![performance profiles]({profile.name})", ""]
    rows = [
        {
            "workload": w,
            "algorithm": a,
            "cost": c,
            "low": by_time.intervals[a][w][0],
            "high": by_time.intervals[a][w][1],
        }
        for a, ws in by_time.costs.items()
        for w, c in ws.items()
    ]
    bars = tuning_plots.workload_costs_plot(rows, out / "time_to_target.png", unit="s")
    lines += ["## Time to target per workload", "", f"![time to target]({bars.name})", ""]
    curves = tuning_plots.tuning_curves_plot(outcomes.curves, out / "tuning_curves.png")
    return lines + [
        "## Tuning curves",
        "",
        "Best time to target so far against the number of tuning trials, one line per study.",
        "",
        f"![tuning curves]({curves.name})",
        "",
    ]


def _chosen_section(outcomes: Outcomes) -> list[str]:
    """Each study's chosen configuration and the tuning time it took to find it."""
    if not outcomes.best:
        return []
    lines = [
        "## Chosen configurations",
        "",
        "| algorithm | workload | study | draw | tuning time (s) | configuration |",
        "|---|---|---|---|---|---|",
    ]
    for b in outcomes.best:
        t = b["tuning_time"]
        shown = f"{t:.2f}" if math.isfinite(t) else "miss"
        cells = (b["algorithm"], b["workload"], b["study"], b["draw"], shown, _config_text(b["config"]))
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return lines + [""]


def _variants_section(outcomes: Outcomes) -> list[str]:
    """Does each study's best configuration, unchanged, still reach a variant's own target?"""
    if not outcomes.variants:
        return []
    lines = [
        "## Robustness on workload variants",
        "",
        "Each study's best configuration, unchanged, on the workload's variants (one "
        "evaluation seed): does it still reach the variant's own target?",
        "",
        "| algorithm | workload | variant | reached (studies) |",
        "|---|---|---|---|",
    ]
    groups: dict[tuple, list[bool]] = {}
    for v in outcomes.variants:
        groups.setdefault((v["algorithm"], v["workload"], v["variant"]), []).append(v["reached"])
    for (a, w, v), hits in sorted(groups.items()):
        lines.append(f"| {a} | {w} | {v} | {sum(hits)}/{len(hits)} |")
    return lines + [""]


def _bytes(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value / 1024:.1f} KiB" if value < 1024**2 else f"{value / 1024**2:.2f} MiB"


def _memory_section(outcomes: Outcomes) -> list[str]:
    lines = [
        "## Memory",
        "",
        "Median over each pair's completed runs (tuning and evaluation): optimizer state, the "
        "activations saved for backward (measured by saved-tensor hooks: the compressed bytes when "
        "activations are compressed), and peak memory (CUDA's peak allocation, elsewhere the sum of "
        "parameters, gradients, state and saved activations).",
        "",
        "| algorithm | workload | optimizer state | saved activations | peak memory |",
        "|---|---|---:|---:|---:|",
    ]
    for (algorithm, workload), m in sorted(outcomes.memory.items()):
        lines.append(
            f"| {algorithm} | {workload} | {_bytes(m['state'])} | {_bytes(m['saved_activations'])} "
            f"| {_bytes(m['peak'])} |"
        )
    return lines + [""]


def _per_workload_note(plan) -> str:
    if not plan.per_workload:
        return ""
    return (
        " ("
        + "; ".join(f"{plan.display(w)}: {plan.studies_for(w)} x {plan.trials_for(w)}" for w in plan.per_workload)
        + ")"
    )
