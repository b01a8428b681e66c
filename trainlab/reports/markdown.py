"""`write_report`: report.md + PNG plots for one race of a results store."""

from __future__ import annotations

import math
import re
from pathlib import Path

from trainlab.memory.names import saver_labels
from trainlab.reports import plots
from trainlab.reports.summary import SummaryRow, format_bytes, format_table, summarize
from trainlab.store import ResultsStore
from trainlab.store.results import FINISHED


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_report(store: ResultsStore, out_dir: str | Path, race_id: int | None = None) -> Path:
    race = store.race(race_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trials = store.trials(race["id"])
    finished = [t for t in trials if t["status"] in FINISHED]
    rows = summarize(finished)
    env = race["environment"]

    lines = [
        f"# trainlab race {race['id']}",
        "",
        f"Run {race['created_at']} on {env.get('device')} ({env.get('num_threads')} threads), "
        f"trainlab {env.get('trainlab_version')}, torch {env.get('torch_version')}, "
        f"commit {env.get('git_commit') or 'unknown'}.",
        "",
        "Time-to-target is training time only (evaluation excluded) at the first evaluation that "
        "meets the validation target; the median over seeds, a miss counting as infinity.",
        "",
        "Saved activations: peak bytes the tensors autograd keeps for backward hold during a step "
        "(measured with saved-tensor hooks). Peak memory: on CUDA the allocator's peak; elsewhere "
        "parameters + gradients + optimizer state + saved activations.",
        "",
    ]
    savers = "; ".join(saver_labels(race["config"]))
    if savers:
        lines += [f"Memory savers in this race: {savers}.", ""]
    lines += ["## Summary", "", format_table(rows), ""]
    unfinished = [t for t in trials if t["status"] not in FINISHED]
    if unfinished:
        lines += [
            "Trials that did not finish: "
            + ", ".join(f"{t['workload']}/{t['algorithm']}/seed {t['seed']} ({t['status']})" for t in unfinished),
            "",
        ]

    lines += _per_rank_section(finished)
    lines += _stability_section(finished, race["config"].get("continual"))
    if race["config"].get("predict"):
        lines += _prediction_section(store, finished)
    lines += _plots_section(store, rows, finished, out)
    lines += _schedule_section(race, out)
    lines += _hyperparameters_section(race)
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return report


def _plots_section(store: ResultsStore, rows: list[SummaryRow], finished: list[dict], out: Path) -> list[str]:
    """Time to target, memory against time, and each workload's validation curves."""
    lines: list[str] = []
    if rows:
        bars = plots.time_to_target_bars(rows, out / "time_to_target.png")
        lines += ["## Time to target", "", f"![time to target]({bars.name})", ""]
        memory = plots.memory_vs_time(rows, out / "memory_vs_time.png")
        lines += [
            "## Memory vs time to target",
            "",
            "One point per algorithm (and memory options); hollow markers at the top missed the "
            "target; the dashed step line is the Pareto front (nothing else is both smaller and "
            "faster).",
            "",
            f"![memory vs time to target]({memory.name})",
            "",
        ]
    lines += ["## Validation metric vs training time", ""]
    for workload in sorted({t["workload"] for t in finished}):
        items = [t for t in finished if t["workload"] == workload]
        curves = []
        for trial in items:
            evals = store.evals(trial["id"])
            curves.append(
                {
                    "algorithm": trial["algorithm"],
                    "seconds": [e["train_seconds"] for e in evals],
                    "metric": [e["metric"] for e in evals],
                    "time_to_target": trial["time_to_target"],
                }
            )
        path = plots.metric_vs_time(
            workload,
            curves,
            items[0]["target"],
            items[0]["metric_name"],
            bool(items[0]["higher_is_better"]),
            out / f"curve_{_slug(workload)}.png",
        )
        lines += [f"### {workload}", "", f"![{workload}]({path.name})", ""]
    return lines


def _hyperparameters_section(race: dict) -> list[str]:
    lines = ["## Hyperparameters", "", "| algorithm | workload | hyperparameters | from |", "|---|---|---|---|"]
    for algorithm in race["config"].get("algorithms", []):
        hp = ", ".join(f"{k}={_short(v)}" for k, v in sorted(algorithm["hparams"].items()))
        lines.append(
            f"| {algorithm['name']} | {algorithm.get('workload', 'all')} | {hp} | {algorithm.get('source') or '--'} |"
        )
    return lines + [""]


def _per_rank_section(trials: list[dict]) -> list[str]:
    """Data-parallel trials: each rank's optimizer state (matrix methods keep each matrix's state on
    its owner rank only, so the ranks differ; the summary's state column is the largest rank's)."""
    rows = [t for t in trials if t["hparams"].get("state_bytes_per_rank")]
    if not rows:
        return []
    lines = [
        "## Optimizer state per rank",
        "",
        "Data-parallel trials: each rank's optimizer state at the end; the summary's state column is "
        "the largest rank's.",
        "",
        "| workload | algorithm | seed | strategy | state per rank |",
        "|---|---|---|---|---|",
    ]
    for t in rows:
        per_rank = " / ".join(format_bytes(b) for b in t["hparams"]["state_bytes_per_rank"])
        strategy = t["hparams"].get("strategy", "?")
        lines.append(f"| {t['workload']} | {t['algorithm']} | {t['seed']} | {strategy} | {per_rank} |")
    return lines + [""]


def _stability_section(trials: list[dict], continual: dict | None = None) -> list[str]:
    """Per trial that evaluated after first meeting its target: the worst metric from then on and
    how far it fell short of the target (`trainlab.scoring.stability`); nothing when no trial did
    (every trial stopped at its target, or missed it)."""
    stable = [
        t
        for t in trials
        if t.get("reached")
        and t.get("steps_to_target") is not None
        and t.get("steps")
        and t["steps"] > t["steps_to_target"]
    ]
    if not stable:
        return []
    lines = [
        "## Stability after the target",
        "",
        "From the first evaluation meeting the target to the end of training: the worst validation metric, "
        "and the stability gap, how far it fell short of the target (0: it stayed there; "
        "De Lange et al. 2023 show that checkpoint evaluation hides such drops).",
        "",
    ]
    if continual:
        lines += [
            f"Per-step columns: the same from the continual evaluation, every {continual['every']} step(s) "
            f"on the first {continual['subset']} validation examples, from the step the checkpoint "
            "curve first met the target (a subset's metric is noisier: its gap includes sampling noise).",
            "",
        ]
    lines += [
        "| workload | algorithm | seed | target reached at step | worst after | stability gap |"
        + (" per-step worst after | per-step gap |" if continual else ""),
        "|---|---|---|---:|---:|---:|" + ("---:|---:|" if continual else ""),
    ]
    for t in sorted(stable, key=lambda t: (t["workload"], t["algorithm"], t["seed"])):
        worst, gap = t.get("worst_after_target"), t.get("stability_gap")
        if t["status"] == "diverged":
            worst_text, gap_text = "diverged", "inf"
        elif worst is None:  # stored before the stability columns existed
            worst_text, gap_text = "n/a", "n/a"
        else:
            worst_text, gap_text = f"{worst:.4g}", f"{gap:.4g}"
        row = (
            f"| {t['workload']} | {t['algorithm']} | {t['seed']} | {t['steps_to_target']} | {worst_text} | {gap_text} |"
        )
        if continual:
            fine_worst, fine_gap = t.get("continual_worst_after_target"), t.get("continual_stability_gap")
            row += f" {'n/a' if fine_worst is None else f'{fine_worst:.4g}'} |"
            row += f" {'n/a' if fine_gap is None else f'{fine_gap:.4g}'} |"
        lines.append(row)
    return lines + [""]


def _prediction_section(store: ResultsStore, trials: list[dict]) -> list[str]:
    """Per trial: its first converged learning-curve prediction beside what happened."""
    lines = [
        "## Learning-curve predictions",
        "",
        "The first converged prediction of each trial (`--predict`; `trainlab/scoring/curves.py`), "
        "with its 90 % intervals, beside the outcome.",
        "",
        "| workload | algorithm | seed | predicted at step | target at step [interval] | final metric "
        "[interval] | reached at step | final metric |",
        "|---|---|---|---:|---|---|---:|---:|",
    ]

    def step(value: float) -> str:
        return "never" if not math.isfinite(value) else f"{value:.0f}"

    for t in sorted(trials, key=lambda t: (t["workload"], t["algorithm"], t["seed"])):
        first = next((p for p in store.predictions(t["id"]) if p["converged"]), None)
        if first is None:
            continue
        reached = t["steps_to_target"] if t["reached"] else "missed"
        final = "n/a" if t["final_metric"] is None else f"{t['final_metric']:.4g}"
        lines.append(
            f"| {t['workload']} | {t['algorithm']} | {t['seed']} | {first['step']} | {step(first['target_step'])} "
            f"[{step(first['target_step_low'])}, {step(first['target_step_high'])}] | {first['final']:.4g} "
            f"[{first['final_low']:.4g}, {first['final_high']:.4g}] | {reached} | {final} |"
        )
    return lines + [""] if len(lines) > 6 else []


def _short(value) -> str:
    """Hyperparameter values for the table; long lists (recorded gradient norms) are summarised."""
    if isinstance(value, (list, tuple)) and len(value) > 8:
        return f"<{len(value)} values>"
    return str(value)


def _schedule_section(race: dict, out: Path) -> list[str]:
    """LR multiplier vs step per workload, and for refined schedules the norms they came from."""
    from trainlab.algorithms import AlgorithmSpec
    from trainlab.schedules import build_schedule, refine
    from trainlab.schedules.refined import KIND_NORM

    budgets = {w["name"]: w["step_budget"] for w in race["config"].get("workloads", [])}
    lines = ["## Learning-rate schedules", ""]
    by_workload: dict[str, dict[str, list[float]]] = {}
    for entry in race["config"].get("algorithms", []):
        workload = entry.get("workload")
        if workload not in budgets:
            continue
        spec = AlgorithmSpec(entry["name"], entry["optimizer"], entry["schedule"], entry["hparams"])
        try:
            schedule = build_schedule(spec.schedule, budgets[workload], spec.schedule_hparams())
        except (KeyError, ValueError):
            continue
        by_workload.setdefault(workload, {})[spec.name] = [schedule(t) for t in range(budgets[workload])]
        norms = entry["hparams"].get("grad_norms")
        if norms:
            kind = entry["hparams"].get("refine_kind", "adam")
            refined = refine(norms, kind, entry["hparams"].get("refine_tau", 0.1)).tolist()
            path = plots.refinement(
                workload, norms, refined, KIND_NORM[kind].upper(), out / f"refinement_{_slug(workload)}.png"
            )
            lines += [f"![{workload} refinement]({path.name})", ""]
    for workload, schedules in sorted(by_workload.items()):
        path = plots.lr_schedules(workload, schedules, out / f"schedules_{_slug(workload)}.png")
        lines += [f"![{workload} schedules]({path.name})", ""]
    return lines if len(lines) > 2 else []
