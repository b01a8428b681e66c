"""The leaderboard report (`docs/leaderboard/`): written from the two experiments' stored trials.

One table a user reads first (per algorithm: scores, speedup over AdamW, memory, coverage, variants
reached), per-workload detail with intervals, a memory-against-time Pareto plot, the self-tuning
view beside the tuned one, a LaTeX table, and each experiment's full tuning report in a subfolder.
Everything is recomputed from the store, so adding an algorithm and rerunning rescores the table.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from trainlab.algorithms.submission import is_submission
from trainlab.errors import UsageError
from trainlab.reports import verdicts_text
from trainlab.reports.ablation import ablation_section
from trainlab.reports.claims import claim_rows
from trainlab.reports.leaderboard_plot import pareto_plot
from trainlab.reports.scoring_tables import MISS, scoring_table_latex
from trainlab.reports.sensitivity_plot import sensitivity_plot
from trainlab.reports.tuning_report import score_experiment, write_tuning_report
from trainlab.reports.verdicts import fmt_interval, fmt_steps, judge
from trainlab.tuning.outcomes import collect

BASELINE = "adamw"


def _kib(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value / 1024:.1f} KiB" if value < 1024**2 else f"{value / 1024**2:.2f} MiB"


def runs_per_cell(outcomes) -> dict[tuple[str, str], int]:
    """(algorithm, workload) -> how many runs its scored steps rest on (studies x evaluation seeds)."""
    return {
        (a, outcomes.plan.display(w)): sum(len(seeds) for seeds in per_study)
        for a, ws in outcomes.costs["steps"].items()
        for w, per_study in ws.items()
    }


def _cost(value: float, interval: tuple[float, float] | None, unit: str) -> str:
    if not math.isfinite(value):
        return MISS
    fmt = (lambda v: f"{v:.0f}") if unit == "steps" else (lambda v: f"{v:.3g}")
    text = fmt(value)
    if interval is not None:
        low, high = interval
        text += f" [{fmt(low) if math.isfinite(low) else 'inf'}, {fmt(high) if math.isfinite(high) else 'inf'}]"
    return text


def _speedup(entry) -> str:
    if entry is None:
        return "n/a"
    value, used, total = entry
    return (f"{value:.2f}x" if math.isfinite(value) else "–") + f" ({used}/{total})"


def _variants(outcomes) -> dict[str, tuple[int, int]]:
    hits: dict[str, list[bool]] = {}
    for v in outcomes.variants:
        hits.setdefault(v["algorithm"], []).append(v["reached"])
    return {a: (sum(h), len(h)) for a, h in hits.items()}


def state_ratio(mem: dict, a: str, workloads: list[str]) -> float | None:
    """Geometric mean over workloads of the algorithm's peak optimizer state over AdamW's."""
    ratios = [
        mem[(a, w)]["state"] / mem[(BASELINE, w)]["state"]
        for w in workloads
        if mem.get((a, w), {}).get("state") is not None and mem.get((BASELINE, w), {}).get("state")
    ]
    if not ratios or min(ratios) == 0:  # a stateless method: 0 on every workload
        return 0.0 if ratios else None
    return math.exp(statistics.fmean(math.log(r) for r in ratios))


def shown(a: str) -> str:
    """A row's name: an AlgoPerf submission by its folder, marked as one (its own points tuned)."""
    if is_submission(a):
        return f"{Path(a.split(':', 1)[1]).parent.name} (AlgoPerf submission)"
    return a


