"""The `torch.optim` contract, for every registered optimizer (from the registry: a new one is
covered without an edit here): param groups with their own learning rates, an exact `state_dict`
round trip through `torch.save`, `step(closure)`, and parameters without gradients left alone."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from trainlab import optim

NAMES = optim.available()


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(48, 80), nn.Tanh(), nn.Linear(80, 10))  # non-square, with biases


def _groups(name: str, model: nn.Module) -> list[dict]:
    """Matrices at the default learning rate, biases at half of it."""
    matrices = [p for p in model.parameters() if p.ndim == 2]
    vectors = [p for p in model.parameters() if p.ndim < 2]
    lr = optim.create(name, [torch.zeros(1, requires_grad=True)]).defaults["lr"]
    return [{"params": matrices}, {"params": vectors, "lr": lr * 0.5}]


def _steps(model: nn.Module, optimizer: torch.optim.Optimizer, seeds: range) -> None:
    for seed in seeds:
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(8, 48, generator=gen)  # batch 8: every weight gradient has rank <= 8
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        optimizer.step()


@pytest.mark.parametrize("name", NAMES)
def test_a_loaded_state_dict_continues_bit_for_bit(name):
    model = _model()
    optimizer = optim.create(name, _groups(name, model))
    assert len(optimizer.param_groups) == 2
    _steps(model, optimizer, range(3))
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    twin = copy.deepcopy(model)
    loaded = optim.create(name, _groups(name, twin))
    buffer.seek(0)
    loaded.load_state_dict(torch.load(buffer, weights_only=False))
    _steps(model, optimizer, range(3, 5))
    _steps(twin, loaded, range(3, 5))
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b), name
    assert [g["lr"] for g in loaded.param_groups] == [g["lr"] for g in optimizer.param_groups]


@pytest.mark.parametrize("name", NAMES)
def test_step_returns_the_closure_loss_and_skips_parameters_without_gradients(name):
    model = _model()
    frozen = nn.Parameter(torch.randn(16, 24))
    optimizer = optim.create(name, [{"params": list(model.parameters()) + [frozen]}])
    before = frozen.detach().clone()
    x = torch.randn(8, 48)

    def closure():
        optimizer.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    assert torch.is_tensor(loss) and loss.ndim == 0
    optimizer.step(closure)  # ADOPT's first step only fills its second moment
    assert torch.equal(frozen, before) and frozen.grad is None, name
    moved = [not torch.equal(p, q) for p, q in zip(model.parameters(), _model().parameters(), strict=True)]
    assert any(moved), f"{name}: step() moved no parameter"
