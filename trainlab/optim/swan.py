"""SWAN (Ma, Gong, Scetbon, Meeds; arXiv 2412.13148, ICML 2025): stateless matrix updates.

SWAN replaces Adam's moments, for matrix parameters, by two stateless preprocessing steps of the
current gradient. Per m x n matrix gradient G (a conv kernel (out, in, kh, kw) is viewed as
(out, in*kh*kw)), as reconstructed from secondary sources (see "Choices" below):

    GradNorm       G~ = (G - mean_j G[:, j]) / (std_j G[:, j] + norm_eps)
                   row-wise standardisation over the n columns (the input dimension), population
                   std (divide by n), norm_eps 1e-8 added to the std
    GradWhitening  Delta = (G~ G~^T)^{-1/2} G~ (= U V^T for G~ = U S V^T), on the smaller side,
                   by five Newton-Schulz steps with per-step minimax quintic coefficients
                   (`whitening="minimax"`, the default; trainlab.optim.orthogonalize):
                       X = G~ / ||G~||_F;  5x: A = X X^T;  X <- a_k X + (b_k A + c_k A^2) X;  Delta = X
                   or by the coupled Newton-Schulz iteration the secondary sources describe
                   (`whitening="coupled"`, ns_steps 10, ns_beta 0.5: the default of trainlab 0.1.0):
                       X = G~ / ||G~||_F;  Y = X X^T;  Z = I
                       repeat ns_steps times:  T = 3I - Z Y;  Y <- ns_beta * Y T;  Z <- ns_beta * T Z
                       Delta = Z X
    Rescale        Delta <- sqrt(m * n) * Delta / ||Delta||_F
    Update         W <- W * (1 - lr_m * weight_decay);  W <- W - lr_m * Delta,  lr_m = lr * matrix_lr_scale

Choices (the SWAN paper and code could not be reached; everything above comes from secondary sources):
- The whitening iteration (the minimax default replaced the coupled one after 0.1.0). Both
  converge to the same Delta; they differ in how fast. The coupled iteration lifts a small
  eigenvalue mu of X X^T only x2.25 per step (below), so ten steps leave an ill-conditioned
  gradient far from white: on a rank-4-plus-noise 96 x 384 gradient (condition number about
  1,300) its update's singular values still spread about 40x. The minimax quintic steps (the
  construction of "The Polar Express", arXiv 2505.16932) lift small singular values about x4.25
  per step and are fitted to land [5e-4, 1] in [0.52, 1]: the same update spreads about 2.3x
  after five steps (`test_swan_whitens_an_ill_conditioned_gradient` bounds it at 3x). Cost for
  a k x n matrix (k <= n): minimax 10 k^2 n + 5 k^3 flops x2 (Muon's five steps), coupled
  2 k^2 n + 20 k^3 x2: less on square matrices, more on very wide ones. The leaderboard's SWAN
  rows were rerun with the minimax default.
- Coupled iteration: ns_beta 0.5, ns_steps 10. beta = 1/2 is the only value whose fixed point
  is the inverse square root (the same authors' follow-up, arXiv 2502.07752 App. B.8, gives beta = 1/2 and "about 5
  steps"). With beta = 1/2 an eigenvalue mu of X X^T approaches 1 as mu <- mu (3 - mu)^2 / 4,
  i.e. only x2.25 per step while small, so 10 steps (the iteration count the third-party "full"
  versions use) are taken rather than 5. Those reimplementations pair k = 10 with beta = 0.8, an
  over-relaxed iteration with no inverse-square-root fixed point (it oscillates around a whitened
  spectrum, as Muon's polynomials do); pass ns_beta=0.8 to get it. Unconfirmed.
- norm_eps is added to the std (reimplementations use 1e-8, as a clamp or inside the sqrt): a
  row of all-equal gradients standardises to 0 instead of NaN; an all-zero G~ gives Delta = 0.
- matrix_lr_scale 1.0: after the rescale every entry of Delta has RMS 1, about the size of an
  Adam step, so the same lr suits both rules. A reimplementation uses lr * 0.05 for the matrices
  with a larger global lr (unconfirmed); pass matrix_lr_scale=0.05 for that recipe.
- Non-matrix parameters (ndim < 2: biases, norm scales) and groups with `whiten=False` use AdamW
  (torch.optim.AdamW's form, decay before the update, fp32 moments) by default: every
  reimplementation does this for 1-D parameters, embeddings and the LM head, and the paper's
  SGD-like memory claim is about the matrices, which hold almost all parameters.
  `nonmatrix_rule="sgd"` gives plain SGD (W <- W*(1 - lr wd) - lr g) instead, with no state at all,
  for a fully stateless optimizer. A plain parameter list whitens every ndim >= 2 tensor,
  embeddings included; put embeddings / the LM head in a group with `"whiten": False` to give
  them AdamW as the reimplementations do.

State bytes: 0 for whitened matrices; 8 * numel for each AdamW parameter (fp32 exp_avg and
exp_avg_sq, whatever the parameter dtype), 0 for SGD ones. GradNorm runs in fp32; the whitening's
matmuls in `ns_dtype` ("auto": bf16 on CUDA devices with bf16 tensor cores, fp32 elsewhere, as
for Muon; the coupled iteration always in fp32); the update is cast to the parameter dtype once.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from trainlab.optim.matrix import MatrixOptimizer
from trainlab.optim.orthogonalize import NS_DTYPES, minimax_coefficients, ns_dtype, orthogonalize
from trainlab.optim.registration import Registration
from trainlab.optim.validation import check_betas, check_choice, check_int, check_non_negative

_NONMATRIX_RULES = ("adamw", "sgd")
WHITENINGS = ("minimax", "coupled")
DEFAULT_STEPS = {"minimax": 5, "coupled": 10}
SMALLEST = 5e-4  # the minimax steps are fitted to whiten singular values down to this (of ||G~||_F)


def grad_norm(g: torch.Tensor, eps: float) -> torch.Tensor:
    """Row-wise standardisation over the n columns (population std, eps added to the std)."""
    mean = g.mean(dim=1, keepdim=True)
    centred = g - mean
    std = centred.square().mean(dim=1, keepdim=True).sqrt_()
    return centred.div_(std.add_(eps))


def coupled_whitening(g: torch.Tensor, steps: int, beta: float) -> torch.Tensor:
    """(G G^T)^{-1/2} G by coupled Newton-Schulz on the smaller side (fp32 in, fp32 out)."""
    transpose = g.shape[0] > g.shape[1]
    x = g.T if transpose else g
    x = x / torch.linalg.vector_norm(x).clamp_min(torch.finfo(x.dtype).tiny)
    k = x.shape[0]
    eye = torch.eye(k, dtype=x.dtype, device=x.device)
    y = x @ x.T
    z = eye.clone()
    for _ in range(steps):
        t = 3 * eye - z @ y
        y = beta * (y @ t)
        z = beta * (t @ z)
    delta = z @ x
    return delta.T if transpose else delta


class SWAN(MatrixOptimizer):
    """SWAN: GradNorm + GradWhitening for matrices (no state), AdamW (default) for the rest.

    Formulas, defaults and their sources are in the module docstring. Group keys: `whiten` (True:
    ndim >= 2 parameters are whitened) and every constructor argument.

    State bytes: 0 per whitened matrix; 8 * numel per AdamW parameter (fp32 moments); 0 with
    nonmatrix_rule "sgd".
    """

    matrix_key = "whiten"

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        whitening: str = "minimax",
        ns_steps: int | None = None,
        ns_beta: float = 0.5,
        ns_dtype: str = "auto",
        norm_eps: float = 1e-8,
        matrix_lr_scale: float = 1.0,
        nonmatrix_rule: str = "adamw",
        whiten: bool = True,
        distributed: str = "auto",
        process_group=None,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            whitening=whitening,
            ns_steps=ns_steps,
            ns_beta=ns_beta,
            ns_dtype=ns_dtype,
            norm_eps=norm_eps,
            matrix_lr_scale=matrix_lr_scale,
            nonmatrix_rule=nonmatrix_rule,
            whiten=whiten,
        )
        super().__init__(params, defaults, distributed, process_group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        _validate({**self.defaults, **param_group})
        super().add_param_group(param_group)

    def _matrix_update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        m = p.shape[0]
        n = p.numel() // m
        assert p.grad is not None
        g = grad_norm(p.grad.reshape(m, n).float(), group["norm_eps"])
        steps = group["ns_steps"] or DEFAULT_STEPS[group["whitening"]]
        if group["whitening"] == "coupled":
            delta = coupled_whitening(g, steps, group["ns_beta"])
        else:
            delta = orthogonalize(g, minimax_coefficients(steps, SMALLEST), ns_dtype(group["ns_dtype"], p.device))
            delta = delta.float()
        norm = torch.linalg.vector_norm(delta).clamp_min(torch.finfo(delta.dtype).tiny)
        delta.mul_(math.sqrt(m * n) / norm)
        lr = group["lr"] * group["matrix_lr_scale"]
        if group["weight_decay"]:
            p.mul_(1 - lr * group["weight_decay"])
        p.add_(delta.reshape(p.shape).to(p.dtype), alpha=-lr)

    def _other_update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        assert p.grad is not None
        if group["nonmatrix_rule"] == "sgd":
            if group["weight_decay"]:
                p.mul_(1 - group["lr"] * group["weight_decay"])
            p.add_(p.grad, alpha=-group["lr"])
        else:  # the same AdamW rule the projection optimizers apply to their other parameters
            self._adamw_update(p, group["lr"], group["betas"], group["eps"], group["weight_decay"])


def _validate(group: dict[str, Any]) -> None:
    check_non_negative("lr", group["lr"])
    check_betas(group["betas"])
    check_non_negative("eps", group["eps"])
    check_non_negative("weight_decay", group["weight_decay"])
    check_non_negative("norm_eps", group["norm_eps"])
    check_non_negative("matrix_lr_scale", group["matrix_lr_scale"])
    check_choice("whitening", group["whitening"], WHITENINGS)
    if group["ns_steps"] is not None:  # None: 5 minimax steps, 10 coupled ones
        check_int("ns_steps", group["ns_steps"], 1)
    check_choice("ns_dtype", group["ns_dtype"], tuple(NS_DTYPES))
    beta = group["ns_beta"]
    if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not 0.0 < beta < 1.0:
        raise ValueError(f"ns_beta must be in (0, 1), got {beta!r}")
    if group["nonmatrix_rule"] not in _NONMATRIX_RULES:
        raise ValueError(
            f"nonmatrix_rule must be one of {', '.join(_NONMATRIX_RULES)}, got {group['nonmatrix_rule']!r}"
        )
    if not isinstance(group["whiten"], bool):
        raise ValueError(f"whiten must be a bool, got {group['whiten']!r}")


REGISTRATION = Registration(
    "swan",
    SWAN,
    "SWAN: stateless GradNorm + GradWhitening (minimax Newton-Schulz) for matrices, AdamW for the rest",
    "Ma, Gong, Scetbon, Meeds, SWAN: SGD with Normalization and Whitening Enables Stateless "
    "LLM Training, ICML 2025 (arXiv 2412.13148)",
    # every whitened entry moves by about lr (RMS 1 after the rescale): the class's lr 1e-3
    race_defaults={"lr": 1e-3, "weight_decay": 0.0, "warmup_fraction": 0.05},
    search_space={
        "lr": {"min": 0.0001, "max": 0.01, "scaling": "log"},
        "one_minus_beta1": {"feasible_points": [0.1]},
        "beta2": {"feasible_points": [0.999]},
        "weight_decay": {"min": 0.001, "max": 0.1, "scaling": "log"},
        "warmup_fraction": {"feasible_points": [0.02, 0.05, 0.1]},
    },
    state_bytes="0 per whitened matrix; 8 B/param for the AdamW parameters",
)
