"""Schedule-Free AdamW (Defazio, Yang, Mehta, Mishchenko, Khaled, Cutkosky, "The Road Less
Scheduled", NeurIPS 2024, arXiv 2405.15682; Algorithm 1 with the Adam normalisation, v1.3 form).

Three sequences per parameter: z (the base "SGD" iterate), x (a weighted average of the z's; the
point to evaluate) and y (an interpolation of the two; where gradients are taken). With k = 0, 1, ...
the group's step, t = k + 1 and the group's (possibly externally scheduled) learning rate lr:

    sched_k  = (k+1)/warmup_steps if k < warmup_steps else 1        # built-in linear warmup
    gamma_k  = lr * sched_k
    gmax     = max(gmax, gamma_k)                                    # running max, starts at -1
    w_k      = (k+1)^r * gmax^weight_lr_power
    c_{k+1}  = w_k / sum_{i<=k} w_i                                  # = 1 at k = 0, so x_1 = z_1
    v       <- beta2 * v + (1 - beta2) * g^2                         # g = grad at y
    u        = g / (sqrt(v / (1 - beta2^t)) + eps) + weight_decay * y   # decay evaluated at y
    z_{k+1}  = z_k - gamma_k * u
    x_{k+1}  = (1 - c_{k+1}) x_k + c_{k+1} z_{k+1}
    y_{k+1}  = beta1 x_{k+1} + (1 - beta1) z_{k+1}

Memory-efficient form (as the official adamw_schedulefree.py): only y (held in the parameter during
training) and z are stored; x is implicit, x = (y - (1 - beta1) z) / beta1. One step is

    y <- lerp(y, z, c);   y <- y + gamma * (beta1 * (1 - c) - 1) * u;   z <- z - gamma * u

which is the recursion above after eliminating x. `eval()` sets p <- lerp(p, z, 1 - 1/beta1) = x,
`train()` sets p <- lerp(p, z, 1 - beta1) = y. Source: facebookresearch/schedule_free (commit
70785b5): schedulefree/adamw_schedulefree.py (this form), adamw_schedulefree_reference.py (x, y, z
explicit) and README.md. Defaults are the official ones.
"""

from __future__ import annotations

import torch

from trainlab.optim import lowprec
from trainlab.optim.base import ElementwiseOptimizer
from trainlab.optim.registration import Registration
from trainlab.optim.validation import check_betas, check_non_negative


def sfadamw_rule(p, g, states, s):
    """One tensor's Schedule-Free AdamW step (memory-efficient form), out of place; p holds y."""
    beta2, one_minus_beta2, bias_correction2, eps, weight_decay, ckp1, adj_lr, neg_gamma = s
    z, v = states
    v = v * beta2 + g * g * one_minus_beta2
    u = g / ((v / bias_correction2).sqrt() + eps) + p * weight_decay  # decay evaluated at y
    return torch.lerp(p, z, ckp1) + u * adj_lr, z + u * neg_gamma, v


