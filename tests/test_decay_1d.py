"""`decay_1d`: weight decay on biases and norm gains is a choice, made once for every optimizer.

The default (True) keeps every parameter decaying, as every stored number was measured; False gives
parameters with fewer than two dimensions weight decay 0 (`trainlab.optim.selection.exempt_1d`)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainlab import optim
from trainlab.algorithms import TrainingAlgorithm, make_algorithm
from trainlab.errors import UsageError
from trainlab.optim.selection import recipe_groups


def _model() -> nn.Module:
    torch.manual_seed(0)
    # a hidden Linear for the matrix methods, a norm gain and bias, biases, an output layer
    return nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 8), nn.Linear(8, 3))


def _train(name: str, decay_1d: bool) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """Three steps at lr 0.1 and weight decay 0.1 with gradients on the matrices only (the 1-D
    parameters' gradients are zero), so only weight decay can move a 1-D parameter."""
    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    hparams = {"lr": 0.1, "weight_decay": 0.1, "decay_1d": decay_1d, "warmup_fraction": 0.0}
    spec = make_algorithm(f"{name}+constant", hparams)
    algorithm = TrainingAlgorithm(spec, model, total_steps=3)
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=generator) if p.ndim >= 2 else torch.zeros_like(p)
        algorithm.optimizer.step()
    return model, before


@pytest.mark.parametrize("name", optim.available())
def test_decay_1d_false_leaves_biases_and_norm_gains_alone(name):
    model, before = _train(name, decay_1d=False)
    for n, p in model.named_parameters():
        if p.ndim < 2:
            assert torch.equal(p.detach(), before[n]), f"{name}: {n} moved without a gradient"
    assert any(not torch.equal(p.detach(), before[n]) for n, p in model.named_parameters() if p.ndim >= 2)


@pytest.mark.parametrize("name", ["adamw", "sgd", "muon", "galore", "soap"])
def test_by_default_every_parameter_decays_as_before(name):
    model, before = _train(name, decay_1d=True)
    moved = [n for n, p in model.named_parameters() if p.ndim < 2 and not torch.equal(p.detach(), before[n])]
    assert moved, f"{name}: weight decay no longer reaches the 1-D parameters by default"


def test_the_default_groups_are_todays_and_the_exemption_splits_them():
    model = _model()
    plain = recipe_groups(optim.entry("adamw").factory, model)
    assert plain == [p for p in model.parameters()]  # one plain list, as before: the same optimizer
    exempt = recipe_groups(optim.entry("adamw").factory, model, decay_1d=False)
    assert [g.get("weight_decay") for g in exempt] == [None, 0.0]
    assert all(p.ndim >= 2 for p in exempt[0]["params"]) and all(p.ndim < 2 for p in exempt[1]["params"])
    muon = recipe_groups(optim.entry("muon").factory, model, decay_1d=False)
    # hidden matrices by the matrix rule, then the fallback's matrices, then its 1-D parameters undecayed
    assert [(g.get("muon", True), g.get("weight_decay")) for g in muon] == [(True, None), (False, None), (False, 0.0)]
    galore = recipe_groups(optim.entry("galore").factory, model)
    assert [g["projection"] for g in galore] == ["auto", "none"]


def test_decay_1d_is_a_hyperparameter_of_every_algorithm():
    spec = make_algorithm("adamw")
    assert spec.hparams["decay_1d"] is True  # so the report's hyperparameter table shows it
    with pytest.raises(UsageError, match="decay_1d must be True or False"):
        TrainingAlgorithm(make_algorithm("adamw", {"decay_1d": "no"}), _model(), total_steps=3)
