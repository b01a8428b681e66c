"""Stability after the target: once a run first meets its target, does it stay there?

Continual evaluation (De Lange, van de Ven, Tuytelaars, "Continual evaluation for lifelong learning:
identifying the stability gap", ICLR 2023) shows that evaluating only at checkpoints hides drops in
between. From a trial's evaluation curve: the worst validation metric at or after the first
evaluation that meets the target, and the stability gap, how far that worst value falls short of the
target (0 when it never does). A run that never reached the target, or stopped at it (no evaluation
after), has neither: there is nothing to be stable over.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def after_target(
    metrics: Sequence[float], target: float, higher_is_better: bool
) -> tuple[float | None, float | None, int]:
    """(worst metric from the first evaluation meeting `target` on, stability gap >= 0, evaluations
    after that first one); (None, None, 0) when no evaluation follows the first one meeting it.
    A non-finite metric after the target (a divergence) makes both the worst and the gap infinite."""
    met = [m >= target if higher_is_better else m <= target for m in metrics]
    if True not in met:
        return None, None, 0
    first = met.index(True)
    after = list(metrics[first:])
    if len(after) < 2:
        return None, None, 0
    if not all(math.isfinite(m) for m in after):
        return (-math.inf if higher_is_better else math.inf), math.inf, len(after) - 1
    worst = min(after) if higher_is_better else max(after)
    gap = max(0.0, target - worst) if higher_is_better else max(0.0, worst - target)
    return worst, gap, len(after) - 1


def worst_since(metrics: Sequence[float], target: float, higher_is_better: bool) -> tuple[float | None, float | None]:
    """(worst metric, stability gap >= 0) over a curve that starts where the target was first met
    (continual evaluation's per-step curve, from the step at which the checkpoint curve met it);
    (None, None) for an empty curve, infinite for a non-finite metric."""
    if not metrics:
        return None, None
    if not all(math.isfinite(m) for m in metrics):
        return (-math.inf if higher_is_better else math.inf), math.inf
    worst = min(metrics) if higher_is_better else max(metrics)
    return worst, max(0.0, target - worst) if higher_is_better else max(0.0, worst - target)
