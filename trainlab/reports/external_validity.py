"""The external-validity report (`trainlab external-validity`): trainlab's benchmark score of each
published AlgoPerf v0.5 submission beside its published score, rank agreement with intervals, a
plot, and scores.json. Everything here is read from the store; nothing trains."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from trainlab.reports.external_validity_plot import plot, ranks
from trainlab.reports.external_validity_points import learning_rates, lr_facts, points_table
from trainlab.scoring.rank_agreement import agreement, bootstrap_agreement, scores_from_costs
from trainlab.tuning.external_validity import (
    EVAL_SEEDS,
    NAME,
    NOT_RUNNABLE,
    NOT_RUNNABLE_DETAIL,
    PUBLISHED,
    TRIALS,
    folder_of,
)

COMMAND = "trainlab external-validity"
SEED = 0  # the bootstrap's: the report regenerates byte for byte


def summarise(storage, plan) -> dict[str, Any]:
    """Per submission folder: its held-out steps per finished workload, its chosen point, its score."""
    from trainlab.tuning.experiment import experiment_trials
    from trainlab.tuning.outcomes import collect

    outcomes = collect(storage, plan)
    folders = {a: folder_of(a) for a in plan.algorithms}
    done = [w for w in plan.workloads if not any((a, plan.display(w)) in outcomes.incomplete for a in plan.algorithms)]
    costs = {folders[a]: {w: outcomes.costs["steps"][a][w][0] for w in done} for a in plan.algorithms}
    chosen = {(folders[b["algorithm"]], b["workload"]): b for b in outcomes.best}
    metrics: dict[tuple[str, str], list[float]] = {}
    for run in outcomes.runs:  # held-out runs: the best metric each reached (how far a miss fell short)
        if run["best_metric"] is not None:
            metrics.setdefault((folders[run["algorithm"]], run["workload"]), []).append(run["best_metric"])
    tuning = {(folders[r["algorithm"]], r["workload"], r["draw"]): r for r in outcomes.tuning}
    seconds = [t.duration.total_seconds() for t in experiment_trials(storage, plan) if t.duration is not None]
    return {
        "workloads": done,
        "pending": [w for w in plan.workloads if w not in done],
        "options": {w: dict(plan.workload_options.get(w, {})) for w in plan.workloads},
        "missing": outcomes.missing,
        "costs": costs,
        "chosen": chosen,
        "tuning": tuning,
        "spaces": {folders[a]: plan.search_spaces[a] for a in plan.algorithms},
        "metrics": {key: statistics.median(values) for key, values in metrics.items()},
        "scores": scores_from_costs(costs) if done else {},
        "trials": len(seconds),
        "cpu_hours": math.fsum(seconds) / 3600,
    }


def scores_json(
    summary: dict[str, Any], stats: dict[str, Any] | None, checks: dict[str, Any] | None = None
) -> dict[str, Any]:
    scores: dict[str, float | None] = {f: summary["scores"].get(f) for f in PUBLISHED}
    reasons = {f: f"not runnable on CPU: {NOT_RUNNABLE_DETAIL[f]}" for f in PUBLISHED if f in NOT_RUNNABLE}
    reasons |= {f: "not finished" for f, s in scores.items() if s is None and f not in reasons}
    return {
        "what": "trainlab benchmark score (steps, r_max 4, held-out seeds 100-104) per AlgoPerf v0.5 submission",
        "workloads": summary["workloads"],
        "scores": scores,
        "reasons": reasons,
        "published_algoperf_v05": {f: s for f, (_, s) in PUBLISHED.items()},
        "agreement": stats,
        "held_out": {
            f: {w: _held_out(c) for w, c in per_workload.items()} for f, per_workload in summary["costs"].items()
        },
        "workload_facts": {w: _workload_facts(w, summary["options"][w]) for w in summary["workloads"]},
        "held_out_seeds": list(EVAL_SEEDS),
        "trials_per_submission_and_workload": TRIALS,
        "learning_rates": lr_facts(summary),
        "cost": {"trials": summary["trials"], "cpu_hours": round(summary["cpu_hours"], 3)},
        "horizon_checks": checks or {},
    }


def _held_out(costs: list[float]) -> dict[str, Any]:
    reached = [c for c in costs if math.isfinite(c)]
    median = statistics.median(costs) if len(reached) > len(costs) / 2 else None
    return {"runs": len(costs), "reached": len(reached), "median_steps": median}


def _workload_facts(name: str, options: dict[str, Any]) -> dict[str, Any]:
    from trainlab.workloads import create_workload

    w = create_workload(name, **options)
    size = sum(p.numel() for p in w.init_model().parameters())
    return {"step_budget": w.step_budget, "batch_size": w.batch_size, "parameters": size, "target": w.target}


def compare(summary: dict[str, Any]) -> dict[str, Any] | None:
    """Tau and rho over the scored submissions, exact permutation p-values, seed-bootstrap intervals."""
    ours = summary["scores"]
    if len(ours) < 2:
        return None
    reference = {f: PUBLISHED[f][1] for f in ours}
    stats: dict[str, Any] = dict(agreement(ours, reference))
    stats["bootstrap"] = bootstrap_agreement(summary["costs"], reference, seed=SEED)
    stats["by_workload"] = {}
    for w in summary["workloads"]:  # each workload scored alone: which one carries the ranking
        alone = scores_from_costs({f: {w: c[w]} for f, c in summary["costs"].items()})
        stats["by_workload"][w] = agreement(alone, reference)
    return stats


def write_report(storage, plan, out: str | Path, store: str) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(storage, plan)
    stats = compare(summary)
    checks = horizon_checks(storage) if plan.name == NAME else {}
    saved = scores_json(summary, stats, checks)
    (out / "scores.json").write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
    if summary["scores"]:
        plot(summary["scores"], out / "ranks.png", stats)
    path = out / "report.md"
    path.write_text("\n".join(markdown(summary, stats, plan, store) + _checks_lines(checks, stats)) + "\n")
    if stats is not None and plan.name == NAME:  # the README's section is the headline experiment's
        from trainlab.reports.external_validity_readme import readme_section

        (out / "README_section.md").write_text(readme_section(json.loads(json.dumps(saved))))
    return path


def horizon_checks(storage) -> dict[str, Any]:
    """The finished horizon checks beside the headline experiment (`--step-budget-factor`): per
    experiment its workload options, trainlab scores, and agreement with the published scores."""
    from trainlab.tuning.experiment import list_experiments, load_plan

    found: dict[str, Any] = {}
    for name in list_experiments(storage):
        if not name.startswith(f"{NAME}-"):
            continue
        plan = load_plan(storage, name)
        summary = summarise(storage, plan)
        if summary["pending"] or len(summary["scores"]) < 2:
            continue
        stats = agreement(summary["scores"], {f: PUBLISHED[f][1] for f in summary["scores"]})
        found[name] = {
            "workload_options": summary["options"],
            "scores": summary["scores"],
            "held_out": {f: {w: _held_out(c) for w, c in ws.items()} for f, ws in summary["costs"].items()},
            **stats,
        }
    return found


def _checks_lines(checks: dict[str, Any], stats: dict[str, Any] | None) -> list[str]:
    if not checks:
        return []
    lines = ["", "## Horizon checks", ""]
    for name, check in checks.items():
        options = "; ".join(f"{w} step budget {o.get('step_budget')}" for w, o in check["workload_options"].items())
        headline = [
            f"{w} alone at its own budget: tau-b {_fmt(stats['by_workload'][w]['kendall_tau'])}"
            for w in check["workload_options"]
            if stats and w in stats.get("by_workload", {})
        ]
        reached = ", ".join(
            f"{PUBLISHED[f][0]} {check['scores'][f]:.3f} ("
            + ", ".join(f"{h['reached']}/{h['runs']}" for h in check["held_out"][f].values())
            + " held-out runs reached)"
            for f in check["scores"]
        )
        lines.append(
            f"- `{name}` ({options}): Kendall's tau-b {_fmt(check['kendall_tau'])} (exact p "
            f"{_fmt(check['tau_permutation_p'])}), Spearman's rho {_fmt(check['spearman_rho'])}, n = {check['n']}"
            + (f"; {'; '.join(headline)}" if headline else "")
            + f". Scores: {reached}."
        )
    return lines


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _steps(costs: list[float]) -> str:
    reached = sum(math.isfinite(c) for c in costs)
    median = statistics.median(costs) if reached > len(costs) / 2 else math.inf
    return f"{median:.0f} ({reached}/{len(costs)})" if math.isfinite(median) else f"miss ({reached}/{len(costs)})"


def markdown(summary: dict[str, Any], stats: dict[str, Any] | None, plan, store: str) -> list[str]:
    lines = [
        "# Does trainlab rank like AlgoPerf? (AlgoPerf v0.5 submissions, external tuning)",
        "",
        f"Generated by `{COMMAND}` from the store `{store}` (rerun the command to resume; "
        f"`{COMMAND} --score-only` rewrites this report). Every published v0.5 PyTorch submission runs "
        "unmodified from `../shared/algoperf_v05/`.",
        "",
        "## Protocol",
        "",
        "- **Search**: each submission's own published `tuning_search_space.json`: all seven are lists "
        f"of 5 points, so each gets the same budget, {plan.trials} trials = its 5 points in published "
        f"order, {plan.studies} study (AlgoPerf v0.5 ran 5 studies of 5; with fixed points further studies "
        "differ only in training seeds, and this CPU does not have the time).",
        "- **Selection**: the point with the fewest steps to the validation target on the tuning seeds "
        "(1,000,000 + draw), else the best validation metric.",
        f"- **Scoring**: that point re-run on held-out seeds {', '.join(map(str, plan.eval_seeds))} (the "
        "same for every submission), target checked on the test split; per workload the median steps "
        "(a miss is infinite), then performance ratios and the area under the profile to r_max = 4, "
        "as trainlab's leaderboard scores. Steps, not seconds: the machine is shared. LAWA's inner "
        "loop draws several batches per update; each batch counts as a step.",
        f"- **Workloads scored**: {_workloads(summary['workloads'], summary['options']) or 'none yet'}"
        + (f"; not finished: {', '.join(summary['pending'])}" if summary["pending"] else "")
        + (f" (this experiment's workload options: {json.dumps(summary['options'])})" if _set(summary) else "")
        + ". text_lm is left out: a trial there costs 20-50x an MNIST-1D trial on this 2-core CPU.",
        f"- **Cost**: {summary['trials']} trials, {summary['cpu_hours']:.2f} CPU-hours (one thread each, "
        "summed trial wall-clock).",
        "",
        "## Side by side",
        "",
    ]
    lines += _table(summary)
    lines += ["", "![trainlab score against AlgoPerf v0.5 score](ranks.png)", ""]
    lines += _agreement_lines(summary, stats)
    lines += _disagreements(summary)
    lines += points_table(summary)
    lines += ["## Not runnable here", ""]
    lines += [f"- **{PUBLISHED[f][0]}** (`{f}`): {NOT_RUNNABLE_DETAIL[f]}" for f in NOT_RUNNABLE]
    return lines


def _set(summary: dict[str, Any]) -> bool:
    return any(summary["options"].values())


def _workloads(names: list[str], options: dict[str, dict[str, Any]]) -> str:
    parts = []
    for name in names:
        w = _workload_facts(name, options[name])
        parts.append(
            f"{name} (target {w['target']:g}, {w['step_budget']} steps, batch {w['batch_size']}, "
            f"{w['parameters']:,} parameters)"
        )
    return ", ".join(parts)


def _table(summary: dict[str, Any]) -> list[str]:
    scores, workloads = summary["scores"], summary["workloads"]
    ours_rank = ranks(scores) if scores else {}
    theirs_rank = ranks({f: PUBLISHED[f][1] for f in scores}) if scores else {}
    head = "| submission | folder | AlgoPerf v0.5 score | AlgoPerf rank | trainlab score | trainlab rank |"
    head += "".join(f" {w}: held-out steps (reached) | median best test accuracy | chosen point |" for w in workloads)
    rows = [head, "|---|---|---:|---:|---:|---:|" + "---:|---:|---:|" * len(workloads)]
    for folder, (name, published) in PUBLISHED.items():
        if folder in NOT_RUNNABLE:
            cells = [
                name,
                f"`{folder}`",
                f"{published:.4f}",
                "excluded",
                f"not runnable on CPU: {NOT_RUNNABLE[folder]}",
            ]
            rows.append("| " + " | ".join(cells + [""] * (1 + 3 * len(workloads))) + " |")
            continue
        if folder not in scores:
            rows.append(f"| {name} | `{folder}` | {published:.4f} | | not finished | |" + " | | |" * len(workloads))
            continue
        cells = [name, f"`{folder}`", f"{published:.4f}", f"{theirs_rank[folder]:g}"]
        cells += [f"{scores[folder]:.3f}", f"{ours_rank[folder]:g}"]
        for w in workloads:
            best = summary["chosen"].get((folder, w))
            metric = summary["metrics"].get((folder, w))
            cells += [_steps(summary["costs"][folder][w]), _fmt(metric, 4), f"point {best['draw']}" if best else ""]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _agreement_lines(summary: dict[str, Any], stats: dict[str, Any] | None) -> list[str]:
    lines = ["## Rank agreement", ""]
    if stats is None:
        return lines + ["Not enough finished submissions to compare yet.", ""]
    boot = stats["bootstrap"]
    n = stats["n"]
    excluded = ", ".join(f"`{f}`" for f in NOT_RUNNABLE)
    lines += [
        f"Over the n = {n} submissions that run here ({excluded} excluded: not runnable on CPU):",
        "",
        "| statistic | value | exact permutation p (two-sided, all n! orderings) | 95 % seed-bootstrap interval |",
        "|---|---:|---:|---:|",
        f"| Kendall's tau-b | {_fmt(stats['kendall_tau'])} | {_fmt(stats['tau_permutation_p'])} | "
        f"{_interval(boot['tau'])} |",
        f"| Spearman's rho | {_fmt(stats['spearman_rho'])} | {_fmt(stats['rho_permutation_p'])} | "
        f"{_interval(boot['rho'])} |",
        "",
        "Each workload scored alone (its own performance profile, not part of the headline):",
        "",
        "| workload | Kendall's tau-b alone | Spearman's rho alone |",
        "|---|---:|---:|",
        *(
            f"| {w} | {_fmt(a['kendall_tau'])} | {_fmt(a['spearman_rho'])} |"
            for w, a in stats.get("by_workload", {}).items()
        ),
        "",
        f"The interval resamples the {len(EVAL_SEEDS)} held-out seeds with replacement, paired across "
        f"submissions and workloads ({boot['resamples']} resamples, "
        f"{boot['undefined']} left out where every trainlab score tied): it says how much trainlab's ranking "
        "moves with its own seeds, taking the published scores as fixed and the chosen points as given. "
        + _resolution(n),
        "",
    ]
    return lines


def _resolution(n: int) -> str:
    """What n items can separate, from the exact null distribution of tau on untied ranks."""
    from trainlab.scoring.rank_agreement import permutation_p

    if n > 9:
        return ""
    pairs = n * (n - 1) // 2
    perfect = permutation_p(range(n), range(n))
    one_off = permutation_p(range(n), [1, 0, *range(2, n)]) if n > 2 else math.nan
    return (
        f"What n = {n} can separate: {pairs} pairs, so tau moves in steps of {2 / pairs:.2f}; a perfect "
        f"agreement has exact p = {perfect:.3f}, one discordant pair (tau = {1 - 2 / pairs:.2f}) "
        f"p = {one_off:.3f}. So n = {n} can tell 'agrees almost perfectly' from chance or from 'reversed', "
        "and nothing finer: two rankings a pair or two apart are not distinguishable."
    )


def _interval(bounds: list[float] | None) -> str:
    return "n/a" if bounds is None else f"[{bounds[0]:.2f}, {bounds[1]:.2f}]"


def _disagreements(summary: dict[str, Any]) -> list[str]:
    scores = summary["scores"]
    lines = ["## Where the rankings disagree", ""]
    if len(scores) < 2:
        return lines + ["Nothing to compare yet.", ""]
    pairs = []
    folders = sorted(scores, key=lambda f: -PUBLISHED[f][1])
    for i, a in enumerate(folders):
        for b in folders[i + 1 :]:  # AlgoPerf ranks a above b
            if scores[a] < scores[b]:
                pairs.append(f"{PUBLISHED[b][0]} above {PUBLISHED[a][0]} ({scores[b]:.3f} vs {scores[a]:.3f})")
            elif scores[a] == scores[b]:
                pairs.append(f"{PUBLISHED[a][0]} and {PUBLISHED[b][0]} tied ({scores[a]:.3f})")
    lines.append(
        "Pairs AlgoPerf orders one way and trainlab the other, or ties: "
        + ("; ".join(pairs) if pairs else "none")
        + f" ({len(pairs)} of {len(folders) * (len(folders) - 1) // 2} pairs)."
    )
    lines += ["", learning_rates(summary)]
    lines += [
        "",
        "What differs between the two benchmarks, whichever way the pairs fall:",
        "",
        "- **Horizon**: AlgoPerf's step budgets run from about 10^4 to 2x10^5 steps; here "
        + " and ".join(
            f"{_workload_facts(w, summary['options'][w])['step_budget']} ({w})" for w in summary["workloads"]
        )
        + ". The published points were chosen for those runs; in a "
        "few hundred steps the peak learning rate and the warm-up fraction decide whether a target is "
        "reached at all (the learning rates above).",
        "- **Batch size and model size**: the NAdamW baseline's own `get_batch_size` answers 32 "
        "(fastmri) to 262,144 (criteo1tb), on models of millions to hundreds of millions of "
        "parameters; here batch 128 on MNIST-1D models of 14k and 79k parameters (the submissions "
        "answer only AlgoPerf's workload names, so trainlab's batch is used).",
        "- **Per-step cost**: AlgoPerf scores wall-clock time on 8xV100, so an update's own cost "
        "counts (LAWA's averaging, Shampoo's preconditioner roots); here steps to the target are "
        "scored, which leaves per-step overhead out, and LAWA's extra batches per update are counted.",
        "- **Field**: AlgoPerf's profiles ran over every v0.5 submission (JAX ones and Shampoo "
        "included) and 8 workloads plus held-out variants; here over the runnable ones and the "
        "MNIST-1D workloads, so every ratio's denominator differs.",
        "",
    ]
    return lines
