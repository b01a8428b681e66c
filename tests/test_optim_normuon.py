"""NorMuon: the official rule (zichongli5/NorMuon) and the paper's scaling re-derived in float64,
row balance, state_dict round trips, exact state bytes, and bad input."""

from __future__ import annotations

import io
import math

import pytest
import torch

from trainlab.optim import NorMuon, create, state_bytes

# hidden matrices (wide, tall, a conv kernel viewed as 16 x 27), then a bias and a gain for AdamW
SHAPES = [(48, 80), (80, 48), (16, 3, 3, 3), (80,), (48,)]
H = dict(lr=0.02, momentum=0.95, neuron_beta2=0.9, weight_decay=0.1, adamw_lr_ratio=0.25, adamw_betas=(0.9, 0.95))
QUINTIC = (3.4445, -4.7750, 2.0315)


def params_and_grads(steps, seed=0):
    gen = torch.Generator().manual_seed(seed)
    f64 = dict(generator=gen, dtype=torch.float64)
    params = [torch.randn(s, **f64).requires_grad_() for s in SHAPES]
    grads = []
    for _ in range(steps):
        step = []
        for s in SHAPES:
            if len(s) >= 2:  # rank 5 below min(m, n), plus a little noise
                m, n = s[0], math.prod(s[1:])
                g = torch.randn(m, 5, generator=gen, dtype=torch.float64) @ torch.randn(
                    5, n, generator=gen, dtype=torch.float64
                )
                step.append((g + 1e-3 * torch.randn(m, n, generator=gen, dtype=torch.float64)).reshape(s))
            else:
                step.append(torch.randn(s, generator=gen, dtype=torch.float64))
        grads.append(step)
    return params, grads


def groups(ps, **extra):
    return [{"params": ps[:3], **extra}, {"params": ps[3:], "muon": False, "weight_decay": 0.01}]


def run(opt, params, grads):
    for step in grads:
        for p, g in zip(params, step):
            p.grad = g.clone()
        opt.step()


def ns5(u):
    """Muon's quintic on the wide side, written out."""
    tall = u.shape[0] > u.shape[1]
    x = u.T if tall else u
    x = x / (x.norm() + 1e-7)
    for _ in range(5):
        gram = x @ x.T
        x = QUINTIC[0] * x + QUINTIC[1] * gram @ x + QUINTIC[2] * gram @ gram @ x
    return x.T if tall else x


@pytest.mark.parametrize("adjust_lr", ["original", "match_rms_adamw"])
def test_matches_float64_rederivation(adjust_lr):
    params, grads = params_and_grads(6)
    opt = NorMuon(groups(params), ns_dtype="float64", adjust_lr=adjust_lr, **H)
    ref = [p.detach().clone() for p in params]
    mom = [torch.zeros(p.shape[0], math.prod(p.shape[1:]), dtype=torch.float64) for p in params[:3]]
    sec = [torch.zeros(p.shape[0], dtype=torch.float64) for p in params[:3]]
    adam = [(torch.zeros_like(r), torch.zeros_like(r)) for r in ref[3:]]
    for t, step in enumerate(grads, start=1):
        for p, g in zip(params, step):
            p.grad = g.clone()
        opt.step()
        for i in range(3):
            g = step[i].reshape(mom[i].shape)
            mom[i] = 0.95 * mom[i] + 0.05 * g
            o = ns5(0.05 * g + 0.95 * mom[i])
            m, n = o.shape
            sec[i] = 0.9 * sec[i] + 0.1 * (o**2).sum(dim=1) / n
            o_hat = o / (sec[i].sqrt()[:, None] + 1e-10)
            if adjust_lr == "original":
                d = o_hat * o.norm() / (o_hat.norm() + 1e-10) * math.sqrt(max(1, m / n))
            else:
                d = 0.2 * math.sqrt(m * n) * o_hat / (o_hat.norm() + 1e-10)
            ref[i] = ref[i] * (1 - 0.02 * 0.1) - 0.02 * d.reshape(ref[i].shape)
        for j, (m1, v1) in enumerate(adam):
            g, lr = step[3 + j], 0.02 * 0.25
            m1.mul_(0.9).add_(0.1 * g)
            v1.mul_(0.95).add_(0.05 * g * g)
            ref[3 + j] = ref[3 + j] * (1 - lr * 0.01) - lr * (m1 / (1 - 0.9**t)) / ((v1 / (1 - 0.95**t)).sqrt() + 1e-10)
        for p, r in zip(params, ref):  # the AdamW fallback keeps fp32 moments, whatever the dtype
            assert (p.detach() - r).abs().max().item() <= (1e-9 if p.ndim >= 2 else 1e-6), (t, p.shape)


