"""Schedules refined from the gradient norms of a first run (Defazio, Cutkosky, Mehta, Mishchenko 2023).

"When, Why and How Much? Adaptive Learning Rate Scheduling by Refinement", arXiv 2310.07831. Their
last-iterate bound is minimized, for a known sequence of gradient norms, by

    eta_t  proportional to  w_t * sum_{p > t} w_p,      eta_{T-1} = 0,

with w_t = ||g_t||_2^-2 for SGD-type methods and w_t = ||g_t||_1^-1 for Adam-type methods (reference
code: facebookresearch/adaptive_scheduling, `find_schedule.py:find_closed_form_schedule`, and the
`weights=gnorms**-1` branch for l1 norms). Constant norms give linear decay, (T-1-t)/(T-1); norms
that shrink early give an automatic warm-up; norms that grow late give a fast final anneal.

The raw norms are noisy, so they are first smoothed by a median filter of odd width
w = 2*(int(tau*T)//2)+1 (tau = 0.1 in the paper's figures), with the series reflected past its end
so the last values are not biased toward the edge (the README's recipe: pad by 2w, mode 'reflect',
filter with mode 'nearest', drop the pad).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from trainlab.schedules.core import Schedule

KINDS = ("adam", "sgd")
# The norm each kind of refinement needs, in TrainingAlgorithm's `grad_norm_kind` vocabulary.
KIND_NORM = {"adam": "l1", "sgd": "l2"}


def _median_smooth(norms: np.ndarray, tau: float) -> np.ndarray:
    from scipy.ndimage import median_filter  # imported here: scipy is slow to import

    width = 2 * (int(tau * len(norms)) // 2) + 1
    pad = 2 * width
    return median_filter(np.pad(norms, (0, pad), mode="reflect"), size=width, mode="nearest")[:-pad]


def refine(
    grad_norms: Sequence[float], kind: str = "adam", tau: float = 0.1, total_steps: int | None = None
) -> np.ndarray:
    """The refined multipliers eta_0..eta_{T-1} (max exactly 1, last exactly 0) from T recorded norms.

    `grad_norms[t]` is the norm of the gradient at update t of the first run: L1 for kind "adam",
    L2 for kind "sgd" (see `NORM_KIND`). `total_steps`, if given, must equal len(grad_norms).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown refinement kind {kind!r}; allowed: {', '.join(KINDS)}")
    if not isinstance(tau, (int, float)) or not math.isfinite(tau) or not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau (median-filter width as a fraction of the run) must be in [0, 1], got {tau!r}")
    try:
        norms = np.asarray(list(grad_norms), dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("grad_norms must be a flat sequence of numbers") from None
    if norms.ndim != 1:
        raise ValueError(f"grad_norms must be a flat sequence of numbers, got shape {norms.shape}")
    if len(norms) < 2:
        raise ValueError(f"refinement needs at least 2 gradient norms, got {len(norms)}")
    if total_steps is not None and total_steps != len(norms):
        raise ValueError(
            f"got {len(norms)} gradient norms for total_steps={total_steps}; record the "
            f"first run with the same step budget"
        )
    bad = np.flatnonzero(~np.isfinite(norms) | (norms <= 0))
    if bad.size:
        raise ValueError(
            f"gradient norms must be finite and positive; step {bad[0]} has {norms[bad[0]]!r} "
            f"({bad.size} bad values in all)"
        )
    smooth = _median_smooth(norms, tau)
    weights = smooth**-1.0 if kind == "adam" else smooth**-2.0
    tail = np.cumsum(weights[::-1])[::-1]  # tail[t] = sum_{p >= t} w_p
    eta = np.zeros_like(weights)
    eta[:-1] = weights[:-1] * tail[1:]
    return eta / eta.max()


def refined_schedule(
    grad_norms: Sequence[float], kind: str = "adam", tau: float = 0.1, total_steps: int | None = None
) -> Schedule:
    """`refine(...)` as a pure schedule; steps at or past len(grad_norms) get 0.

    Returning 0 (not raising) past the end is deliberate: LambdaLR evaluates the schedule once more
    after the last update, at step T, and the refined schedule's value there is 0 anyway.
    """
    values = [float(v) for v in refine(grad_norms, kind, tau, total_steps)]
    steps = len(values)

    def schedule(step: int) -> float:
        if step < 0:
            raise ValueError(f"step must be non-negative, got {step}")
        return values[step] if step < steps else 0.0

    return schedule
