"""The runner and its clock: what is timed, when a trial scores, and determinism."""

from __future__ import annotations

import math

import pytest
import torch

from support_scripted import ScriptedMetric
from support_workloads import TinyRegression
from trainlab.algorithms import TrainingAlgorithm, make_algorithm
from trainlab.benchmark import trial_setup
from trainlab.benchmark.clock import TrainingClock
from trainlab.benchmark.runner import run_trial
from trainlab.errors import UsageError
from trainlab.workloads import create_workload
from trainlab.benchmark.trial_options import TrialOptions

CPU = torch.device("cpu")


def test_clock_accumulates_only_running_stretches():
    now = [0.0]
    clock = TrainingClock(CPU, timer=lambda: now[0])
    clock.start()
    now[0] = 2.0
    assert clock.pause() == 2.0
    now[0] = 10.0  # paused: these 8 seconds are evaluation
    clock.resume()
    now[0] = 11.5
    assert clock.pause() == 3.5
    with pytest.raises(RuntimeError):
        clock.pause()


def test_slow_evaluation_is_recorded_apart_from_training():
    # How many seconds each side gets is measured in benchmarks/clock_excludes_evaluation.py: its
    # bounds depend on the machine's load, so no unit test asserts on wall-clock time. The clock's
    # pause/resume arithmetic is tested above with an injected timer.
    slow = run_trial(TinyRegression(eval_sleep=0.001), make_algorithm("adamw"), 0, CPU)
    assert [e.step for e in slow.evals] == [10, 20, 30, 40, 50, 60]
    readings = [e.train_seconds for e in slow.evals]
    assert readings == sorted(readings) and readings[-1] <= slow.train_seconds
    assert all(e.eval_seconds > 0 for e in slow.evals)


def test_time_to_target_is_taken_at_the_first_evaluation_meeting_it():
    workload = ScriptedMetric([0.1, 0.3, 0.6, 0.4, 0.7, 0.9])
    result = run_trial(workload, make_algorithm("adamw"), 0, CPU)
    assert result.reached and result.steps_to_target == 30
    assert result.time_to_target == result.evals[2].train_seconds
    assert result.final_metric == 0.9 and result.best_metric == 0.9
    assert [e.step for e in result.evals] == [10, 20, 30, 40, 50, 60]


def test_a_trial_that_never_meets_the_target_scores_infinity():
    result = run_trial(ScriptedMetric([0.1, 0.2, 0.49]), make_algorithm("adamw"), 0, CPU)
    assert not result.reached and result.time_to_target == math.inf and result.steps_to_target is None


def test_stop_at_target_ends_the_trial_at_the_first_hit():
    result = run_trial(
        ScriptedMetric([0.1, 0.6, 0.9]), make_algorithm("adamw"), 0, CPU, TrialOptions(stop_at_target=True)
    )
    assert result.steps == 20 and len(result.evals) == 2


def test_same_seed_gives_an_identical_curve_and_another_seed_does_not():
    def curve(seed):
        workload = create_workload("mnist1d_mlp", step_budget=120, eval_every=40)
        result = run_trial(workload, make_algorithm("adamw"), seed, CPU)
        return [(e.train_loss, e.metric, e.validation_loss) for e in result.evals]

    assert curve(3) == curve(3)
    assert curve(3) != curve(4)


def test_a_non_finite_loss_marks_the_trial_diverged():
    workload = TinyRegression()
    spec = make_algorithm("sgd", {"lr": 1e6, "warmup_fraction": 0.0})
    result = run_trial(workload, spec, 0, CPU)
    assert result.status == "diverged" and not result.reached
    # the same training, stepped by hand: the first step whose loss is not finite
    torch.manual_seed(0)
    model = workload.init_model()
    algorithm = TrainingAlgorithm(spec, model, workload.step_budget)
    batches = workload.batches(workload.splits().train, torch.Generator().manual_seed(0))
    first_bad = next(
        step
        for step in range(1, workload.step_budget + 1)
        if not torch.isfinite(algorithm.update(model, next(batches), workload.loss))
    )
    assert first_bad < workload.eval_every
    assert result.steps == first_bad  # stopped at the step it happened, not at the next evaluation
    assert result.evals == [] and math.isnan(result.final_metric)


def test_eval_hooks_wrap_every_evaluation(monkeypatch):
    calls = []

    class Spy(TrainingAlgorithm):
        def prepare_for_eval(self, model):
            calls.append("eval")

        def prepare_for_train(self, model):
            calls.append("train")

    monkeypatch.setattr(trial_setup, "TrainingAlgorithm", Spy)
    run_trial(TinyRegression(), make_algorithm("adamw"), 0, CPU)
    # six evaluations; no swap back to training weights after the last (the test split sees eval weights)
    assert calls == ["eval", "train"] * 5 + ["eval"]


def test_trial_records_memory_accounting():
    result = run_trial(TinyRegression(), make_algorithm("adamw"), 0, CPU)
    params = 17
    assert result.param_bytes == result.grad_bytes == 4 * params
    # torch AdamW: exp_avg + exp_avg_sq per parameter tensor, plus a 4-byte step tensor each
    assert result.state_bytes == 2 * 4 * params + 2 * 4
    # saved for backward: the input batch (32 x 16, for the weight gradient), and the prediction and
    # target mse_loss keeps (32 x 1 each), all fp32
    assert result.saved_activation_bytes == 4 * (32 * 16 + 32 + 32)
    # without CUDA the peak is estimated: 68 B parameters + 68 B gradients + 144 B AdamW state
    # (2 x 68 + two 4-byte steps) + 2304 B saved activations, counted here by hand
    assert result.peak_memory_bytes == 68 + 68 + 144 + 2304
    assert result.peak_memory_source == "params+grads+state+activations"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA's peak allocation: no CUDA device here")
