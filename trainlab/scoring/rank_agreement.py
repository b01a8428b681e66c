"""Rank agreement between two scorings of the same items (trainlab's benchmark score against
AlgoPerf's published one): Kendall's tau-b and Spearman's rho, an exact permutation test, and a
paired bootstrap over held-out seeds.

With n items there are only n! orderings: at n = 5, tau takes the values -1, -0.8, ..., 1 (without
ties) and the exact two-sided permutation p-value of a perfect agreement is 2/120. An interval from
so few items is wide by construction; these functions report it, they do not make it narrower.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from trainlab.scoring.aggregate import median_cost
from trainlab.scoring.profiles import benchmark_score, performance_ratios

R_MAX = 4.0


def _checked(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"rank agreement needs two equal-length lists, got {a.shape} and {b.shape}")
    if len(a) < 2:
        raise ValueError(f"rank agreement needs at least 2 items, got {len(a)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("rank agreement needs finite scores")
    return a, b


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either list allowed); NaN when either list is constant."""
    from scipy.stats import kendalltau

    a, b = _checked(x, y)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(kendalltau(a, b).statistic)


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (average ranks for ties); NaN when either list is constant."""
    from scipy.stats import spearmanr

    a, b = _checked(x, y)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(a, b).statistic)


def permutation_p(x: Sequence[float], y: Sequence[float], statistic=kendall_tau) -> float:
    """Exact two-sided p-value of `statistic` under the null of no association: the fraction of all
    n! orderings of `y` whose |statistic| is at least the observed one (n <= 9: 362,880 orderings)."""
    a, b = _checked(x, y)
    if len(a) > 9:
        raise ValueError(f"an exact permutation test enumerates n! orderings: n = {len(a)} is too many")
    observed = statistic(a, b)
    if math.isnan(observed):
        return math.nan
    values = [statistic(a, b[list(p)]) for p in itertools.permutations(range(len(b)))]
    return sum(abs(v) >= abs(observed) - 1e-12 for v in values) / len(values)


def scores_from_costs(costs: Mapping[str, Mapping[str, Sequence[float]]], r_max: float = R_MAX) -> dict[str, float]:
    """{item: {workload: costs over held-out seeds}} -> trainlab's benchmark score per item: the
    median over seeds per workload (a miss is inf), performance ratios, area under the profile."""
    per_workload = {item: {w: median_cost(c) for w, c in ws.items()} for item, ws in costs.items()}
    return benchmark_score(performance_ratios(per_workload, r_max), r_max)


def bootstrap_agreement(
    costs: Mapping[str, Mapping[str, Sequence[float]]],
    reference: Mapping[str, float],
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, object]:
    """Percentile intervals of tau and rho between the benchmark score of `costs` and `reference`,
    resampling the held-out seeds with replacement, paired: one draw of seed positions applies to
    every item and workload (every item ran the same seeds). It measures how much trainlab's side
    of the comparison moves with its seeds; the reference scores are taken as fixed. Resamples where
    the scores tie everywhere (tau undefined) are counted and left out."""
    items = sorted(costs)
    lengths = {len(c) for ws in costs.values() for c in ws.values()}
    if len(lengths) != 1:
        raise ValueError(f"every item and workload needs the same held-out seeds, got run counts {sorted(lengths)}")
    (n_seeds,) = lengths
    rng = np.random.default_rng(seed)
    ref = [reference[i] for i in items]
    taus, rhos = [], []
    for _ in range(resamples):
        pick = rng.integers(0, n_seeds, size=n_seeds)
        drawn = {i: {w: [c[j] for j in pick] for w, c in ws.items()} for i, ws in costs.items()}
        scores = scores_from_costs(drawn)
        ours = [scores[i] for i in items]
        taus.append(kendall_tau(ours, ref))
        rhos.append(spearman_rho(ours, ref))
    return {
        "resamples": resamples,
        "undefined": int(sum(math.isnan(t) for t in taus)),
        "tau": _interval(taus, confidence),
        "rho": _interval(rhos, confidence),
    }


def _interval(values: list[float], confidence: float) -> list[float] | None:
    kept = np.sort([v for v in values if not math.isnan(v)])
    if not len(kept):
        return None
    alpha, last = (1 - confidence) / 2, len(kept) - 1
    return [float(kept[math.floor(alpha * last)]), float(kept[math.ceil((1 - alpha) * last)])]


def agreement(ours: Mapping[str, float], reference: Mapping[str, float]) -> dict[str, float | int]:
    """Tau, rho and their exact permutation p-values over the items both score."""
    items = sorted(set(ours) & set(reference))
    a, b = [ours[i] for i in items], [reference[i] for i in items]
    return {
        "n": len(items),
        "kendall_tau": kendall_tau(a, b),
        "spearman_rho": spearman_rho(a, b),
        "tau_permutation_p": permutation_p(a, b, kendall_tau),
        "rho_permutation_p": permutation_p(a, b, spearman_rho),
    }
