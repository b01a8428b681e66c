"""NorMuon (Li, Liu, Liang, Chen, Zhao, "NorMuon: Making Muon more efficient and scalable", arXiv
2510.05491; official code zichongli5/NorMuon `normuon.py`): Muon with neuron-wise normalisation.

Why: Muon's orthogonalised update has a good condition number but very uneven row norms, so a few
output neurons take most of each step. NorMuon keeps an Adam-like second moment per row (neuron) of
the orthogonalised update and divides each row by its root, then restores the update's size.

Per hidden matrix G (m x n; a conv kernel viewed as (out, in*kh*kw)), Muon's momentum and NS first:

    O = NS(U)                                        Muon's step (`muon.py`): EMA momentum, nesterov
    v <- b2 v + (1 - b2) mean_row(O * O)             v: m x 1, v_0 = 0, no bias correction
    O^ = O / (sqrt(v) + eps)                         each row by its own root second moment
    theta <- theta (1 - lr wd);   theta <- theta - lr * D
    D = O^ ||O||_F / (||O^||_F + eps) * sqrt(max(1, m / n))   ("original": the official code keeps
                                                                Muon's norm, then Muon's scale)
    D = 0.2 sqrt(m n) O^ / (||O^||_F + eps)                   ("match_rms_adamw": the paper's
                                                                Algorithm 1, update RMS 0.2 lr)

b2 is `neuron_beta2` (the official code's `beta2`; renamed because `beta2` in a search space means
the second element of `betas`). Everything else is Muon's: non-matrix parameters (groups with
`muon=False`) get the AdamW fallback, `ns_coefficients` picks Muon's triple or Polar Express, and
each matrix is updated by one owner rank under DDP and FSDP2 (`owners.py`), its second moment kept
there with its momentum.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from trainlab.optim.matrix import MatrixOptimizer
from trainlab.optim.muon import Muon
from trainlab.optim.registration import Registration
from trainlab.optim.validation import check_non_negative, check_range


class NorMuon(Muon):
    """NorMuon for hidden matrices, AdamW for the rest (module docstring: rule, sources, choices).

    Defaults (the official code): lr 0.02, momentum 0.95, neuron_beta2 0.95, eps 1e-10, nesterov, 5
    Newton-Schulz steps, weight_decay 0, "original" scaling; the AdamW fallback as Muon's.
    State bytes per m x n NorMuon matrix in fp32: 4 m n (momentum_buffer) + 4 m (second_moment);
    8 * numel per AdamW parameter.
    """

    def __init__(
        self,
        params,
        lr: float = 0.02,
        momentum: float = 0.95,
        neuron_beta2: float = 0.95,
        eps: float = 1e-10,
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
            neuron_beta2=neuron_beta2,
            eps=eps,
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
        MatrixOptimizer.__init__(self, params, defaults, distributed, process_group)  # Muon's, plus two keys

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        merged = {**self.defaults, **param_group}
        check_range("neuron_beta2", merged["neuron_beta2"], 0.0, 1.0, high_open=True)
        check_non_negative("eps", merged["eps"])
        super().add_param_group(param_group)  # Muon's checks

    def _matrix_update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        o = self._orthogonalized_momentum(p, group)
        o = o.to(torch.promote_types(o.dtype, torch.float32))
        rows, cols = o.shape
        state = self.state[p]
        if "second_moment" not in state:
            state["second_moment"] = torch.zeros(rows, 1, dtype=o.dtype, device=o.device)
        v, eps = state["second_moment"], group["eps"]
        v.lerp_((o * o).mean(dim=1, keepdim=True), 1 - group["neuron_beta2"])
        normalized = o / (v.sqrt() + eps)
        if group["adjust_lr"] == "original":
            scale = torch.linalg.vector_norm(o) / (torch.linalg.vector_norm(normalized) + eps)
            normalized.mul_(scale * math.sqrt(max(1.0, rows / cols)))
        else:
            normalized.mul_(0.2 * math.sqrt(rows * cols) / (torch.linalg.vector_norm(normalized) + eps))
        self._apply(p, group, normalized, 1.0)


REGISTRATION = Registration(
    "normuon",
    NorMuon,
    "NorMuon: Muon's orthogonalised momentum with each row divided by its own root second moment",
    "Li, Liu, Liang, Chen, Zhao, NorMuon: Making Muon more efficient and scalable, ICLR 2026 (arXiv 2510.05491)",
    # Muon's race defaults (the official NorMuon code keeps Muon's lr 0.02 and momentum 0.95 and adds
    # neuron_beta2 0.95; the "original" scaling keeps Muon's update norm, so Muon's lr carries over)
    race_defaults={"lr": 0.02, "momentum": 0.95, "weight_decay": 0.01, "adamw_lr_ratio": 0.2, "warmup_fraction": 0.05},
    search_space={
        "lr": {"min": 5e-3, "max": 8e-2, "scaling": "log"},
        "neuron_beta2": {"feasible_points": [0.95, 0.99]},
        "adamw_lr_ratio": {"min": 0.03, "max": 1.0, "scaling": "log"},
        "weight_decay": {"min": 1e-3, "max": 0.1, "scaling": "log"},
        "warmup_fraction": {"feasible_points": [0.02, 0.05, 0.1]},
    },
    state_bytes="4 m n + 4 m per m x n NorMuon matrix (momentum_buffer, second_moment); 8 B/param for AdamW",
    reference="the official code (zichongli5/NorMuon normuon.py) re-derived in float64 in tests/test_optim_normuon.py",
)
