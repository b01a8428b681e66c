"""Judging protocol v2's statistics: numbers derived by hand, and the interval's coverage simulated
on the spread of the committed leaderboard store (the acceptance: at least 93 % for nominal 95 %)."""

from __future__ import annotations

import json
import math
import sqlite3

import numpy as np
import pytest

from conftest import ROOT
from trainlab.scoring import ladder
from trainlab.scoring.verdicts import design_effect, holm, median_interval, paired_test, speedup_interval

STORE = ROOT / "docs" / "leaderboard" / "leaderboard.db"


def test_median_interval_without_clustering_is_the_binomial_order_statistics():
    # ranks interleaved across studies: no study effect (ICC clipped to 0), so n_eff = n = 15 and
    # the 95 % interval is [X(4), X(12)] (P(Bin(15, 1/2) <= 3) = 0.0176 <= 0.025 < P(<= 4) = 0.059)
    groups = [[1, 4, 7, 10, 13], [2, 5, 8, 11, 14], [3, 6, 9, 12, 15]]
    assert design_effect(groups) == 1.0
    iv = median_interval(groups)
    assert (iv.low, iv.high, iv.n, iv.n_eff, iv.exact) == (4.0, 12.0, 15, 15.0, True)


def test_studies_that_disagree_cannot_be_bounded_and_identical_runs_can():
    # each study constant, studies apart: ICC 1, n_eff = 3 runs, too few for 95 %
    iv = median_interval([[300] * 5, [400] * 5, [500] * 5])
    assert design_effect([[300] * 5, [400] * 5, [500] * 5]) == 5.0
    assert not iv.exact and (iv.low, iv.high) == (0.0, math.inf)
    # identical runs show no clustering (design effect 1): six bound the median, one does not
    same = median_interval([[350, 350, 350], [350, 350, 350]])
    assert (same.low, same.high, same.exact) == (350.0, 350.0, True)
    assert not median_interval([[350]]).exact


def test_a_miss_is_the_largest_outcome():
    iv = median_interval([[1, 4, 7, 10, 13], [2, 5, 8, 11, math.inf], [3, 6, 9, 12, math.inf]])
    assert iv.high == 12.0 and iv.low == 4.0


def test_paired_sign_test_and_holm_by_hand():
    better, worse = (0, 300.0), (0, 400.0)
    # 5 wins, no loss, pairs from one study: a two-sided sign test gives 2 / 2^5
    t = paired_test([[better] * 5], [[worse] * 5])
    assert (t.wins, t.losses, t.ties, t.n_eff) == (5, 0, 0, 5.0) and t.p == pytest.approx(2 / 32)
    # ties drop out; a loss counts
    t = paired_test([[better, better, worse, worse]], [[worse, better, better, worse]])
    assert (t.wins, t.losses, t.ties) == (1, 1, 2) and t.p == pytest.approx(1.0)
    # a miss (rank (1, distance)) loses to any reach, and a nearer miss beats a farther one
    t = paired_test([[(1, 0.01)], [(0, 900.0)]], [[(1, 0.3)], [(1, 0.01)]])
    assert (t.wins, t.losses) == (2, 0)
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}) == {"a": True, "c": False, "b": False}
    assert holm({"a": 0.001, "b": 0.02}) == {"a": True, "b": True}


def test_speedup_interval_is_the_geometric_mean_of_per_workload_median_ratios():
    pairs = {"w1": [(400.0, 200.0)] * 3, "w2": [(300.0, 300.0)] * 3, "w3": [(100.0, math.inf)] * 3}
    x, low, high, used = speedup_interval(pairs)
    assert used == 2 and x == pytest.approx(math.sqrt(2.0)) and low == pytest.approx(x) and high == pytest.approx(x)


def test_ladder_steps_rungs_and_kendall_tau():
    curve = [(50, 0.3), (100, 0.6), (150, 0.8), (200, 0.9)]
    assert ladder.steps_to(curve, 0.6, True) == 100 and ladder.steps_to(curve, 0.95, True) == math.inf
    assert ladder.steps_to([(100, 3.0), (200, 2.5)], 2.7, False) == 200
    assert ladder.metric_at(curve, 120) == 0.6 and ladder.metric_at(curve, 10) is None
    runs = [
        {"steps": 200.0, "curve": curve},
        {"steps": 200.0, "curve": [(50, 0.2), (100, 0.5), (150, 0.7), (200, 0.9)]},
    ]
    # 25/50/75 % of 200 steps: the metrics at steps 50, 100, 150, median over the two runs
    assert ladder.rungs(runs, 0.9, True) == [pytest.approx(0.25), pytest.approx(0.55), pytest.approx(0.75), 0.9]
    assert ladder.kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0
    assert ladder.kendall_tau([1, 2, 3], [30, 20, 10]) == -1.0
    assert ladder.kendall_tau([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(4 / 6)


def _store_spreads() -> list[tuple[float, float]]:
    """(between-study, between-seed) sd of log steps of every MNIST-1D cell of the committed store
    whose held-out runs all reached the target."""
    runs: dict[tuple[str, str], dict[int, list[float]]] = {}
    with sqlite3.connect(STORE) as db:
        rows = db.execute(
            "SELECT s.study_name, a.value_json, r.value_json FROM trials t "
            "JOIN studies s USING (study_id) "
            "JOIN trial_user_attributes a ON a.trial_id = t.trial_id AND a.key = 'study' "
            "JOIN trial_user_attributes r ON r.trial_id = t.trial_id AND r.key = 'result' "
            "WHERE t.state = 'COMPLETE' AND s.study_name LIKE 'trainlab:leaderboard:eval:%'"
        ).fetchall()
    for name, study, result in rows:
        _, _, _, algorithm, workload = name.split(":")
        r = json.loads(result)
        if workload.startswith("mnist1d") and r["workload"] == workload:
            steps = r["steps_to_target"] if r["reached"] else math.inf
            runs.setdefault((algorithm, workload), {}).setdefault(json.loads(study), []).append(steps)
    spreads = []
    for studies in runs.values():
        logs = [[math.log(v) for v in s] for s in studies.values()]
        if len(logs) < 2 or not all(len(g) >= 2 and all(map(math.isfinite, g)) for g in logs):
            continue
        within = float(np.mean([np.var(g, ddof=1) for g in logs]))
        between = max(0.0, float(np.var([np.mean(g) for g in logs], ddof=1)) - within / 2)
        spreads.append((math.sqrt(between), math.sqrt(within)))
    return spreads


@pytest.mark.parametrize("studies, seeds, grid", [(3, 5, 50), (3, 3, 100)])
def test_interval_coverage_on_the_stores_own_spread(studies, seeds, grid):
    """Boards simulated at every cell's spread (log-normal study effects and seed noise, rounded to
    the evaluation grid): the interval holds the population median at least 93 % of the time."""
    spreads = _store_spreads()
    assert len(spreads) >= 10, "the committed store should have finished MNIST-1D cells"
    rng = np.random.default_rng(0)
    for sigma_study, sigma_seed in spreads:
        population = rng.normal(0, sigma_study, 100_000) + rng.normal(0, sigma_seed, 100_000)
        truth = np.median(np.round(500 * np.exp(population) / grid) * grid)
        hits = 0
        for _ in range(300):
            effect = rng.normal(0, sigma_study, (studies, 1))
            board = np.round(500 * np.exp(effect + rng.normal(0, sigma_seed, (studies, seeds))) / grid) * grid
            iv = median_interval(board.tolist())
            hits += iv.low <= truth <= iv.high
        assert hits / 300 >= 0.93, (sigma_study, sigma_seed, hits / 300)
