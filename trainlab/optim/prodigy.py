"""Prodigy (Mishchenko & Defazio 2023, "Prodigy: An Expeditiously Adaptive Parameter-Free Learner",
ICML 2024, arXiv 2306.06101), Algorithm 4 (Adam with Prodigy step sizes), in the form of its
official package prodigyopt 1.1.2 (`Prodigy`, slice_p 1). One estimate d of the distance to the
solution is shared by every parameter; k = 0, 1, ... counts the optimizer's steps, lr is the
(scheduled) multiplier, 1 by default:

    dlr = d * lr * bc,   bc = sqrt(1 - beta2^(k+1)) / (1 - beta1^(k+1)) if use_bias_correction else 1
    g  <- g + weight_decay * x                      # unless decouple (prodigyopt's default: decouple)
    r  <- beta3 * r + (d / d0) * dlr * <g, x0 - x>  # summed over every parameter; beta3 = sqrt(beta2)
    s  <- beta3 * s + (d / d0) * w * g              # w = dlr, or d under safeguard_warmup
    m  <- beta1 * m + d (1 - beta1) g;   v <- beta2 * v + d^2 (1 - beta2) g^2
    d_hat = d_coef * r / ||s||_1   (||s||_1 over every parameter; no step at all when it is 0)
    d <- max(d, d_hat) while d is still d0;  d_max <- max(d_max, d_hat);  d <- min(d_max, d * growth_rate)
    x  <- x * (1 - weight_decay * dlr)              # only if decouple; dlr from the OLD d
    x  <- x - dlr * m / (sqrt(v) + d_new * eps)     # beta1 = 0: x - dlr * d_new * g / (...)

The factor d / d0 multiplies r and s alike, so it cancels in d_hat; prodigyopt keeps it so the sums
stay far from underflow, and so does this class (same numbers). Scalars r, d, d_max, k live in every
param group (as prodigyopt keeps them), so `state_dict()` carries them.

Differences from prodigyopt, all outside its supported use: groups may have different learning
rates (the estimate uses the largest, as prodigyopt does, and each group steps with its own; a group
at lr 0 does not move at all, where prodigyopt still decays it); coupled decay does not write into
`p.grad`; p0 is always a full copy (prodigyopt keeps a 0-d zero for an all-zero parameter);
`slice_p` (an approximation) is not offered. Under FSDP2 the two sums are all-reduced over the
parameters' mesh, so every rank computes the one-process d.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from trainlab.optim.closure import closure_loss
from trainlab.optim.distributed import is_sharded, local
from trainlab.optim.registration import Registration
from trainlab.optim.validation import check_betas, check_dense_real, check_non_negative, check_range

# Estimate scalars kept in every group (equal in all), so they travel with `state_dict()`.
_ESTIMATE_KEYS = ("d", "d_max", "d_numerator", "k")


class Prodigy(torch.optim.Optimizer):
    """Prodigy: Adam whose step size d is estimated online (update rule in the module docstring).

    Defaults (prodigyopt 1.1.2's): lr 1.0, betas (0.9, 0.999), beta3 None (sqrt(beta2)), eps 1e-8,
    weight_decay 0, decouple True, use_bias_correction False, safeguard_warmup False, d0 1e-6,
    d_coef 1.0, growth_rate inf.
    State bytes: 16 B/param in fp32 (s, p0, exp_avg, exp_avg_sq); 12 with beta1 = 0 (no exp_avg).
    """

    distributed_note = (
        "Elementwise but for one global estimate: under DDP and FSDP2 each rank updates its own shards, "
        "state sharded with the parameters; under FSDP2 the estimate's two sums are all-reduced (one "
        "2-number all-reduce per step), so every rank computes one process's d."
    )

    def __init__(
        self,
        params,
        lr: float = 1.0,
        betas: tuple[float, float] = (0.9, 0.999),
        beta3: float | None = None,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decouple: bool = True,
        use_bias_correction: bool = False,
        safeguard_warmup: bool = False,
        d0: float = 1e-6,
        d_coef: float = 1.0,
        growth_rate: float = math.inf,
    ) -> None:
        check_non_negative("lr", lr)
        check_betas(betas)
        if beta3 is not None:
            check_range("beta3", beta3, 0.0, 1.0, high_open=True)
        check_non_negative("eps", eps)
        check_non_negative("weight_decay", weight_decay)
        check_range("d0", d0, 0.0, math.inf, low_open=True, high_open=True)
        check_range("d_coef", d_coef, 0.0, math.inf, low_open=True, high_open=True)
        if not isinstance(growth_rate, (int, float)) or isinstance(growth_rate, bool) or not growth_rate >= 1.0:
            raise ValueError(f"growth_rate must be a number >= 1 (inf for no limit), got {growth_rate!r}")
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            beta3=beta3,
            eps=eps,
            weight_decay=weight_decay,
            decouple=bool(decouple),
            use_bias_correction=bool(use_bias_correction),
            safeguard_warmup=bool(safeguard_warmup),
            d0=d0,
            d_coef=d_coef,
            growth_rate=growth_rate,
            d=d0,
            d_max=d0,
            d_numerator=0.0,
            k=0,
        )
        super().__init__(params, defaults)

    def _init_state(self, p: torch.Tensor, state: dict[str, Any], beta1: float) -> None:
        state["step"] = 0
        state["s"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["p0"] = p.detach().clone(memory_format=torch.preserve_format)
        if beta1 > 0:
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        first = self.param_groups[0]
        beta1, beta2 = first["betas"]
        beta3 = math.sqrt(beta2) if first["beta3"] is None else first["beta3"]
        d, d0, k = first["d"], first["d0"], first["k"]
        lr = max(group["lr"] for group in self.param_groups)
        bc = math.sqrt(1 - beta2 ** (k + 1)) / (1 - beta1 ** (k + 1)) if first["use_bias_correction"] else 1.0
        dlr = d * lr * bc
        work = self._gather(beta1)
        dots, norms = [], []
        for group, params, grads, states in work:
            if group["lr"] == 0:
                continue
            s_weight = (d / d0) * (d if group["safeguard_warmup"] else dlr)
            for p, g, state in zip(params, grads, states):
                dots.append(torch.dot(g.flatten(), (state["p0"] - p).flatten()).double())
                if beta1 > 0:
                    state["exp_avg"].mul_(beta1).add_(g, alpha=d * (1 - beta1))
                state["exp_avg_sq"].mul_(beta2).addcmul_(g, g, value=d * d * (1 - beta2))
                state["s"].mul_(beta3).add_(g, alpha=s_weight)
                norms.append(state["s"].abs().sum().double())
        sums = self._sum(dots, norms)
        if sums is None:
            return loss
        numerator = first["d_numerator"] * beta3 + (d / d0) * dlr * sums[0]
        d_hat = first["d_coef"] * numerator / sums[1]
        d_new = max(d, d_hat) if d == d0 else d
        d_max = max(first["d_max"], d_hat)
        d_new = min(d_max, d_new * first["growth_rate"])
        for group in self.param_groups:
            group.update(d=d_new, d_max=d_max, d_numerator=numerator, k=k + 1)
            for p in group["params"]:
                if p.grad is not None:  # counted here: `work` holds copies of sharded states' dicts
                    self.state[p]["step"] += 1
        for group, params, grads, states in work:
            self._apply(group, params, grads, states, d * group["lr"] * bc, d_new, beta1)
        return loss

    def _gather(self, beta1: float) -> list[tuple[dict[str, Any], list, list, list]]:
        """Per group: the local shards of the parameters with a gradient, their (coupled-decay)
        gradients and their state, created on first sight."""
        work = []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                check_dense_real(type(self).__name__, p)
                if "step" not in self.state[p]:
                    self._init_state(p, self.state[p], beta1)
            grads = [p.grad for p in params]
            ps, gs, ss = local(params, grads, [self.state[p] for p in params])
            wd = group["weight_decay"]
            if wd and not group["decouple"]:
                gs = [g.add(p, alpha=wd) for p, g in zip(ps, gs)]
            work.append((group, ps, gs, ss))
        return work

    def _sum(self, dots: list[torch.Tensor], norms: list[torch.Tensor]) -> tuple[float, float] | None:
        """(sum of <g, x0 - x>, ||s||_1) over every parameter (all-reduced over the mesh when sharded),
        or None when ||s||_1 is 0 (no gradient: prodigyopt then takes no step)."""
        sharded = [p for group in self.param_groups for p in group["params"] if is_sharded(p)]
        if not norms and not sharded:
            return None
        device = norms[0].device if norms else torch.device("cpu")
        both = torch.stack(
            [
                torch.stack(dots).sum() if dots else torch.zeros((), dtype=torch.float64, device=device),
                torch.stack(norms).sum() if norms else torch.zeros((), dtype=torch.float64, device=device),
            ]
        )
        if sharded:
            torch.distributed.all_reduce(both, group=sharded[0].device_mesh.get_group())
        dot, norm = both.tolist()
        return None if norm == 0 else (dot, norm)

    def _apply(self, group, params, grads, states, dlr: float, d: float, beta1: float) -> None:
        """x <- x (1 - wd dlr) - dlr m / (sqrt(v) + d eps), with this group's dlr and the new d."""
        wd = group["weight_decay"]
        if dlr == 0:
            return
        for p, g, state in zip(params, grads, states):
            denom = state["exp_avg_sq"].sqrt().add_(d * group["eps"])
            if wd and group["decouple"]:
                p.add_(p, alpha=-wd * dlr)  # prodigyopt's form (p.mul_ rounds differently)
            if beta1 > 0:
                p.addcdiv_(state["exp_avg"], denom, value=-dlr)
            else:
                p.addcdiv_(g, denom, value=-dlr * d)


REGISTRATION = Registration(
    "prodigy",
    Prodigy,
    "Prodigy: learning-rate-free Adam; the step size d is estimated online (lr is a multiplier, 1)",
    "Mishchenko & Defazio, Prodigy: An Expeditiously Adaptive Parameter-Free Learner, ICML 2024 (arXiv 2306.06101)",
    # Self-tuning, as Schedule-Free is registered: workload-agnostic values from the method's own
    # advice, no per-workload tuning needed. lr 1 (the paper's and prodigyopt's: "leave lr set to
    # 1"); cosine annealing with safeguard_warmup under a warm-up (prodigyopt README); decoupled
    # decay at AdamW's 0.01; bias correction off (the default; the README enables it for diffusion)
    race_defaults={"lr": 1.0, "weight_decay": 0.01, "safeguard_warmup": True, "warmup_fraction": 0.05},
    # lr is a multiplier on the estimated step (d_coef's role: the README's 0.5-2 range, widened to
    # leave the bracketing search room); decay and warm-up as AdamW's space
    search_space={
        "lr": {"min": 0.3, "max": 3.0, "scaling": "log"},
        "weight_decay": {"min": 1e-3, "max": 0.1, "scaling": "log"},
        "safeguard_warmup": {"feasible_points": [True]},
        "warmup_fraction": {"feasible_points": [0.02, 0.05, 0.1]},
    },
    state_bytes="16 B/param (s, p0, exp_avg, exp_avg_sq); 12 with beta1 = 0",
    reference="prodigyopt 1.1.2 side by side, and a float64 re-derivation (tests/test_optim_prodigy.py)",
)
