"""UBA, the Unified Budget-Aware schedule of "Stepsize anything" (Tang, Dong, Zeng, Zhou, Lin;
NeurIPS 2025, arXiv 2505.24452).

The paper derives a one-parameter family of decays over a fixed iteration budget from a min-max
problem that is robust to curvature variation; phi is tied to the condition number.

FORMULA FROM A THIRD-PARTY IMPLEMENTATION, NOT CONFIRMED AGAINST THE PAPER. The paper's text
(arXiv PDF/HTML, NeurIPS page) could not be reached beyond its abstract, and no official code was
found. The form below is the one recorded in the team's algorithm notes (formulas with sources), from a
third-party `UBAScheduler` whose comment reads
eta_t = (eta_max - eta_min) * 2(1 + cos) / (2 phi + (2 - phi)(1 + cos)) + eta_min.
As a multiplier (eta_min = 0), with theta = pi * (progress over the post-warm-up budget):

    f(theta) = 2 (1 + cos theta) / (2 phi + (2 - phi)(1 + cos theta))

Properties of this form (algebra, not the paper's claims): f = 1 at the start and 0 at the end of
the budget; phi = 2 is exactly cosine annealing; phi -> 0 tends to a constant 1; phi < 2 decays
more slowly than cosine, phi > 2 faster. Unconfirmed: the paper's phi convention (the mirrored
form with phi <-> 2 - phi fits the sources equally well), its recommended phi, and its warm-up.
The default phi = 0.8 is the third-party file's default, not a recommendation from the paper.
"""

from __future__ import annotations

import math

from trainlab.schedules.core import Schedule, _check_total, _check_warmup, linear_warmup


def uba(total_steps: int, warmup_steps: int = 0, phi: float = 0.8) -> Schedule:
    """Linear warm-up, then the UBA decay from 1 to 0 at step == total_steps (unconfirmed form)."""
    _check_total(total_steps)
    _check_warmup(warmup_steps, total_steps)
    if not isinstance(phi, (int, float)) or not math.isfinite(phi) or phi <= 0:
        raise ValueError(f"phi must be a finite positive number (2 gives cosine), got {phi!r}")
    warm = linear_warmup(warmup_steps)
    span = total_steps - warmup_steps

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return warm(step)
        c = 1.0 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span))
        return 2.0 * c / (2.0 * phi + (2.0 - phi) * c)

    return schedule
