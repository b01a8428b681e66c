"""Read an experiment back from the store as the numbers scoring needs (no Optuna types leak out).

The cost of a run is its time to target (training seconds) or its steps to target, +inf for a miss,
a divergence or a failure. Per (algorithm, workload) and study, the scored costs are:
- held-out protocol: the evaluation runs of the study's best configuration, one per evaluation seed;
- same-split protocol: the best tuning trial's own cost (a list of one).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import TrialState

from trainlab.tuning import search
from trainlab.tuning.experiment import best_trial, cost_of, experiment_trials, result_of, search_points, within_budget
from trainlab.tuning.plan import TuningPlan

COSTS = ("time", "steps")


@dataclass
class Outcomes:
    plan: TuningPlan
    # by -> algorithm -> workload -> per study -> per evaluation seed
    costs: dict[str, dict[str, dict[str, list[list[float]]]]] = field(default_factory=dict)
    curves: list[dict[str, Any]] = field(default_factory=list)  # tuning trials, by time
    best: list[dict[str, Any]] = field(default_factory=list)  # per (algorithm, workload, study)
    variants: list[dict[str, Any]] = field(default_factory=list)  # robustness runs
    missing: list[str] = field(default_factory=list)  # what is not finished yet
    incomplete: set[tuple[str, str]] = field(default_factory=set)  # (algorithm, workload) of those
    counts: dict[str, int] = field(default_factory=dict)
    protocol: str = "held-out"  # how the costs were scored
    # (algorithm, workload) -> median over its completed runs on the workload itself (variants
    # excluded) of "state", "saved_activations", "peak" bytes and "coverage" (None when not measured)
    memory: dict[tuple[str, str], dict[str, float | None]] = field(default_factory=dict)
    # per (algorithm, workload, study): where its best learning rate lies in what was tried
    # (`trainlab.tuning.search.where_best_lies`)
    brackets: list[dict[str, Any]] = field(default_factory=list)
    # every scored run (`_run`): its study, seed, rank in its study's terms and validation curve,
    # for paired comparisons and the target ladder (`trainlab.scoring.verdicts`, `.ladder`)
    runs: list[dict[str, Any]] = field(default_factory=list)
    # every finished tuning trial (`_run` plus its learning rate and phase): the sensitivity plots
    tuning: list[dict[str, Any]] = field(default_factory=list)


def collect(storage, plan: TuningPlan, protocol: str | None = None) -> Outcomes:
    """The experiment's numbers; `protocol` "same-split" scores a held-out experiment's best tuning
    trials themselves instead (to show how much selecting and scoring on the same runs flatters)."""
    protocol = protocol or plan.protocol
    trials = [t for t in experiment_trials(storage, plan) if "kind" in t.user_attrs]
    out = Outcomes(plan, costs={by: {} for by in COSTS}, protocol=protocol)
    out.counts = {s: sum(t.state.name.lower() == s for t in trials) for s in ("waiting", "running", "complete", "fail")}
    by_key: dict[tuple, list] = {}
    for t in trials:
        a = t.user_attrs
        by_key.setdefault((a["kind"], a["algorithm"], a["base_workload"], a["study"]), []).append(t)
    for algorithm in plan.algorithms:
        for workload in plan.workloads:
            for by in COSTS:
                out.costs[by].setdefault(algorithm, {})[workload] = []
            for k in range(plan.studies_for(workload)):
                cell = (algorithm, workload, k)
                best = _tuning(out, cell, by_key.get(("tune", *cell), []))
                if best is None:
                    for by in COSTS:
                        out.costs[by][algorithm][workload].append([math.inf])
                    continue
                _scored(out, cell, best, by_key.get(("eval", *cell), []))
                _variants(out, cell, by_key.get(("variant", *cell), []))
    out.memory = _memory(trials, plan)
    return out


def _tuning(out: Outcomes, cell: tuple[str, str, int], trials: list) -> Any:
    """Record a study's tuning trials (curve, bracket, each trial, its best); returns the best."""
    plan = out.plan
    algorithm, workload, k = cell
    name = plan.display(workload)
    tuning = sorted(within_budget(trials, plan, workload), key=lambda t: t.user_attrs["draw"])
    # one entry per draw: a retried draw has a failed copy and (later) a completed one
    per_draw: dict[int, Any] = {}
    for t in tuning:
        if t.state in (TrialState.COMPLETE, TrialState.FAIL):
            d = t.user_attrs["draw"]
            if d not in per_draw or t.state == TrialState.COMPLETE:
                per_draw[d] = t
    out.curves.append(
        {
            "workload": name,
            "algorithm": algorithm,
            "study": k,
            "costs": [cost_of(per_draw[d], "time") for d in sorted(per_draw)],
        }
    )
    if len(per_draw) < plan.trials_for(workload):
        out.missing.append(
            f"{algorithm} on {name}, study {k}: {len(per_draw)}/{plan.trials_for(workload)} tuning trials"
        )
        out.incomplete.add((algorithm, name))
    for t in per_draw.values():
        extra = {"lr": t.user_attrs["config"].get(search.LR), "phase": t.user_attrs.get("phase")}
        out.tuning.append(_run(t, algorithm, name, k, t.user_attrs["seed"]) | extra | {"draw": t.user_attrs["draw"]})
    points = search_points(tuning)
    if points:
        out.brackets.append({"algorithm": algorithm, "workload": name, "study": k} | search.where_best_lies(points))
    best = best_trial(tuning, plan.select_by)
    if best is not None:
        out.best.append(
            {
                "algorithm": algorithm,
                "workload": name,
                "study": k,
                "draw": best.user_attrs["draw"],
                "config": best.user_attrs["config"],
                "tuning_time": cost_of(best, "time"),
                "tuning_steps": cost_of(best, "steps"),
                "tuning_rank": _rank(best),
            }
        )
    return best


