"""Muon (Keller Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural networks";
official code KellerJordan/Muon `muon.py`, and `torch.optim.Muon`): momentum, orthogonalised.

Per hidden matrix G (m x n; a conv kernel viewed as (out, in*kh*kw)), mu the momentum, t the step:

    B <- mu B + (1 - mu) G                       (EMA form, B_0 = 0)
    U  = (1 - mu) G + mu B   if nesterov, else B
    O  = NS5(U)                                  quintic Newton-Schulz, (a, b, c) = (3.4445, -4.7750, 2.0315):
         X = U / (||U||_F + 1e-7) on the wide side;  5x: A = X X^T;  X <- a X + (b A + c A A) X
    theta <- theta (1 - lr wd);   theta <- theta - lr * s * O
    s = sqrt(max(1, m / n))  ("original", the official scaling)  or  0.2 sqrt(max(m, n))
        ("match_rms_adamw": an update RMS of about 0.2 lr, as AdamW's, so one lr fits both rules)

Every other parameter (groups with `muon=False`: embeddings, the output layer, 1-D parameters, as the
official `MuonWithAuxAdam` recipe does) gets AdamW in torch's form with `adamw_betas`, `adamw_eps`
and lr * `adamw_lr_ratio` (the official example pairs Muon's 0.02 with AdamW's 3e-4: 0.015).

Newton-Schulz dtype (`ns_dtype`): the official code iterates in bf16 everywhere; on a CPU without
native bf16 matmuls that is ~100x slower than fp32, so "auto" (the default) is bf16 on CUDA devices
with bf16 tensor cores (compute capability >= 8.0) and fp32 elsewhere (`orthogonalize.matmul_dtype`);
"float64" serves the reference tests. bf16 also costs accuracy where the gradient is near low
rank: NS5 amplifies the small directions, and after 5 steps on rank-6-plus-noise 48 x 80 gradients
the bf16 result was 6-7 % (relative) from fp64's, against 1.3 % on full-rank ones. The iteration is
not the exact polar factor: singular values land in about [0.7, 1.2], by design (SWAN's minimax
steps, in `orthogonalize`, whiten further at the same cost; Muon keeps the official coefficients).
`ns_coefficients="polar_express"` runs the Polar Express schedule instead (Amsel et al. 2025,
arXiv 2505.16932: the paper's per-step coefficients and 1.01 safety factor, `orthogonalize`), which
lands much closer to U V^T at the same number of steps.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from trainlab.optim.matrix import MatrixOptimizer
from trainlab.optim.orthogonalize import COEFFICIENT_SETS, NS_DTYPES, newton_schulz, ns_dtype
from trainlab.optim.registration import Registration
from trainlab.optim.validation import check_betas, check_choice, check_int, check_non_negative, check_range

ADJUSTMENTS = ("original", "match_rms_adamw")

__all__ = ["Muon", "REGISTRATION", "newton_schulz"]


class Muon(MatrixOptimizer):
    """Muon for hidden matrices, AdamW for the rest (module docstring: rule, sources, choices).

    Defaults (the official code and README): lr 0.02, momentum 0.95, nesterov, 5 Newton-Schulz
    steps, weight_decay 0, "original" scaling; auxiliary AdamW betas (0.9, 0.95), eps 1e-10, lr ratio
    0.015; `ns_coefficients` "muon" (the official triple) or "polar_express". Group keys: `muon`
    (True: ndim >= 2 parameters are orthogonalised) and every argument.
    A plain parameter list orthogonalises every ndim >= 2 tensor; races pass the recipe's groups
    (`recipe_groups`: hidden Linear/conv weights only).
    State bytes: numel * element_size per Muon matrix (momentum_buffer, 4 B/param in fp32);
    8 * numel per AdamW parameter (fp32 exp_avg, exp_avg_sq).
    """

    matrix_key = "muon"

    def __init__(
        self,
        params,
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        weight_decay: float = 0.0,
        adjust_lr: str = "original",
        adamw_lr_ratio: float = 0.015,
        adamw_betas: tuple[float, float] = (0.9, 0.95),
        adamw_eps: float = 1e-10,
        ns_dtype: str = "auto",
        ns_coefficients: str = "muon",
        muon: bool = True,
        distributed: str = "auto",
        process_group=None,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            weight_decay=weight_decay,
            adjust_lr=adjust_lr,
            adamw_lr_ratio=adamw_lr_ratio,
            adamw_betas=tuple(adamw_betas),
            adamw_eps=adamw_eps,
            ns_dtype=ns_dtype,
            ns_coefficients=ns_coefficients,
            muon=muon,
        )
        super().__init__(params, defaults, distributed, process_group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        _validate({**self.defaults, **param_group})
        super().add_param_group(param_group)

    def _matrix_update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        o = self._orthogonalized_momentum(p, group)
        rows, cols = o.shape
        scale = (
            math.sqrt(max(1.0, rows / cols)) if group["adjust_lr"] == "original" else 0.2 * math.sqrt(max(rows, cols))
        )
        self._apply(p, group, o, scale)

    def _orthogonalized_momentum(self, p: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
        """The momentum step and NS(U) of `p` viewed as (rows, rest), in the Newton-Schulz dtype."""
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        buf, mu = state["momentum_buffer"], group["momentum"]
        assert p.grad is not None
        buf.lerp_(p.grad, 1 - mu)
        u = p.grad.lerp(buf, mu) if group["nesterov"] else buf
        rows = p.shape[0]
        cols = p.numel() // rows
        dtype = ns_dtype(group["ns_dtype"], p.device)
        return newton_schulz(u.reshape(rows, cols), group["ns_steps"], dtype, group.get("ns_coefficients", "muon"))

    def _apply(self, p: torch.Tensor, group: dict[str, Any], o: torch.Tensor, scale: float) -> None:
        """Decoupled decay, then theta <- theta - lr * scale * o."""
        if group["weight_decay"]:
            p.mul_(1 - group["lr"] * group["weight_decay"])
        p.add_(o.reshape(p.shape).to(p.dtype), alpha=-group["lr"] * scale)

    def _other_update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        self._adamw_update(
            p, group["lr"] * group["adamw_lr_ratio"], group["adamw_betas"], group["adamw_eps"], group["weight_decay"]
        )


def _validate(group: dict[str, Any]) -> None:
    check_non_negative("lr", group["lr"])
    check_range("momentum", group["momentum"], 0.0, 1.0, high_open=True)
    check_non_negative("weight_decay", group["weight_decay"])
    check_non_negative("adamw_lr_ratio", group["adamw_lr_ratio"])
    check_betas(group["adamw_betas"])
    check_non_negative("adamw_eps", group["adamw_eps"])
    check_int("ns_steps", group["ns_steps"], 1)
    check_choice("adjust_lr", group["adjust_lr"], ADJUSTMENTS)
    check_choice("ns_dtype", group["ns_dtype"], tuple(NS_DTYPES))
    check_choice("ns_coefficients", group["ns_coefficients"], COEFFICIENT_SETS)
    for key in ("nesterov", "muon"):
        if not isinstance(group[key], bool):
            raise ValueError(f"{key} must be a bool, got {group[key]!r}")


REGISTRATION = Registration(
    "muon",
    Muon,
    "Muon: momentum orthogonalised by quintic Newton-Schulz for hidden matrices, AdamW for the rest",
    "Jordan et al., Muon: An optimizer for hidden layers in neural networks, 2024 "
    "(kellerjordan.github.io/posts/muon); Liu et al., Muon is Scalable for LLM Training (arXiv 2502.16982)",
    # the official lr 0.02, momentum 0.95 and decay 0.01 (README example); the AdamW parameters at
    # AdamW's race lr (4e-3 = 0.2 x 0.02), where the official GPT recipe's 3e-4 suits its large model
    race_defaults={"lr": 0.02, "momentum": 0.95, "weight_decay": 0.01, "adamw_lr_ratio": 0.2, "warmup_fraction": 0.05},
    search_space={
        "lr": {"min": 5e-3, "max": 8e-2, "scaling": "log"},
        "momentum": {"feasible_points": [0.9, 0.95]},
        "adamw_lr_ratio": {"min": 0.03, "max": 1.0, "scaling": "log"},
        "weight_decay": {"min": 1e-3, "max": 0.1, "scaling": "log"},
        "warmup_fraction": {"feasible_points": [0.02, 0.05, 0.1]},
    },
    state_bytes="4 B/param per Muon matrix (momentum_buffer); 8 B/param for the AdamW parameters",
)