def summary_table(
    scores: dict, mem: dict, variants: dict[str, tuple[int, int]] | None, workloads: list[str]
) -> list[str]:
    """One row per algorithm, best time score first."""
    time, steps = scores["time"], scores["steps"]
    head = (
        "| algorithm | score (wall clock) | score (steps) | speedup vs adamw (wall clock) | "
        "optimizer state vs adamw (geometric mean, peak) | coverage | "
        + ("variants reached |" if variants is not None else "")
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|" + ("---:|" if variants is not None else "")]
    order = sorted(time.scores, key=lambda a: (-time.scores[a], -steps.scores.get(a, 0.0), a))
    for a in order:
        ratio = state_ratio(mem, a, workloads)
        state = f"{ratio:.2f}x" if ratio is not None else "n/a"
        covs = [mem.get((a, w), {}).get("coverage") for w in workloads]
        covs = [c for c in covs if c is not None]
        known = any((a, w) in mem for w in workloads)
        cover = f"{100 * min(covs):.0f}-{100 * max(covs):.0f} %" if covs else "all (elementwise)" if known else "n/a"
        row = (
            f"| {shown(a)} | {time.scores[a]:.3f} | {steps.scores.get(a, math.nan):.3f} | "
            f"{_speedup(time.speedups.get(a))} | {state} | {cover} |"
        )
        if variants is not None:
            got = variants.get(a)
            row += f" {got[0]}/{got[1]} |" if got else " n/a |"
        lines.append(row)
    return lines


PENDING = "pending"  # a cell whose runs have not all finished (scored as a miss until they do)


def compact_table(
    tuned: dict,
    self_scores: dict | None,
    mem: dict,
    variants: dict[str, tuple[int, int]],
    workloads: list[str],
    pending: set[tuple[str, str]] = frozenset(),
    verdicts=None,
) -> list[str]:
    """The README's table: per algorithm, held-out steps to target per workload (with `verdicts`:
    the median over every held-out run and its coverage-checked 95 % interval; without, AlgoPerf's
    median of study medians and a bootstrap interval), the scores, speedup and memory against
    AdamW, variants reached and the untuned score; ordered by the steps score, which machine load
    cannot move."""
    steps, time = tuned["steps"], tuned["time"]

    def cell(a: str, w: str) -> str:
        if (a, w) in pending:
            return PENDING
        if verdicts is None or (a, w) not in verdicts.medians:
            return _cost(steps.costs[a][w], steps.intervals[a][w], "steps")
        return f"{fmt_steps(verdicts.medians[(a, w)])} {fmt_interval(verdicts.intervals[(a, w)])}"

    lines = [
        "| algorithm | " + " | ".join(f"{w} steps" for w in workloads) + " | score (steps) | score (wall clock) "
        "| speedup vs adamw (steps) | state vs adamw (geometric mean, peak) | variants reached "
        "| untuned score (steps) |",
        "|---|" + "---:|" * (len(workloads) + 6),
    ]
    for a in sorted(steps.scores, key=lambda a: (-steps.scores[a], -time.scores.get(a, 0.0), a)):
        cells = [cell(a, w) for w in workloads]
        ratio = state_ratio(mem, a, workloads)
        got = variants.get(a)
        untuned = self_scores["steps"].scores.get(a) if self_scores else None
        lines.append(
            f"| {shown(a)} | " + " | ".join(cells) + f" | {steps.scores[a]:.3f} | "
            f"{time.scores.get(a, math.nan):.3f} | {_speedup(steps.speedups.get(a))} | "
            + (f"{ratio:.2f}x" if ratio is not None else "n/a")
            + " | "
            + (f"{got[0]}/{got[1]}" if got else "n/a")
            + " | "
            + (f"{untuned:.3f}" if untuned is not None else "n/a")
            + " |"
        )
    return lines


def workload_table(
    scores: dict, mem: dict, workloads: list[str], pending: set[tuple[str, str]] = frozenset()
) -> list[str]:
    time, steps = scores["time"], scores["steps"]
    lines = [
        "| workload | algorithm | wall-clock time to target (s) [95 %] | steps to target [95 %] | "
        "optimizer state | peak memory | coverage |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for w in workloads:
        order = sorted(time.costs, key=lambda a: (steps.costs[a].get(w, math.inf), a))
        for a in order:
            m = mem.get((a, w), {})
            cov = m.get("coverage")
            if (a, w) in pending:
                lines.append(
                    f"| {w} | {shown(a)} | {PENDING} | {PENDING} | {_kib(m.get('state'))} | "
                    f"{_kib(m.get('peak'))} | {'--' if cov is None else f'{100 * cov:.0f} %'} |"
                )
                continue
            lines.append(
                f"| {w} | {shown(a)} | {_cost(time.costs[a][w], time.intervals[a][w], 's')} | "
                f"{_cost(steps.costs[a][w], steps.intervals[a][w], 'steps')} | "
                f"{_kib(m.get('state'))} | {_kib(m.get('peak'))} | "
                f"{'--' if cov is None else f'{100 * cov:.0f} %'} |"
            )
    return lines


def write_leaderboard(
    storage, tuned, self_tuning, out: str, store: str | None = None, command: str = "make leaderboard"
) -> Path:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    views = _views(storage, tuned, self_tuning, out_dir)
    workloads = [tuned.display(w) for w in tuned.workloads]
    if views["tuned"] is None:
        raise UsageError("the store has no leaderboard experiment yet: run `trainlab leaderboard` first")
    t_out, t_scores, t_mem = views["tuned"]
    s_out, s_scores, s_mem = views["self"] or (None, None, None)
    plot = pareto_plot(t_scores["steps"].costs, t_mem, workloads, out_dir / "pareto.png", baseline=BASELINE)

    lines = _intro(tuned, self_tuning, store, command) + _incomplete(t_out, s_out)
    lines += ["## Tuned", ""] + summary_table(t_scores, t_mem, _variants(t_out), workloads) + [""]
    lines += [
        f"![memory against steps to target]({plot.name})",
        "",
        "Optimizer state (relative to AdamW's) against held-out steps to target (median over "
        "studies and seeds); lower left is better; the dashed line is the Pareto front (nothing "
        "is both smaller and faster); methods that missed are named in each panel.",
        "",
    ]
    lines += ["### Per workload", ""] + workload_table(t_scores, t_mem, workloads, t_out.incomplete) + [""]
    verdicts = judge(t_out)
    lines += (
        [
            "## The papers' claims",
            "",
            "Read off the tuned board (`trainlab.reports.claims`), each at the size the paper claims: "
            "A's held-out steps multiplied by the claimed factor against B's on the same seeds, an exact "
            "sign test per workload, Holm's correction over every claim and workload.",
            "",
        ]
        + claim_rows(verdicts, t_mem, t_out.best)
        + [""]
    )
    lines += ablation_section(verdicts, t_mem)
    lines += verdict_section(verdicts, t_out, t_scores, s_scores, t_mem, workloads, out_dir)
    lines += ["## Self-tuning (workload-agnostic defaults, no tuning)", ""]
    if s_scores is None:
        lines += ["Not run yet: `trainlab leaderboard --only self` runs it.", ""]
    else:
        lines += summary_table(s_scores, s_mem, None, workloads) + [""]
        lines += ["### Per workload", ""] + workload_table(s_scores, s_mem, workloads, s_out.incomplete) + [""]
    lines += [
        "Full reports: [tuned](tuned/report.md) (chosen configurations, tuning curves, variants), "
        "[self-tuning](self/report.md). `leaderboard.tex`: the tuned time table as LaTeX; "
        "`leaderboard.json`: every number here.",
        "",
    ]
    _write_tables(
        out_dir,
        t_scores,
        s_scores,
        t_mem,
        compact_table(t_scores, s_scores, t_mem, _variants(t_out), workloads, t_out.incomplete, verdicts),
    )
    plans = [tuned] + ([self_tuning] if views["self"] is not None else [])
    hours = trial_hours(storage, plans)
    with (out_dir / "notes.md").open("a") as notes:
        notes.write(f"\nCost: {hours:.1f} trial-process hours in all (one CPU thread each), summed from the store.\n")
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def _views(storage, tuned, self_tuning, out_dir: Path) -> dict:
    """Each begun experiment's outcomes, its scores by time and by steps, and its memory; None for
    one not begun (every cell reads as not yet run). Writes each one's full report beside."""
    from trainlab.tuning.experiment import list_experiments

    started = set(list_experiments(storage))
    views: dict = {}
    for key, plan in (("tuned", tuned), ("self", self_tuning)):
        if plan.name not in started:
            views[key] = None
            continue
        outcomes = collect(storage, plan)
        baseline = BASELINE if BASELINE in plan.algorithms else None
        write_tuning_report(outcomes, out_dir / key, baseline, None)
        scores = {by: score_experiment(outcomes, by, baseline) for by in ("time", "steps")}
        views[key] = (outcomes, scores, outcomes.memory)
    return views


def _incomplete(*experiments) -> list[str]:
    lines = []
    for outcomes, label in zip(experiments, ("tuned", "self-tuning"), strict=True):
        if outcomes is not None and outcomes.missing:
            lines += [
                f"**{label}: incomplete** ({len(outcomes.missing)} parts unfinished, scored as "
                "misses until they finish): "
                + "; ".join(outcomes.missing[:6])
                + (" ..." if len(outcomes.missing) > 6 else ""),
                "",
            ]
    return lines


def _intro(tuned, self_tuning, store: str | None, command: str) -> list[str]:
    """The report's opening: what ran, how randomness varies, what the scores and intervals are."""

    def count(n: int, one: str, many: str) -> str:
        return f"{n} {one if n == 1 else many}"

    seeds = "; ".join(f"{w}: {count(self_tuning.studies_for(w), 'seed', 'seeds')}" for w in self_tuning.workloads)
    budget = "; ".join(
        f"{w}: {count(tuned.studies_for(w), 'study', 'studies')} x "
        f"{count(tuned.trials_for(w), 'trial', 'trials')}"
        + (
            f", held-out seed{'s' if len(tuned.eval_seeds_for(w)) > 1 else ''} "
            f"{','.join(map(str, tuned.eval_seeds_for(w)))}"
        )
        + ("" if tuned.variants_for(w) else ", no variant runs")
        for w in tuned.workloads
    )
    return [
        "# The trainlab leaderboard",
        "",
        f"Every registered algorithm ({len(tuned.algorithms)}) on the default workloads, written by "
        f"`{command}` from the trials in `{store or 'the store'}` (rescore with "
        "`trainlab leaderboard --score-only`).",
        "",
        "**Tuned (external tuning, held-out).** Per algorithm and workload, quasi-random studies "
        f"from its built-in search space ({budget}); each study's best configuration by steps to "
        "target is re-run on the held-out seeds with the target checked on the test split. "
        "**Self-tuning (no tuning).** Every algorithm at its "
        "registered workload-agnostic race defaults, one run per seed "
        f"({seeds}), "
        "scored the same way, at 1x the step budget: AlgoPerf's self-tuning ruleset allows 3x, "
        "but steps to a reached target do not depend on the budget, and 3x would triple the cost "
        "of every run that misses.",
        "",
        "Randomness, varied on purpose and stated: a held-out seed sets the initialisation and the "
        "data order together, the same for every algorithm (paired runs); each study has its own "
        "quasi-random draws (per algorithm and study under protocol v2) and its own tuning seeds.",
        "",
        "Scores: area under the performance profile up to r_max = 4 (1 = fastest everywhere); "
        "intervals in these tables: 95 % bootstrap over studies and seeds (the verdicts below use "
        "intervals whose coverage is checked). Steps are what a busy machine cannot distort; seconds "
        "are wall-clock seconds of training on the machine that ran it, loaded or not.",
        "",
    ]


def _write_tables(out_dir: Path, t_scores, s_scores, t_mem, summary: list[str]) -> None:
    """The machine-readable companions: LaTeX, JSON of every number, the README's summary table."""
    time = t_scores["time"]
    (out_dir / "leaderboard.tex").write_text(
        scoring_table_latex(time.costs, time.intervals, time.scores, time.speedups, unit="s", baseline=time.baseline)
    )
    (out_dir / "leaderboard.json").write_text(
        json.dumps(
            {
                "tuned": {by: s.to_json() for by, s in t_scores.items()},
                "self_tuning": {by: s.to_json() for by, s in (s_scores or {}).items()},
                "memory": {f"{a}/{w}": m for (a, w), m in sorted(t_mem.items())},
            },
            indent=2,
        )
    )
    (out_dir / "summary.md").write_text("\n".join(summary) + "\n")


def verdict_section(v, t_out, t_scores, s_scores, mem, workloads: list[str], out_dir: Path) -> list[str]:
    """Judging protocol v2's section, its sensitivity plots, and `notes.md` (the README's prose)."""
    state = {a: r for a in t_out.plan.algorithms if (r := state_ratio(mem, a, workloads)) is not None}
    untuned = s_scores["steps"].scores if s_scores else {}
    lines = ["## Verdicts", "", "### Where each optimum lies", ""] + verdict_lines_bracket(t_out, workloads, out_dir)
    lines += ["", "### Steps to target, paired against AdamW", ""] + verdicts_text.table_lines(v)
    lines += ["", *verdicts_text.detectable_lines(v), "", "### Speedup over AdamW", ""]
    lines += verdicts_text.speedup_lines(v) + ["", "### The target ladder", ""] + verdicts_text.ladder_lines(v)
    lines += ["### Which optimizer when", ""]
    lines += verdicts_text.which_when(v, state, t_scores["time"].scores, untuned) + [""]
    notes = ["What the board says (every sentence a paired test, Holm-corrected per workload):", ""]
    notes += verdicts_text.notes(v) + ["", *verdicts_text.detectable_lines(v), "", "Which optimizer when:", ""]
    notes += verdicts_text.which_when(v, state, t_scores["time"].scores, untuned)
    (out_dir / "notes.md").write_text("\n".join(notes) + "\n")
    return lines


def trial_hours(storage, plans) -> float:
    """Trial-process hours the experiments' finished trials took (start to completion, each)."""
    from trainlab.tuning.experiment import experiment_trials

    seconds = 0.0
    for plan in plans:
        for t in experiment_trials(storage, plan):
            if t.datetime_start is not None and t.datetime_complete is not None:
                seconds += (t.datetime_complete - t.datetime_start).total_seconds()
    return seconds / 3600


def verdict_lines_bracket(t_out, workloads: list[str], out_dir: Path) -> list[str]:
    lines = verdicts_text.bracket_lines(t_out) + [""]
    for w in workloads:
        plot = sensitivity_plot(t_out.tuning, w, list(t_out.plan.algorithms), out_dir / f"sensitivity_{w}.png")
        lines += [f"![{w}: learning-rate sensitivity]({plot.name})", ""]
    return lines
