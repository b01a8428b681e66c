"""FRUGAL: AdamW on a state-full subspace, a state-free rule on the rest (the `SubspaceAdam` engine)."""

from __future__ import annotations

import torch

from trainlab.optim.projection import StateFreeResidual, SubspaceAdam
from trainlab.optim.projector import EMPTY, FULL, Projector
from trainlab.optim.registration import Registration
from trainlab.optim.validation import check_choice, check_int, check_non_negative, check_range

# ---- FRUGAL ------------------------------------------------------------------------------------

_FRUGAL_PROJ_TYPES = ("svd", "random_columns", "block")
_FRUGAL_RULES = ("sign_sgd", "sgd", "no")
_BLOCK_ORDERS = ("descending", "ascending", "random")


def _mix_seed(*values: int) -> int:
    """A deterministic 63-bit seed from integers (so random choices replay after a reload)."""
    h = 0x243F6A8885A308D3
    for v in values:
        h = ((h ^ (v & 0xFFFFFFFFFFFFFFFF)) * 0x100000001B3 + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


def frugal_rank(density: float, m: int, n: int) -> int:
    """FRUGAL-SVD rank: max(1, round(density * min(m, n)))."""
    return max(1, round(density * min(m, n)))


def frugal_columns(density: float, n: int) -> int:
    """FRUGAL random-columns count: max(1, int(density * n))."""
    return max(1, int(density * n))


class FRUGAL(SubspaceAdam):
    """FRUGAL (Zmushko et al., ICML 2025, arXiv 2411.07837): Adam on a subspace, signSGD off it.

    Per parameter with a gradient, t the 1-based step (FRUGAL paper; official
    `proj_optimizer_templates.py`):
        W <- W * (1 - lr * weight_decay)                                (decoupled, BEFORE)
        svd / random_columns: every update_gap steps (t = 1, gap + 1, ...) choose P; with
            reset_statistics the moments are zeroed and Adam's step count restarts at 0
            R = P(G);  U = P^-1(AdamW(R))   torch form: (m/(1-b1^k)) / (sqrt(v)/sqrt(1-b2^k) + eps)
            U += inactive_lr_scale * rule(G - P^-1(R))      rule: sign (sign_sgd) | identity (sgd) | 0
        block: every update_gap steps, the group's state is cleared and max(1, round(N * density))
            of its N projected tensors become active (order: block_order); an active tensor gets
            full AdamW (fresh moments, step 0), an inactive one inactive_lr_scale * rule(G)
        W <- W - lr * U
    Non-projected parameters (1-D, or groups without `density`): plain AdamW of the same form.

    Choices: proj_type "svd" uses GaLore's 'std' side with r = max(1, round(density * min(m, n)));
    "random_columns" draws k = max(1, int(density * n)) columns of the m x n view ("columns" is the
    official coordinate default); "block" is the official `--optimizer frugal` of the C4
    pre-training scripts and is the default here, with block_order "descending" as those scripts
    pass (the class default there is "random"). The max(1, .) guards keep a tiny model from having
    no state-full part (Python's round(0.5) == 0). The svd/columns refresh is triggered per
    parameter from its own step count (officially from the group's first parameter: the same when
    every parameter gets a gradient every step); block refreshes use a per-group step counter.
    Randomness (columns, block_order "random") comes from a generator seeded from (seed, parameter
    or group index, step), so it is reproducible and replays exactly after `load_state_dict`.
    `proj_params_lr_scale` (official, 1.0 by default) is not exposed: scale lr instead.

    Defaults: density 0.25, update_gap 200, inactive_update_rule "sign_sgd", inactive_lr_scale 1.0
    (pre-training; 0.1 for fine-tuning), reset_statistics True, eps 1e-8, betas (0.9, 0.999), lr 1e-3
    (the C4 scripts' value), weight_decay 0.

    State bytes (fp32), per projected m x n tensor:
        svd            4 * r * (min(m, n) + 2 * max(m, n)),  r = max(1, round(density * min(m, n)))
        random_columns 8 * k + 8 * m * k  (int64 indices + two m x k moments), k = max(1, int(density * n))
        block          8 * m * n if active, 0 if inactive; max(1, round(N * density)) active per group
    Every other parameter: 8 * numel (AdamW).
    """

    _group_keys = ("density",)
    _adam_form = "torch"
    _decay_first = True
    _complement = StateFreeResidual()

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        density: float = 0.25,
        update_gap: int = 200,
        proj_type: str = "block",
        block_order: str = "descending",
        inactive_update_rule: str = "sign_sgd",
        inactive_lr_scale: float = 1.0,
        reset_statistics: bool = True,
        seed: int = 0,
        distributed: str = "auto",
        process_group=None,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            density=density,
            update_gap=update_gap,
            proj_type=proj_type,
            block_order=block_order,
            inactive_update_rule=inactive_update_rule,
            inactive_lr_scale=inactive_lr_scale,
            reset_statistics=reset_statistics,
            seed=seed,
        )
        super().__init__(params, defaults, distributed, process_group)

    def add_param_group(self, param_group):
        param_group.setdefault("block_step", 0)  # per-group step counter (block refreshes)
        param_group.setdefault("next_block_start", None)  # cursor of the ascending/descending order
        super().add_param_group(param_group)

    def _validate_method(self, group, params):
        check_range("density", group["density"], 0.0, 1.0, low_open=True)
        check_int("update_gap", group["update_gap"], 1)
        check_choice("proj_type", group["proj_type"], _FRUGAL_PROJ_TYPES)
        check_choice("block_order", group["block_order"], _BLOCK_ORDERS)
        check_choice("inactive_update_rule", group["inactive_update_rule"], _FRUGAL_RULES)
        check_non_negative("inactive_lr_scale", group["inactive_lr_scale"])
        if not isinstance(group["reset_statistics"], bool):
            raise ValueError(f"reset_statistics must be a bool, got {group['reset_statistics']!r}")
        check_int("seed", group["seed"], 0)

    def _auto_projects(self, group, m, n):
        return True

    def _reset_on_refresh(self, group):
        return group["reset_statistics"]

    def _refit(self, group, g, state, index, step):
        kind = group["proj_type"]
        if kind == "block" or (step - 1) % group["update_gap"] != 0:
            return None
        m, n = g.shape
        if kind == "svd":
            return Projector.svd(g, frugal_rank(group["density"], m, n))
        gen = torch.Generator().manual_seed(_mix_seed(group["seed"], index, step))
        return Projector.columns(n, frugal_columns(group["density"], n), gen, g.device)

    def _begin_group(self, group, gi):
        """Block variant: choose the active tensors of this group every update_gap steps."""
        if group["proj_type"] != "block":
            return
        blocks = [p for p in group["params"] if self.is_projected(p, group)]
        if not blocks or not any(p.grad is not None for p in blocks):
            return
        group["block_step"] += 1
        if (group["block_step"] - 1) % group["update_gap"] != 0:
            return
        count = len(blocks)
        active = min(count, max(1, round(count * group["density"])))
        order = group["block_order"]
        if order == "random":
            gen = torch.Generator().manual_seed(_mix_seed(group["seed"], gi, group["block_step"]))
            chosen = set(torch.randperm(count, generator=gen)[:active].tolist())
        elif order == "ascending":
            start = group["next_block_start"] if group["next_block_start"] is not None else 0
            chosen = {(start + i) % count for i in range(active)}
            group["next_block_start"] = (start + active) % count
        else:  # descending
            start = group["next_block_start"] if group["next_block_start"] is not None else count - 1
            chosen = {(start - i) % count for i in range(active)}
            group["next_block_start"] = (start - active) % count
        for i, p in enumerate(blocks):
            state = self.state[p]
            for key in ("exp_avg", "exp_avg_sq", "adam_step"):
                state.pop(key, None)
            Projector(FULL if i in chosen else EMPTY).to_state(state)


REGISTRATION = Registration(
    "frugal",
    FRUGAL,
    "FRUGAL: AdamW on a state-full subspace (blocks, SVD or random columns), signSGD on the rest",
    "Zmushko et al., FRUGAL: Memory-Efficient Optimization by Reducing State Overhead for "
    "Scalable Training, ICML 2025 (arXiv 2411.07837)",
    race_defaults={"lr": 4e-3, "weight_decay": 0.01, "warmup_fraction": 0.05},
    search_space={
        "lr": {"min": 0.001, "max": 0.03, "scaling": "log"},
        "one_minus_beta1": {"min": 0.03, "max": 0.3, "scaling": "log"},
        "beta2": {"feasible_points": [0.999]},
        "weight_decay": {"min": 0.001, "max": 0.1, "scaling": "log"},
        "warmup_fraction": {"feasible_points": [0.02, 0.05, 0.1]},
    },
    state_bytes="per density and proj_type (FRUGAL docstring); 8 B/param outside the split matrices",
)
