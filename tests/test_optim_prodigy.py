"""Prodigy against a plain float64 re-derivation of the paper's Algorithm 4 and against prodigyopt 1.1.2.

The gradients are those of a quadratic seen through a rank-2 window (G = U U^T (W - W*) for each
non-square matrix, a bias with its own target), so the estimate d has a real distance to find:
it grows by orders of magnitude within the steps checked, and every term of the update matters.
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch

from trainlab.optim import Prodigy, create, state_bytes

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPES = {"W1": (12, 7), "W2": (5, 9), "b": (12,)}
STEPS = 25


def _problem(dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    params = {k: (0.3 * torch.randn(s, generator=gen)).to(dtype).requires_grad_() for k, s in SHAPES.items()}
    targets = {k: torch.randn(s, generator=gen).to(dtype) for k, s in SHAPES.items()}
    windows = {}
    for k, s in SHAPES.items():
        if len(s) == 2:
            windows[k] = torch.linalg.qr(torch.randn(s[0], 2, generator=gen)).Q.to(dtype)  # rank 2
    return params, targets, windows


def _grad(k, x, targets, windows):
    diff = x - targets[k]
    return windows[k] @ (windows[k].T @ diff) if k in windows else diff


def _run(opt, params, targets, windows, steps):
    for _ in range(steps):
        for k, p in params.items():
            p.grad = _grad(k, p.detach(), targets, windows)
        opt.step()


def _groups(params, wd):
    return [
        {"params": [params["W1"], params["b"]], "weight_decay": wd},
        {"params": [params["W2"]], "weight_decay": 0.0},
    ]


def _plain(params, targets, windows, steps, wd, decouple, bias_correction, safeguard, growth, lr=1.0):
    """Algorithm 4 with prodigyopt's conventions, one tensor at a time, in float64."""
    x = {k: p.detach().clone() for k, p in params.items()}
    x0 = {k: v.clone() for k, v in x.items()}
    decay = {"W1": wd, "b": wd, "W2": 0.0}
    b1, b2, eps, d0 = 0.9, 0.999, 1e-8, 1e-6
    b3 = math.sqrt(b2)
    m = {k: torch.zeros_like(v) for k, v in x.items()}
    v = {k: torch.zeros_like(t) for k, t in x.items()}
    s = {k: torch.zeros_like(t) for k, t in x.items()}
    d, d_max, r = d0, d0, 0.0
    for k_step in range(steps):
        bc = math.sqrt(1 - b2 ** (k_step + 1)) / (1 - b1 ** (k_step + 1)) if bias_correction else 1.0
        eta = d * lr * bc
        g = {k: _grad(k, x[k], targets, windows) for k in x}
        if not decouple:
            g = {k: g[k] + decay[k] * x[k] for k in x}
        r = b3 * r + (d / d0) * eta * sum(float((g[k] * (x0[k] - x[k])).sum()) for k in x)
        norm = 0.0
        for k in x:
            m[k] = b1 * m[k] + d * (1 - b1) * g[k]
            v[k] = b2 * v[k] + d * d * (1 - b2) * g[k] ** 2
            s[k] = b3 * s[k] + (d / d0) * (d if safeguard else eta) * g[k]
            norm += float(s[k].abs().sum())
        d_hat = r / norm
        new_d = max(d, d_hat) if d == d0 else d
        d_max = max(d_max, d_hat)
        new_d = min(d_max, new_d * growth)
        for k in x:
            if decouple:
                x[k] = x[k] - decay[k] * eta * x[k]
            x[k] = x[k] - eta * m[k] / (v[k].sqrt() + new_d * eps)
        d = new_d
    return x, d


@pytest.mark.parametrize(
    "decouple,bias_correction,safeguard,growth,lr",
    [(True, False, False, math.inf, 1.0), (False, True, False, 2.0, 1.0), (True, False, True, 1.5, 0.5)],
)
def test_matches_a_float64_rederivation(decouple, bias_correction, safeguard, growth, lr):
    params, targets, windows = _problem()
    start = {k: p.detach().clone() for k, p in params.items()}
    kw = dict(decouple=decouple, use_bias_correction=bias_correction, safeguard_warmup=safeguard, growth_rate=growth)
    opt = create("prodigy", _groups(params, 0.1), lr=lr, **kw)
    _run(opt, params, targets, windows, STEPS)
    fresh = {k: v.clone().requires_grad_() for k, v in start.items()}
    expected, d = _plain(fresh, targets, windows, STEPS, 0.1, decouple, bias_correction, safeguard, growth, lr)
    assert d > 1e3 * 1e-6  # the estimate grew from d0 a thousandfold: every term of it shaped the run
    assert opt.param_groups[0]["d"] == pytest.approx(d, rel=1e-9)
    for k, p in params.items():
        assert (p.detach() - start[k]).abs().max() > 1e-3, k  # the parameters did move
        torch.testing.assert_close(p.detach(), expected[k], rtol=0, atol=1e-9)


