"""APOLLO (Zhu et al. 2024, "APOLLO: SGD-like Memory, AdamW-level Performance", MLSys 2025,
arXiv 2412.05270): AdamW's moments kept for a random rank-r projection of each matrix gradient, used
only to measure how much Adam would rescale each channel; the full-rank gradient is then rescaled
by that much. It runs on the `SubspaceAdam` engine beside GaLore and Fira (trainlab/optim/projection.py),
with no subspace term of its own: the whole update is the rescaled gradient.

Per projected m x n matrix, t the 1-based step (paper Algorithm 1; official apollo-torch 1.0.3,
`APOLLOAdamW` with proj "random", proj_type "std"):

    every update_proj_gap steps (t = 1, gap + 1, ...): a new Gaussian P with entries N(0, 1/r):
        m >= n: r x n, R = G P^T (m x r);   m < n: m x r, R = P^T G (r x n)
    m <- b1 m + (1-b1) R;  v <- b2 v + (1-b2) R^2  (moments kept across refreshes);  c = sqrt(1-b2^t)/(1-b1^t)
    psi = m / (sqrt(v) + eps)
    s = ||psi||_d / (||R||_d + 1e-8)   channel: per row of G (m >= n) or column (m < n), the norms over
                                        R's rank axis;  tensor (APOLLO-Mini): one ratio of Frobenius norms
    S = G * s;  t > 1: zeta = max(||S|| / (n_{t-1} + 1e-8), 1.01) / 1.01, S <- S / zeta   (Fira's
        norm-growth limiter, on by default officially; `limiter=False` turns it off); n_t = ||S||
    W <- W - lr * c * sqrt(scale) * S                 (the package multiplies by sqrt(scale))
    W <- W * (1 - lr * weight_decay)                  (decoupled, after)
Non-projected parameters: the same Adam (HF form, eps inside) without projection, as the package.

Random bases are reproducible: a parameter's first seed is seed + its index + 1 (the package's
1-based parameter count, for seed 0), each refresh draws from a generator seeded with it and then
advances it as the package does (the 15th draw of torch.randint from a generator so seeded), and
the seed is kept in state, so a reloaded optimizer draws the same bases. The matrix is stored, as the
package stores it (regenerating it from the seed each step would save r min(m, n) floats).

APOLLO-Mini is this class with rank=1, scale_type="tensor", scale=128 (the paper's and README's).
"""

from __future__ import annotations

import math

import torch

from trainlab.optim.lowrank import DEFAULT_RANK_FRACTION, _LowRankAdam, resolve_rank
from trainlab.optim.projection import Complement
from trainlab.optim.projector import LEFT, RIGHT, Projector, matrix_shape
from trainlab.optim.registration import Registration
from trainlab.optim.validation import check_choice, check_int, check_non_negative

SCALE_TYPES = ("channel", "tensor")
PROJECTIONS = ("random", "svd")
LIMIT = 1.01  # the package's (and Fira's) norm-growth bound per step


def next_seed(seed: int) -> int:
    """The package's seed sequence: the 15th int64 of torch.randint from a generator seeded `seed`."""
    generator = torch.Generator().manual_seed(seed)
    return int(torch.randint(0, torch.iinfo(torch.int64).max, (15,), generator=generator)[-1])


def random_projector(g: torch.Tensor, rank: int, seed: int) -> Projector:
    """GaLore's side choice with a Gaussian basis, N(0, 1/rank) entries, drawn on g's device."""
    m, n = g.shape
    generator = torch.Generator(device=g.device).manual_seed(seed)
    shape = (rank, n) if m >= n else (m, rank)
    basis = torch.randn(shape, generator=generator, device=g.device, dtype=torch.float32) / math.sqrt(rank)
    return Projector(RIGHT if m >= n else LEFT, basis)


class ApolloScaling:
    """The whole APOLLO update: G rescaled per channel (or tensor) by Adam's gain in the subspace,
    under the norm-growth limiter. ||S|| comes from G's row (column) norms, with no m x n temporary."""

    def __call__(self, g, r, psi, projector, state, group, c) -> Complement:
        if group["scale_type"] == "channel":
            dim = 1 if projector.kind == RIGHT else 0
            ratio = torch.linalg.vector_norm(psi, dim=dim) / (torch.linalg.vector_norm(r, dim=dim) + 1e-8)
            norm = (ratio * torch.linalg.vector_norm(g, dim=dim)).square().sum().sqrt()
            ratio = ratio.unsqueeze(1) if dim == 1 else ratio.unsqueeze(0)
        else:
            ratio = torch.linalg.vector_norm(psi) / (torch.linalg.vector_norm(r) + 1e-8)
            norm = ratio * torch.linalg.vector_norm(g)
        if group["limiter"]:
            if "limiter_norm" in state:
                zeta = torch.clamp(norm / (state["limiter_norm"] + 1e-8), min=LIMIT) / LIMIT
                state["limiter_norm"] = norm / zeta
                ratio = ratio / zeta
            else:
                state["limiter_norm"] = norm.clone()
        return Complement(dense=g, factor=ratio * (c * math.sqrt(group["scale"])))


