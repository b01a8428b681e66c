"""GaLore and Fira: Adam in a rank-r SVD subspace (the `SubspaceAdam` engine, trainlab/optim/projection.py)."""

from __future__ import annotations

import math
from typing import Any

from trainlab.optim.projection import FiraResidual, SubspaceAdam
from trainlab.optim.projector import REFRESHES, Projector, matrix_shape
from trainlab.optim.registration import Registration
from trainlab.optim.validation import check_choice, check_int, check_non_negative, check_range

# ---- GaLore and Fira ---------------------------------------------------------------------------

DEFAULT_RANK_FRACTION = 0.25


def resolve_rank(group: dict[str, Any], m: int, n: int) -> int:
    """The rank used for an m x n matrix: `rank` when given, else max(1, round(rank_fraction *
    min(m, n))). A fixed rank (the paper's 128-512) suits LLM widths only; the fraction is the papers'
    own ratio (rank 128 of width 512, 256 of 1024, 512 of 2048: 1/4) and applies to any width."""
    if group.get("rank") is not None:
        return group["rank"]
    fraction = group.get("rank_fraction")
    return max(1, round((DEFAULT_RANK_FRACTION if fraction is None else fraction) * min(m, n)))


class _LowRankAdam(SubspaceAdam):
    """GaLore/Fira shared part: SVD projector, HF-form Adam, moments kept across refreshes."""

    _group_keys = ("rank", "rank_fraction")
    # races and tuning may give the refresh interval as a fraction of the step budget
    budget_steps = {"update_proj_gap": "update_proj_gap_fraction"}
    coverage_setting = "rank_fraction"  # what to lower when no matrix would be projected
    _adam_form = "hf"
    _decay_first = False

    def _auto_projects(self, group, m, n):
        return resolve_rank(group, m, n) < min(m, n)

    def _refit(self, group, g, state, index, step):
        if (step - 1) % group["update_proj_gap"] != 0:
            return None
        rank = resolve_rank(group, *g.shape)
        if "proj_kind" not in state:  # the first basis: a full SVD
            return Projector.svd(g, rank)
        return Projector.from_state(state).refit(g, rank, group.get("proj_refresh", "warm"))

    def matrix_cost(self, p, group):
        """The projection and its inverse (2 m n r a step) and the refresh's SVD (m n min(m, n) every
        update_proj_gap steps): what an owner computes per step, on average."""
        m, n = matrix_shape(p)
        return float(2 * m * n * resolve_rank(group, m, n) + m * n * min(m, n) / group["update_proj_gap"])

    def _validate_method(self, group, params):
        check_int("update_proj_gap", group["update_proj_gap"], 1)
        check_choice("proj_refresh", group.get("proj_refresh", "warm"), REFRESHES)
        if group.get("rank") is None:
            if group.get("rank_fraction") is not None:
                check_range("rank_fraction", group["rank_fraction"], 0.0, 1.0, low_open=True)
            return
        check_int("rank", group["rank"], 1)
        if group["projection"] != "all":
            return
        for p in params:
            if p.ndim < 2:
                continue
            m, n = matrix_shape(p)
            if group["rank"] > min(m, n):
                raise ValueError(
                    f"rank must be in [1, {min(m, n)}] (1 <= rank <= min(m, n)) for the {m}x{n} matrix "
                    f"of a parameter of shape {tuple(p.shape)}, got {group['rank']}"
                )