class ScheduleFreeAdamW(ElementwiseOptimizer):
    """Schedule-Free AdamW (Defazio et al. 2024, arXiv 2405.15682, Algorithm 1, AdamW variant).

    Its warm-up is part of the method (the warmed-up lr also weights the average), so a race sets
    `warmup_steps` from its `warmup_fraction` of the step budget (`budget_steps`).

    Update: see the module docstring (memory-efficient form: p holds y during training, state z).
    Defaults: lr 0.0025, betas (0.9, 0.999), eps 1e-8, weight_decay 0, warmup_steps 0, r 0,
    weight_lr_power 2: those of facebookresearch/schedule_free's AdamWScheduleFree. The README
    recommends using warmup; its AlgoPerf submission used beta2 0.9955, wd 0.0812, warmup 2% of
    the steps and r 0.75.

    Train/eval: the parameters hold y while training. Call `eval()` before evaluating or saving
    a checkpoint for inference (p becomes x, the averaged point the theory is about) and `train()`
    before the next `step()`; `step()` raises RuntimeError in eval mode. Both are no-ops when the
    optimizer is already in that mode, and trainlab's runner calls them around every evaluation
    (AlgoPerf's prepare_for_eval). The optimizer starts in train mode (at the start x = y = z).
    `state_dict()` records the mode (per group, "train_mode"), so save and restore the parameters
    together with it. Parameters that never had a gradient are not touched by eval()/train().

    BatchNorm: running statistics accumulated during training were computed at y, not at x, so
    after `eval()` they are slightly stale; the official README recommends recomputing them at x
    (after `eval()`, run ~50 training batches through the model in `model.train()` mode under
    `torch.no_grad()`), then `model.eval()` for the evaluation.

    State bytes: 2 * numel * element_size (z, exp_avg_sq): 8 B/param in fp32. Scalars shared by the
    group live in the param group (k, lr_max, weight_sum, train_mode, scheduled_lr; no tensors).
    bf16 params: z and v are kept in the parameter's dtype (as the official code; `load_state_dict`
    casts state to it anyway). Runs on bf16, but each eval()/train() swap rounds p, so in bf16
    the swaps are inverse only up to bf16 rounding; prefer fp32 parameters with this optimizer.

    Choices, documented: the step counter behind the averaging weights is per group (as official:
    k advances once per `step()` for every group that has at least one gradient); the bias
    correction of v uses each parameter's own step count, identical to official whenever all of a
    group's parameters get gradients every step (and correct for a parameter whose v started
    late). Unlike the official code, p.grad is not overwritten.

    Paths (`trainlab.optim.base`): by default `sfadamw_rule` as one fused kernel, built once per
    machine; fused=False chains `torch._foreach_*` ops; foreach=False applies the rule per
    tensor. The group bookkeeping (k, lr_max, weight_sum, the averaging weight c) stays in Python in
    `_begin_group`; only its results enter the kernel, as inputs. eval()/train() are single foreach
    lerps in every path.
    """

    _state_keys = ("z", "exp_avg_sq")
    _full_precision_states = ("z",)  # an iterate, not a statistic: `state_dtype` leaves it alone

    # constructor argument -> the race hyperparameter giving it as a fraction of the step budget
    budget_steps = {"warmup_steps": "warmup_fraction"}

    def __init__(
        self,
        params,
        lr: float = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        state_dtype: str = "param",
        weight_update: str = "exact",
        foreach: bool = True,
        fused: bool | None = None,
    ) -> None:
        check_non_negative("lr", lr)
        check_betas(betas)
        if betas[0] == 0:
            raise ValueError(
                "beta1 (in betas) must be in (0, 1) for Schedule-Free (x is recovered "
                f"as (y - (1-beta1) z) / beta1), got {betas[0]!r}"
            )
        check_non_negative("eps", eps)
        check_non_negative("weight_decay", weight_decay)
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {warmup_steps!r}")
        check_non_negative("r", r)
        check_non_negative("weight_lr_power", weight_lr_power)
        lowprec_options = lowprec.options(state_dtype, weight_update)
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            r=r,
            weight_lr_power=weight_lr_power,
            foreach=foreach,
            fused=fused,
            k=0,
            lr_max=-1.0,
            weight_sum=0.0,
            train_mode=True,
            scheduled_lr=0.0,
        )
        super().__init__(params, {**defaults, **lowprec_options})
        self._group_scalars: tuple[float, float, float] = (0.0, 0.0, 0.0)  # set by _begin_group

    # ---- train / eval swaps --------------------------------------------------------------------

    @torch.no_grad()
    def _swap(self, to_train: bool) -> None:
        for group in self.param_groups:
            if group["train_mode"] == to_train:
                continue
            beta1 = group["betas"][0]
            weight = 1 - beta1 if to_train else 1 - 1 / beta1
            params = [p for p in group["params"] if "z" in self.state[p]]
            if params:
                zs = [self.state[p]["z"] for p in params]
                if group["foreach"] is not False:
                    torch._foreach_lerp_(params, zs, weight)
                else:
                    for p, z in zip(params, zs):
                        p.lerp_(z, weight)
            group["train_mode"] = to_train

    def eval(self) -> None:
        """Set the parameters to x, the averaged point (for evaluation and checkpoints)."""
        self._swap(to_train=False)

    def train(self) -> None:
        """Set the parameters back to y, where the next gradient is taken."""
        self._swap(to_train=True)

    def _check_can_step(self) -> None:
        if not all(group["train_mode"] for group in self.param_groups):
            raise RuntimeError(
                "ScheduleFreeAdamW.step() called in eval mode: the parameters hold "
                "the averaged point x; call optimizer.train() before training steps"
            )

    # ---- the step --------------------------------------------------------------------------------

    def _init_state(self, group, p, state) -> None:
        state["z"] = p.detach().clone(memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _begin_group(self, group) -> None:
        k, warmup_steps = group["k"], group["warmup_steps"]
        sched = (k + 1) / warmup_steps if k < warmup_steps else 1.0
        gamma = group["lr"] * sched
        group["scheduled_lr"] = gamma
        group["lr_max"] = lr_max = max(gamma, group["lr_max"])
        weight = (k + 1) ** group["r"] * lr_max ** group["weight_lr_power"]
        group["weight_sum"] = weight_sum = group["weight_sum"] + weight
        ckp1 = weight / weight_sum if weight_sum != 0 else 0.0
        beta1 = group["betas"][0]
        self._group_scalars = (gamma, ckp1, gamma * (beta1 * (1 - ckp1) - 1))
        group["k"] = k + 1

    def _scalars(self, group, step):
        gamma, ckp1, adj_lr = self._group_scalars
        beta2 = group["betas"][1]
        return (beta2, 1 - beta2, 1 - beta2**step, group["eps"], group["weight_decay"], ckp1, adj_lr, -gamma)

    def _rule(self, group):
        return sfadamw_rule


REGISTRATION = Registration(
    "sfadamw",
    ScheduleFreeAdamW,
    "Schedule-Free AdamW: no decay schedule; evaluate at the averaged point (optimizer.eval())",
    "Defazio et al., The Road Less Scheduled, NeurIPS 2024 (arXiv 2405.15682)",
    # no decay schedule; warm-up as the paper recommends, at its AlgoPerf self-tuning submission's
    # values (warm-up 2 % of the steps, beta2 0.9955, wd 0.0812, r 0.75)
    schedule="constant",
    race_defaults={"lr": 0.0025, "betas": (0.9, 0.9955), "weight_decay": 0.0812, "r": 0.75, "warmup_fraction": 0.02},
    search_space={
        "lr": {"min": 0.001, "max": 0.03, "scaling": "log"},
        "one_minus_beta1": {"min": 0.03, "max": 0.3, "scaling": "log"},
        "beta2": {"feasible_points": [0.9955]},
        "weight_decay": {"min": 0.001, "max": 0.1, "scaling": "log"},
        "warmup_fraction": {"feasible_points": [0.02, 0.05, 0.1]},
    },
    state_bytes="8 B/param (z, exp_avg_sq)",
)
