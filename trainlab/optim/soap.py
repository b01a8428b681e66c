"""SOAP (Vyas et al. 2024, "SOAP: Improving and Stabilizing Shampoo using Adam", arXiv 2409.11321):
Adam run in the eigenbasis of Shampoo's preconditioner, the basis refreshed every few steps.

Per matrix parameter G (m x n; ndim > 2 viewed as (shape[0], prod(shape[1:])), what the official
`merge_dims=True` gives for the usual conv shapes), beta_s = shampoo_beta (beta2 when negative),
k the number of Adam updates so far (official code nikhilvyas/SOAP `soap.py`):

    first call:  L = (1 - beta_s) G G^T,  R = (1 - beta_s) G^T G;  Q_L, Q_R = eigenvectors of
                 L + 1e-30 I and R + 1e-30 I (columns by descending eigenvalue); no update, no decay
    later calls: G~ = Q_L^T G Q_R;  k += 1;  m <- b1 m + (1-b1) G~;  v <- b2 v + (1-b2) G~^2
                 N = Q_L (m / (sqrt(v) + eps)) Q_R^T
                 theta <- theta - lr sqrt(1 - b2^k) / (1 - b1^k) N;   theta <- theta (1 - lr wd)
                 L <- beta_s L + (1 - beta_s) G G^T;   R <- beta_s R + (1 - beta_s) G^T G
                 every precondition_frequency updates, per side: order Q's columns by the diagonal
                 of Q^T L Q (descending), permute v along that axis the same way, Q <- QR(L Q).Q;
                 m is carried into the new basis (m <- Q_L'^T Q_L m Q_R^T Q_R')

A side longer than max_precond_dim is not rotated (Q = I, no statistics). 1-D parameters get plain
Adam in the same form (the official default `precondition_1d=False`). m and v live in the rotated
basis; v is only ever permuted, never rotated. State follows the parameter's dtype (fp32 for fp32
parameters; float64 parameters run entirely in float64, which the reference tests use).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from trainlab.optim.owners import OwnerUpdates
from trainlab.optim.registration import Registration
from trainlab.optim.validation import check_betas, check_non_negative


def _eigenbasis(stat: torch.Tensor) -> torch.Tensor:
    """Eigenvectors of a statistics matrix, columns by descending eigenvalue."""
    eye = torch.eye(stat.shape[0], dtype=stat.dtype, device=stat.device)
    return torch.linalg.eigh(stat + 1e-30 * eye).eigenvectors.flip(1)


class SOAP(OwnerUpdates):
    """SOAP (arXiv 2409.11321): Adam in Shampoo's eigenbasis (module docstring: rule and sources).

    Defaults (official): lr 3e-3, betas (0.95, 0.95), shampoo_beta -1 (= beta2), eps 1e-8,
    weight_decay 0.01, precondition_frequency 10, max_precond_dim 10000.
    State bytes per m x n parameter with both sides rotated, fp32: 4 (2 m n + 2 m^2 + 2 n^2)
    (exp_avg, exp_avg_sq, the two statistics and the two bases); a side longer than
    max_precond_dim drops its two square matrices; 1-D parameters 8 B/param.
    """

    def __init__(
        self,
        params,
        lr: float = 3e-3,
        betas: tuple[float, float] = (0.95, 0.95),
        shampoo_beta: float = -1.0,
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        precondition_frequency: int = 10,
        max_precond_dim: int = 10000,
        distributed: str = "auto",
        process_group=None,
    ) -> None:
        check_non_negative("lr", lr)
        check_betas(betas)
        if not isinstance(shampoo_beta, (int, float)) or isinstance(shampoo_beta, bool) or shampoo_beta >= 1:
            raise ValueError(f"shampoo_beta must be a number below 1 (negative: use beta2), got {shampoo_beta!r}")
        check_non_negative("eps", eps)
        check_non_negative("weight_decay", weight_decay)
        for name, value in (("precondition_frequency", precondition_frequency), ("max_precond_dim", max_precond_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            shampoo_beta=shampoo_beta,
            eps=eps,
            weight_decay=weight_decay,
            precondition_frequency=precondition_frequency,
            max_precond_dim=max_precond_dim,
        )
        super().__init__(params, defaults, distributed, process_group)

    def coverage(self) -> tuple[int, int]:
        """(entries rotated on at least one side, all entries): what SOAP treats unlike Adam."""
        groups = [(p, g) for g in self.param_groups for p in g["params"]]
        rotated = sum(
            p.numel()
            for p, g in groups
            if p.ndim >= 2 and min(p.shape[0], p.numel() // p.shape[0]) <= g["max_precond_dim"]
        )
        return rotated, sum(p.numel() for p, _ in groups)

    @torch.no_grad()
    def step(self, closure=None):
        return self._step_by_kind(closure, self._matrix_step, self._adam_step)

    def is_matrix(self, p: torch.Tensor, group: dict[str, Any]) -> bool:
        return p.ndim >= 2

    def matrix_cost(self, p: torch.Tensor, group: dict[str, Any]) -> float:
        """The rotations (2 m n (m + n) a step) and the eigenbases' refresh (m^3 + n^3)."""
        m, n = p.shape[0], p.numel() // p.shape[0]
        return float(2 * m * n * (m + n) + m**3 + n**3)

    def _adam_step(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        state = self.state[p]
        if "step" not in state:
            state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
        beta1, beta2 = group["betas"]
        state["step"] += 1
        k = state["step"]
        state["exp_avg"].lerp_(p.grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
        size = group["lr"] * math.sqrt(1 - beta2**k) / (1 - beta1**k)
        p.addcdiv_(state["exp_avg"], state["exp_avg_sq"].sqrt().add_(group["eps"]), value=-size)
        if group["weight_decay"]:
            p.mul_(1 - group["lr"] * group["weight_decay"])

    def _matrix_step(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        state = self.state[p]
        m_dim = p.shape[0]
        assert p.grad is not None
        g = p.grad.reshape(m_dim, -1)
        n_dim = g.shape[1]
        beta1, beta2 = group["betas"]
        beta_s = group["shampoo_beta"] if group["shampoo_beta"] >= 0 else beta2
        rotate = (m_dim <= group["max_precond_dim"], n_dim <= group["max_precond_dim"])
        if "step" not in state:  # first call: statistics and bases only
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(g)
            state["exp_avg_sq"] = torch.zeros_like(g)
            for side, (on, stat) in enumerate(zip(rotate, (g @ g.T, g.T @ g))):
                key = "LR"[side]
                if on:
                    state[f"stat_{key}"] = stat * (1 - beta_s)
                    state[f"basis_{key}"] = _eigenbasis(state[f"stat_{key}"])
            return
        q_l, q_r = state.get("basis_L"), state.get("basis_R")
        rotated = _project(g, q_l, q_r)
        state["step"] += 1
        k = state["step"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(rotated, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(rotated, rotated, value=1 - beta2)
        direction = _project_back(exp_avg / (exp_avg_sq.sqrt() + group["eps"]), q_l, q_r)
        size = group["lr"] * math.sqrt(1 - beta2**k) / (1 - beta1**k)
        p.add_(direction.reshape(p.shape), alpha=-size)
        if group["weight_decay"]:
            p.mul_(1 - group["lr"] * group["weight_decay"])
        for key, stat in (("L", g @ g.T), ("R", g.T @ g)):
            if f"stat_{key}" in state:
                state[f"stat_{key}"].lerp_(stat, 1 - beta_s)
        if k % group["precondition_frequency"] == 0:
            self._refresh(state)

    def _refresh(self, state: dict[str, Any]) -> None:
        """One power-iteration (QR) step per rotated side, v permuted to the new column order, and
        m carried from the old basis into the new one."""
        full = _project_back(state["exp_avg"], state.get("basis_L"), state.get("basis_R"))
        for axis, key in ((0, "L"), (1, "R")):
            if f"basis_{key}" not in state:
                continue
            stat, basis = state[f"stat_{key}"], state[f"basis_{key}"]
            order = torch.argsort(torch.diagonal(basis.T @ stat @ basis), descending=True)
            state["exp_avg_sq"] = state["exp_avg_sq"].index_select(axis, order)
            state[f"basis_{key}"] = torch.linalg.qr(stat @ basis[:, order]).Q
        state["exp_avg"] = _project(full, state.get("basis_L"), state.get("basis_R"))


def _project(x: torch.Tensor, q_l: torch.Tensor | None, q_r: torch.Tensor | None) -> torch.Tensor:
    if q_l is not None:
        x = q_l.T @ x
    return x @ q_r if q_r is not None else x


def _project_back(x: torch.Tensor, q_l: torch.Tensor | None, q_r: torch.Tensor | None) -> torch.Tensor:
    if q_l is not None:
        x = q_l @ x
    return x @ q_r.T if q_r is not None else x


REGISTRATION = Registration(
    "soap",
    SOAP,
    "SOAP: Adam in the eigenbasis of Shampoo's preconditioner, refreshed every 10 steps",
    "Vyas et al., SOAP: Improving and Stabilizing Shampoo using Adam, ICLR 2025 (arXiv 2409.11321)",
    # the official defaults (betas 0.95, 0.95; wd 0.01; refresh every 10) at AdamW's race lr
    race_defaults={"lr": 4e-3, "betas": (0.95, 0.95), "weight_decay": 0.01, "warmup_fraction": 0.05},
    search_space={
        "lr": {"min": 1e-3, "max": 3e-2, "scaling": "log"},
        "one_minus_beta1": {"min": 0.03, "max": 0.3, "scaling": "log"},
        "beta2": {"feasible_points": [0.95, 0.99]},
        "weight_decay": {"min": 1e-3, "max": 0.1, "scaling": "log"},
        "warmup_fraction": {"feasible_points": [0.02, 0.05, 0.1]},
    },
    state_bytes="4 (2 m n + 2 m^2 + 2 n^2) per m x n matrix rotated on both sides; 8 B/param for 1-D",
)
