"""Which batch-size scaling rule and which refinement norm an optimizer takes, from its registration.

Both follow from one registered fact, `Registration.linear_update` (is the update the gradient times
a scalar?):
- batch-size scaling (Granziol et al.): "linear" for SGD-type updates, "sqrt" for normalized ones
  (Adam). Only SGD and Adam were analysed; putting Lion, the sign methods, the subspace methods and
  SWAN under "sqrt" extends the rule by their scale-invariant updates, not by the paper.
- schedule refinement (Defazio et al. 2023): L2 gradient norms (kind "sgd") when the step length
  scales with ||g||_2, L1 norms (kind "adam") when the update is normalized per coordinate. GaLore,
  Fira, FRUGAL and SWAN were not studied there; their updates are scale-invariant, so they get "l1",
  an extrapolation.
"""

from __future__ import annotations

from trainlab import optim


def _linear(optimizer_name: str, what: str) -> bool:
    try:
        return optim.linear_update(optimizer_name)
    except ValueError:
        raise ValueError(f"no {what} for optimizer {optimizer_name!r}; known: {', '.join(optim.available())}") from None


def default_rule(optimizer_name: str) -> str:
    """ "linear" for the SGD family, "sqrt" for the Adam family."""
    return "linear" if _linear(optimizer_name, "batch-size scaling rule") else "sqrt"


def kind_for(optimizer_name: str) -> str:
    """The refinement kind ("adam" or "sgd") of a registered optimizer."""
    return "sgd" if _linear(optimizer_name, "gradient-norm kind recorded") else "adam"


def scaling_rules() -> dict[str, str]:
    """Every registered optimizer's batch-size scaling rule."""
    return {name: default_rule(name) for name in optim.available()}


def norm_kinds() -> dict[str, str]:
    """Every registered optimizer's refinement norm ("l1" or "l2")."""
    return {name: "l2" if optim.linear_update(name) else "l1" for name in optim.available()}
