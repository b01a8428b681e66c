"""Lanczos on Hessian-vector products against the explicit Hessian of a small network."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from trainlab.benchmark.hessian import lanczos_top_eigenvalue


def test_lanczos_matches_the_explicit_hessians_top_eigenvalue():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 3)).double()  # 58 parameters
    x, y = torch.randn(40, 7, dtype=torch.float64), torch.randint(0, 3, (40,))
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]

    def flat_loss(flat: torch.Tensor) -> torch.Tensor:
        tensors = {n: c.view(s) for n, c, s in zip(names, torch.split(flat, sizes), shapes)}
        return nn.functional.cross_entropy(functional_call(model, tensors, (x,)), y)

    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    exact = torch.linalg.eigvalsh(torch.autograd.functional.hessian(flat_loss, flat))
    assert exact[-1] > 0 > exact[0]  # indefinite: Lanczos must find the largest, not the largest in size

    def loss():
        return nn.functional.cross_entropy(model(x), y)

    top = lanczos_top_eigenvalue(loss, list(model.parameters()), iterations=30)
    assert top == pytest.approx(float(exact[-1]), rel=1e-8)
    rough = lanczos_top_eigenvalue(loss, list(model.parameters()), iterations=5)
    assert rough <= float(exact[-1]) * (1 + 1e-9) and rough > 0.5 * float(exact[-1])  # a lower bound


def test_lanczos_needs_an_iteration():
    model = nn.Linear(3, 1)
    with pytest.raises(ValueError, match="at least 1"):
        lanczos_top_eigenvalue(lambda: model(torch.ones(1, 3)).sum() ** 2, list(model.parameters()), iterations=0)
