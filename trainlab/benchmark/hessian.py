"""The top eigenvalue of a loss's Hessian, by the Lanczos method on Hessian-vector products.

Granziol et al. ("Learning Rates as a Function of Batch Size", JMLR 2022) tie the largest stable
learning rate to the extremal eigenvalue of the mini-batch Hessian: gradient descent on a quadratic
with curvature lambda_max diverges beyond lr = 2 / lambda_max, and the mini-batch Hessian's edge
shrinks toward the full one as the batch grows. `batch-sweep` reports 2 / lambda_max beside the
measured largest stable SGD learning rate at each batch size.

Hessian-vector products come from double backward through autograd (Pearlmutter's trick), so the
Hessian is never formed: memory is a few parameter-sized vectors. Lanczos with full
re-orthogonalisation (k is small, so the O(k^2 n) cost is nothing beside k HVPs) converges to the
extremal eigenvalues first; its largest Ritz value is a lower bound that tightens with k.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def hvp_operator(loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor]):
    """v (flat) -> H v for the Hessian of `loss_fn()` in `params`, with one gradient graph reused."""
    params = [p for p in params if p.requires_grad]
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])

    def apply(v: torch.Tensor) -> torch.Tensor:
        hv = torch.autograd.grad(flat @ v, params, retain_graph=True)
        return torch.cat([h.reshape(-1) for h in hv]).detach()

    return apply, flat.numel()


def lanczos_top_eigenvalue(
    loss_fn: Callable[[], torch.Tensor],
    params: Sequence[torch.Tensor],
    iterations: int = 20,
    seed: int = 0,
) -> float:
    """The largest eigenvalue of the Hessian of `loss_fn()` in `params` (k = `iterations` steps of
    Lanczos from a seeded random start; exact once k reaches the number of parameters)."""
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    apply, n = hvp_operator(loss_fn, params)
    k = min(iterations, n)
    device = next(iter(params)).device
    dtype = torch.float64
    g = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(n, generator=g, dtype=dtype).to(device)
    v /= v.norm()
    basis = [v]
    alphas: list[float] = []
    betas: list[float] = []
    for j in range(k):
        w = apply(basis[j].to(next(iter(params)).dtype)).to(dtype)
        alpha = float(w @ basis[j])
        alphas.append(alpha)
        for q in basis:  # full re-orthogonalisation
            w -= (w @ q) * q
        beta = float(w.norm())
        if j == k - 1 or beta < 1e-10 * max(abs(alpha), 1.0):
            break
        betas.append(beta)
        basis.append(w / beta)
    m = len(alphas)
    tri = torch.diag(torch.tensor(alphas, dtype=dtype))
    if m > 1:
        off = torch.tensor(betas[: m - 1], dtype=dtype)
        tri += torch.diag(off, 1) + torch.diag(off, -1)
    return float(torch.linalg.eigvalsh(tri)[-1])