class GaLoreAdamW(_LowRankAdam):
    """GaLore-AdamW (Zhao et al., ICML 2024, arXiv 2403.03507): Adam in a low-rank gradient subspace.

    Per projected m x n matrix, t the 1-based step:
        every update_proj_gap steps (t = 1, gap + 1, ...): Q/P <- the top-r singular subspace of G,
            on the side the SVD choice picks (trainlab.optim.projector: a full SVD at t = 1, then
            proj_refresh "warm", subspace iteration from the previous basis, or "svd" as the
            official code does)
        R = P(G);  m <- b1 m + (1-b1) R;  v <- b2 v + (1-b2) R^2          (moments NOT reset)
        W <- W - lr * sqrt(1-b2^t)/(1-b1^t) * scale * P^-1(m / (sqrt(v) + eps))
        W <- W * (1 - lr * weight_decay)                                (decoupled, after)
    Non-projected parameters: the same Adam (eps inside, HF form) without projection.

    Defaults: lr 1e-3 and weight_decay 0 (official class defaults; the C4 recipes use lr 0.01, wd 0),
    eps 1e-6 (the official `transformers`-style AdamW), update_proj_gap 200 (README), scale 0.25 --
    the README / script recipe (`galore_scale 0.25`), not the class default 1.0. Rank: `rank_fraction`
    0.25 of each matrix's short side (the README's rank 128 at width 512, 256 at 1024, 512 at 2048;
    a fixed 128 would project nothing narrower than 129), or a fixed `rank` when given.

    State bytes (fp32 state, whatever the parameter dtype), per projected m x n matrix with rank r:
        4 * r * (min(m, n) + 2 * max(m, n))
        (projector r x min(m, n) -- Vh[:r] (r x n) for m >= n, U[:, :r] (m x r) for m < n -- plus
        two moments of the projected shape r x max(m, n)); for m < n that is the issue's
        4 * (m*r + 2*r*n). Every other parameter: 8 * numel (AdamW).
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        rank: int | None = None,
        rank_fraction: float = DEFAULT_RANK_FRACTION,
        update_proj_gap: int = 200,
        proj_refresh: str = "warm",
        scale: float = 0.25,
        distributed: str = "auto",
        process_group=None,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            rank=rank,
            rank_fraction=rank_fraction,
            update_proj_gap=update_proj_gap,
            proj_refresh=proj_refresh,
            scale=scale,
        )
        super().__init__(params, defaults, distributed, process_group)

    def _validate_method(self, group, params):
        check_non_negative("scale", group["scale"])
        super()._validate_method(group, params)

    def _scale(self, group):
        return group["scale"]


class FiraAdamW(_LowRankAdam):
    """Fira (Chen et al., arXiv 2410.01623): GaLore plus a norm-scaled full-rank residual.

    Per projected m x n matrix, t the 1-based step (Fira paper; official fira_adamw.py):
        R = P(G) (GaLore's SVD projector, refreshed every update_proj_gap steps incl. the first)
        m, v: Adam moments of R (never reset);  psi = m / (sqrt(v) + eps);  c = sqrt(1-b2^t)/(1-b1^t)
        phi = ||psi||_d / (||R||_d + 1e-8)      per row (m >= n) or per column (m < n) of G
        S_t = (G - alpha * P^-1(R)) * phi       (alpha inside project_back, as coded officially)
        t > 1: zeta = max(||S_t|| / (s_{t-1} + 1e-8), gamma) / gamma;  S_t <- S_t / zeta
        s_t = ||S_t|| (stored, after limiting; unlimited on the first step)
        W <- W - lr * c * (alpha * P^-1(psi) + S_t)
        W <- W * (1 - lr * weight_decay)        (decoupled, after)
    Non-projected parameters: plain Adam of the same form.

    Defaults: eps 1e-6, gamma 1.01, rank as GaLore's (rank_fraction 0.25 of the short side, or a
    fixed `rank`), update_proj_gap 200 and alpha 0.25 (README and the
    60M-350M scripts; the argparse default is 1.0 and the 1B/7B scripts use 0.0625), lr 1e-3 and
    weight_decay 0 (official default; the scripts use lr 0.01).

    State bytes per projected m x n matrix with rank r: GaLore's 4 * r * (min(m, n) + 2 * max(m, n))
    plus 4 for the stored limiter norm s_t (an fp32 scalar tensor); other parameters 8 * numel.
    """

    _complement = FiraResidual()

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        rank: int | None = None,
        rank_fraction: float = DEFAULT_RANK_FRACTION,
        update_proj_gap: int = 200,
        proj_refresh: str = "warm",
        alpha: float = 0.25,
        gamma: float = 1.01,
        distributed: str = "auto",
        process_group=None,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            rank=rank,
            rank_fraction=rank_fraction,
            update_proj_gap=update_proj_gap,
            proj_refresh=proj_refresh,
            alpha=alpha,
            gamma=gamma,
        )
        super().__init__(params, defaults, distributed, process_group)

    def _validate_method(self, group, params):
        check_non_negative("alpha", group["alpha"])
        ok = isinstance(group["gamma"], (int, float)) and not isinstance(group["gamma"], bool)
        if not ok or not math.isfinite(group["gamma"]) or group["gamma"] < 1.0:
            raise ValueError(f"gamma must be a finite number >= 1, got {group['gamma']!r}")
        super()._validate_method(group, params)

    def _scale(self, group):
        return group["alpha"]


# Race defaults: the official recipes' values where they exist (GaLore/Fira scripts: lr 0.01 with
# scale/alpha 0.25, warm-up 10 % of the steps); AdamW's race defaults otherwise.
REGISTRATIONS = (
    Registration(
        "galore",
        GaLoreAdamW,
        "GaLore-AdamW: Adam moments in a rank-r SVD subspace of each matrix gradient, refreshed "
        "every update_proj_gap steps (update rank <= r)",
        "Zhao et al., GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection, "
        "ICML 2024 (arXiv 2403.03507)",
        race_defaults={"lr": 0.01, "weight_decay": 0.0, "warmup_fraction": 0.1},
        search_space={
            "lr": {"min": 0.002, "max": 0.05, "scaling": "log"},
            "one_minus_beta1": {"min": 0.03, "max": 0.3, "scaling": "log"},
            "beta2": {"feasible_points": [0.999]},
            "weight_decay": {"feasible_points": [0.0, 0.01]},
            "warmup_fraction": {"feasible_points": [0.05, 0.1]},
            # the subspace refresh as a fraction of the run: 200 steps (the paper's, for 10k+ step
            # runs) allows only 3-7 refreshes in these runs
            "update_proj_gap_fraction": {"feasible_points": [0.02, 0.05, 0.1]},
        },
        state_bytes="4 r (min(m, n) + 2 max(m, n)) per projected m x n matrix; 8 B/param elsewhere",
    ),
    Registration(
        "fira",
        FiraAdamW,
        "Fira: GaLore plus the norm-scaled full-rank residual with a norm-growth limiter",
        "Chen et al., Fira: Can We Achieve Full-rank Training of LLMs Under Low-rank Constraint? (arXiv 2410.01623)",
        race_defaults={"lr": 0.01, "weight_decay": 0.0, "warmup_fraction": 0.1},
        search_space={
            "lr": {"min": 0.002, "max": 0.05, "scaling": "log"},
            "one_minus_beta1": {"min": 0.03, "max": 0.3, "scaling": "log"},
            "beta2": {"feasible_points": [0.999]},
            "weight_decay": {"feasible_points": [0.0, 0.01]},
            "warmup_fraction": {"feasible_points": [0.05, 0.1]},
            # the subspace refresh as a fraction of the run: 200 steps (the paper's, for 10k+ step
            # runs) allows only 3-7 refreshes in these runs
            "update_proj_gap_fraction": {"feasible_points": [0.02, 0.05, 0.1]},
        },
        state_bytes="GaLore's + 4 B per projected matrix (the limiter's norm)",
    ),
)
