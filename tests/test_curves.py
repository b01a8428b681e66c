"""Learning-curve prediction (trainlab.scoring.curves), the runner's monitor, `race --predict`, the
Optuna pruner and `tune --prune-by-curve`."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
import torch

from support_scripted import ScriptedMetric
from trainlab.algorithms import make_algorithm
from trainlab.benchmark.prediction import CurveWatch, axis_for
from trainlab.benchmark.runner import run_trial
from trainlab.schedules import cosine_decay
from trainlab.scoring.curves import Axis, CurvePredictor, choose_family, fit_curve, prune_decision
from trainlab.tuning.pruning import CurvePruner, stop_index
from trainlab.benchmark.trial_options import TrialOptions

CPU = torch.device("cpu")
H = 1000
STEPS = np.arange(50, H + 1, 50)


def cosine_axis(warmup: int = 50) -> Axis:
    schedule = cosine_decay(H, warmup)
    return Axis.from_multipliers([schedule(k) for k in range(H)])


def law(axis: Axis, a: float, b: float, c: float, d: float, steps=STEPS) -> np.ndarray:
    """The power law in learning-rate area with its annealing term, written out again."""
    u, anneal = axis.area[steps], axis.annealed[steps]
    return a - b * u ** (-c) + d * anneal


def test_the_axis_is_the_learning_rate_area_and_what_has_annealed_since_the_peak():
    axis = Axis.from_multipliers([0.5, 1.0, 1.0, 0.5, 0.0])  # warm-up, peak, hold, decay
    assert np.allclose(axis.area, [0, 0.5 / 3, 1.5 / 3, 2.5 / 3, 1, 1])
    assert np.allclose(axis.annealed, [0, 0, 0, 0, 0.5, 1])  # warm-up is not annealing
    steps = Axis.steps(4)
    assert np.allclose(steps.area, [0, 0.25, 0.5, 0.75, 1]) and not steps.annealed.any()
    with pytest.raises(ValueError, match="non-negative"):
        Axis.from_multipliers([1.0, -0.1])


def test_a_power_law_in_steps_is_recovered_exactly():
    axis = Axis.steps(H)
    y = law(axis, 0.9, 0.3, 0.7, 0.0)
    fit = fit_curve(STEPS, y, True, "power", axis)
    found = (fit.asymptote, fit.scale, fit.rate, fit.annealing)
    assert found == pytest.approx((0.9, 0.3, 0.7, 0.0), rel=1e-5, abs=1e-7)
    # a loss (lower is better) as an exponential: the same fit, oriented
    loss = 2.0 + 1.5 * np.exp(-4.0 * STEPS / H)
    fit = fit_curve(STEPS, loss, False, "exponential", axis)
    assert (fit.asymptote, fit.scale, fit.rate) == pytest.approx((2.0, 1.5, 4.0), rel=1e-5)
    assert fit.step_reaching(2.1) == math.ceil(-math.log(0.1 / 1.5) / 4.0 * H)


def test_the_annealing_law_under_a_cosine_schedule_is_recovered_from_the_first_half():
    axis = cosine_axis()
    truth = (0.95, 0.02, 0.8, 0.03)
    first_half = STEPS[STEPS <= H // 2]
    fit = fit_curve(first_half, law(axis, *truth, steps=first_half), True, "power", axis)
    assert (fit.asymptote, fit.scale, fit.rate, fit.annealing) == pytest.approx(truth, abs=1e-5)
    assert fit.values()[-1] == pytest.approx(law(axis, *truth, steps=np.array([H]))[0], abs=1e-6)
    # a law in steps cannot follow the late rise of an annealed curve: its prediction is too low
    steps_fit = fit_curve(first_half, law(axis, *truth, steps=first_half), True, "power", Axis.steps(H))
    assert steps_fit.values()[-1] < fit.values()[-1] - 0.01


def test_the_family_that_extrapolates_better_is_chosen():
    axis = Axis.steps(H)
    assert choose_family(STEPS, law(axis, 0.9, 0.3, 0.7, 0.0), True, axis) == "power"
    assert choose_family(STEPS, 0.9 - 0.5 * np.exp(-5.0 * STEPS / H), True, axis) == "exponential"


def test_the_predicted_target_step_and_final_value_lie_in_their_intervals():
    """A noisy annealed curve, predicted at 40 % of the budget: the true final value and the first
    evaluation at which the noise-free curve meets the target lie inside the intervals, and the
    intervals are not vacuous."""
    axis = cosine_axis()
    truth = (0.95, 0.02, 0.8, 0.03)
    observed = law(axis, *truth) + np.random.default_rng(1).normal(0, 0.002, len(STEPS))
    target = 0.95
    predictor = CurvePredictor(target, True, axis, level=0.25)
    k = int(np.sum(STEPS <= 0.4 * H))
    p = predictor.predict(STEPS[:k], observed[:k])
    final = law(axis, *truth, steps=np.array([H]))[0]
    true_step = STEPS[np.argmax(law(axis, *truth) >= target)]
    assert p.final_low <= final <= p.final_high and p.final_high - p.final_low < 0.08
    assert p.target_step_low <= true_step <= p.target_step_high and p.target_step_low > 400
    assert predictor.predict(STEPS[:3], observed[:3]) is None  # before the prediction level


def test_the_decision_stops_a_hopeless_curve_and_keeps_a_good_one():
    axis = cosine_axis()
    predictor = CurvePredictor(0.9, True, axis)
    hopeless = law(axis, 0.6, 0.05, 0.5, 0.02)
    good = law(axis, 0.95, 0.05, 0.5, 0.02)
    at = stop_index(predictor, STEPS, hopeless)
    assert at is not None and STEPS[at] < H // 2
    assert stop_index(predictor, STEPS, good) is None
    met = np.array(hopeless)
    met[3] = 0.95  # one evaluation met the target: never stopped after that
    assert prune_decision(predictor, STEPS[:8], met[:8])[0] is False


def test_the_pruner_speaks_optunas_interface():
    axis = cosine_axis()
    study = optuna.create_study(direction="maximize", pruner=CurvePruner(CurvePredictor(0.9, True, axis)))
    hopeless, good = study.ask(), study.ask()
    stopped = kept = None
    for step, low, high in zip(STEPS, law(axis, 0.6, 0.05, 0.5, 0.02), law(axis, 0.95, 0.05, 0.5, 0.02)):
        hopeless.report(float(low), int(step))
        good.report(float(high), int(step))
        if stopped is None and hopeless.should_prune():
            stopped = step
        kept = kept or good.should_prune()
    assert stopped is not None and stopped < H and not kept


def test_a_watched_trial_records_its_predictions_and_a_pruned_one_stops_as_pruned():
    """ScriptedMetric: 60 steps, an evaluation every 10, target 0.5 (accuracy)."""
    spec = make_algorithm("adamw")
    flat = [0.10, 0.11, 0.115, 0.118, 0.119, 0.12]
    lines = []
    watched = ScriptedMetric(flat)
    result = run_trial(watched, spec, 0, CPU, monitor=CurveWatch(watched, spec, report=lines.append))
    assert result.status == "completed" and result.steps == 60  # predicting never stops a trial
    assert [p["step"] for p in result.predictions] == [40, 50, 60] and len(lines) == 3
    assert all(p["target_step"] is None for p in result.predictions)  # out of reach: stored as NULL
    pruned = ScriptedMetric(flat)
    result = run_trial(pruned, spec, 0, CPU, monitor=CurveWatch(pruned, spec, prune=True))
    assert result.status == "pruned" and result.steps == 50 and not result.reached
    assert math.isinf(result.time_to_target) and result.test_metric == result.test_metric  # test split still evaluated
    rising = ScriptedMetric([0.1, 0.3, 0.4, 0.45, 0.48, 0.6])
    assert run_trial(rising, spec, 0, CPU, monitor=CurveWatch(rising, spec, prune=True)).status == "completed"
    # once the target is met, the line says where, not where a curve predicts it
    lines = []
    early = ScriptedMetric([0.1, 0.3, 0.4, 0.55, 0.6, 0.62])
    run_trial(early, spec, 0, CPU, monitor=CurveWatch(early, spec, report=lines.append))
    assert lines and "target reached at step 40" in lines[-1] and "target at step" not in lines[-1]


def test_the_axis_follows_the_algorithms_schedule():
    warm = axis_for(make_algorithm("adamw", {"warmup_fraction": 0.1}), 100)  # adamw: warm-up + cosine
    f = [cosine_decay(100, 10)(k) for k in range(100)]
    assert warm.area[10] == pytest.approx(sum(f[:10]) / sum(f)) and warm.area[100] == pytest.approx(1.0)
    assert warm.annealed[11] == 0.0 and warm.annealed[100] == pytest.approx(1 - f[99])


def test_race_predict_stores_every_prediction(tmp_path):
    from trainlab.benchmark.race import RacePlan, run_race
    from trainlab.store import ResultsStore

    store = ResultsStore(f"sqlite:///{tmp_path / 'r.db'}")
    flat = ScriptedMetric([0.10, 0.11, 0.115, 0.118, 0.119, 0.12])
    plan = RacePlan([flat], ["adamw"], [0], CPU, options=TrialOptions(predict=(0.25, 0.01)))
    race_id, _ = run_race(plan, store, progress=False)
    trial = store.trials(race_id)[0]
    rows = store.predictions(trial["id"])
    assert [r["step"] for r in rows] == [40, 50, 60] and trial["status"] == "completed"
    assert all(math.isinf(r["target_step_low"]) and r["final_high"] < 0.5 for r in rows)
    assert [r["converged"] for r in rows] == [False, True, True]
    assert store.race(race_id)["config"]["predict"] == {"level": 0.25, "threshold": 0.01}
    from trainlab.reports import write_report

    report = write_report(store, tmp_path / "report", race_id).read_text()
    assert "## Learning-curve predictions" in report
    assert "| scripted_metric | adamw | 0 | 50 | never [never, never] |" in report


def test_tune_prune_by_curve_stops_a_hopeless_tuning_trial_and_never_an_evaluation_run(tmp_path):
    """In-process, on the tiny regression (60 steps, an evaluation every 10, target mse 0.05)."""
    from test_tuning import TINY

    from trainlab.tuning.coordinator import run_experiment
    from trainlab.tuning.experiment import experiment_trials
    from trainlab.tuning.plan import TuningPlan
    from trainlab.tuning.storage import open_storage

    space = {"lr": {"feasible_points": [1e-6, 0.05]}, "momentum": {"feasible_points": [0.9]}}
    plan = TuningPlan(
        name="pruned",
        algorithms=["sgd"],
        workloads=[TINY],
        trials=2,
        studies=1,
        eval_seeds=[0],
        search_spaces={"sgd": space},
        prune={"level": 0.25, "threshold": 0.01},
    )
    plan.check()
    store = f"sqlite:///{tmp_path / 's.db'}"
    storage = open_storage(store, 1, 3)
    lines: list[str] = []
    run_experiment(storage, store, plan, CPU, heartbeat_interval=1, grace_period=3, report=lines.append)
    trials = {(t.user_attrs["kind"], t.user_attrs["config"]["lr"]): t for t in experiment_trials(storage, plan)}
    slow = trials[("tune", 1e-6)]
    assert slow.user_attrs["result"]["status"] == "pruned" and slow.value == math.inf
    assert (
        slow.user_attrs["result"]["steps"] < 60
        and sorted(slow.intermediate_values) == [10, 20, 30, 40, 50][: len(slow.intermediate_values)]
    )
    assert any("pruned at step" in line for line in lines)
    assert trials[("tune", 0.05)].user_attrs["result"]["reached"]
    assert trials[("eval", 0.05)].user_attrs["result"]["status"] == "completed"
