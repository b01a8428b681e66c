"""SOAP: a float64 re-derivation of the official rule (eigenbases, refreshes, the rotated moments),
bit-exact state_dict round trips, exact state bytes, unrotated long sides, and bad input.

Non-square statistics are rank-deficient at the first step (G G^T or G^T G has rank min(m, n)), so
their null-space eigenvectors are arbitrary: any orthonormal completion is correct, and two correct
codes pick different ones. The reference therefore takes the implementation's first bases (checked
separately: they diagonalize the statistics, eigenvalues descending) and re-derives everything after
them, refreshes included, in float64."""

from __future__ import annotations

import io
import math

import pytest
import torch

from trainlab.optim import SOAP, state_bytes

SHAPES = [(48, 80), (80, 48), (80,)]
H = dict(lr=3e-3, betas=(0.9, 0.95), shampoo_beta=0.9, eps=1e-8, weight_decay=0.01, precondition_frequency=3)


def params_and_grads(steps, seed=0):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=gen, dtype=torch.float64).requires_grad_() for s in SHAPES]
    grads = []
    for _ in range(steps):
        step = []
        for s in SHAPES:
            if len(s) == 2:  # rank 6 + noise: rank-deficient statistics for the first steps
                g = torch.randn(s[0], 6, generator=gen, dtype=torch.float64) @ torch.randn(
                    6, s[1], generator=gen, dtype=torch.float64
                )
                step.append(g + 0.01 * torch.randn(s, generator=gen, dtype=torch.float64))
            else:
                step.append(torch.randn(s, generator=gen, dtype=torch.float64))
        grads.append(step)
    return params, grads


def run(opt, params, grads):
    for step in grads:
        for p, g in zip(params, step):
            p.grad = g.clone()
        opt.step()


class Reference:
    """One matrix parameter, written from the paper's algorithm in its original-space form:
    M = EMA(G) kept unrotated and projected each step (equal to the official code, which keeps m in
    the eigenbasis and re-rotates it at refreshes)."""

    def __init__(self, h, bases):
        self.h, self.first, self.bases = h, True, bases
        self.k = 0

    def step(self, p, g):
        b1, b2 = self.h["betas"]
        bs = self.h["shampoo_beta"]
        if self.first:
            self.first = False
            self.L, self.R = (1 - bs) * g @ g.T, (1 - bs) * g.T @ g
            self.QL, self.QR = self.bases()
            self.M = torch.zeros_like(g)
            self.V = torch.zeros_like(g)
            return p
        self.k += 1
        self.M = b1 * self.M + (1 - b1) * g
        rg = self.QL.T @ g @ self.QR
        self.V = b2 * self.V + (1 - b2) * rg * rg
        rm = self.QL.T @ self.M @ self.QR
        n = self.QL @ (rm / (torch.sqrt(self.V) + self.h["eps"])) @ self.QR.T
        lr = self.h["lr"]
        p = p - lr * math.sqrt(1 - b2**self.k) / (1 - b1**self.k) * n
        p = p * (1 - lr * self.h["weight_decay"])
        self.L = bs * self.L + (1 - bs) * g @ g.T
        self.R = bs * self.R + (1 - bs) * g.T @ g
        if self.k % self.h["precondition_frequency"] == 0:
            for side in ("L", "R"):
                stat, q = getattr(self, side), getattr(self, "Q" + side)
                order = torch.argsort(torch.diag(q.T @ stat @ q), descending=True)
                self.V = self.V[order, :] if side == "L" else self.V[:, order]
                setattr(self, "Q" + side, torch.linalg.qr(stat @ q[:, order]).Q)
        return p


