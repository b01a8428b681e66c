"""PSGD-Kron (Xi-Lin Li, "Preconditioned Stochastic Gradient Descent", arXiv 1512.04202, and "Black
Box Lie Group Preconditioners for SGD", arXiv 2211.04422; the Kron variant of Evan Walters and Omead
Pooladzandi's kron_torch `kron.py`, which heavyball's PSGDKron started from): momentum preconditioned
by a Kronecker product fitted online to whiten the gradients.

Why: P = Q^T Q with Q = Q_L (x) Q_R is fitted so that P E[g g^T] P = I, i.e. P -> E[g g^T]^{-1/2}
(Adam's diagonal rule, made Kronecker-factored), at the cost of two small triangular factors per
matrix, with no eigendecomposition and no matrix inverse.

Per parameter viewed as G (m x n; ndim > 2 as (shape[0], prod(rest)), a 1-D or 0-D one as a vector
with a single diagonal factor), t the step, each side's Q dense upper-triangular (init I) when its
size is at most `max_size_triangular` and not 1, else diagonal (init 1):

    m <- beta m + (1 - beta) G;   M = m / (1 - beta^t)
    when the preconditioner updates (below), with V ~ N(0, I) of M's shape:
        A = Q_L M Q_R^T;   B = Q_L^{-T} V Q_R^{-1}            (triangular solves)
        per side: T1 = A A^T, T2 = B B^T (left; A^T A, B^T B right; diagonal sides: their diagonals)
        dense:     Q <- Q - precond_lr triu(T1 - T2) Q / (||T1 + T2||_lb + tiny)
        diagonal:  Q <- Q - precond_lr (T1 - T2) Q / (max|T1 + T2| + tiny)
    D = Q_L^T Q_L M Q_R^T Q_R;   D <- clip(1.5 psi(D / 1.5), -2, 2),  psi(x) = 0.1 sign(x) log(1 + |x|) + 0.9 tanh(x)
    theta <- theta (1 - lr wd) - lr D

||S||_lb is kron_torch's cheap lower bound of the spectral norm of the symmetric S: with s_j its row
of largest norm and x = S s_j, ||S x|| / ||x||; tiny is bf16's smallest normal. Every side is fitted
from the same A and B, before any of them changes. The update of D by the trust-region psi is
kron_torch's (heavyball keeps it as its default update clipping).

Randomness, made deterministic: kron_torch draws whether to update with a global `random.Random` and
V with the torch generator. Here the decision is a per-parameter credit (heavyball's cumulative
form): each step adds the schedule's probability p(t) = clamp(max_prob exp(-decay (t - flat_start)),
min_prob, max_prob), and every whole unit of credit is one update; V comes from a generator seeded
by (seed, the parameter's position, its step). Every rank thus draws the same, whichever owns the
matrix (`owners.py`), and a restart resumes the same sequence. The factors are rebalanced (their
infinity norms set to their geometric mean, which leaves P unchanged) every 100th update, where
kron_torch does it at random about as often.

Weight decay: decoupled, on every parameter of a group that has it (kron_torch decays only ndim >= 2
parameters: `decay_1d=False` gives that). Parameters with ndim > 2 are merged into matrices, where
kron_torch keeps one factor per dimension (heavyball's `merge_dims=True` merges as here).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from trainlab.optim.closure import closure_loss
from trainlab.optim.owners import OwnerUpdates
from trainlab.optim.registration import Registration
from trainlab.optim.validation import check_dense_real, check_int, check_non_negative, check_range

TINY = torch.finfo(torch.bfloat16).tiny
BALANCE_EVERY = 100  # preconditioner updates between rebalancings of a matrix's two factors


def update_probability(step: int, max_prob: float, min_prob: float, decay: float, flat_start: int) -> float:
    """kron_torch's schedule: `max_prob` for `flat_start` steps, then an exponential decay to `min_prob`."""
    return min(max_prob, max(min_prob, max_prob * math.exp(-decay * (step - flat_start))))


def random_vector_seed(seed: int, index: int, step: int) -> int:
    """The generator seed of V for the parameter at position `index` at `step`: a multiplicative
    hash into 32 bits (torch's CPU generator keeps only a seed's low 32 bits)."""
    return (seed * 0x9E3779B1 + index * 0x85EBCA77 + step * 0xC2B2AE3D) % 2**32


def norm_lower_bound(s: torch.Tensor) -> torch.Tensor:
    """A lower bound of the spectral norm of a symmetric `s` from one product (module docstring)."""
    row = s[torch.argmax((s * s).sum(dim=1))]
    x = s @ row
    size = torch.linalg.vector_norm(x)
    return torch.where(size > 0, torch.linalg.vector_norm(s @ x) / size, torch.zeros_like(size))