def test_rows_move_equally_once_the_second_moment_is_current():
    """neuron_beta2 = 0: v is this step's row mean, so every row of the step has the same norm (the
    neuron-wise balance the method exists for); Muon's own step has very uneven rows here."""
    g = torch.randn(32, 6, dtype=torch.float64) @ torch.randn(6, 64, dtype=torch.float64)
    g[:4] *= 30.0  # a few dominant neurons
    steps = {}
    for name, extra in (("normuon", {"neuron_beta2": 0.0}), ("muon", {})):
        p = torch.zeros(32, 64, dtype=torch.float64, requires_grad=True)
        p.grad = g.clone()
        create(name, [p], lr=1.0, nesterov=False, ns_dtype="float64", **extra).step()
        steps[name] = p.detach().norm(dim=1)
    assert steps["normuon"].max() / steps["normuon"].min() < 1 + 1e-6
    assert steps["muon"].max() / steps["muon"].min() > 2
    # "original": the step's Frobenius norm is Muon's (same momentum, same NS)
    assert steps["normuon"].norm().item() == pytest.approx(steps["muon"].norm().item(), rel=1e-9)


def test_polar_express_option_reaches_the_orthogonalisation():
    params, grads = params_and_grads(2)
    ends = {}
    for kind in ("muon", "polar_express"):
        ps = [p.detach().clone().requires_grad_() for p in params]
        run(NorMuon(groups(ps), ns_dtype="float64", ns_coefficients=kind, **H), ps, grads)
        ends[kind] = ps[0].detach()
    assert (ends["muon"] - ends["polar_express"]).abs().max() > 1e-4


def _roundtrip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_state_dict_round_trip_is_bit_exact_and_state_bytes_exact():
    params, grads = params_and_grads(8)
    params = [p.detach().float().requires_grad_() for p in params]
    grads = [[g.float() for g in step] for step in grads]
    straight = [p.detach().clone().requires_grad_() for p in params]
    run(NorMuon(groups(straight), **H), straight, grads)
    first = [p.detach().clone().requires_grad_() for p in params]
    opt = NorMuon(groups(first), **H)
    assert state_bytes(opt) == 0
    run(opt, first, grads[:4])
    matrices = [(48, 80), (80, 48), (16, 27)]
    assert state_bytes(opt) == sum(4 * m * n + 4 * m for m, n in matrices) + 8 * (80 + 48)
    saved = _roundtrip(opt.state_dict())
    resumed = [p.detach().clone().requires_grad_() for p in first]
    again = NorMuon(groups(resumed), **{**H, "lr": 9.0, "neuron_beta2": 0.5})
    again.load_state_dict(saved)
    run(again, resumed, grads[4:])
    for x, y in zip(straight, resumed):
        assert torch.equal(x, y)


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(neuron_beta2=1.0), r"neuron_beta2 must be in \[0.0, 1.0\)"),
        (dict(eps=-1.0), "eps"),
        (dict(ns_coefficients="cubic"), "ns_coefficients must be one of"),
        (dict(adjust_lr="rms"), "adjust_lr must be one of"),
    ],
)
def test_bad_hyperparameters(bad, message):
    with pytest.raises(ValueError, match=message):
        NorMuon([torch.zeros(3, 4, requires_grad=True)], **bad)