def test_matches_float64_reference_through_refreshes():
    params, grads = params_and_grads(10)
    opt = SOAP([{"params": params[:2]}, {"params": params[2:], "lr": 2 * H["lr"]}], **H)

    def bases_of(p):
        def get():
            state = opt.state[p]
            for side in ("L", "R"):  # a valid eigenbasis of its statistics, largest first
                stat, q = state[f"stat_{side}"], state[f"basis_{side}"]
                d = q.T @ stat @ q
                assert (d - torch.diag(torch.diag(d))).abs().max() <= 1e-10 * stat.abs().max()
                assert torch.all(torch.diag(d)[:-1] >= torch.diag(d)[1:] - 1e-10 * stat.abs().max())
                assert torch.allclose(q.T @ q, torch.eye(q.shape[0], dtype=q.dtype), atol=1e-12)
            return state["basis_L"].clone(), state["basis_R"].clone()

        return get

    refs = [Reference(H, bases_of(params[0])), Reference(H, bases_of(params[1]))]
    ref_p = [p.detach().clone() for p in params]
    m = v = torch.zeros(80, dtype=torch.float64)
    adam_k = 0
    for step in grads:
        for p, g in zip(params, step):
            p.grad = g.clone()
        opt.step()
        for i in range(2):
            ref_p[i] = refs[i].step(ref_p[i], step[i])
        adam_k += 1  # 1-D: plain Adam from the first call
        b1, b2 = H["betas"]
        m = b1 * m + (1 - b1) * step[2]
        v = b2 * v + (1 - b2) * step[2] ** 2
        lr = 2 * H["lr"]
        ref_p[2] = ref_p[2] - lr * math.sqrt(1 - b2**adam_k) / (1 - b1**adam_k) * m / (v.sqrt() + H["eps"])
        ref_p[2] = ref_p[2] * (1 - lr * H["weight_decay"])
        for p, r in zip(params, ref_p):
            assert (p.detach() - r).abs().max().item() <= 1e-8
    assert opt.state[params[0]]["step"] == 9  # the first call only set up the bases


def _roundtrip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_state_dict_round_trip_is_bit_exact():
    params, grads = params_and_grads(12)
    straight = [p.detach().clone().requires_grad_() for p in params]
    run(SOAP(straight, **H), straight, grads)
    first = [p.detach().clone().requires_grad_() for p in params]
    opt = SOAP(first, **H)
    run(opt, first, grads[:5])
    resumed = [p.detach().clone().requires_grad_() for p in first]
    again = SOAP(resumed, **{**H, "lr": 1.0})
    again.load_state_dict(_roundtrip(opt.state_dict()))
    run(again, resumed, grads[5:])
    for x, y in zip(straight, resumed):
        assert torch.equal(x, y)


def test_state_bytes_match_the_formula_and_long_sides_stay_unrotated():
    params, grads = params_and_grads(2)
    params = [p.detach().float().requires_grad_() for p in params]
    grads = [[g.float() for g in step] for step in grads]
    opt = SOAP(params, **H)
    run(opt, params, grads)
    both = lambda m, n: 4 * (2 * m * n + 2 * m * m + 2 * n * n)  # noqa: E731
    assert state_bytes(opt) == both(48, 80) + both(80, 48) + 8 * 80
    narrow = [p.detach().clone().requires_grad_() for p in params[:1]]
    opt = SOAP(narrow, **{**H, "max_precond_dim": 60})  # the 80-long side is not rotated
    run(opt, narrow, [[s[0]] for s in grads])
    assert "basis_R" not in opt.state[narrow[0]] and "basis_L" in opt.state[narrow[0]]
    assert state_bytes(opt) == 4 * (2 * 48 * 80 + 2 * 48 * 48)


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(lr=-1.0), "lr"),
        (dict(betas=(1.0, 0.9)), "beta1"),
        (dict(shampoo_beta=1.0), "shampoo_beta"),
        (dict(precondition_frequency=0), "precondition_frequency"),
        (dict(max_precond_dim=1.5), "max_precond_dim"),
    ],
)
def test_bad_hyperparameters(bad, message):
    with pytest.raises(ValueError, match=message):
        SOAP([torch.zeros(3, 4, requires_grad=True)], **bad)
