"""Learning-curve predictions while a trial trains (`trainlab race --predict`), and the same
predictor as a stopping rule (the tuning pruner, `trainlab tune --prune-by-curve`).

Both run as the runner's `monitor`, after each evaluation, with the clock paused: predicting is
bookkeeping like evaluating, not training. The decision rule itself lives in
`trainlab.scoring.curves.prune_decision`, shared with the replay over stored curves.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from trainlab.algorithms import AlgorithmSpec
from trainlab.schedules import build_schedule
from trainlab.scoring.curves import Axis, CurvePredictor, Prediction, prune_decision
from trainlab.store.results import TrialResult
from trainlab.workloads import Workload

DEFAULT_LEVEL = 0.25
DEFAULT_THRESHOLD = 0.01


def axis_for(spec: AlgorithmSpec, budget: int) -> Axis:
    """The learning-rate axis of `spec`'s trials (its schedule over the budget); steps for an AlgoPerf
    submission, whose schedule lives inside its own update function."""
    if spec.submission:
        return Axis.steps(budget)
    schedule = build_schedule(spec.schedule, budget, spec.schedule_hparams())
    return Axis.from_multipliers([schedule(k) for k in range(budget)])


def predictor_for(
    workload: Workload, spec: AlgorithmSpec, level: float = DEFAULT_LEVEL, threshold: float = DEFAULT_THRESHOLD
) -> CurvePredictor:
    """The predictor of a trial's validation curve, toward its workload's target by its step budget."""
    return CurvePredictor(
        target=workload.target,
        higher_is_better=workload.higher_is_better,
        axis=axis_for(spec, workload.step_budget),
        level=level,
        threshold=threshold,
    )


def describe(p: Prediction, metric: str, reached_at: int | None = None) -> str:
    """One line: what the curve predicts after step `p.step`; once the trial has reached the
    target (`reached_at`), that fact, not a prediction of it."""

    def when(step: float) -> str:
        return "never" if not math.isfinite(step) else f"{step:.0f}"

    target = (
        f"target reached at step {reached_at}"
        if reached_at is not None
        else f"target at step {when(p.target_step)} [{when(p.target_step_low)}, {when(p.target_step_high)}]"
    )
    return (
        f"step {p.step}: {metric} by the budget {p.final:.4g} [{p.final_low:.4g}, {p.final_high:.4g}], "
        f"{target} ({p.family}{', converged' if p.converged else ''})"
    )


class CurveWatch:
    """The runner's monitor: after each evaluation past the prediction level, predict the curve,
    record the prediction on the result and `report` it; with `prune`, ask the runner to stop a
    trial once `prune_decision` says its target is out of reach."""

    def __init__(
        self,
        workload: Workload,
        spec: AlgorithmSpec,
        report: Callable[[str], None] | None = None,
        prune: bool = False,
        level: float = DEFAULT_LEVEL,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        self.predictor = predictor_for(workload, spec, level, threshold)
        self.metric = workload.metric
        self.report = report
        self.prune = prune
        self._previous: Prediction | None = None

    def __call__(self, result: TrialResult) -> bool:
        steps = [e.step for e in result.evals]
        metrics = [e.metric for e in result.evals]
        # the previous evaluation's prediction is this one's convergence reference: kept, not refitted
        stop, prediction = prune_decision(self.predictor, steps, metrics, self._previous)
        if prediction is None:
            return False
        self._previous = prediction
        result.predictions.append(prediction.as_dict())
        if self.report is not None:
            reached_at = result.steps_to_target if result.reached else None
            self.report(
                describe(prediction, self.metric, reached_at)
                + (": stopping, the target is out of reach" if stop else "")
            )
        return stop and self.prune
