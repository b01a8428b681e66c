"""Performance ratios, performance profiles and the benchmark score (AlgoPerf, Dahl et al. 2023).

Inputs are per-(algorithm, workload) costs from `trainlab.scoring.aggregate.workload_cost`:
seconds or steps to the target, ``inf`` for a miss. Everything here is generic over the cost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from trainlab.scoring.aggregate import check_cost

Ratios = Mapping[str, Mapping[str, float]]


def _check_r_max(r_max: float) -> float:
    if not (math.isfinite(r_max) and r_max > 1):
        raise ValueError(f"r_max must be a finite number above 1, got {r_max!r}")
    return float(r_max)


def performance_ratios(costs: Mapping[str, Mapping[str, float]], r_max: float = 4.0) -> dict[str, dict[str, float]]:
    """r[s][w] = cost[s][w] / min over algorithms of cost[s'][w], with ratios above `r_max` set to inf.

    Every algorithm must have a cost on every workload: a silently missing entry would shrink that
    algorithm's denominator in the profile. Tied best algorithms all get exactly 1; a ratio exactly
    r_max is kept (it still scores 0 but counts in the profile at tau = r_max); a workload nobody
    reaches gives inf to everyone. Capping at r_max as AlgoPerf does makes "much slower" and "missed"
    the same thing, so no algorithm is rewarded for being merely less catastrophic.
    """
    r_max = _check_r_max(r_max)
    if not costs:
        raise ValueError("no algorithms")
    workloads = sorted({w for per_workload in costs.values() for w in per_workload})
    if not workloads:
        raise ValueError("no workloads")
    for algorithm in sorted(costs):
        for w in workloads:
            if w not in costs[algorithm]:
                raise ValueError(f"algorithm {algorithm!r} has no cost for workload {w!r}")
    checked = {a: {w: check_cost(costs[a][w], f"cost of {a!r} on {w!r}") for w in workloads} for a in costs}
    ratios: dict[str, dict[str, float]] = {a: {} for a in costs}
    for w in workloads:
        best = min(checked[a][w] for a in costs)
        for a in costs:
            ratio = checked[a][w] / best if math.isfinite(best) else math.inf
            ratios[a][w] = ratio if ratio <= r_max else math.inf
    return ratios


def performance_profile(ratios: Ratios, taus: Sequence[float]) -> dict[str, list[float]]:
    """rho_s(tau): the fraction of workloads on which algorithm s is within a factor tau of the best."""
    profile: dict[str, list[float]] = {}
    for algorithm, per_workload in ratios.items():
        values = list(per_workload.values())
        if not values:
            raise ValueError(f"algorithm {algorithm!r} has no workloads")
        profile[algorithm] = [sum(r <= tau for r in values) / len(values) for tau in taus]
    return profile


def benchmark_score(ratios: Ratios, r_max: float = 4.0) -> dict[str, float]:
    """B_s = 1/(r_max - 1) * integral from 1 to r_max of rho_s(tau) dtau, in [0, 1].

    rho_s is a step function, so the integral is exact: a workload with ratio r <= r_max is counted
    for every tau in [r, r_max] and adds (r_max - r) / ((r_max - 1) * n_workloads); a ratio above
    r_max (or inf) adds 0. AlgoPerf instead approximates the integral with np.trapz over 100 tau
    points, so its scores can differ from these in the third decimal. Ratios below 1 (impossible
    from `performance_ratios`) are clamped to 1, the lower limit of the integral.
    """
    r_max = _check_r_max(r_max)
    scores: dict[str, float] = {}
    for algorithm, per_workload in ratios.items():
        values = list(per_workload.values())
        if not values:
            raise ValueError(f"algorithm {algorithm!r} has no workloads")
        area = math.fsum(r_max - max(r, 1.0) for r in values if r <= r_max)
        scores[algorithm] = area / ((r_max - 1.0) * len(values))
    return scores
