"""Intervals and pairwise verdicts that mean what they say (judging protocol v2).

A cell's held-out runs are S studies x K seeds. They are not S*K independent draws: the runs of one
study share its chosen configuration, so they are correlated. Both tools here discount that with
Kish's design effect, estimated from the cell itself on ranks (a miss is the largest rank, so no
distribution is assumed and misses need no special case):

    ICC = (MSB - MSW) / (MSB + (K - 1) MSW)  (one-way ANOVA on ranks, clipped to [0, 1])
    n_eff = n / (1 + (K - 1) ICC)

- `median_interval`: the distribution-free order-statistic interval for the median, with the order
  statistics chosen for n_eff runs and read off the n runs at the same quantiles (outwards). Its
  coverage on the store's own spread is checked by simulation (tests/test_verdicts.py).
- `paired_test`: A against B on the same seeds (the same initialisation and data order), study k
  of A beside study k of B: an exact two-sided sign test on the pairs that differ, its count of
  pairs discounted by the design effect of the pair outcomes; `holm` corrects a family of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties shared; inf is simply the largest value."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def design_effect(groups: Sequence[Sequence[float]]) -> float:
    """1 + (K - 1) ICC for runs grouped by study (K: mean group size); 1 for one group or K = 1."""
    sizes = [len(g) for g in groups]
    if len(groups) < 2 or max(sizes) < 2:
        return 1.0
    flat = np.array([v for g in groups for v in g], dtype=float)
    ranks = _ranks(flat)
    split = np.split(ranks, np.cumsum(sizes)[:-1])
    grand = ranks.mean()
    n, s = len(ranks), len(groups)
    k = n / s
    msb = sum(len(r) * (r.mean() - grand) ** 2 for r in split) / (s - 1)
    msw = sum(((r - r.mean()) ** 2).sum() for r in split) / (n - s)
    if msb <= 0 and msw <= 0:
        return 1.0  # every value the same: nothing to tell the studies apart by
    icc = (msb - msw) / (msb + (k - 1) * msw) if msb + (k - 1) * msw > 0 else 1.0
    return 1.0 + (k - 1) * min(1.0, max(0.0, icc))


def _binom_cdf(j: int, m: int) -> float:
    return sum(math.comb(m, i) for i in range(j + 1)) / 2**m


def _order_index(m: int, level: float) -> int | None:
    """The largest j with P(Bin(m, 1/2) <= j - 1) <= (1 - level) / 2, or None when m is too small."""
    alpha = (1 - level) / 2
    best = None
    for j in range(1, m // 2 + 1):
        if _binom_cdf(j - 1, m) <= alpha:
            best = j
    return best


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    n: int  # runs
    n_eff: float  # runs after the design effect
    exact: bool  # False when n_eff is too small for the level: then (0, inf), "cannot be bounded"


def median_interval(groups: Sequence[Sequence[float]], level: float = LEVEL) -> Interval:
    """An interval for the median of the cell's run outcome (inf = a miss) over studies and seeds."""
    flat = np.sort(np.array([v for g in groups for v in g], dtype=float))
    n = len(flat)
    if n == 0:
        raise ValueError("an interval needs at least one run")
    n_eff = n / design_effect(groups)
    m = max(1, int(math.floor(n_eff + 1e-9)))
    j = _order_index(m, level)
    if j is None:  # the studies disagree more than this many runs can bound: say so, not a range
        return Interval(0.0, math.inf, n, n_eff, False)
    low = max(1, int(math.floor(j / (m + 1) * (n + 1))))
    high = min(n, int(math.ceil((m + 1 - j) / (m + 1) * (n + 1))))
    return Interval(float(flat[low - 1]), float(flat[high - 1]), n, n_eff, True)


@dataclass(frozen=True)
class Paired:
    wins: int  # pairs where A did better
    losses: int  # pairs where B did better
    ties: int
    n_eff: float  # differing pairs after the design effect
    p: float  # exact two-sided sign test on n_eff pairs


def paired_test(a: Sequence[Sequence[tuple]], b: Sequence[Sequence[tuple]]) -> Paired:
    """A against B: `a[k][s]` is A's rank key (`trainlab.tuning.search.rank_of`: smaller is better)
    in study k on the k-th seed; B's likewise, on the same seeds. Pairs study k with study k."""
    signs: list[list[float]] = []
    for runs_a, runs_b in zip(a, b):
        signs.append([(1.0 if x < y else -1.0) for x, y in zip(runs_a, runs_b) if x != y])
    wins = sum(v > 0 for g in signs for v in g)
    losses = sum(v < 0 for g in signs for v in g)
    ties = sum(min(len(x), len(y)) for x, y in zip(a, b)) - wins - losses
    differing = wins + losses
    if differing == 0:
        return Paired(wins, losses, ties, 0.0, 1.0)
    deff = design_effect([g for g in signs if g])
    n_eff = differing / deff
    m = max(1, int(round(n_eff)))
    k = int(round(min(wins, losses) * m / differing))
    p = min(1.0, 2 * _binom_cdf(k, m))
    return Paired(wins, losses, ties, n_eff, p)