def test_trial_on_cuda_reports_the_measured_peak_allocation():
    # The CUDA path is untested where the suite usually runs (CPU only); on a GPU machine the peak
    # is torch.cuda.max_memory_allocated, which holds at least the parameters, gradients and state.
    result = run_trial(TinyRegression(), make_algorithm("adamw"), 0, torch.device("cuda"))
    assert result.peak_memory_source == "cuda_max_allocated"
    assert result.peak_memory_bytes >= 68 + 68 + 136


def test_recorded_grad_norms_have_one_value_per_step():
    result = run_trial(TinyRegression(), make_algorithm("adamw"), 0, CPU, TrialOptions(grad_norm_kind="l1"))
    assert len(result.grad_norms) == 60 and all(v > 0 for v in result.grad_norms)


def test_stability_after_the_target_is_recorded_from_the_whole_curve():
    """Target 0.5 first met at step 30 (0.6); after it the curve dips to 0.4: worst 0.4, gap 0.1."""
    result = run_trial(ScriptedMetric([0.1, 0.3, 0.6, 0.4, 0.7, 0.9]), make_algorithm("adamw"), 0, CPU)
    assert result.worst_after_target == 0.4 and result.stability_gap == pytest.approx(0.1)
    stayed = run_trial(ScriptedMetric([0.1, 0.6, 0.55, 0.9]), make_algorithm("adamw"), 0, CPU)
    assert stayed.worst_after_target == 0.55 and stayed.stability_gap == 0.0
    stopped = run_trial(
        ScriptedMetric([0.1, 0.6, 0.9]), make_algorithm("adamw"), 0, CPU, TrialOptions(stop_at_target=True)
    )
    assert stopped.worst_after_target is None and stopped.stability_gap is None  # nothing after the target


def test_the_race_report_shows_stability_after_the_target(tmp_path):
    from trainlab.benchmark.race import RacePlan, run_race
    from trainlab.reports import write_report
    from trainlab.store import ResultsStore

    store = ResultsStore(f"sqlite:///{tmp_path / 'r.db'}")
    race_id, _ = run_race(
        RacePlan([ScriptedMetric([0.1, 0.3, 0.6, 0.4, 0.7, 0.9])], ["adamw"], [0], CPU), store, progress=False
    )
    trial = store.trials(race_id)[0]
    assert trial["worst_after_target"] == 0.4 and trial["stability_gap"] == pytest.approx(0.1)
    report = write_report(store, tmp_path / "report", race_id).read_text()
    assert "## Stability after the target" in report
    assert "| scripted_metric | adamw | 0 | 30 | 0.4 | 0.1 |" in report


def test_continual_evaluation_adds_a_per_step_curve_without_changing_training():
    """TinyRegression: 60 steps, a full evaluation every 10 on its 100 validation examples."""
    spec = make_algorithm("sgd", {"lr": 0.1, "momentum": 0.9, "warmup_fraction": 0.0})  # meets mse 0.05 at 30
    plain = run_trial(TinyRegression(), spec, 0, CPU)
    watched = run_trial(TinyRegression(), spec, 0, CPU, TrialOptions(continual=(1, 100)))
    assert [e.metric for e in watched.evals] == [e.metric for e in plain.evals]  # training untouched
    assert [s for s, _, _ in watched.continual] == list(range(1, 61))
    fine = dict((s, m) for s, m, _ in watched.continual)
    assert all(fine[e.step] == e.metric for e in watched.evals)  # the whole split: the same numbers
    assert (watched.continual_every, watched.continual_subset) == (1, 100)
    assert watched.steps_to_target == 30 and watched.steps == 60
    # the per-step curve sees every checkpoint from the target on, and the steps between
    worst = max(m for s, m, _ in watched.continual if s >= 30)
    assert watched.continual_worst_after_target == worst >= watched.worst_after_target  # mse: larger is worse
    assert watched.continual_stability_gap == max(0.0, worst - 0.05)
    sparse = run_trial(TinyRegression(), spec, 0, CPU, TrialOptions(continual=(7, 20)))
    assert [s for s, _, _ in sparse.continual] == list(range(7, 61, 7))
    with pytest.raises(UsageError, match="--eval-subset 101: workload 'tiny_regression' has 100 evaluation"):
        run_trial(TinyRegression(), spec, 0, CPU, TrialOptions(continual=(1, 101)))


def test_a_race_stores_the_continual_curve_and_reports_both_views(tmp_path):
    from trainlab.benchmark.race import RacePlan, run_race
    from trainlab.reports import write_report
    from trainlab.store import ResultsStore

    store = ResultsStore(f"sqlite:///{tmp_path / 'r.db'}")
    plan = RacePlan(
        [TinyRegression()],
        ["sgd"],
        [0],
        CPU,
        options=TrialOptions(continual=(2, 50)),
        overrides={"sgd": {"lr": 0.1, "momentum": 0.9}},
    )
    race_id, (result,) = run_race(plan, store, progress=False)
    trial = store.trials(race_id)[0]
    assert [r["step"] for r in store.continual(trial["id"])] == list(range(2, 61, 2))
    assert trial["continual_subset"] == 50 and store.race(race_id)["config"]["continual"] == {"every": 2, "subset": 50}
    assert result.reached and result.steps > result.steps_to_target
    assert trial["continual_worst_after_target"] == pytest.approx(result.continual_worst_after_target)
    report = write_report(store, tmp_path / "report", race_id).read_text()
    assert "per-step gap" in report and "first 50 validation examples" in report