def test_matches_prodigyopt_side_by_side():
    prodigyopt = pytest.importorskip("prodigyopt", reason="the reference extra (pip install -e '.[reference]')")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 20), torch.nn.Tanh(), torch.nn.Linear(20, 6))
    twin = copy.deepcopy(model)
    x, y = torch.randn(32, 12), torch.randn(32, 6)
    kw = dict(lr=0.7, weight_decay=0.05, safeguard_warmup=True, d_coef=2.0, growth_rate=1.5)
    ours = create("prodigy", model.parameters(), **kw)
    theirs = prodigyopt.Prodigy(twin.parameters(), **kw)
    start = [p.detach().clone() for p in model.parameters()]
    for _ in range(30):
        for m, opt in ((model, ours), (twin, theirs)):
            opt.zero_grad()
            torch.nn.functional.mse_loss(m(x), y).backward()
            opt.step()
    assert ours.param_groups[0]["d"] == pytest.approx(theirs.param_groups[0]["d"], rel=1e-5)
    for a, b, s in zip(model.parameters(), twin.parameters(), start):
        assert (a - s).abs().max() > 1e-3
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_state_dict_round_trip_resumes_bit_exactly():
    params, targets, windows = _problem(torch.float32)
    opt = create("prodigy", _groups(params, 0.1))
    _run(opt, params, targets, windows, 6)
    buffer = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "params": {k: p.detach() for k, p in params.items()}}, buffer)
    _run(opt, params, targets, windows, 6)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    again = {k: v.clone().requires_grad_() for k, v in saved["params"].items()}
    resumed = Prodigy(_groups(again, 0.1))
    resumed.load_state_dict(saved["opt"])
    _run(resumed, again, targets, windows, 6)
    assert resumed.param_groups[0]["d"] == opt.param_groups[0]["d"]
    for k in params:
        assert torch.equal(params[k].detach(), again[k].detach()), k


def test_state_bytes_follow_the_documented_formula():
    params, targets, windows = _problem(torch.float32)
    numel = sum(p.numel() for p in params.values())
    opt = create("prodigy", list(params.values()))
    _run(opt, params, targets, windows, 1)
    assert state_bytes(opt) == 16 * numel  # s, p0, exp_avg, exp_avg_sq
    params, targets, windows = _problem(torch.float32)
    opt = create("prodigy", list(params.values()), betas=(0.0, 0.999))
    _run(opt, params, targets, windows, 1)
    assert state_bytes(opt) == 12 * numel  # no exp_avg


def test_a_group_at_lr_zero_stays_put_and_no_gradient_takes_no_step():
    params, targets, windows = _problem(torch.float32)
    frozen = params["W2"].detach().clone()
    opt = create("prodigy", [{"params": [params["W1"], params["b"]]}, {"params": [params["W2"]], "lr": 0.0}])
    _run(opt, params, targets, windows, 5)
    assert torch.equal(params["W2"].detach(), frozen)
    assert opt.param_groups[0]["k"] == 5
    for p in params.values():
        p.grad = torch.zeros_like(p)
    before = {k: p.detach().clone() for k, p in params.items()}
    opt.step()  # ||s||_1 stays > 0 (its history), so a zero gradient still steps on the momentum
    assert opt.param_groups[0]["k"] == 6
    fresh = create("prodigy", [torch.zeros(3, requires_grad=True)])
    fresh.param_groups[0]["params"][0].grad = torch.zeros(3)
    fresh.step()  # ||s||_1 = 0: prodigyopt returns without a step, and so does this
    assert fresh.param_groups[0]["k"] == 0 and fresh.param_groups[0]["d"] == 1e-6
    assert any(not torch.equal(before[k], p.detach()) for k, p in params.items())
