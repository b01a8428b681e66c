"""Judging protocol v2's learning-rate search: the bracket rule re-derived by hand on small cases,
and a real experiment in a SQLite store whose studies end bracketed."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import ROOT
from trainlab.tuning import search
from trainlab.tuning.search import EXTEND_HIGH, EXTEND_LOW, REFINE, Point, SearchRule, next_trials, rank_of

TINY = str(ROOT / "tests" / "support_workloads.py")
RULE = SearchRule(factor=3.0, max_extensions=2, refine=True)


def pt(draw, lr, steps=None, miss=None, phase=None, diverged=False):
    rank = (2,) if diverged else (0, float(steps)) if steps is not None else (1, float(miss))
    return Point(draw, lr, rank, {"lr": lr, "wd": 0.1 * (draw + 1)}, phase)


def test_rank_orders_reached_then_missed_by_distance_then_diverged():
    reached = rank_of(True, 400, 0.9, 0.85, True)
    near_miss = rank_of(False, math.inf, 0.84, 0.85, True)
    far_miss = rank_of(False, math.inf, 0.30, 0.85, True)
    lower_better_miss = rank_of(False, math.inf, 3.0, 2.76, False)
    assert reached == (0, 400.0) and near_miss == (1, pytest.approx(0.01)) and far_miss == (1, pytest.approx(0.55))
    assert lower_better_miss == (1, pytest.approx(0.24))
    assert reached < near_miss < far_miss < rank_of(False, math.inf, float("nan"), 0.85, True) == (2,)


def test_best_at_the_top_edge_extends_upwards_from_the_best_configuration():
    points = [pt(0, 0.001, steps=900), pt(1, 0.003, steps=600), pt(2, 0.01, steps=400)]
    assert search.bracket(points) == (True, False)
    [(phase, config)] = next_trials(points, RULE)
    assert phase == EXTEND_HIGH and config == {"lr": pytest.approx(0.03), "wd": pytest.approx(0.3)}


def test_ties_are_not_worse_so_the_search_goes_beyond_them():
    # 0.01 and 0.02 tie at 400 steps: the best (earlier draw) is 0.01, and 0.02 does not bracket it
    points = [pt(0, 0.001, steps=900), pt(1, 0.01, steps=400), pt(2, 0.02, steps=400)]
    [(phase, config)] = next_trials(points, RULE)
    assert phase == EXTEND_HIGH and config["lr"] == pytest.approx(0.06) and config["wd"] == pytest.approx(0.2)


def test_both_sides_open_extend_both_at_once_and_stop_after_max_extensions():
    points = [pt(0, 0.01, steps=400)]
    proposed = dict(next_trials(points, RULE))
    assert proposed[EXTEND_LOW]["lr"] == pytest.approx(0.01 / 3) and proposed[EXTEND_HIGH]["lr"] == pytest.approx(0.03)
    # two extensions on each side already tried, all tied with the best: the search gives up
    exhausted = points + [
        pt(1, 0.01 / 3, steps=400, phase=EXTEND_LOW),
        pt(2, 0.03, steps=400, phase=EXTEND_HIGH),
        pt(3, 0.01 / 9, steps=400, phase=EXTEND_LOW),
        pt(4, 0.09, steps=400, phase=EXTEND_HIGH),
    ]
    assert next_trials(exhausted, RULE) == []
    assert search.where_best_lies(exhausted) == {
        "lr": 0.01,
        "low": pytest.approx(0.01 / 9),
        "high": pytest.approx(0.09),
        "bracketed_low": False,
        "bracketed_high": False,
    }


def test_a_divergence_above_brackets_and_refinement_takes_geometric_midpoints_once():
    points = [pt(0, 0.001, miss=0.2), pt(1, 0.004, steps=500), pt(2, 0.04, diverged=True)]
    assert search.bracket(points) == (True, True)
    proposed = next_trials(points, RULE)
    assert [p for p, _ in proposed] == [REFINE, REFINE]
    assert [c["lr"] for _, c in proposed] == [
        pytest.approx(math.sqrt(0.001 * 0.004)),
        pytest.approx(math.sqrt(0.004 * 0.04)),
    ]
    assert all(c["wd"] == pytest.approx(0.2) for _, c in proposed)
    # after one refinement round the study is settled, whichever trial won
    refined = points + [pt(3, 0.002, steps=450, phase=REFINE), pt(4, 0.0126, steps=700, phase=REFINE)]
    assert next_trials(refined, RULE) == [] and search.bracket(refined) == (True, True)


def test_no_rule_or_no_points_means_no_search():
    assert SearchRule.from_dict({}) is None
    assert next_trials([], RULE) == []


@pytest.mark.slow
def test_an_experiment_extends_its_range_until_the_best_is_bracketed(tmp_path):
    """In-process, on the tiny regression: every draw of a too-low range misses, so the search must
    climb past the range's top until larger learning rates stop helping, then refine."""
    from trainlab.tuning.coordinator import run_experiment
    from trainlab.tuning.experiment import experiment_trials
    from trainlab.tuning.outcomes import collect
    from trainlab.tuning.plan import TuningPlan
    from trainlab.tuning.storage import open_storage

    space = {"lr": {"min": 1e-4, "max": 3e-4, "scaling": "log"}, "warmup_fraction": {"feasible_points": [0.0]}}
    plan = TuningPlan(
        name="bracket",
        algorithms=["sgd"],
        workloads=[TINY],
        trials=2,
        studies=1,
        eval_seeds=[0],
        search_spaces={"sgd": space},
        select_by="steps",
        search={"factor": 10.0, "max_extensions": 4, "refine": True},
        independent_draws=True,
    )
    plan.check()
    store = f"sqlite:///{tmp_path / 's.db'}"
    storage = open_storage(store, 1, 3)
    run_experiment(
        storage, store, plan, torch.device("cpu"), heartbeat_interval=1, grace_period=3, report=lambda _: None
    )
    trials = [t for t in experiment_trials(storage, plan) if t.user_attrs.get("kind") == "tune"]
    assert all(t.state.name == "COMPLETE" for t in trials)
    phases = [t.user_attrs.get("phase") for t in sorted(trials, key=lambda t: t.user_attrs["draw"])]
    assert phases[:2] == [None, None] and EXTEND_HIGH in phases and REFINE in phases
    assert len({t.user_attrs["draw"] for t in trials}) == len(trials)  # each draw once
    [where] = collect(storage, plan).brackets
    assert where["bracketed_low"] and where["bracketed_high"]
    assert where["lr"] > 3e-4  # the optimum lies above the range the study started from
    evaluated = [t for t in experiment_trials(storage, plan) if t.user_attrs.get("kind") == "eval"]
    assert [t.user_attrs["config"]["lr"] for t in evaluated] == [where["lr"]]