class APOLLO(_LowRankAdam):
    """APOLLO-AdamW (arXiv 2412.05270; update rule in the module docstring).

    Defaults: betas (0.9, 0.999), eps 1e-6, weight_decay 0, lr 1e-3 (the package's class defaults;
    its LLaMA scripts use lr 0.01), update_proj_gap 200, scale 1, scale_type "channel", proj
    "random" (README); rank: rank_fraction 0.25 of each matrix's short side (the README's rank 256
    at width 1024), or a fixed `rank`, as GaLore's here.

    State bytes (fp32), per projected m x n matrix at rank r: 4 r (min(m, n) + 2 max(m, n)) + 4
    (the basis, two r x max(m, n) moments, the limiter's norm; GaLore's + 4); other parameters
    8 * numel (AdamW). APOLLO-Mini (rank 1): 4 (min + 2 max) + 4 per matrix.
    """

    _complement = ApolloScaling()

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
        scale: float = 1.0,
        scale_type: str = "channel",
        proj: str = "random",
        limiter: bool = True,
        seed: int = 0,
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
            scale=scale,
            scale_type=scale_type,
            proj=proj,
            limiter=limiter,
            seed=seed,
        )
        super().__init__(params, defaults, distributed, process_group)

    def _validate_method(self, group, params):
        check_non_negative("scale", group["scale"])
        check_choice("scale_type", group["scale_type"], SCALE_TYPES)
        check_choice("proj", group["proj"], PROJECTIONS)
        if not isinstance(group["limiter"], bool):
            raise ValueError(f"limiter must be a bool, got {group['limiter']!r}")
        check_int("seed", group["seed"], 0)
        super()._validate_method(group, params)

    def _scale(self, group):
        return 0.0  # no subspace term: ApolloScaling gives the whole update

    def _refit(self, group, g, state, index, step):
        if (step - 1) % group["update_proj_gap"] != 0:
            return None
        rank = resolve_rank(group, *g.shape)
        if group["proj"] == "svd":
            return Projector.svd(g, rank)
        seed = state.get("proj_seed", group["seed"] + index + 1)
        state["proj_seed"] = next_seed(seed)
        return random_projector(g, rank, seed)

    def matrix_cost(self, p, group):
        """The projection (2 m n r) and the rescaling (a few passes over G) an owner computes per step."""
        m, n = matrix_shape(p)
        return float(2 * m * n * resolve_rank(group, m, n) + 4 * m * n)


REGISTRATION = Registration(
    "apollo",
    APOLLO,
    "APOLLO: full-rank gradient rescaled per channel by AdamW's gain in a random rank-r projection (SGD-like memory)",
    "Zhu et al., APOLLO: SGD-like Memory, AdamW-level Performance, MLSys 2025 (arXiv 2412.05270)",
    # the official LLaMA scripts: lr 0.01, scale 1, channel-wise, warm-up 10 % of the steps, wd 0
    # (GaLore's recipe, which the paper follows)
    race_defaults={"lr": 0.01, "weight_decay": 0.0, "warmup_fraction": 0.1},
    # GaLore's space (docs/search_spaces.md): the same recipe and update scale
    search_space={
        "lr": {"min": 0.002, "max": 0.05, "scaling": "log"},
        "one_minus_beta1": {"min": 0.03, "max": 0.3, "scaling": "log"},
        "beta2": {"feasible_points": [0.999]},
        "weight_decay": {"feasible_points": [0.0, 0.01]},
        "warmup_fraction": {"feasible_points": [0.05, 0.1]},
        "update_proj_gap_fraction": {"feasible_points": [0.02, 0.05, 0.1]},
    },
    state_bytes="4 r (min(m, n) + 2 max(m, n)) + 4 per projected m x n matrix; 8 B/param elsewhere",
    reference="apollo-torch 1.0.3 side by side (same seeds), and a float64 re-derivation (tests/test_optim_apollo.py)",
)
