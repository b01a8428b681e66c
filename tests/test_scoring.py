"""AlgoPerf-style scoring against numbers computed by hand: medians with misses, ratios capped at
r_max, profiles, the exact benchmark-score integral, bootstrap intervals, speedups, plots, tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainlab.reports.scoring_tables import scoring_table_latex, scoring_table_markdown
from trainlab.reports.tuning_plots import performance_profiles_plot, tuning_curves_plot, workload_costs_plot
from trainlab.scoring import (
    benchmark_score,
    bootstrap_interval,
    geometric_mean_speedup,
    median_cost,
    performance_profile,
    performance_ratios,
    workload_cost,
)

INF = math.inf

# Three algorithms, four workloads:
#   tie:     A = B = 10 are both fastest (ratio 1), C missed (inf)
#   capped:  C = 15 fastest; A = 60 is exactly 4x (kept); B = 60.3 is 4.02x (> r_max, becomes inf)
#   spread:  A = 20 fastest; C = 25 is 1.25x; B = 50 is 2.5x
#   nobody:  every algorithm missed, so every ratio is inf
COSTS = {
    "A": {"tie": 10.0, "capped": 60.0, "spread": 20.0, "nobody": INF},
    "B": {"tie": 10.0, "capped": 60.3, "spread": 50.0, "nobody": INF},
    "C": {"tie": INF, "capped": 15.0, "spread": 25.0, "nobody": INF},
}
RATIOS = {
    "A": {"tie": 1.0, "capped": 4.0, "spread": 1.0, "nobody": INF},
    "B": {"tie": 1.0, "capped": INF, "spread": 2.5, "nobody": INF},
    "C": {"tie": INF, "capped": 1.0, "spread": 1.25, "nobody": INF},
}
# A workload with ratio r <= 4 adds (4 - r) / ((4 - 1) * 4 workloads) to the score.
SCORES = {
    "A": ((4 - 1) + (4 - 4) + (4 - 1) + 0) / (3 * 4),  # 6 / 12 = 0.5
    "B": ((4 - 1) + 0 + (4 - 2.5) + 0) / (3 * 4),  # 4.5 / 12 = 0.375
    "C": (0 + (4 - 1) + (4 - 1.25) + 0) / (3 * 4),  # 5.75 / 12 = 0.479166...
}


# --- ratios, profiles, score ---------------------------------------------------------------------


def test_ratios_tie_cap_and_unreached_workload():
    assert performance_ratios(COSTS) == RATIOS


def test_smaller_r_max_caps_more():
    ratios = performance_ratios(COSTS, r_max=2.0)
    assert ratios["A"]["capped"] == INF and ratios["B"]["spread"] == INF  # 4 and 2.5 exceed 2
    assert ratios["C"]["spread"] == 1.25
    # C: (2 - 1) + (2 - 1.25) over (2 - 1) * 4 workloads
    assert benchmark_score(ratios, r_max=2.0)["C"] == pytest.approx((1 + 0.75) / 4)


def test_profile_counts_ratios_at_most_tau():
    taus = [1.0, 1.25, 2.0, 2.5, 4.0, 100.0]
    profile = performance_profile(RATIOS, taus)
    assert profile["A"] == [2 / 4, 2 / 4, 2 / 4, 2 / 4, 3 / 4, 3 / 4]  # ratio exactly 4 counts at tau 4
    assert profile["B"] == [1 / 4, 1 / 4, 1 / 4, 2 / 4, 2 / 4, 2 / 4]
    assert profile["C"] == [1 / 4, 2 / 4, 2 / 4, 2 / 4, 2 / 4, 2 / 4]


def test_benchmark_score_is_the_exact_integral():
    scores = benchmark_score(RATIOS)
    assert scores == pytest.approx(SCORES, abs=1e-12)
    assert scores["A"] == 0.5 and scores["B"] == 0.375
    # A fine trapezoid (what AlgoPerf does with 100 points) converges to the same numbers.
    taus = np.linspace(1.0, 4.0, 30001)
    profile = performance_profile(RATIOS, taus)
    for name, values in profile.items():
        assert np.trapezoid(values, taus) / 3 == pytest.approx(SCORES[name], abs=1e-3)


def test_score_bounds():
    assert benchmark_score({"only": {"w": 1.0, "v": 1.0}}) == {"only": 1.0}
    assert benchmark_score({"none": {"w": INF}}) == {"none": 0.0}
    assert benchmark_score(performance_ratios({"a": {"w": INF}, "b": {"w": INF}})) == {"a": 0.0, "b": 0.0}


def test_ratio_errors():
    with pytest.raises(ValueError, match="'B'.*'spread'"):
        performance_ratios({"A": {"tie": 1.0, "spread": 2.0}, "B": {"tie": 1.0}})
    with pytest.raises(ValueError, match="no algorithms"):
        performance_ratios({})
    with pytest.raises(ValueError, match="r_max"):
        performance_ratios(COSTS, r_max=1.0)
    with pytest.raises(ValueError, match="positive"):
        performance_ratios({"A": {"w": 0.0}})
    with pytest.raises(ValueError, match="positive"):
        performance_ratios({"A": {"w": math.nan}})


# --- medians, workload cost, bootstrap -----------------------------------------------------------


@pytest.mark.parametrize(
    "values, expected",
    [
        ([3.0, 1.0, 2.0], 2.0),
        ([1.0, INF, INF], INF),  # most missed: a miss
        ([1.0, 2.0, INF], 2.0),  # one miss out of three does not matter
        ([1.0, 2.0, 3.0, INF], 2.5),  # even: mean of the middle two
        ([1.0, 2.0, INF, INF], INF),  # even, a middle value is inf: inf
        ([7.0], 7.0),
    ],
)
def test_median_cost(values, expected):
    assert median_cost(values) == expected


def test_median_cost_rejects_empty_and_nan():
    with pytest.raises(ValueError, match="no costs"):
        median_cost([])
    with pytest.raises(ValueError):
        median_cost([1.0, math.nan])


def test_workload_cost_is_median_over_studies_of_median_over_seeds():
    # study medians: 2, inf, 4.5 -> median 4.5
    assert workload_cost([[1, 2, 3], [10, INF, INF], [4, 5]]) == 4.5
    # study medians: inf (even count, middle value inf), 2 -> mean of the two: inf
    assert workload_cost([[1, INF], [2, 2, 2]]) == INF
    with pytest.raises(ValueError, match="no studies"):
        workload_cost([])
    with pytest.raises(ValueError, match="no evaluation seeds"):
        workload_cost([[1.0], []])


def test_bootstrap_is_reproducible_and_contains_the_estimate():
    data = [[10, 11, 12, 13, 14], [11, 12, 13, 14, 15], [12, 13, 14, 15, 16]]
    point = workload_cost(data)
    assert point == 13
    low, high = bootstrap_interval(data, seed=3)
    assert (low, high) == bootstrap_interval(data, seed=3)
    assert 10 <= low <= point <= high <= 16 and low < high
    narrow = bootstrap_interval(data, seed=3, confidence=0.5)
    assert low <= narrow[0] <= narrow[1] <= high


def test_bootstrap_degenerate_and_infinite():
    assert bootstrap_interval([[4.0, 4.0], [4.0]]) == (4.0, 4.0)
    assert bootstrap_interval([[4.0]]) == (4.0, 4.0)
    assert bootstrap_interval([[INF, INF], [INF]]) == (INF, INF)
    # median of 10, 11, 12, inf, inf is 12, but a resample with 3 misses of 5 is a miss
    low, high = bootstrap_interval([[10, 11, 12, INF, INF]], seed=1)
    assert 10 <= low <= 12 and high == INF


def test_bootstrap_argument_errors():
    with pytest.raises(ValueError):
        bootstrap_interval([[1.0]], resamples=0)
    with pytest.raises(ValueError):
        bootstrap_interval([[1.0]], confidence=1.0)
    with pytest.raises(ValueError):
        bootstrap_interval([])


# --- speedups ------------------------------------------------------------------------------------


def test_geometric_mean_speedup_with_exclusions():
    costs = {
        "base": {"w1": 10.0, "w2": 10.0, "w3": INF},
        "B": {"w1": 5.0, "w2": 20.0, "w3": 3.0},  # speedups 2 and 0.5; w3 excluded -> 1.0 over 2
        "C": {"w1": INF, "w2": 2.5, "w3": 1.0},  # only w2: 10 / 2.5 = 4
        "D": {"w1": INF, "w2": INF, "w3": INF},  # nothing in common -> nan
        "E": {"w1": 5.0, "w2": 1.25, "w3": INF},  # speedups 2 and 8 -> sqrt(16) = 4
    }
    result = geometric_mean_speedup(costs, "base")
    assert result["base"] == (1.0, 2, 3)
    assert result["B"][0] == pytest.approx(1.0) and result["B"][1:] == (2, 3)
    assert result["C"][0] == pytest.approx(4.0) and result["C"][1:] == (1, 3)
    assert math.isnan(result["D"][0]) and result["D"][1:] == (0, 3)
    assert result["E"][0] == pytest.approx(4.0) and result["E"][1:] == (2, 3)


def test_unknown_baseline_names_the_algorithms():
    with pytest.raises(ValueError, match="'adamw'.*A, B, C"):
        geometric_mean_speedup(COSTS, "adamw")


# --- plots ---------------------------------------------------------------------------------------


def _is_png(path) -> bool:
    return path.exists() and path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_performance_profiles_plot(tmp_path):
    ratios = {**RATIOS, "D": {w: INF for w in RATIOS["A"]}}  # a curve that stays at 0
    assert _is_png(performance_profiles_plot(ratios, tmp_path / "profiles.png"))


def test_workload_costs_plot_with_misses(tmp_path):
    rows = [
        {"workload": "mnist", "algorithm": "A", "cost": 12.3, "low": 10.1, "high": 15.0},
        {"workload": "mnist", "algorithm": "B", "cost": 20.0, "low": 14.0, "high": INF},
        {"workload": "mnist", "algorithm": "C", "cost": INF, "low": 30.0, "high": INF},
        {"workload": "lm", "algorithm": "A", "cost": INF, "low": INF, "high": INF},
        {"workload": "lm", "algorithm": "B", "cost": 300.0, "low": 250.0, "high": 340.0},
    ]
    assert _is_png(workload_costs_plot(rows, tmp_path / "costs.png", unit="s"))
    with pytest.raises(ValueError):
        workload_costs_plot([], tmp_path / "empty.png")


def test_tuning_curves_plot_with_misses(tmp_path):
    curves = [
        {"workload": "mnist", "algorithm": "A", "study": 0, "costs": [INF, 30.0, 40.0, 12.0]},
        {"workload": "mnist", "algorithm": "A", "study": 1, "costs": [25.0, INF, 20.0, 22.0]},
        {"workload": "mnist", "algorithm": "B", "study": 0, "costs": [INF, INF, INF, INF]},
        {"workload": "lm", "algorithm": "B", "study": 0, "costs": [INF, 300.0, 280.0]},
    ]
    assert _is_png(tuning_curves_plot(curves, tmp_path / "tuning.png"))


# --- tables --------------------------------------------------------------------------------------


def test_scoring_table_markdown():
    intervals = {"A": {"tie": (9.0, 11.5), "spread": (18.0, 24.0)}, "C": {"capped": (12.0, INF)}}
    speedups = geometric_mean_speedup(COSTS, "A")
    table = scoring_table_markdown(COSTS, intervals, SCORES, speedups, unit="s", baseline="A")
    lines = table.strip().splitlines()
    assert lines[0] == "| algorithm | capped (s) | nobody (s) | spread (s) | tie (s) | score | speedup vs A |"
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["A", "C", "B"]  # by score, descending
    a_row, c_row, b_row = lines[2:]
    assert "| 10.0 [9.0, 11.5] |" in a_row  # the interval takes the estimate's decimals
    assert "| 60.0 | miss |" in a_row and "| 0.500 |" in a_row and "1.00x (3/4)" in a_row
    assert "| 15.0 [12.0, inf] |" in c_row and "| 0.479 |" in c_row
    # C vs A: capped 60/15 = 4, spread 20/25 = 0.8 -> sqrt(3.2) over 2 of 4 workloads
    assert f"{math.sqrt(3.2):.2f}x (2/4)" in c_row
    # B vs A: tie 1, capped 60/60.3, spread 0.4 -> cube root of their product over 3 of 4
    assert f"{(60 / 60.3 * 0.4) ** (1 / 3):.2f}x (3/4)" in b_row and "| 0.375 |" in b_row
    assert table.count("miss") == 4  # A, B, C on "nobody", and C on "tie"


def test_scoring_table_latex():
    speedups = geometric_mean_speedup(COSTS, "A")
    table = scoring_table_latex(COSTS, {"C": {"capped": (12.0, INF)}}, SCORES, speedups, baseline="A")
    assert table.startswith(r"\begin{tabular}{lrrrrrr}") and r"\toprule" in table and r"\bottomrule" in table
    assert r"15.0 [12.0, $\infty$]" in table and r"1.00$\times$ (3/4)" in table
    assert "\x00" not in table


def test_stability_after_target_on_hand_made_curves():
    from trainlab.scoring import after_target

    assert after_target([0.2, 0.9, 0.7, 0.95], 0.8, True) == (0.7, pytest.approx(0.1), 2)
    assert after_target([0.2, 0.9, 0.85], 0.8, True) == (0.85, 0.0, 1)
    assert after_target([0.2, 0.5], 0.8, True) == (None, None, 0)  # never reached
    assert after_target([0.2, 0.9], 0.8, True) == (None, None, 0)  # reached at the last evaluation
    assert after_target([3.0, 2.5, 2.9, 2.6], 2.7, False) == (2.9, pytest.approx(0.2), 2)  # lower is better
    assert after_target([3.0, 2.5, math.nan], 2.7, False) == (math.inf, math.inf, 1)  # diverged after it


# ---- pinned by the mutation check (scripts/mutation-check) -------------------------------------


def test_the_interval_reads_order_statistics_floor_and_ceil_of_alpha_times_n_minus_1():
    from trainlab.scoring.aggregate import _order_statistic_interval

    # 2000 estimates 1..2000, 95 %: alpha (n - 1) = 0.025 x 1999 = 49.975 -> index 49 (value 50);
    # (1 - alpha)(n - 1) = 1949.025 -> index 1950 (value 1951), rounding outwards on both sides
    estimates = np.arange(1.0, 2001.0)
    assert _order_statistic_interval(estimates[::-1].copy(), 0.95) == (50.0, 1951.0)
    assert _order_statistic_interval(estimates, 0.5) == (500.0, 1501.0)  # 499.75 -> 499, 1499.25 -> 1500


def test_the_default_bootstrap_is_2000_resamples_from_seed_0():
    costs = [[2.0**i for i in range(8)], [3.0**i for i in range(8)]]  # spread out: every resample counts
    assert bootstrap_interval(costs) == bootstrap_interval(costs, resamples=2000, confidence=0.95, seed=0)
    assert bootstrap_interval(costs) != bootstrap_interval(costs, resamples=2001, seed=0)


def test_scoring_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match="^median of no costs$"):
        median_cost([])
    with pytest.raises(ValueError, match="^no algorithms$"):
        performance_ratios({})
    with pytest.raises(ValueError, match="^no workloads$"):
        performance_ratios({"a": {}})
    with pytest.raises(ValueError, match="^cost of 'b' on 'w' must be positive"):
        performance_ratios({"a": {"w": 1.0}, "b": {"w": math.nan}})
    with pytest.raises(ValueError, match="^algorithm 'a' has no workloads$"):
        performance_profile({"a": {}}, [1.0])
    with pytest.raises(ValueError, match="^algorithm 'a' has no workloads$"):
        benchmark_score({"a": {}})
    with pytest.raises(ValueError, match="^cost of 'adamw' on 'w' must be positive"):
        geometric_mean_speedup({"adamw": {"w": 0.0}, "b": {"w": 1.0}}, "adamw")
    with pytest.raises(ValueError, match="^cost of 'b' on 'w' must be positive"):
        geometric_mean_speedup({"adamw": {"w": 1.0}, "b": {"w": -1.0}}, "adamw")