def holm(pvalues: dict, level: float = 1 - LEVEL) -> dict:
    """Holm's step-down correction: key -> whether its hypothesis is rejected at family level `level`."""
    ordered = sorted(pvalues.items(), key=lambda kv: (kv[1], str(kv[0])))
    out = {}
    failed = False
    for i, (key, p) in enumerate(ordered):
        failed = failed or p > level / (len(ordered) - i)
        out[key] = not failed
    return out


def spread(cells: Sequence[Sequence[Sequence[float]]]) -> tuple[float, float]:
    """Pooled (between-study, between-seed) standard deviations of log steps over cells whose runs
    all reached the target (a one-way ANOVA per cell, variance components averaged)."""
    between, within = [], []
    for groups in cells:
        logs = [[math.log(v) for v in g] for g in groups]
        if len(logs) < 2 or any(len(g) < 2 or not all(map(math.isfinite, g)) for g in logs):
            continue
        k = statistics_mean([len(g) for g in logs])
        within_var = statistics_mean([float(np.var(g, ddof=1)) for g in logs])
        means = [float(np.mean(g)) for g in logs]
        between.append(max(0.0, float(np.var(means, ddof=1)) - within_var / k))
        within.append(within_var)
    if not within:
        return math.nan, math.nan
    return math.sqrt(statistics_mean(between)), math.sqrt(statistics_mean(within))


def statistics_mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def detectable_ratio(
    sigma_study: float,
    sigma_seed: float,
    studies: int,
    seeds: int,
    grid: int,
    base: float,
    comparisons: int,
    power: float = 0.8,
    reps: int = 200,
    seed: int = 0,
) -> float:
    """The smallest ratio of steps (1.05 ... 4) that `paired_test` detects at the first Holm level
    (0.05 / comparisons) in `power` of simulated boards with this spread, evaluations every `grid`
    steps and `base` steps for the faster method; inf if none in the range. Seeds' noise is drawn
    independently for the two methods, so the pairing's benefit is not assumed."""
    if not (math.isfinite(sigma_study) and math.isfinite(sigma_seed)):
        return math.nan
    rng = np.random.default_rng(seed)
    level = (1 - LEVEL) / comparisons

    def board(scale: float) -> list[list[tuple]]:
        effect = rng.normal(0.0, sigma_study, size=(studies, 1))
        noise = rng.normal(0.0, sigma_seed, size=(studies, seeds))
        steps = np.maximum(grid, np.round(base * scale * np.exp(effect + noise) / grid) * grid)
        return [[(0, float(v)) for v in row] for row in steps]

    for ratio in (1.05, 1.1, 1.15, 1.2, 1.3, 1.4, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0):
        hits = sum(paired_test(board(1.0), board(ratio)).p <= level for _ in range(reps))
        if hits >= power * reps:
            return ratio
    return math.inf


def speedup_interval(
    pairs: dict[str, list[tuple[float, float]]], resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float, int]:
    """Geometric-mean speedup of A over a baseline from paired runs, `pairs`: workload -> (baseline
    steps, A's steps) on the same seeds; per workload the median log ratio over pairs that both
    reached, then the mean over workloads; a percentile bootstrap over pairs within each workload.
    Returns (speedup, low, high, workloads used); NaN when no workload has such a pair."""
    logs = {
        w: np.array([math.log(b) - math.log(a) for b, a in ps if math.isfinite(a) and math.isfinite(b)])
        for w, ps in pairs.items()
    }
    logs = {w: v for w, v in logs.items() if len(v)}
    if not logs:
        return math.nan, math.nan, math.nan, 0
    point = math.exp(statistics_mean([float(np.median(v)) for v in logs.values()]))
    rng = np.random.default_rng(seed)
    draws = np.zeros(resamples)
    for v in logs.values():
        picks = rng.integers(0, len(v), size=(resamples, len(v)))
        draws += np.median(v[picks], axis=1)
    draws = np.exp(draws / len(logs))
    low, high = np.quantile(draws, [(1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2])
    return point, float(low), float(high), len(logs)
