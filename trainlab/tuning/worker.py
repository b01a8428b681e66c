"""A worker: claim a queued trial of an experiment, run it under the honest clock, record it.

Any number of workers, in any number of processes and machines, share an experiment through its
storage; the storage is the only thing they share (no scheduler, no queue of our own). A trial runs
through the runner like a race's (`trainlab.benchmark.runner.run_trial`, with the plan's
`TrialOptions`); the worker adds the heartbeat thread and, for pruned tuning trials, its monitor.

Life of a trial, and what a crash (kill -9) at each point leaves behind:
1. Claim: record a heartbeat for the queued trial, then move it WAITING -> RUNNING in one atomic
   update (another worker that got there first makes ours a no-op). Killed before: it stays queued.
2. Run: a thread renews the heartbeat every `heartbeat_interval` s. Killed: the heartbeat goes stale,
   the next worker or coordinator to look fails the trial and Optuna queues a copy (same parameters,
   same identity), which runs again from scratch.
3. Record: the result goes into user attributes, then one update sets COMPLETE with the objective
   (time to target, +inf for a miss). Killed between the two: still RUNNING, so (2). A trial is
   counted only once COMPLETE, and a stale-failed trial can never complete, so every completed
   trial is kept exactly once.
A Python exception in the trial (a bug, a bad configuration) marks it FAIL with the error and is not
retried; a non-finite loss completes it as `diverged` within the step it happened (the runner checks
at the next evaluation; the objective is +inf). Ctrl-C puts the running trial back in the queue.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from trainlab.algorithms import AlgorithmSpec
from trainlab.benchmark.prediction import predictor_for
from trainlab.benchmark.runner import run_trial
from trainlab.store.results import TrialResult
from trainlab.tuning.experiment import load, plan_space, spec_of
from trainlab.tuning.plan import TuningPlan
from trainlab.tuning.pruning import CurvePruner
from trainlab.utils.heartbeat import Heartbeat
from trainlab.workloads import Workload, create_workload

KIND_ORDER = {"tune": 0, "eval": 1, "variant": 2}


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def heartbeat(storage, trial_id: int, interval: float) -> Heartbeat:
    """Renews a running trial's heartbeat in the Optuna storage while it runs."""
    return Heartbeat(lambda: storage.record_heartbeat(trial_id), interval, f"heartbeat-{trial_id}")


