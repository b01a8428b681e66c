"""Modifiers that compose with any elementwise base rule, written once: `cautious` and `mars`.

An elementwise optimizer that can take them writes its arithmetic as a *direction*
`direction(p, g, states, s) -> (u, *new_states)`: the update before the learning rate, with every
optimizer's last line, `p <- p * decay + u * neg_step`, left to `compose` (decay = 1 - lr * wd for
decoupled decay, neg_step = -lr times any bias correction). `compose(direction, cautious, mars)`
is then one module-level pure rule (the contract of `trainlab.optim.base`), so the per-tensor,
foreach and fused paths of every combination come from the same code:

- `mars=True` (MARS, Yuan et al. 2024, arXiv 2411.10438, Algorithm 1; official code
  AGI-Arena/MARS, MARS/optimizers/mars.py): the base sees, instead of g_t,
      c_t = g_t + gamma * beta1 / (1 - beta1) * (g_t - g_{t-1}),   c_t <- c_t / ||c_t|| if ||c_t|| > 1
  per tensor (g_0 = 0, as the official code's zero `last_grad`); the previous gradient is one more
  state tensor, `prev_grad`. gamma is `mars_gamma` (official default 0.025), beta1 the base's.
- `cautious=True` (Cautious Optimizers, Liang et al. 2024, arXiv 2411.16085; official code
  kyleliang919/C-Optim, c_adamw.py): the update is kept only where it agrees in sign with the
  gradient g_t, and rescaled by the kept fraction of the tensor:
      mask = (u * g > 0);   u <- u * (mask / max(mean(mask), 1e-3))
  (the official code's current normalisation, from timm; pytorch-optimizer 4.1.0 uses
  numel / (sum(mask) + 1), heavyball numel / max(numel - disagreeing, 1)). The mask is written
  `max(sign(u) * sign(g), 0)`, which is `u * g > 0` without the product's underflow.
- `cautious_wd=True` (Cautious Weight Decay, Chen et al. 2025, arXiv 2510.12402, Algorithm 1):
  decoupled decay only where the update and the parameter agree in sign,
      theta <- theta - lr * (u + wd * I(u * theta >= 0) * theta)
  with u the (cautious-masked, if `cautious`) update; a no-op where decay is not decoupled (ADOPT's
  default L2 form, its first step).

Per-tensor reductions (the MARS norm, the mask's mean) extend the rule contract by two ops:
`torch.linalg.vector_norm(x)` and `x.mean()`, each a 0-d tensor per parameter. The foreach path
maps them to `torch._foreach_norm` and one mean per tensor (`trainlab.optim.tensorlist`); the
fused kernel gets one flat parameter per call, so a reduction inside it is per tensor.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from trainlab.optim.validation import check_non_negative

CAUTIOUS_EPS = 1e-3  # the smallest kept fraction divided by (C-Optim's clamp(min=1e-3))
MARS_GAMMA = 0.025  # the official code's default


@functools.cache
def compose(
    direction: Callable[..., tuple], cautious: bool = False, mars: bool = False, cautious_wd: bool = False
) -> Callable[..., tuple]:
    """The pure rule `(p, g, states, s) -> (new_p, *new_states)` of `direction` with the modifiers.

    Scalars: `s = (decay, neg_step, [mars_scale, one], [zero, cautious_eps], [one, lr * wd],
    *direction_scalars)`
    (`scalars` builds them); states: `(*direction_states, [prev_grad])`. One function object per
    combination (cached), named after the direction, so compiled kernels are keyed apart.
    """

    def rule(p, g, states, s):
        decay, neg_step = s[0], s[1]
        k = 2
        c = g
        if mars:
            scale, one = s[2], s[3]
            k = 4
            prev = states[-1]
            states = states[:-1]
            c = g + (g - prev) * scale
            c = c / torch.clamp_min(torch.linalg.vector_norm(c), one)
        if cautious:
            zero, eps = s[k], s[k + 1]
            k += 2
        if cautious_wd:
            unit, lr_wd = s[k], s[k + 1]
            k += 2
        u, *new = direction(p, c, states, s[k:])
        if cautious:
            mask = torch.clamp_min(torch.sign(u) * torch.sign(g), zero)
            u = u * (mask / torch.clamp_min(mask.mean(), eps))
        if cautious_wd:  # decay only where u * p >= 0: 1 + sign(u) sign(p), capped at 1
            agree = torch.clamp_max(torch.sign(u) * torch.sign(p) + unit, unit)
            out = (p - p * agree * lr_wd + u * neg_step, *new)
        else:
            out = (p * decay + u * neg_step, *new)
        return (*out, g) if mars else out

    base = direction.__name__.removesuffix("_direction")
    flags = (("cautious", cautious), ("mars", mars), ("cwd", cautious_wd))
    suffix = "".join(f"_{name}" for name, on in flags if on)
    rule.__name__ = rule.__qualname__ = f"{base}_rule{suffix}"
    rule.__module__ = direction.__module__  # the kernel cache hashes this module's source, and
    rule.__wrapped__ = direction  # type: ignore[attr-defined]  # (`trainlab.optim.fused`) this one's when a rule has __wrapped__
    rule.__doc__ = f"{direction.__name__} with decoupled decay" + (f" and{suffix.replace('_', ' ')}" if suffix else "")
    return rule


def options(cautious: bool, mars: bool, mars_gamma: float, cautious_wd: bool = False) -> dict[str, Any]:
    """The param-group entries of the modifiers, checked."""
    for name, value in (("cautious", cautious), ("mars", mars), ("cautious_wd", cautious_wd)):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    check_non_negative("mars_gamma", mars_gamma)
    return dict(cautious=cautious, mars=mars, mars_gamma=mars_gamma, cautious_wd=cautious_wd)


def scalars(group: dict[str, Any], base: tuple[float, ...]) -> tuple[float, ...]:
    """`compose`'s scalars: `base` = (decay, neg_step, *direction_scalars) of the optimizer."""
    out = [base[0], base[1]]
    if group.get("mars"):
        beta1 = group["betas"][0]
        out += [group["mars_gamma"] * beta1 / (1 - beta1), 1.0]
    if group.get("cautious"):
        out += [0.0, CAUTIOUS_EPS]
    if group.get("cautious_wd"):
        out += [1.0, 1.0 - base[0]]  # lr * wd, the decay's complement (0 where decay is coupled or off)
    return (*out, *base[2:])
