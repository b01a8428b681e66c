"""Hand-built tuning stores: trials written into a real Optuna RDB storage the way
`trainlab/tuning/worker.py` records them, with outcomes chosen by the test instead of trained.

The experiment is set up by the project's own coordinator functions (`create_or_resume`,
`enqueue_tuning`, `enqueue_evaluation`), so the queued trials carry exactly the identities a real
run's do; `StoreBuilder` then plays the worker: it claims one queued trial (WAITING -> RUNNING),
writes `result` (a `TrialResult` summary with the worker's pid) and `evals` into its user
attributes and completes it with the worker's objective (time to target, +inf for a miss), or fails
it. A retried draw is made as Optuna makes one after a stale heartbeat
(`RetryHeartbeatStaleTrialCallback`: a WAITING copy with the same parameters and identity).

Usage (see tests/test_golden_leaderboard.py):

    b = StoreBuilder(storage, plan)                     # studies created, tuning draws queued
    b.tune("adamw", "w1", study=0, draw=0, steps=400, seconds=4.0, state_bytes=8192)
    b.tune("lion", "w1", 0, 0, failed_first=True, steps=300, seconds=9.0)
    b.queue_evaluation(variants_of=lambda w: [f"{w}_noisy"])  # each study's best, chosen by trainlab
    b.eval("adamw", "w1", study=0, seed=0, steps=400, seconds=4.0)
    b.variant("adamw", "w1", study=0, variant="w1_noisy", reached=True)

`steps=None` records a miss; `diverged=True` a non-finite loss (status "diverged", a miss).
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from trainlab.store.results import TrialResult
from trainlab.tuning.experiment import create_or_resume, enqueue_evaluation, enqueue_tuning, load, plan_space
from trainlab.tuning.plan import TuningPlan


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


class StoreBuilder:
    def __init__(self, storage, plan: TuningPlan) -> None:
        self.storage, self.plan = storage, plan
        plan.check()
        create_or_resume(storage, plan)
        enqueue_tuning(storage, plan)

    # ---- finding the queued trial a real worker would claim ----
    def _queued(self, study_name: str, **identity: Any) -> FrozenTrial:
        study = load(self.storage, study_name)
        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if all(t.user_attrs.get(k) == v for k, v in identity.items()):
                return t
        raise LookupError(f"no queued trial {identity} in {study_name}")

    def _claim(self, trial: FrozenTrial) -> FrozenTrial:
        self.storage.record_heartbeat(trial._trial_id)
        assert self.storage.set_trial_state_values(trial._trial_id, TrialState.RUNNING)
        return self.storage.get_trial(trial._trial_id)

    # ---- what the worker writes ----
    def _fail(self, study_name: str, trial: FrozenTrial, retry: bool) -> None:
        """A failed trial; `retry`: as a stale heartbeat fails it, with Optuna's re-queued copy."""
        if not retry:  # an exception in the trial; a dead worker leaves no error behind
            self.storage.set_trial_user_attr(trial._trial_id, "error", "RuntimeError: a bad configuration")
        self.storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        if retry:
            RetryHeartbeatStaleTrialCallback()(load(self.storage, study_name), self.storage.get_trial(trial._trial_id))

    def _complete(self, trial: FrozenTrial, result: TrialResult) -> None:
        attrs = trial.user_attrs
        # the worker stores the trial's sampled parameters first
        for name, dist in plan_space(self.plan, attrs["algorithm"]).distributions().items():
            if name not in trial.params:
                self.storage.set_trial_param(trial._trial_id, name, dist.to_internal_repr(attrs["config"][name]), dist)
        summary = {k: _finite_or_none(v) for k, v in result.summary().items()}
        summary["pid"] = os.getpid()
        self.storage.set_trial_user_attr(trial._trial_id, "result", summary)
        self.storage.set_trial_user_attr(
            trial._trial_id, "evals", [[e.step, e.train_seconds, _finite_or_none(e.metric)] for e in result.evals]
        )
        value = result.time_to_target if result.reached else math.inf
        self.storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, [value])

    def _result(
        self,
        attrs: dict[str, Any],
        steps: int | None,
        seconds: float | None,
        *,
        diverged: bool = False,
        best_metric: float | None = None,
        target: float = 0.9,
        state_bytes: int = 0,
        peak_memory_bytes: int = 0,
        coverage: float | None = None,
        budget: int = 1000,
    ) -> TrialResult:
        reached = steps is not None and not diverged
        if reached:
            assert seconds is not None, "a run that reached the target needs its seconds"
        if best_metric is None:
            best_metric = math.nan if diverged else (target if reached else target - 0.1)
        return TrialResult(
            workload=attrs["workload"],
            algorithm=attrs["algorithm"],
            seed=attrs["seed"],
            hparams=dict(attrs["config"]),
            metric_name="accuracy",
            higher_is_better=True,
            target=target,
            step_budget=budget,
            status="diverged" if diverged else "completed",
            reached=reached,
            time_to_target=float(seconds) if reached and seconds is not None else math.inf,
            steps_to_target=steps if reached else None,
            final_metric=best_metric,
            best_metric=best_metric,
            steps=steps if reached and steps is not None else budget,
            train_seconds=float(seconds or 1.0),
            state_bytes=state_bytes,
            peak_memory_bytes=peak_memory_bytes,
            peak_memory_source="params+grads+state+activations",
            coverage=coverage,
        )

    def _record(self, name: str, trial: FrozenTrial, failed_first: bool, failed: bool, **outcome: Any) -> None:
        if failed_first:  # the first copy's worker died; Optuna queued the same trial again
            identity = {k: trial.user_attrs[k] for k in ("kind", "study", "workload", "seed", "draw")}
            self._fail(name, self._claim(trial), retry=True)
            trial = self._queued(name, **identity)
        trial = self._claim(trial)
        if failed:
            self._fail(name, trial, retry=False)
            return
        self._complete(trial, self._result(dict(trial.user_attrs), **outcome))

    # ---- the test's vocabulary ----
    def tune(
        self,
        algorithm: str,
        workload: str,
        study: int,
        draw: int,
        steps: int | None = None,
        seconds: float | None = None,
        *,
        failed_first: bool = False,
        failed: bool = False,
        **outcome: Any,
    ) -> None:
        """Tuning draw `draw` of `study`: reached the target at `steps` (`seconds` of training), or
        missed it (`steps=None`); `failed_first`: its first copy failed and the retry ran it."""
        name = self.plan.tune_study_name(algorithm, workload, study)
        trial = self._queued(name, kind="tune", draw=draw)
        self._record(name, trial, failed_first, failed, steps=steps, seconds=seconds, **outcome)

    def queue_stale_draw(self, algorithm: str, workload: str, study: int, draw: int) -> None:
        """Queue a tuning draw past the workload's budget, as a run made before the plan's budget was
        lowered left it (`within_budget` must never count it)."""
        from trainlab.tuning.experiment import draw_configs
        from trainlab.tuning.plan import tuning_seed

        space = plan_space(self.plan, algorithm)
        config = draw_configs(space, self.plan.seed + study, draw + 1)[draw]
        attrs = {
            "kind": "tune",
            "algorithm": algorithm,
            "workload": workload,
            "base_workload": workload,
            "study": study,
            "draw": draw,
            "seed": tuning_seed(study, draw),
            "split": "validation",
            "config": config,
        }
        params = {k: v for k, v in config.items() if k in space.distributions()}
        load(self.storage, self.plan.tune_study_name(algorithm, workload, study)).enqueue_trial(
            params, user_attrs=attrs
        )

    def queue_evaluation(self, variants_of: Callable[[str], list[str]] | None = None) -> int:
        """Queue each finished study's best configuration (trainlab's own choice) for its runs."""
        return enqueue_evaluation(self.storage, self.plan, variants_of)

    def eval(
        self,
        algorithm: str,
        workload: str,
        study: int,
        seed: int,
        steps: int | None = None,
        seconds: float | None = None,
        *,
        failed_first: bool = False,
        failed: bool = False,
        **outcome: Any,
    ) -> None:
        """The held-out run of `study`'s best configuration on evaluation seed `seed`."""
        name = self.plan.eval_study_name(algorithm, workload)
        trial = self._queued(name, kind="eval", study=study, seed=seed)
        self._record(name, trial, failed_first, failed, steps=steps, seconds=seconds, **outcome)

    def variant(self, algorithm: str, workload: str, study: int, variant: str, reached: bool, **outcome: Any) -> None:
        name = self.plan.eval_study_name(algorithm, workload)
        trial = self._queued(name, kind="variant", study=study, workload=variant)
        steps, seconds = (100, 1.0) if reached else (None, None)
        self._record(name, trial, False, False, steps=steps, seconds=seconds, **outcome)

    def best_draw(self, algorithm: str, workload: str, study: int) -> int:
        """The draw trainlab queued evaluation runs for (its choice of the study's best)."""
        trials = load(self.storage, self.plan.eval_study_name(algorithm, workload)).get_trials(deepcopy=False)
        draws = {t.user_attrs["draw"] for t in trials if t.user_attrs.get("study") == study}
        assert len(draws) == 1, draws
        return draws.pop()


def open_test_storage(path) -> optuna.storages.RDBStorage:
    """The project's storage on a SQLite file (heartbeats on, as every trainlab store)."""
    from trainlab.tuning.storage import open_storage

    return open_storage(f"sqlite:///{path}", 1, 3)
