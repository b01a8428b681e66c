"""`Registration`: everything trainlab knows about an optimizer, stated once, beside its class.

Each optimizer module ends with its `REGISTRATION` (or `REGISTRATIONS`); `trainlab.optim` registers
the built-in ones, and other packages register theirs through the `trainlab.optimizers` entry-point
group (see `trainlab.optim.registry`). Nothing else in trainlab keeps a table about optimizers:
batch-size scaling and schedule refinement read `linear_update`, races read `schedule` and
`race_defaults`, tuning reads `search_space`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

# Switches that choose an implementation, not the mathematics; accepted but not listed as tunable.
IMPLEMENTATION_SWITCHES = frozenset(
    {"foreach", "fused", "capturable", "differentiable", "maximize", "distributed", "process_group"}
)


@dataclass(frozen=True)
class Registration:
    name: str
    factory: Callable[..., torch.optim.Optimizer]  # the class (or a function building one)
    summary: str
    citation: str
    # Whether the update is the gradient times a scalar (momentum included), so the step grows with
    # the gradient's scale (SGD). Every normalizing rule (Adam's second moment, a sign, whitening,
    # Adam in a subspace) is scale-invariant. Batch-size scaling (linear vs square root) and schedule
    # refinement (L2 vs L1 norms) both follow from this one fact.
    linear_update: bool = False
    schedule: str = "cosine"  # default learning-rate schedule of `trainlab race --algorithms NAME`
    # What a race uses where nothing was tuned for the workload (a user's own workload, the
    # leaderboard's self-tuning view): workload-agnostic values, with their source beside them.
    race_defaults: dict[str, Any] = field(default_factory=dict)
    # Workload-agnostic search space in AlgoPerf's JSON form (docs/search_spaces.md gives sources).
    search_space: dict[str, Any] | None = None
    state_bytes: str = ""  # the optimizer-state formula, as documented and tested
    overrides: dict[str, Any] = field(default_factory=dict)  # trainlab's defaults over the constructor's
    # What the implementation is checked against (the official code, a peer library, a float64
    # re-derivation), for its documentation page; when empty, the page names the tests that exercise it.
    reference: str = ""

    def hyperparameters(self) -> dict[str, Any]:
        """Hyperparameter name -> default, excluding `params` and implementation switches."""
        sig = inspect.signature(self.factory)
        found = {}
        for key, p in sig.parameters.items():
            if key in ("params", "self") or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            if key in IMPLEMENTATION_SWITCHES:
                continue
            found[key] = p.default if p.default is not inspect.Parameter.empty else None
        found.update(self.overrides)
        return found

    def switches(self) -> set[str]:
        """Implementation switches the factory accepts (e.g. `fused`, `foreach`): settable, never tuned."""
        return set(inspect.signature(self.factory).parameters) & IMPLEMENTATION_SWITCHES
