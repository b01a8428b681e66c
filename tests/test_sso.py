"""SSO (trainlab.algorithms.sso) against the surrogate written out again, on a linear model with
squared loss, where the surrogate's minimiser is known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from support_workloads import TinyRegression
from trainlab.algorithms import make_algorithm
from trainlab.algorithms.sso import SSOAlgorithm
from trainlab.benchmark.runner import run_trial
from trainlab.errors import UsageError
from trainlab.workloads import Workload

CPU = torch.device("cpu")
PLAIN_SGD = {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "warmup_fraction": 0.0}


def rank_deficient_batch(seed: int = 0, n: int = 48, d: int = 16, rank: int = 6):
    """Inputs of rank `rank` < min(n, d), so the minimiser in parameters is not unique but its
    outputs are (the projection of the target-space step onto what the model can output)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, rank, generator=g) @ torch.randn(rank, d, generator=g)
    y = torch.randn(n, 1, generator=g)
    return x, y


def linear(seed: int = 1) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(16, 1)


def reference(model: nn.Linear, x, y, lr: float, eta: float, steps: int) -> np.ndarray:
    """Plain gradient descent on <g, z - z_t> + ||z - z_t||^2 / (2 eta N) with z = [x, 1] theta,
    loss mean((z - y)^2), in float64."""
    X = np.hstack([x.double().numpy(), np.ones((len(x), 1))])
    theta = np.concatenate([model.weight.detach().double().numpy().ravel(), model.bias.detach().double().numpy()])
    Y = y.double().numpy().ravel()
    n = len(Y)
    z_t = X @ theta
    g = 2.0 * (z_t - Y) / n
    for _ in range(steps):
        theta = theta - lr * X.T @ (g + (X @ theta - z_t) / (eta * n))
    return theta


def parameters(model: nn.Linear) -> np.ndarray:
    return np.concatenate([model.weight.detach().double().numpy().ravel(), model.bias.detach().double().numpy()])


@pytest.mark.parametrize("inner_steps", [1, 4])
def test_inner_sgd_steps_follow_the_surrogates_gradient(inner_steps):
    x, y = rank_deficient_batch()
    model = linear()
    spec = make_algorithm(
        "sso[inner=sgd]+constant", {**PLAIN_SGD, "lr": 0.01, "inner_steps": inner_steps, "target_lr": 0.5}
    )
    expected = reference(model, x, y, lr=0.01, eta=0.5, steps=inner_steps)
    algorithm = SSOAlgorithm(spec, model, TinyRegression(), total_steps=10)
    loss = algorithm.update(model, (x, y), None)
    assert np.allclose(parameters(model), expected, rtol=1e-5, atol=1e-6)
    assert loss.item() == pytest.approx(nn.functional.mse_loss(linear()(x), y).item())  # the loss at theta_t
    assert algorithm.counts() == (1, inner_steps)


def test_one_inner_step_is_the_inner_optimizers_own_step():
    x, y = rank_deficient_batch()
    sso_model, plain_model = linear(), linear()
    spec = make_algorithm("sso[inner=adamw]+constant", {"inner_steps": 1, "lr": 1e-2, "warmup_fraction": 0.0})
    SSOAlgorithm(spec, sso_model, TinyRegression(), 10).update(sso_model, (x, y), None)
    plain = torch.optim.AdamW(
        plain_model.parameters(),
        lr=1e-2,
        betas=spec.hparams["betas"],
        weight_decay=spec.hparams["weight_decay"],
        eps=spec.hparams["eps"],
    )
    nn.functional.mse_loss(plain_model(x), y).backward()
    plain.step()
    assert np.allclose(parameters(sso_model), parameters(plain_model), rtol=1e-6, atol=1e-7)


def test_many_inner_steps_reach_the_surrogates_closed_form_minimiser():
    """min over theta of the surrogate = least squares of [x, 1] theta onto z_t - eta * grad l:
    the model's outputs land on the projection of the target-space step onto its column space."""
    x, y = rank_deficient_batch()
    model = linear()
    eta = 0.5
    X = np.hstack([x.double().numpy(), np.ones((len(x), 1))])
    z_t = X @ parameters(model)
    step = z_t - eta * 2.0 * (z_t - y.double().numpy().ravel())  # z_t - eta * d l_i / d z_i
    projected = X @ np.linalg.lstsq(X, step, rcond=1e-6)[0]  # rank 7: x has rank 6, plus the bias
    lr = 0.9 * eta * len(x) / np.linalg.norm(X, 2) ** 2  # stable for the surrogate's curvature
    spec = make_algorithm("sso[inner=sgd]+constant", {**PLAIN_SGD, "lr": lr, "inner_steps": 1500, "target_lr": eta})
    SSOAlgorithm(spec, model, TinyRegression(), 10).update(model, (x, y), None)
    with torch.no_grad():
        outputs = model(x).double().numpy().ravel()
    assert np.allclose(outputs, projected, atol=1e-4)
    assert not np.allclose(outputs, step, atol=1e-2)  # rank 6 < 48: the step itself is out of reach


def test_a_trial_records_outer_gradients_and_inner_steps(tmp_path):
    from trainlab.benchmark.race import RacePlan, run_race
    from trainlab.store import ResultsStore

    result = run_trial(TinyRegression(), make_algorithm("sso[inner=sgd]", {"inner_steps": 2}), 0, CPU)
    assert (result.outer_gradients, result.inner_steps) == (60, 120) and result.steps == 60
    store = ResultsStore(f"sqlite:///{tmp_path / 'r.db'}")
    race_id, _ = run_race(RacePlan([TinyRegression()], ["sso"], [0], CPU), store, progress=False)
    trial = store.trials(race_id)[0]
    assert (trial["outer_gradients"], trial["inner_steps"]) == (60, 180) and trial["algorithm"] == "sso"


class NoOutputLoss(TinyRegression):
    name = "no_output_loss"
    output_loss = Workload.output_loss


def test_sso_needs_the_workloads_loss_on_outputs():
    from trainlab.benchmark.race import RacePlan, prepare

    with pytest.raises(UsageError, match="sso needs workload 'no_output_loss' to state its loss on outputs"):
        prepare(RacePlan([NoOutputLoss()], ["sso"], [0], CPU))
    with pytest.raises(UsageError, match="inner_steps must be a positive integer"):
        make_algorithm("sso", {"inner_steps": 0})
    with pytest.raises(UsageError, match="SSO races"):
        from trainlab.algorithms.registry import parse_name

        parse_name("sso[inner=adamw]")
