"""The README's "Does trainlab rank like AlgoPerf?" section, drawn from scores.json alone (so every
number in it is one of scores.json's; `tests/test_external_validity.py` regenerates and compares)."""

from __future__ import annotations

from typing import Any

from trainlab.tuning.external_validity import NOT_RUNNABLE, PUBLISHED

REPORT = "docs/external_validity/report.md"


def readme_section(saved: dict[str, Any]) -> str:
    """At most 15 lines: what ran, the side-by-side table, the agreement and what explains it."""
    scores, stats = saved["scores"], saved["agreement"]
    ran = sorted((f for f, s in scores.items() if s is not None), key=lambda f: -PUBLISHED[f][1])
    facts = saved["workload_facts"]
    budgets = " and ".join(
        f"{w} ({facts[w]['step_budget']} steps, batch {facts[w]['batch_size']}, {facts[w]['parameters']:,} parameters)"
        for w in saved["workloads"]
    )
    seeds = saved["held_out_seeds"]
    boot = stats["bootstrap"]
    lines = [
        "## Does trainlab rank like AlgoPerf?",
        "",
        f"The {len(ran)} published AlgoPerf v0.5 PyTorch submissions that run on a CPU, unmodified, each tuned on "
        f"its own published search space ({saved['trials_per_submission_and_workload']} points) and scored by "
        f"trainlab's benchmark score on {budgets}, best "
        f"point re-run on held-out seeds {seeds[0]}-{seeds[-1]} ({saved['cost']['trials']} trials, "
        f"{saved['cost']['cpu_hours']:.2f} CPU-hours; `trainlab external-validity`, [report]({REPORT})):",
        "",
        "| submission | AlgoPerf v0.5 score | trainlab score | held-out runs reaching the target |",
        "|---|---:|---:|---:|",
    ]
    for f in ran:
        held = saved["held_out"][f]
        reached = ", ".join(f"{w} {held[w]['reached']}/{held[w]['runs']}" for w in saved["workloads"])
        lines.append(f"| {PUBLISHED[f][0]} | {PUBLISHED[f][1]:.4f} | {scores[f]:.3f} | {reached} |")
    excluded = " and ".join(f"{PUBLISHED[f][0]} ({PUBLISHED[f][1]:.4f})" for f in NOT_RUNNABLE)
    lines += [
        "",
        f"**Kendall's tau-b = {stats['kendall_tau']:.2f}** (exact permutation p = {stats['tau_permutation_p']:.2f}; "
        f"95 % paired bootstrap over the held-out seeds [{boot['tau'][0]:.2f}, {boot['tau'][1]:.2f}]), Spearman's "
        f"rho = {stats['spearman_rho']:.2f} ([{boot['rho'][0]:.2f}, {boot['rho'][1]:.2f}]), n = {stats['n']}. "
        f"{excluded} are excluded: both hard-code CUDA in their own code (Shampoo even under trainlab's "
        f"data-parallel gloo launch). With n = {stats['n']} only a near-perfect agreement could be told from "
        "chance, and the bootstrap shows trainlab's seeds alone move tau across a wide range.",
        "",
        _why(saved) + _horizon(saved),
    ]
    return "\n".join(lines) + "\n"


def _horizon(saved: dict[str, Any]) -> str:
    """One sentence per finished horizon check (`--step-budget-factor`)."""
    text = ""
    alone = saved["agreement"].get("by_workload", {})
    for check in saved.get("horizon_checks", {}).values():
        for w, options in check["workload_options"].items():
            own = saved["workload_facts"].get(w, {}).get("step_budget")
            every = sum(h[w]["reached"] == h[w]["runs"] for h in check["held_out"].values())
            text += (
                f" Horizon check: on {w} with {options['step_budget']} steps instead of {own}, {every} of "
                f"{check['n']} reach the target in every held-out run, and tau-b = {check['kendall_tau']:.2f} "
                f"(against {alone[w]['kendall_tau']:.2f} for {w} alone at its own budget): the longer horizon "
                + ("raises" if check["kendall_tau"] > alone[w]["kendall_tau"] else "does not raise")
                + " the agreement."
            )
    return text


def _why(saved: dict[str, Any]) -> str:
    lr = saved["learning_rates"]
    text = "What decides the order here is whether a space holds a large learning rate for a short run: "
    if lr["reached_range"]:
        low, high = lr["reached_range"]
        short = [f for f, top in lr["largest_in_space"].items() if top < low]
        text += (
            f"every tuning trial that reached a target ({lr['reached_target']} of {lr['tuning_trials']}) used a "
            "learning rate of "
            f"{low:.1e} to {high:.1e}"
        )
        if short:
            tops = ", ".join(f"{PUBLISHED[f][0]}'s space stops at {lr['largest_in_space'][f]:.2e}" for f in short)
            text += f"; {tops}, so it reached none"
        text += ". "
    return text + (
        "Steps, not seconds, are scored (per-step cost, e.g. LAWA's averaging, does not count), on far "
        "shorter runs and far smaller models than AlgoPerf's: a small CPU benchmark, not a stand-in for AlgoPerf."
    )