def _left(q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return q @ x if q.ndim == 2 else q[:, None] * x


def _right_t(x: torch.Tensor, q: torch.Tensor | None) -> torch.Tensor:
    if q is None:
        return x
    return x @ q.T if q.ndim == 2 else x * q


def _solve_left_t(q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Q^{-T} x."""
    return torch.linalg.solve_triangular(q.T, x, upper=False) if q.ndim == 2 else x / q[:, None]


def _solve_right(x: torch.Tensor, q: torch.Tensor | None) -> torch.Tensor:
    """x Q^{-1}."""
    if q is None:
        return x
    return torch.linalg.solve_triangular(q, x, upper=True, left=False) if q.ndim == 2 else x / q


def _fit_side(q: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor, precond_lr: float) -> None:
    """One normalised step of a factor towards the whitening criterion's fixed point T1 = T2."""
    if q.ndim == 2:
        step = torch.triu(t1 - t2) / (norm_lower_bound(t1 + t2) + TINY)
        q.sub_(precond_lr * (step @ q))
    else:
        q.sub_(precond_lr * (t1 - t2) * q / ((t1 + t2).abs().max() + TINY))


def fit_preconditioner(factors: list[torch.Tensor], m: torch.Tensor, v: torch.Tensor, precond_lr: float) -> None:
    """Update the factors (left, then right if any) in place from the pair (V, M), both 2-D."""
    left = factors[0]
    right = factors[1] if len(factors) > 1 else None
    a = _right_t(_left(left, m), right)
    b = _solve_right(_solve_left_t(left, v), right)
    terms = [(a @ a.T, b @ b.T) if left.ndim == 2 else ((a * a).sum(1), (b * b).sum(1))]
    if right is not None:
        terms.append((a.T @ a, b.T @ b) if right.ndim == 2 else ((a * a).sum(0), (b * b).sum(0)))
    for q, (t1, t2) in zip(factors, terms):
        _fit_side(q, t1, t2, precond_lr)


def precondition(factors: list[torch.Tensor], m: torch.Tensor) -> torch.Tensor:
    """P M = Q_L^T Q_L M Q_R^T Q_R."""
    left = factors[0]
    out = left.T @ (left @ m) if left.ndim == 2 else left[:, None] ** 2 * m
    if len(factors) > 1:
        right = factors[1]
        out = (out @ right.T) @ right if right.ndim == 2 else out * right**2
    return out


def trust_region(x: torch.Tensor) -> torch.Tensor:
    """kron_torch's soft clip: about the identity near 0, logarithmic beyond, and within [-2, 2]."""
    y = x / 1.5
    return (1.5 * (0.1 * torch.sign(y) * torch.log1p(y.abs()) + 0.9 * torch.tanh(y))).clamp(-2.0, 2.0)


def _as_matrix(t: torch.Tensor) -> torch.Tensor:
    """The m x n view of `t`; a vector or scalar as an m x 1 column."""
    return t.reshape(t.shape[0], -1) if t.ndim >= 2 else t.reshape(-1, 1)


class Kron(OwnerUpdates):
    """PSGD-Kron (module docstring: rule, sources, choices).

    Defaults (kron_torch): lr 1e-3, momentum 0.9, weight_decay 0, max_size_triangular 8192,
    precond_lr 0.1, the update probability's schedule max 1, min 0.03, decay 1e-3, flat start 250
    steps (`precond_update_min_prob=1` updates every step). `seed` seeds the random vectors V.
    State bytes per m x n parameter with both sides dense, fp32: 4 (m n + m^2 + n^2) (momentum and
    the two factors, stored square); a diagonal side 4 m instead of 4 m^2; a vector 8 B/param.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        precond_lr: float = 0.1,
        max_size_triangular: int = 8192,
        precond_update_prob: float = 1.0,
        precond_update_min_prob: float = 0.03,
        precond_update_decay: float = 1e-3,
        precond_update_flat_start: int = 250,
        seed: int = 0,
        distributed: str = "auto",
        process_group=None,
    ) -> None:
        check_non_negative("lr", lr)
        check_range("momentum", momentum, 0.0, 1.0, high_open=True)
        check_non_negative("weight_decay", weight_decay)
        check_non_negative("precond_lr", precond_lr)
        check_int("max_size_triangular", max_size_triangular, 1)
        check_range("precond_update_prob", precond_update_prob, 0.0, 1.0)
        check_range("precond_update_min_prob", precond_update_min_prob, 0.0, 1.0)
        check_non_negative("precond_update_decay", precond_update_decay)
        check_int("precond_update_flat_start", precond_update_flat_start, 0)
        check_int("seed", seed, 0)
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            precond_lr=precond_lr,
            max_size_triangular=max_size_triangular,
            precond_update_prob=precond_update_prob,
            precond_update_min_prob=precond_update_min_prob,
            precond_update_decay=precond_update_decay,
            precond_update_flat_start=precond_update_flat_start,
            seed=seed,
        )
        super().__init__(params, defaults, distributed, process_group)

    def is_matrix(self, p: torch.Tensor, group: dict[str, Any]) -> bool:
        """Every parameter: even a diagonal factor is normalised by a maximum over the whole tensor."""
        return True

    def matrix_cost(self, p: torch.Tensor, group: dict[str, Any]) -> float:
        """A dense side's products and triangular solves: m n (m + n) plus m^3 + n^3."""
        m, n = _as_matrix(p).shape
        return float(m * n * (m + n) + m**3 + n**3)

    def coverage(self) -> tuple[int, int]:
        """(entries of parameters with at least one dense factor, all entries)."""
        groups = [(p, g) for g in self.param_groups for p in g["params"]]
        dense = sum(p.numel() for p, g in groups if p.ndim >= 2 and any(self._dense(s, g) for s in _as_matrix(p).shape))
        return dense, sum(p.numel() for p, _ in groups)

    @staticmethod
    def _dense(size: int, group: dict[str, Any]) -> bool:
        return 1 < size <= group["max_size_triangular"]

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        updates = []
        position = 0
        for group in self.param_groups:
            for p in group["params"]:
                position += 1
                if p.grad is None:
                    continue
                check_dense_real("Kron", p)
                updates.append((p, lambda t, group=group, index=position - 1: self._update(t, group, index)))
        self.update_matrices(updates)
        return loss

    def _init_state(self, p: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state = self.state[p]
        if "step" not in state:
            dtype = torch.promote_types(p.dtype, torch.float32)
            sides = _as_matrix(p).shape[:1] if p.ndim < 2 else _as_matrix(p).shape
            state.update(step=0, precond_credit=0.0, precond_updates=0)
            state["momentum_buffer"] = torch.zeros_like(p, dtype=dtype)
            for key, size in zip(("Q_left", "Q_right"), sides):
                dense = p.ndim >= 2 and self._dense(size, group)
                state[key] = (torch.eye if dense else torch.ones)(size, dtype=dtype, device=p.device)
        return state

    def _update(self, p: torch.Tensor, group: dict[str, Any], index: int) -> None:
        state = self._init_state(p, group)
        factors = [state[k] for k in ("Q_left", "Q_right") if k in state]
        beta = group["momentum"]
        assert p.grad is not None
        state["step"] += 1
        buf = state["momentum_buffer"]
        buf.lerp_(p.grad.to(buf.dtype), 1 - beta)
        m = _as_matrix(buf / (1 - beta ** state["step"]))
        state["precond_credit"] += update_probability(
            state["step"] - 1,
            group["precond_update_prob"],
            group["precond_update_min_prob"],
            group["precond_update_decay"],
            group["precond_update_flat_start"],
        )
        if state["precond_credit"] >= 1.0:
            state["precond_credit"] -= 1.0
            state["precond_updates"] += 1
            if len(factors) == 2 and state["precond_updates"] % BALANCE_EVERY == 0:
                _balance(factors)
            fit_preconditioner(
                factors, m, self._random_vector(m, group["seed"], index, state["step"]), group["precond_lr"]
            )
        direction = trust_region(precondition(factors, m)).reshape(p.shape)
        if group["weight_decay"]:
            p.mul_(1 - group["lr"] * group["weight_decay"])
        p.add_(direction.to(p.dtype), alpha=-group["lr"])

    @staticmethod
    def _random_vector(like: torch.Tensor, seed: int, index: int, step: int) -> torch.Tensor:
        """V for parameter `index` at `step`: the same on every rank and after a restart."""
        generator = torch.Generator().manual_seed(random_vector_seed(seed, index, step))
        return torch.randn(like.shape, generator=generator, dtype=like.dtype).to(like.device)


def _balance(factors: list[torch.Tensor]) -> None:
    """Scale the two factors to equal infinity norms (their product, and so P, unchanged)."""
    norms = [q.abs().max() for q in factors]
    mean = torch.sqrt(norms[0] * norms[1])
    for q, norm in zip(factors, norms):
        q.mul_(mean / norm)


REGISTRATION = Registration(
    "kron",
    Kron,
    "PSGD-Kron: momentum preconditioned by a Kronecker-factored whitening preconditioner fitted online",
    "Li, Preconditioned Stochastic Gradient Descent, IEEE TNNLS 2018 (arXiv 1512.04202); Li, Black Box "
    "Lie Group Preconditioners for SGD (arXiv 2211.04422); Walters and Pooladzandi, kron_torch (2024)",
    # kron_torch's README: "a learning rate around 3x smaller than adam's" (AdamW's race lr 4e-3 / 3);
    # AdamW's race decay (both decoupled, scaled by lr); the schedule and precond_lr 0.1 as kron_torch's
    race_defaults={"lr": 1.3e-3, "momentum": 0.9, "weight_decay": 0.01, "warmup_fraction": 0.05},
    search_space={
        "lr": {"min": 3e-4, "max": 1e-2, "scaling": "log"},
        "momentum": {"feasible_points": [0.9, 0.95]},
        "weight_decay": {"min": 1e-3, "max": 0.1, "scaling": "log"},
        "warmup_fraction": {"feasible_points": [0.02, 0.05, 0.1]},
    },
    state_bytes="4 (m n + m^2 + n^2) per m x n matrix (a diagonal side: 4 m for 4 m^2); 8 B/param for vectors",
    reference=(
        "a float64 re-derivation of kron_torch's rule, and the whitening fit's fixed point (P -> H^-1 for "
        "gradients of covariance H^2, H = A (x) B), where heavyball 3.2.1's PSGDKron lands within 6 % of it "
        "(its internals differ, so not step for step): tests/test_optim_kron.py"
    ),
)
