"""Stopping tuning trials that will not reach the target (`trainlab tune --prune-by-curve`), and
the replay that measures what that would have cost a finished experiment.

The decision is `trainlab.scoring.curves.prune_decision`, behind Optuna's pruner interface
(`CurvePruner.prune(study, trial)` reads the trial's intermediate values). Only tuning trials are
ever stopped: evaluation and variant runs are what the score is made of. A stopped trial is
recorded COMPLETE with an infinite objective and status `pruned`, not in Optuna's PRUNED state: a
stopped draw is a finished draw that missed the target, and every scoring path already reads it so.

The replay runs the same decision over the evaluation curves an experiment stored (no training):
where each tuning trial would have stopped, the training time that saves, the trials stopped that
did reach the target (wrong stops), and the studies whose chosen configuration changes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from trainlab.benchmark.prediction import axis_for
from trainlab.scoring.curves import CurvePredictor, prune_decision
from trainlab.tuning.experiment import load, spec_of
from trainlab.tuning.plan import TuningPlan


class CurvePruner(optuna.pruners.BasePruner):
    """Optuna pruner: stop a trial once its converged curve prediction excludes the target."""

    def __init__(self, predictor: CurvePredictor) -> None:
        self.predictor = predictor

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        values = trial.intermediate_values
        steps = sorted(values)
        return prune_decision(self.predictor, steps, [values[s] for s in steps])[0]


def stop_index(predictor: CurvePredictor, steps: Sequence[float], metrics: Sequence[float]) -> int | None:
    """The index of the evaluation after which the pruner stops this curve; None if it never does."""
    previous = None
    for k in range(1, len(steps) + 1):
        stop, previous = prune_decision(predictor, steps[:k], metrics[:k], previous)
        if stop:
            return k - 1
        if any(m >= predictor.target if predictor.higher_is_better else m <= predictor.target for m in metrics[:k]):
            return None  # met: never stopped from here on
    return None


@dataclass
class Replay:
    level: float
    threshold: float
    trials: int = 0  # tuning trials replayed
    stopped: int = 0
    wrong: list[str] = field(default_factory=list)  # stopped, yet they reached the target
    seconds: float = 0.0  # training seconds of the replayed trials
    seconds_saved: float = 0.0
    steps: int = 0
    steps_saved: int = 0
    studies: int = 0
    changed: list[str] = field(default_factory=list)  # studies whose chosen configuration changes
    by_workload: dict[str, dict[str, float]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "trials": self.trials,
            "stopped": self.stopped,
            "wrongly_stopped": len(self.wrong),
            "training_seconds_saved": self.seconds_saved / self.seconds if self.seconds else 0.0,
            "steps_saved": self.steps_saved / self.steps if self.steps else 0.0,
            "studies": self.studies,
            "chosen_configuration_changed": len(self.changed),
        }


def _best(rows: list[dict[str, Any]], by: str, pruned: set[int]) -> int | None:
    """The draw a study chooses (`experiment.best_trial`'s rule) when the draws in `pruned` miss."""
    key = "time_to_target" if by == "time" else "steps_to_target"
    reached = [r for r in rows if r["reached"] and r["draw"] not in pruned]
    if reached:
        return min(reached, key=lambda r: (r[key], r["draw"]))["draw"]
    if not rows:
        return None

    def badness(r: dict[str, Any]) -> tuple:
        metric = r["best_seen"] if r["draw"] in pruned else r["best_metric"]
        if metric is None or not math.isfinite(metric):
            return (1, 0.0, r["draw"])
        return (0, -metric if r["higher_is_better"] else metric, r["draw"])

    return min(rows, key=badness)["draw"]


def replay(storage, plan: TuningPlan, level: float, threshold: float) -> Replay:
    """The pruner replayed over every completed tuning trial of the experiment (see module doc)."""
    plan.register_optimizers()
    out = Replay(level, threshold)
    for algorithm in plan.algorithms:
        for workload in plan.workloads:
            for k in range(plan.studies_for(workload)):
                name = plan.tune_study_name(algorithm, workload, k)
                rows, pruned = [], set()
                for t in load(storage, name).get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                    row = _replay_trial(t, level, threshold)
                    if row is None or row["draw"] >= plan.trials_for(workload):
                        continue
                    rows.append(row)
                    stats = out.by_workload.setdefault(plan.display(workload), {"trials": 0, "stopped": 0, "wrong": 0})
                    stats["trials"] += 1
                    out.trials += 1
                    out.seconds += row["seconds"]
                    out.steps += row["steps"]
                    if row["stopped_at"] is not None:
                        pruned.add(row["draw"])
                        out.stopped += 1
                        stats["stopped"] += 1
                        out.seconds_saved += row["seconds"] - row["seconds_at_stop"]
                        out.steps_saved += row["steps"] - row["stopped_at"]
                        if row["reached"]:
                            stats["wrong"] += 1
                            out.wrong.append(f"{algorithm} on {plan.display(workload)} study {k} draw {row['draw']}")
                if rows:
                    out.studies += 1
                    if _best(rows, plan.select_by, set()) != _best(rows, plan.select_by, pruned):
                        out.changed.append(f"{algorithm} on {plan.display(workload)} study {k}")
    return out


def _replay_trial(t: FrozenTrial, level: float, threshold: float) -> dict[str, Any] | None:
    result, evals = t.user_attrs.get("result") or {}, t.user_attrs.get("evals") or []
    if not evals or result.get("status") == "pruned" or result.get("target") is None:
        return None  # nothing to replay: no curve, or stopped already
    steps = [e[0] for e in evals]
    metrics = [math.nan if e[2] is None else e[2] for e in evals]
    predictor = CurvePredictor(
        target=result["target"],
        higher_is_better=bool(result["higher_is_better"]),
        axis=axis_for(spec_of(t.user_attrs), int(result["step_budget"])),
        level=level,
        threshold=threshold,
    )
    at = stop_index(predictor, steps, metrics)
    seen = [m for m in metrics[: (at if at is not None else len(metrics) - 1) + 1] if math.isfinite(m)]
    higher = bool(result["higher_is_better"])
    return {
        "draw": t.user_attrs.get("draw", 0),
        "reached": bool(result.get("reached")),
        "time_to_target": result.get("time_to_target") or math.inf,
        "steps_to_target": result.get("steps_to_target") or math.inf,
        "best_metric": result.get("best_metric"),
        "best_seen": (max(seen) if higher else min(seen)) if seen else None,
        "higher_is_better": higher,
        "seconds": float(evals[-1][1]),
        "steps": int(result.get("steps") or steps[-1]),
        "stopped_at": None if at is None else int(steps[at]),
        "seconds_at_stop": None if at is None else float(evals[at][1]),
    }