def _scored(out: Outcomes, cell: tuple[str, str, int], best: Any, evals: list) -> None:
    """A study's scored costs: its best tuning trial (same-split) or its held-out runs."""
    plan = out.plan
    algorithm, workload, k = cell
    name = plan.display(workload)
    if out.protocol == "same-split":
        for by in COSTS:
            out.costs[by][algorithm][workload].append([cost_of(best, by)])
        out.runs.append(_run(best, algorithm, name, k, best.user_attrs["seed"]))
        return
    per_seed: dict[int, Any] = {}
    for t in evals:
        if t.user_attrs["draw"] == best.user_attrs["draw"]:
            s = t.user_attrs["seed"]
            if s not in per_seed or t.state == TrialState.COMPLETE:
                per_seed[s] = t
    finished = {s: t for s, t in per_seed.items() if t.state in (TrialState.COMPLETE, TrialState.FAIL)}
    seeds = plan.eval_seeds_for(workload)
    if len(finished) < len(seeds):
        out.missing.append(f"{algorithm} on {name}, study {k}: {len(finished)}/{len(seeds)} evaluation runs")
        out.incomplete.add((algorithm, name))
    for by in COSTS:
        out.costs[by][algorithm][workload].append([cost_of(finished.get(s), by) for s in seeds])
    out.runs += [_run(finished[s], algorithm, name, k, s) for s in seeds if s in finished]


def _variants(out: Outcomes, cell: tuple[str, str, int], trials: list) -> None:
    algorithm, workload, k = cell
    for t in trials:
        if t.state != TrialState.COMPLETE:
            continue
        r = result_of(t)
        out.variants.append(
            {
                "algorithm": algorithm,
                "workload": out.plan.display(workload),
                "study": k,
                "variant": t.user_attrs["workload"],
                "reached": bool(r.get("reached")),
                "best_metric": r.get("best_metric"),
                "target": r.get("target"),
                "time": cost_of(t, "time"),
            }
        )


def _run(trial, algorithm: str, workload: str, study: int, seed: int) -> dict[str, Any]:
    """A finished trial as the verdicts need it (a failed one ranks last and has no curve)."""
    done = trial.state == TrialState.COMPLETE
    r = result_of(trial) if done else {}
    return {
        "algorithm": algorithm,
        "workload": workload,
        "study": study,
        "seed": seed,
        "steps": cost_of(trial, "steps"),
        "seconds": cost_of(trial, "time"),
        "rank": _rank(trial) if done else (2,),
        "best_metric": r.get("best_metric"),
        "status": r.get("status", "failed"),
        "curve": [(int(step), metric) for step, _, metric in trial.user_attrs.get("evals", [])] if done else [],
    }


def _rank(trial) -> tuple:
    r = result_of(trial)
    return search.rank_of(
        bool(r.get("reached")),
        cost_of(trial, "steps"),
        r.get("best_metric"),
        r.get("target"),
        bool(r.get("higher_is_better")),
    )


MEMORY_FIELDS = {
    "state": "state_bytes",
    "saved_activations": "saved_activation_bytes",
    "peak": "peak_memory_bytes",
    "coverage": "coverage",
}


def _memory(trials, plan: TuningPlan) -> dict[tuple[str, str], dict[str, float | None]]:
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for t in trials:
        a = t.user_attrs
        if t.state == TrialState.COMPLETE and a["workload"] == a["base_workload"]:
            found.setdefault((a["algorithm"], plan.display(a["workload"])), []).append(result_of(t))
    out: dict[tuple[str, str], dict[str, float | None]] = {}
    for key, results in found.items():
        out[key] = {}
        for name, column in MEMORY_FIELDS.items():
            values = [r[column] for r in results if r.get(column) is not None]
            out[key][name] = statistics.median(values) if values else None
    return out
