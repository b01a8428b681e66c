"""AlgoPerf-style scoring: pure functions from costs-to-target (seconds or steps) to profiles,
benchmark scores and speedups, kept free of the results store so they can be tested by hand."""

from __future__ import annotations

from trainlab.scoring.aggregate import bootstrap_interval, geometric_mean_speedup, median_cost, workload_cost
from trainlab.scoring.profiles import benchmark_score, performance_profile, performance_ratios
from trainlab.scoring.stability import after_target, worst_since

__all__ = [
    "after_target",
    "benchmark_score",
    "bootstrap_interval",
    "geometric_mean_speedup",
    "median_cost",
    "performance_profile",
    "performance_ratios",
    "workload_cost",
    "worst_since",
]
