"""Learning-curve prediction: from the first part of a validation curve, the value it will reach by
the step budget, the step at which it will meet the target, and an interval for both.

After the "Modeling of learning curves" method: the curve is re-fitted each time a point arrives,
once past a prediction level, and a prediction is trusted once it agrees with the previous one
within a convergence threshold. The fitted families are saturating three-parameter laws, which
learning curves are known to follow (Domhan et al. 2015; Hestness et al. 2017), written not in
steps but in learning-rate area, with an annealing term (after Tissue et al. 2024, "Scaling law
with learning rate annealing"): with y the metric oriented so that larger is better, f the trial's
learning-rate multiplier, u(t) = sum_{k<t} f(k) / sum_{k<H} f(k) and A(t) = 1 - f(t-1) / max f,

    power:        y(t) = a - b u(t)^(-c) + d A(t)        (b, d >= 0, c > 0)
    exponential:  y(t) = a - b exp(-c u(t)) + d A(t)

Why: a decaying schedule makes a curve rise again as the rate anneals, which no saturating law in
steps can follow, so a step-based fit halfway through a cosine schedule predicts too low a final
value (measured: see the pruning replay in docs/tuning.md). Without a known schedule (an AlgoPerf
submission), u = t / H and A = 0: the laws in steps.

For a fixed c the fit is linear least squares in (a, b, d), so c is found by a grid search refined
by golden-section search on the profiled error: no starting point, no solver to fail. Which family?
Each is fitted without the curve's last quarter and judged on how well it extrapolates to it (the
prediction is an extrapolation; in-sample error always favours whichever bends more). The interval
is a residual bootstrap of the chosen family, widened to take in the other family's prediction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

FAMILIES = ("power", "exponential")
_GRIDS = {"power": np.geomspace(0.02, 5.0, 121), "exponential": np.geomspace(0.05, 60.0, 121)}
MIN_POINTS = 4  # three parameters and at least one degree of freedom


@dataclass(frozen=True)
class Axis:
    """Where each step 0..H sits for the fit: the learning-rate area u and the annealed fraction A."""

    area: np.ndarray = field(repr=False)
    annealed: np.ndarray = field(repr=False)

    @property
    def horizon(self) -> int:
        return len(self.area) - 1

    @classmethod
    def steps(cls, horizon: int) -> Axis:
        """No schedule known: u = t / H, nothing anneals."""
        t = np.arange(horizon + 1, dtype=float)
        return cls(t / horizon, np.zeros(horizon + 1))

    @classmethod
    def from_multipliers(cls, multipliers: Sequence[float]) -> Axis:
        """`multipliers[k]`: the learning-rate multiplier of update k + 1 (trainlab's schedules)."""
        f = np.asarray(multipliers, dtype=float)
        if f.ndim != 1 or len(f) < 1 or not np.all(np.isfinite(f)) or np.any(f < 0) or f.sum() <= 0:
            raise ValueError("learning-rate multipliers must be finite, non-negative and not all zero")
        area = np.concatenate([[0.0], np.cumsum(f)]) / f.sum()
        peak = f.max()
        annealed = np.concatenate([[0.0], 1.0 - f / peak])
        annealed = np.maximum.accumulate(np.where(np.arange(len(annealed)) <= int(np.argmax(f)) + 1, 0.0, annealed))
        return cls(area, annealed)


def _basis(family: str, u: np.ndarray, c: np.ndarray) -> np.ndarray:
    """g_c(u) for every c (rows) and u (columns)."""
    if family == "power":
        return np.exp(-c[:, None] * np.log(u[None, :]))
    return np.exp(-c[:, None] * u[None, :])


def _solve(family: str, u: np.ndarray, anneal: np.ndarray, y: np.ndarray, c: np.ndarray):
    """Least-squares (a, b, d) for each c and each curve in y ((k, n) or (n,)), with b, d >= 0: the
    2x2 normal equations of the centred regressors, and where a coefficient comes out negative, the
    best of the fits without it (closed forms throughout, vectorised over curves and c). Returns a,
    b, d, sse, each (k, len(c)) (or (len(c),) for one curve)."""
    g = _basis(family, u, c)  # (m, n)
    ys = np.atleast_2d(y)  # (k, n)
    gm, am, ym = g.mean(axis=1), anneal.mean(), ys.mean(axis=1, keepdims=True)
    gc, ac, yc = g - gm[:, None], anneal - am, ys - ym
    gg = np.maximum((gc * gc).sum(axis=1), 1e-300)[None, :]  # (1, m)
    ga = (gc @ ac)[None, :]
    aa = float(ac @ ac)
    gy = yc @ gc.T  # (k, m)
    ay = (yc @ ac)[:, None]  # (k, 1)
    yy = (yc * yc).sum(axis=1, keepdims=True)  # (k, 1)
    # only g (clamped: a rising curve has beta_g <= 0), then only the annealing term, then both
    beta_g = np.minimum(gy / gg, 0.0)
    beta_a = np.zeros_like(beta_g)
    sse = yy - beta_g * gy
    if aa > 1e-18:
        only_a = np.maximum(ay / aa, 0.0) + 0.0 * gy
        sse_a = yy - only_a * ay
        take = sse_a < sse
        beta_g, beta_a, sse = np.where(take, 0.0, beta_g), np.where(take, only_a, beta_a), np.where(take, sse_a, sse)
        det = gg * aa - ga * ga
        ok_det = det > 1e-12 * gg * aa
        safe = np.where(ok_det, det, 1.0)
        both_g = (aa * gy - ga * ay) / safe
        both_a = (gg * ay - ga * gy) / safe
        sse_both = yy - both_g * gy - both_a * ay
        take = ok_det & (both_g <= 0.0) & (both_a >= 0.0) & (sse_both < sse)
        beta_g, beta_a, sse = (
            np.where(take, both_g, beta_g),
            np.where(take, both_a, beta_a),
            np.where(take, sse_both, sse),
        )
    a = ym - beta_g * gm[None, :] - beta_a * am
    sse = np.maximum(sse, 0.0)
    b, d = -beta_g, beta_a
    if y.ndim == 1:
        return a[0], b[0], d[0], sse[0]
    return a, b, d, sse


@dataclass(frozen=True)
class CurveFit:
    """A fitted curve, in the metric's own orientation (`higher_is_better`)."""

    family: str
    asymptote: float  # a (in metric units): what the curve tends to without annealing
    scale: float  # b >= 0
    rate: float  # c
    annealing: float  # d >= 0, the gain from a fully annealed rate (oriented)
    higher_is_better: bool
    rmse: float  # of the fit, in metric units
    axis: Axis = field(repr=False)

    def _sign(self) -> float:
        return 1.0 if self.higher_is_better else -1.0

    def values(self) -> np.ndarray:
        """The metric the curve gives at every step 1..H."""
        s = self._sign()
        u, anneal = self.axis.area[1:], self.axis.annealed[1:]
        g = _basis(self.family, u, np.array([self.rate]))[0]
        return s * (s * self.asymptote - self.scale * g + self.annealing * anneal)

    def value(self, step: int) -> float:
        return float(self.values()[int(step) - 1])

    def step_reaching(self, target: float) -> float:
        """The first step within the horizon at which the curve meets `target`; inf if none."""
        return _first_reaching(self.values()[None, :], target, self.higher_is_better)[0]


def _first_reaching(values: np.ndarray, target: float, higher_is_better: bool) -> np.ndarray:
    """Per row of values (steps 1..H), the first step meeting target, inf where none does."""
    met = values >= target if higher_is_better else values <= target
    first = np.argmax(met, axis=1).astype(float) + 1.0
    return np.where(met.any(axis=1), first, np.inf)


def fit_curve(
    steps: Sequence[float], metrics: Sequence[float], higher_is_better: bool, family: str, axis: Axis
) -> CurveFit:
    """The least-squares curve of `family` through (steps, metrics), steps in 1..H."""
    if family not in FAMILIES:
        raise ValueError(f"unknown curve family {family!r}: choose one of {', '.join(FAMILIES)}")
    idx = np.asarray(steps, dtype=int)
    s = 1.0 if higher_is_better else -1.0
    y = s * np.asarray(metrics, dtype=float)
    if len(idx) < MIN_POINTS or not np.all(np.isfinite(y)) or np.any(idx < 1) or np.any(idx > axis.horizon):
        raise ValueError(f"a curve fit needs {MIN_POINTS}+ finite points at steps 1..{axis.horizon}")
    u, anneal = axis.area[idx], axis.annealed[idx]
    grid = _GRIDS[family]
    sse = _solve(family, u, anneal, y, grid)[3]
    i = int(np.argmin(sse))
    lo, hi = math.log(grid[max(i - 1, 0)]), math.log(grid[min(i + 1, len(grid) - 1)])
    golden = (math.sqrt(5) - 1) / 2

    def error(log_c: float) -> float:
        return float(_solve(family, u, anneal, y, np.array([math.exp(log_c)]))[3][0])

    p, q = hi - golden * (hi - lo), lo + golden * (hi - lo)
    fp, fq = error(p), error(q)
    for _ in range(24):  # the bracket shrinks to 1e-5 of a grid step
        if fp < fq:
            hi, q, fq = q, p, fp
            p = hi - golden * (hi - lo)
            fp = error(p)
        else:
            lo, p, fp = p, q, fq
            q = lo + golden * (hi - lo)
            fq = error(q)
    c = math.exp((lo + hi) / 2)
    if error(math.log(c)) > sse[i]:  # the grid point itself was better (a flat profile)
        c = float(grid[i])
    a, b, d, e = _solve(family, u, anneal, y, np.array([c]))
    return CurveFit(
        family, float(s * a[0]), float(b[0]), c, float(d[0]), higher_is_better, math.sqrt(float(e[0]) / len(y)), axis
    )


def choose_family(steps: Sequence[float], metrics: Sequence[float], higher_is_better: bool, axis: Axis) -> str:
    """The family that best predicts the curve's last quarter from the rest (see module doc); the
    power law when there are too few points to hold any out."""
    n = len(steps)
    held = max(1, n // 4)
    if n - held < MIN_POINTS:
        return "power"
    errors = {}
    for family in FAMILIES:
        fit = fit_curve(steps[: n - held], metrics[: n - held], higher_is_better, family, axis)
        errors[family] = sum((fit.value(int(t)) - m) ** 2 for t, m in zip(steps[n - held :], metrics[n - held :]))
    return min(FAMILIES, key=lambda f: errors[f])


@dataclass(frozen=True)
class Prediction:
    """What a curve predicts after the evaluation at `step` (intervals are `coverage` bootstrap ones)."""

    step: int  # the last evaluated step the prediction used
    family: str
    final: float  # the metric predicted at the horizon
    final_low: float
    final_high: float
    target_step: float  # the step predicted to first meet the target (inf: not within the budget)
    target_step_low: float
    target_step_high: float
    converged: bool  # `final` moved less than the convergence threshold since the previous prediction

    def out_of_reach(self) -> bool:
        """Even the interval's optimistic end misses the target within the horizon."""
        return not math.isfinite(self.target_step_low)

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class CurvePredictor:
    """Predicts a trial's curve as its evaluations arrive.

    `axis`: the trial's learning-rate axis (`Axis.from_multipliers`; `Axis.steps(H)` when unknown).
    `level`: the prediction level, the fraction of the horizon that must be observed before any
    prediction (and at least MIN_POINTS evaluations). `threshold`: the convergence threshold, the
    largest relative change of the predicted final value between two successive predictions for the
    latest to count as converged. `coverage`: of the bootstrap interval."""

    target: float
    higher_is_better: bool
    axis: Axis
    level: float = 0.25
    threshold: float = 0.01
    coverage: float = 0.9
    draws: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"prediction level must be in (0, 1), got {self.level}")
        if not self.threshold > 0.0:
            raise ValueError(f"convergence threshold must be positive, got {self.threshold}")
        if not 0.0 < self.coverage < 1.0:
            raise ValueError(f"interval coverage must be in (0, 1), got {self.coverage}")

    @property
    def horizon(self) -> int:
        return self.axis.horizon

    def ready(self, steps: Sequence[float]) -> bool:
        return len(steps) >= MIN_POINTS and steps[-1] >= self.level * self.horizon

    def predict(
        self, steps: Sequence[float], metrics: Sequence[float], previous: Prediction | None = None
    ) -> Prediction | None:
        """The prediction after the last of (steps, metrics); None before the prediction level or
        when the curve is not finite (a divergence is not a curve)."""
        pts = [(int(t), float(m)) for t, m in zip(steps, metrics) if 0 < t <= self.horizon]
        if not pts or not self.ready([t for t, _ in pts]) or not all(math.isfinite(m) for _, m in pts):
            return None
        ts, ms = [t for t, _ in pts], [m for _, m in pts]
        family = choose_family(ts, ms, self.higher_is_better, self.axis)
        fit = fit_curve(ts, ms, self.higher_is_better, family, self.axis)
        other = fit_curve(ts, ms, self.higher_is_better, FAMILIES[1 - FAMILIES.index(family)], self.axis)
        boot, noise = self._bootstrap(fit, ts, ms)
        curves = np.vstack([boot, fit.values(), other.values()])
        finals = curves[:, -1]
        # the target is met by an observed evaluation, noise included: each bootstrap curve is read
        # at the evaluations still to come, plus a resampled residual, as the runner would see it
        ahead = _evaluations_ahead(ts, self.horizon)
        observed = curves[:, ahead - 1]
        observed[: len(boot)] += noise[:, : len(ahead)]
        met = observed >= self.target if self.higher_is_better else observed <= self.target
        reach = np.where(met.any(axis=1), ahead[np.argmax(met, axis=1)].astype(float), np.inf)
        q = (1 - self.coverage) / 2
        final = float(fit.values()[-1])
        point = (finals[-2:], reach[-2:])  # the two fits themselves always lie inside the interval
        converged = bool(
            previous is not None and abs(final - previous.final) <= self.threshold * max(abs(previous.final), 1e-12)
        )
        return Prediction(
            step=ts[-1],
            family=family,
            final=final,
            final_low=min(float(np.quantile(finals, q)), float(point[0].min())),
            final_high=max(float(np.quantile(finals, 1 - q)), float(point[0].max())),
            target_step=float(reach[-2]),
            target_step_low=min(_quantile(reach, q), float(point[1].min())),
            target_step_high=max(_quantile(reach, 1 - q), float(point[1].max())),
            converged=converged,
        )

    def _bootstrap(self, fit: CurveFit, ts: list[int], ms: list[float]) -> tuple[np.ndarray, np.ndarray]:
        """The curves (draws x H) of refits to the fitted curve plus resampled residuals (grid fits:
        the refinement moves c by less than the grid spacing, far inside the spread), and a further
        resampled residual per draw for each of H future evaluations (observation noise)."""
        values = fit.values()
        fitted = values[np.asarray(ts) - 1]
        # in-sample residuals understate the noise by the parameters fitted: inflate them
        # (sqrt(n / (n - p)), the usual leverage correction; p = 4 with the annealing term)
        p = 3 + int(self.axis.annealed.std() > 1e-9)
        resid = (np.asarray(ms) - fitted) * math.sqrt(len(ts) / max(len(ts) - p, 1))
        rng = np.random.default_rng(self.seed)
        samples = fitted[None, :] + rng.choice(resid, size=(self.draws, len(ts)), replace=True)
        s = 1.0 if self.higher_is_better else -1.0
        idx = np.asarray(ts)
        grid = _GRIDS[fit.family]
        a, b, d, sse = _solve(fit.family, self.axis.area[idx], self.axis.annealed[idx], s * samples, grid)
        best = np.argmin(sse, axis=1)
        rows = np.arange(self.draws)
        a, b, d, c = a[rows, best], b[rows, best], d[rows, best], grid[best]
        u, anneal = self.axis.area[1:], self.axis.annealed[1:]
        g = _basis(fit.family, u, c)  # (draws, H)
        noise = rng.choice(resid, size=(self.draws, self.horizon), replace=True)
        return s * (a[:, None] - b[:, None] * g + d[:, None] * anneal[None, :]), noise


def _evaluations_ahead(steps: Sequence[int], horizon: int) -> np.ndarray:
    """The evaluation steps still to come, at the spacing of the last two, and the horizon."""
    spacing = max(int(steps[-1] - steps[-2]), 1) if len(steps) > 1 else max(int(steps[-1]), 1)
    ahead = list(range(int(steps[-1]) + spacing, horizon, spacing)) + [horizon]
    return np.asarray(sorted(set(ahead) - {int(steps[-1])}) or [horizon], dtype=int)


def _quantile(values: np.ndarray, q: float) -> float:
    """A quantile that treats inf (never reaches) as the largest value."""
    ordered = np.sort(values)
    return float(ordered[min(int(math.floor(q * (len(ordered) - 1) + 0.5)), len(ordered) - 1)])


def prune_decision(
    predictor: CurvePredictor,
    steps: Sequence[float],
    metrics: Sequence[float],
    previous: Prediction | None = None,
) -> tuple[bool, Prediction | None]:
    """Whether to stop a trial after the last of its evaluations, and the prediction it rests on.

    Stop only on a converged prediction (the one before it, from one evaluation fewer, agrees within
    the threshold) whose interval's optimistic end misses the target by the horizon; never once the
    target was met. Stateless (`previous`, the prediction from one evaluation fewer, is recomputed
    unless given), so a pruner, a race and a replay over stored curves decide alike."""
    met = [m >= predictor.target if predictor.higher_is_better else m <= predictor.target for m in metrics]
    if previous is None and len(steps) > 1:
        previous = predictor.predict(steps[:-1], metrics[:-1])
    current = predictor.predict(steps, metrics, previous)
    if current is None or any(met):
        return False, current
    return current.converged and current.out_of_reach(), current