@dataclass
class Worker:
    storage: Any
    plan: TuningPlan
    device: torch.device
    report: Callable[[str], None] = print
    progress_factory: Callable[[str, int], Any] | None = None
    _workloads: dict[str, Workload] = field(default_factory=dict)
    _study_ids: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.plan.register_optimizers()  # file/package optimizers: the stored code, or one line

    def study_id(self, name: str) -> int:
        if name not in self._study_ids:
            self._study_ids[name] = self.storage.get_study_id_from_name(name)
        return self._study_ids[name]

    def workload(self, spec: str) -> Workload:
        if spec not in self._workloads:
            self._workloads[spec] = create_workload(spec, **self.plan.workload_options.get(spec, {}))
        return self._workloads[spec]

    # ---- claiming ----
    def claim(self) -> FrozenTrial | None:
        """Claim the first queued trial, or None. Order: workload by workload (the plan's study
        order); within a workload tuning, then evaluation (what the score needs), then the
        robustness runs on variants; then queue order."""
        queued: list[tuple[tuple[int, int, int, int], FrozenTrial]] = []
        names = [(i, name) for i, w in enumerate(self.plan.workloads) for name in self.plan.study_names_of(w)]
        for position, (index, name) in enumerate(names):
            # workload by workload: once a workload has queued trials, no later workload's can
            # come first, so the rest need not be read (seconds on a big board)
            if queued and index != queued[0][0][0]:
                break
            for trial in self.storage.get_all_trials(self.study_id(name), deepcopy=False, states=(TrialState.WAITING,)):
                kind = trial.user_attrs.get("kind")
                if kind in KIND_ORDER:
                    workload = self.plan.workloads.index(trial.user_attrs["base_workload"])
                    queued.append(((workload, KIND_ORDER[kind], position, trial.number), trial))
        for _, trial in sorted(queued, key=lambda item: item[0]):
            try:
                self.storage.record_heartbeat(trial._trial_id)
                if self.storage.set_trial_state_values(trial._trial_id, TrialState.RUNNING):
                    self.storage.record_heartbeat(trial._trial_id)
                    return self.storage.get_trial(trial._trial_id)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
        return None

    def run_one(self) -> bool:
        """Claim and run one trial; False if none was queued."""
        trial = self.claim()
        if trial is None:
            return False
        with heartbeat(self.storage, trial._trial_id, self.storage.heartbeat_interval):
            try:
                self._run(trial)
            except KeyboardInterrupt:
                self.storage.set_trial_state_values(trial._trial_id, TrialState.WAITING)
                raise
        return True

    # ---- running ----
    def _label(self, attrs: dict[str, Any]) -> str:
        where = f"study {attrs['study']} " + (
            f"draw {attrs['draw']}" if attrs["kind"] == "tune" else f"seed {attrs['seed']}"
        )
        return f"{attrs['kind']:<7} {attrs['algorithm']} on {self.plan.display(attrs['workload'])} {where}"

    def _run(self, trial: FrozenTrial) -> None:
        attrs = dict(trial.user_attrs)
        trial_id = trial._trial_id
        space = plan_space(self.plan, attrs["algorithm"])
        for name, dist in space.distributions().items():
            if name not in trial.params:
                self.storage.set_trial_param(trial_id, name, dist.to_internal_repr(attrs["config"][name]), dist)
        label = self._label(attrs)
        started = time.perf_counter()
        try:
            spec = spec_of(attrs)
            workload = self.workload(attrs["workload"])
            monitor = self._pruning(trial, workload, spec) if attrs["kind"] == "tune" and self.plan.prune else None
            options = self.plan.options(attrs["split"])
            # a launch on nproc processes reports no steps: no bar
            bars = self.progress_factory if options.nproc == 1 else None
            progress = bars(label, workload.step_budget) if bars is not None else None
            try:
                result = run_trial(
                    workload, spec, attrs["seed"], self.device, options, progress=progress, monitor=monitor
                )
            finally:
                if progress is not None:
                    progress.close()
        except Exception as exc:
            self.storage.set_trial_user_attr(
                trial_id, "error", "".join(traceback.format_exception_only(exc)).strip() + "\n" + traceback.format_exc()
            )
            self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
            self.report(f"{label}: FAILED ({type(exc).__name__}: {exc})")
            return
        summary = {k: _finite_or_none(v) for k, v in result.summary().items()}
        summary["pid"] = os.getpid()
        self.storage.set_trial_user_attr(trial_id, "result", summary)
        self.storage.set_trial_user_attr(
            trial_id, "evals", [[e.step, e.train_seconds, _finite_or_none(e.metric)] for e in result.evals]
        )
        value = result.time_to_target if result.reached else math.inf
        try:
            self.storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [value])
        except optuna.exceptions.UpdateFinishedTrialError:
            # declared dead while it ran (missed heartbeats): its queued copy will record it once
            self.report(f"{label}: finished after being declared dead; its re-run will be kept")
            return
        outcome = (
            f"reached in {result.time_to_target:.2f} s (step {result.steps_to_target})"
            if result.reached
            else f"pruned at step {result.steps} (best {result.best_metric:.4g})"
            if result.status == "pruned"
            else f"{result.status}, missed (best {result.best_metric:.4g})"
        )
        self.report(f"{label}: {outcome} [{time.perf_counter() - started:.1f} s]")

    def _pruning(self, trial: FrozenTrial, workload: Workload, spec: AlgorithmSpec) -> Callable[[TrialResult], bool]:
        """The runner's monitor for a pruned tuning trial: each evaluation becomes an Optuna
        intermediate value, and the plan's `CurvePruner` decides on the trial as stored."""
        predictor = predictor_for(workload, spec, self.plan.prune["level"], self.plan.prune["threshold"])
        pruner = CurvePruner(predictor)
        attrs = trial.user_attrs
        name = self.plan.tune_study_name(attrs["algorithm"], attrs["base_workload"], attrs["study"])
        study = load(self.storage, name)
        trial_id = trial._trial_id

        def monitor(result: TrialResult) -> bool:
            last = result.evals[-1]
            if math.isfinite(last.metric):
                self.storage.set_trial_intermediate_value(trial_id, last.step, last.metric)
            return pruner.prune(study, self.storage.get_trial(trial_id))

        return monitor


def fail_stale(storage, plan: TuningPlan) -> None:
    """Fail the trials of dead workers (stale heartbeat); Optuna's retry callback re-queues them."""
    for name in plan.study_names():
        optuna.storages.fail_stale_trials(load(storage, name))
