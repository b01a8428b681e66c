"""GaLore, Fira, FRUGAL and SWAN against independent float64 re-derivations, plus state handling.

The references below are written from the papers' update rules with plain dense torch math in
float64; they share no code with trainlab.optim.projection / swan. The one thing they take from
the implementation's inputs is the SVD: they call the same routine (torch.linalg.svd) on the same
fp32 gradient, so singular-vector signs agree (GaLore/Fira moments live in the basis coordinates,
so a sign flip at a refresh would change the result), and FRUGAL's random columns, which they read
from optimizer state after each step (the choice is random by design; the maths given it is what
is checked, and the choice itself is checked separately).
"""

from __future__ import annotations

import io
import math

import pytest
import torch

from conftest import compiler_unavailable
from trainlab.optim import create, state_bytes
from trainlab.optim import FRUGAL, SWAN, FiraAdamW, GaLoreAdamW
from trainlab.optim.orthogonalize import MARGIN, minimax_coefficients
from trainlab.optim.swan import SMALLEST

STEPS = 5  # crosses refreshes at t = 1, 3, 5 with gap 2
GAP = 2
RANK = 6
DENSITY = 0.125  # FRUGAL-SVD rank round(0.125 * 48) = 6
LR1, LR2 = 0.02, 0.01
WD = 0.1
BETAS = (0.9, 0.999)
TOL = 1e-6


pytestmark = pytest.mark.usefixtures("one_thread")


def _setup(seed=0, dtype=torch.float32, zeros=False):
    gen = torch.Generator().manual_seed(seed)
    shapes = {"A": (48, 80), "B": (80, 48), "c": (48,)}
    # weights at a typical init scale (0.1): the fp32 spacing near |w| ~ 3 (2.4e-7) would otherwise
    # eat most of the 1e-6 budget in rounding the result alone
    params = {
        k: (torch.zeros(s) if zeros else 0.1 * torch.randn(s, generator=gen)).to(dtype).requires_grad_()
        for k, s in shapes.items()
    }
    grads = [{k: torch.randn(s, generator=gen).to(dtype) for k, s in shapes.items()} for _ in range(12)]
    return params, grads


def _groups(params, key, value):
    return [
        {"params": [params["A"], params["c"]], key: value, "lr": LR1},
        {"params": [params["B"]], key: value, "lr": LR2},
    ]


def _lr(name):
    return LR2 if name == "B" else LR1


def _run(opt, params, grads, steps, start=0):
    for t in range(start, start + steps):
        for k, p in params.items():
            p.grad = grads[t][k].clone()
        opt.step()


# ---- float64 references --------------------------------------------------------------------------


def _svd_basis(g32, r):
    """Same routine, same fp32 input as the implementation; ('right', Vh[:r]) or ('left', U[:, :r])."""
    u, _, vh = torch.linalg.svd(g32, full_matrices=False)
    m, n = g32.shape
    return ("right", vh[:r].double()) if m >= n else ("left", u[:, :r].double())


def _proj(basis, g):
    side, q = basis
    return g @ q.T if side == "right" else q.T @ g


def _back(basis, r):
    side, q = basis
    return r @ q if side == "right" else q @ r


def ref_adamw_hf(w, grads, lr, wd, eps):
    """GaLore/Fira's own Adam (transformers form), decay after the update."""
    w = w.double().clone()
    m = torch.zeros_like(w)
    v = torch.zeros_like(w)
    b1, b2 = BETAS
    for t, g in enumerate(grads, 1):
        g = g.double()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (v.sqrt() + eps)
        w = w - lr * wd * w
    return w


def ref_adamw_torch(w, grads, lr, wd, eps):
    """torch.optim.AdamW's form, decay before the update."""
    w = w.double().clone()
    m = torch.zeros_like(w)
    v = torch.zeros_like(w)
    b1, b2 = BETAS
    for t, g in enumerate(grads, 1):
        g = g.double()
        w = w * (1 - lr * wd)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * (m / (1 - b1**t)) / (v.sqrt() / math.sqrt(1 - b2**t) + eps)
    return w


def ref_galore(w, grads, lr, wd, r, gap, scale, eps=1e-6):
    w = w.double().clone()
    b1, b2 = BETAS
    m = v = basis = None
    for t, g32 in enumerate(grads, 1):
        g = g32.double()
        if (t - 1) % gap == 0:
            basis = _svd_basis(g32, r)
        rg = _proj(basis, g)
        if m is None:
            m, v = torch.zeros_like(rg), torch.zeros_like(rg)
        m = b1 * m + (1 - b1) * rg
        v = b2 * v + (1 - b2) * rg * rg
        step = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        w = w - step * scale * _back(basis, m / (v.sqrt() + eps))
        w = w - lr * wd * w
    return w


def ref_fira(w, grads, lr, wd, r, gap, alpha, gamma=1.01, eps=1e-6):
    w = w.double().clone()
    b1, b2 = BETAS
    m = v = basis = prev = None
    for t, g32 in enumerate(grads, 1):
        g = g32.double()
        if (t - 1) % gap == 0:
            basis = _svd_basis(g32, r)
        rg = _proj(basis, g)
        if m is None:
            m, v = torch.zeros_like(rg), torch.zeros_like(rg)
        m = b1 * m + (1 - b1) * rg
        v = b2 * v + (1 - b2) * rg * rg
        psi = m / (v.sqrt() + eps)
        if basis[0] == "right":  # R is m x r: one factor per row of G
            phi = (psi.norm(dim=1) / (rg.norm(dim=1) + 1e-8))[:, None]
        else:  # R is r x n: one factor per column of G
            phi = (psi.norm(dim=0) / (rg.norm(dim=0) + 1e-8))[None, :]
        s = (g - alpha * _back(basis, rg)) * phi
        if prev is not None and s.norm() / (prev + 1e-8) > gamma:
            s = s * (gamma * (prev + 1e-8) / s.norm())
        prev = s.norm()
        step = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        w = w - step * (alpha * _back(basis, psi) + s)
        w = w - lr * wd * w
    return w


def ref_frugal_subspace(w, grads, lr, wd, gap, bases, rule="sign_sgd", inactive_scale=1.0, reset=True, eps=1e-8):
    """FRUGAL svd / columns: `bases[t]` is ('right'|'left', Q) or ('cols', idx) for step t+1."""
    w = w.double().clone()
    b1, b2 = BETAS
    m = v = None
    k = 0
    for t, g32 in enumerate(grads, 1):
        g = g32.double()
        w = w * (1 - lr * wd)
        basis = bases[t - 1]
        if basis[0] == "cols":
            project = lambda x: x[:, basis[1]]  # noqa: E731

            def back(x):
                out = torch.zeros_like(g)
                out[:, basis[1]] = x
                return out
        else:
            project = lambda x: _proj(basis, x)  # noqa: E731
            back = lambda x: _back(basis, x)  # noqa: E731
        rg = project(g)
        if m is None or (reset and (t - 1) % gap == 0):
            m, v, k = torch.zeros_like(rg), torch.zeros_like(rg), 0
        k += 1
        m = b1 * m + (1 - b1) * rg
        v = b2 * v + (1 - b2) * rg * rg
        upd = back((m / (1 - b1**k)) / (v.sqrt() / math.sqrt(1 - b2**k) + eps))
        resid = g - back(rg)
        if rule == "sign_sgd":
            upd = upd + inactive_scale * torch.sign(resid)
        elif rule == "sgd":
            upd = upd + inactive_scale * resid
        w = w - lr * upd
    return w


def _ref_grad_norm(g, eps):
    mu = g.mean(dim=1, keepdim=True)
    sd = ((g - mu) ** 2).mean(dim=1, keepdim=True).sqrt()
    return (g - mu) / (sd + eps)


def ref_swan_matrix(w, grads, lr, wd, steps=5, eps=1e-8):
    """SWAN with the minimax whitening: the composed quintics applied to the singular values of G~
    (by SVD, in float64), the coefficients being the one thing taken from trainlab."""
    coefficients = minimax_coefficients(steps, SMALLEST)
    w = w.double().clone()
    for g32 in grads:
        gn = _ref_grad_norm(g32.double(), eps)
        u, s, vh = torch.linalg.svd(gn, full_matrices=False)
        s = s / s.norm()
        for a, b, c in coefficients:
            s = a * s + b * s**3 + c * s**5
        d = u @ torch.diag(s) @ vh
        d = math.sqrt(gn.numel()) * d / d.norm()
        w = w * (1 - lr * wd)
        w = w - lr * d
    return w


def ref_swan_coupled_matrix(w, grads, lr, wd, steps=10, beta=0.5, eps=1e-8):
    w = w.double().clone()
    for g32 in grads:
        gn = _ref_grad_norm(g32.double(), eps)
        x = gn.T if gn.shape[0] > gn.shape[1] else gn
        x = x / x.norm()
        eye = torch.eye(x.shape[0], dtype=torch.float64)
        y, z = x @ x.T, eye.clone()
        for _ in range(steps):
            t = 3 * eye - z @ y
            y, z = beta * y @ t, beta * t @ z
        d = z @ x
        if gn.shape[0] > gn.shape[1]:
            d = d.T
        d = math.sqrt(gn.numel()) * d / d.norm()
        w = w * (1 - lr * wd)
        w = w - lr * d
    return w


def _assert_close(params, refs):
    for k, ref in refs.items():
        diff = (params[k].detach().double() - ref).abs().max().item()
        assert diff <= TOL, f"{k}: max |diff| {diff:.3g} > {TOL}"


def _grads_of(grads, k, steps=STEPS):
    return [grads[t][k] for t in range(steps)]


# ---- comparisons against the references ----------------------------------------------------------


def test_galore_matches_reference():
    params, grads = _setup()
    w0 = {k: p.detach().clone() for k, p in params.items()}
    opt = GaLoreAdamW(
        _groups(params, "rank", RANK), weight_decay=WD, update_proj_gap=GAP, scale=0.25, proj_refresh="svd"
    )
    _run(opt, params, grads, STEPS)
    refs = {k: ref_galore(w0[k], _grads_of(grads, k), _lr(k), WD, RANK, GAP, 0.25) for k in ("A", "B")}
    refs["c"] = ref_adamw_hf(w0["c"], _grads_of(grads, "c"), LR1, WD, 1e-6)
    _assert_close(params, refs)


def _decaying_gradient(m, n, seed, rotate=None):
    """A gradient with a decaying spectrum (singular values 1/i) plus noise: the shape of real ones."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(m, min(m, n), generator=gen, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(n, min(m, n), generator=gen, dtype=torch.float64))[0]
    if rotate is not None:  # the same subspaces, partly rotated: how a gradient drifts over a gap
        u = torch.linalg.qr(u + rotate * torch.randn(u.shape, generator=gen, dtype=torch.float64))[0]
        v = torch.linalg.qr(v + rotate * torch.randn(v.shape, generator=gen, dtype=torch.float64))[0]
    s = 1.0 / torch.arange(1, min(m, n) + 1, dtype=torch.float64)
    return ((u * s) @ v.T + 1e-3 * torch.randn(m, n, generator=gen, dtype=torch.float64)).float()


@pytest.mark.parametrize("shape", [(96, 160), (160, 96)])
def test_warm_refresh_captures_the_top_subspace(shape):
    """The warm refresh (two subspace iterations from the previous basis) keeps at least 99 % of
    the gradient energy the exact top-r subspace keeps, after the gradient drifted, on both sides."""
    from trainlab.optim.projector import Projector

    m, n, r = *shape, 24
    before, after = _decaying_gradient(m, n, 0), _decaying_gradient(m, n, 0, rotate=0.3)
    stale = Projector.svd(before, r)
    warm, exact = stale.refit(after, r, "warm"), Projector.svd(after, r)

    def kept(projector):
        return projector.project(after).norm().item() ** 2

    best = kept(exact)
    assert kept(warm) >= 0.99 * best, (kept(warm) / best, kept(stale) / best)
    assert kept(stale) < 0.97 * best  # the drift was real: the stale basis lost energy
    basis = warm.basis if warm.basis.shape[0] == r else warm.basis.T
    assert torch.allclose(basis @ basis.T, torch.eye(r), atol=1e-5)  # orthonormal
    assert stale.refit(after, r, "svd").basis.equal(exact.basis)  # "svd": the official refresh


def test_galore_projector_sides():
    params, grads = _setup()
    opt = GaLoreAdamW(_groups(params, "rank", RANK), update_proj_gap=GAP)
    _run(opt, params, grads, 1)
    assert opt.state[params["A"]]["proj"].shape == (48, RANK)  # 48 x 80: P = U[:, :r]
    assert opt.state[params["A"]]["exp_avg"].shape == (RANK, 80)  # P^T G
    assert opt.state[params["B"]]["proj"].shape == (RANK, 48)  # 80 x 48: Q = Vh[:r]
    assert opt.state[params["B"]]["exp_avg"].shape == (80, RANK)  # G Q^T
    assert opt.state[params["c"]]["exp_avg"].shape == (48,)  # 1-D: plain AdamW


def test_fira_matches_reference():
    params, grads = _setup()
    w0 = {k: p.detach().clone() for k, p in params.items()}
    opt = FiraAdamW(_groups(params, "rank", RANK), weight_decay=WD, update_proj_gap=GAP, alpha=0.25, proj_refresh="svd")
    _run(opt, params, grads, STEPS)
    refs = {k: ref_fira(w0[k], _grads_of(grads, k), _lr(k), WD, RANK, GAP, 0.25) for k in ("A", "B")}
    refs["c"] = ref_adamw_hf(w0["c"], _grads_of(grads, "c"), LR1, WD, 1e-6)
    _assert_close(params, refs)


def test_fira_limiter_engages():
    """A gradient 10x larger than the previous one: ||S_t|| is held to gamma * ||S_{t-1}||."""
    params, grads = _setup()
    grads[1] = {k: 10 * g for k, g in grads[1].items()}
    w0 = {k: p.detach().clone() for k, p in params.items()}
    groups = _groups(params, "rank", RANK)
    opt = FiraAdamW(groups, weight_decay=WD, update_proj_gap=GAP, alpha=0.25, proj_refresh="svd")
    norms = []
    for t in range(3):
        _run(opt, params, grads, 1, start=t)
        norms.append(opt.state[params["A"]]["limiter_norm"].item())
    refs = {k: ref_fira(w0[k], _grads_of(grads, k, 3), _lr(k), WD, RANK, GAP, 0.25) for k in ("A", "B")}
    _assert_close({k: params[k] for k in refs}, refs)
    assert opt.state[params["A"]]["limiter_norm"].shape == ()
    assert norms[1] == pytest.approx(1.01 * (norms[0] + 1e-8), rel=1e-5)  # limited at t = 2
    assert norms[2] < norms[1]  # not limited at t = 3


def _frugal_bases(opt, params, grads, steps, k):
    """Run `opt` step by step and record the basis each step used for parameter k."""
    bases = {name: [] for name in k}
    for t in range(steps):
        for name, p in params.items():
            p.grad = grads[t][name].clone()
        opt.step()
        for name in k:
            st = opt.state[params[name]]
            bases[name].append(st["proj"].clone())
    return bases


@pytest.mark.parametrize("rule", ["sign_sgd", "sgd", "no"])
def test_frugal_svd_matches_reference(rule):
    params, grads = _setup()
    w0 = {k: p.detach().clone() for k, p in params.items()}
    opt = FRUGAL(
        _groups(params, "density", DENSITY),
        weight_decay=WD,
        update_gap=GAP,
        proj_type="svd",
        inactive_update_rule=rule,
        inactive_lr_scale=0.5,
    )
    _run(opt, params, grads, STEPS)
    refs = {}
    for k in ("A", "B"):
        g = _grads_of(grads, k)
        bases = []
        for t in range(STEPS):
            if t % GAP == 0:
                basis = _svd_basis(g[t], RANK)
            bases.append(basis)
        refs[k] = ref_frugal_subspace(w0[k], g, _lr(k), WD, GAP, bases, rule, 0.5)
    refs["c"] = ref_adamw_torch(w0["c"], _grads_of(grads, "c"), LR1, WD, 1e-8)
    _assert_close(params, refs)
    assert opt.state[params["A"]]["exp_avg"].shape == (RANK, 80)


@pytest.mark.parametrize("reset", [True, False])
def test_frugal_random_columns_matches_reference(reset):
    params, grads = _setup()
    w0 = {k: p.detach().clone() for k, p in params.items()}
    opt = FRUGAL(
        _groups(params, "density", DENSITY),
        weight_decay=WD,
        update_gap=GAP,
        proj_type="random_columns",
        reset_statistics=reset,
    )
    bases = _frugal_bases(opt, params, grads, STEPS, ("A", "B"))
    refs = {}
    for k, n in (("A", 80), ("B", 48)):
        idx = bases[k]
        count = int(DENSITY * n)
        for t, i in enumerate(idx):
            assert i.dtype == torch.int64 and i.numel() == count
            assert torch.equal(i, torch.unique(i)) and 0 <= int(i.min()) and int(i.max()) < n
            if t % GAP:
                assert torch.equal(i, idx[t - 1])  # fixed between refreshes
        assert not torch.equal(idx[0], idx[GAP])  # redrawn at a refresh
        refs[k] = ref_frugal_subspace(
            w0[k], _grads_of(grads, k), _lr(k), WD, GAP, [("cols", i) for i in idx], reset=reset
        )
    refs["c"] = ref_adamw_torch(w0["c"], _grads_of(grads, "c"), LR1, WD, 1e-8)
    _assert_close(params, refs)


def test_frugal_block_matches_reference():
    gen = torch.Generator().manual_seed(3)
    shapes = {"A": (48, 80), "B": (80, 48), "D": (16, 24), "c": (48,)}
    params = {k: (0.1 * torch.randn(s, generator=gen)).requires_grad_() for k, s in shapes.items()}
    grads = [{k: torch.randn(s, generator=gen) for k, s in shapes.items()} for _ in range(6)]
    w0 = {k: p.detach().clone() for k, p in params.items()}
    opt = FRUGAL(
        [
            {"params": [params["A"], params["B"], params["D"]], "density": 0.34, "lr": LR1},
            {"params": [params["c"]], "lr": LR2},
        ],
        weight_decay=WD,
        update_gap=GAP,
        proj_type="block",
        block_order="descending",
        inactive_lr_scale=0.5,
    )
    _run(opt, params, grads, 6)
    # round(3 * 0.34) = 1 active tensor; descending: D for t in 1-2, B for 3-4, A for 5-6
    active = {"D": (1, 2), "B": (3, 4), "A": (5, 6)}
    b1, b2 = BETAS
    for k in ("A", "B", "D"):
        w = w0[k].double().clone()
        m = v = None
        for t in range(1, 7):
            g = grads[t - 1][k].double()
            w = w * (1 - LR1 * WD)
            if t in active[k]:
                if t == active[k][0]:
                    m, v, s = torch.zeros_like(w), torch.zeros_like(w), 0
                s += 1
                m = b1 * m + (1 - b1) * g
                v = b2 * v + (1 - b2) * g * g
                w = w - LR1 * (m / (1 - b1**s)) / (v.sqrt() / math.sqrt(1 - b2**s) + 1e-8)
            else:
                w = w - LR1 * 0.5 * torch.sign(g)
        diff = (params[k].detach().double() - w).abs().max().item()
        assert diff <= TOL, (k, diff)
    ref_c = ref_adamw_torch(w0["c"], [grads[t]["c"] for t in range(6)], LR2, WD, 1e-8)
    assert (params["c"].detach().double() - ref_c).abs().max().item() <= TOL
    # only the active tensor holds Adam state: 8 * 48 * 80 bytes for A + AdamW of c
    assert state_bytes(opt) == 8 * 48 * 80 + 8 * 48


def test_frugal_block_random_order_picks_count():
    gen = torch.Generator().manual_seed(4)
    ps = [torch.randn(8, 8, generator=gen).requires_grad_() for _ in range(8)]
    opt = FRUGAL(ps, proj_type="block", block_order="random", density=0.25, update_gap=1)
    for _ in range(4):
        for p in ps:
            p.grad = torch.randn(8, 8, generator=gen)
        opt.step()
        assert sum("exp_avg" in opt.state[p] for p in ps) == 2


def test_swan_matches_reference():
    params, grads = _setup()
    w0 = {k: p.detach().clone() for k, p in params.items()}
    groups = [{"params": [params["A"], params["c"]], "lr": LR1}, {"params": [params["B"]], "lr": LR2}]
    opt = SWAN(groups, weight_decay=WD, ns_dtype="float64")  # fp32 (the CPU default) is 1.1e-6 away
    _run(opt, params, grads, STEPS)
    refs = {k: ref_swan_matrix(w0[k], _grads_of(grads, k), _lr(k), WD) for k in ("A", "B")}
    refs["c"] = ref_adamw_torch(w0["c"], _grads_of(grads, "c"), LR1, WD, 1e-8)
    _assert_close(params, refs)
    assert state_bytes(opt) == 8 * 48  # matrices stateless, AdamW for the 1-D param


def test_swan_coupled_whitening_matches_reference():
    params, grads = _setup()
    w0 = {k: p.detach().clone() for k, p in params.items()}
    groups = [{"params": [params["A"], params["c"]], "lr": LR1}, {"params": [params["B"]], "lr": LR2}]
    opt = SWAN(groups, weight_decay=WD, whitening="coupled")
    _run(opt, params, grads, STEPS)
    refs = {k: ref_swan_coupled_matrix(w0[k], _grads_of(grads, k), _lr(k), WD) for k in ("A", "B")}
    _assert_close(params, refs)


def _ill_conditioned_gradient():
    """Rank 4 plus noise, 96 x 384: after GradNorm its condition number is in the thousands."""
    gen = torch.Generator().manual_seed(0)
    u = torch.linalg.qr(torch.randn(96, 4, generator=gen, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(384, 4, generator=gen, dtype=torch.float64))[0]
    low_rank = (u * torch.tensor([40.0, 20.0, 10.0, 5.0], dtype=torch.float64)) @ v.T
    return (low_rank + 0.003 * torch.randn(96, 384, generator=gen, dtype=torch.float64)).float()


def _update_spread(g, **kw):
    w = torch.zeros_like(g, requires_grad=True)
    w.grad = g.clone()
    SWAN([w], lr=1.0, **kw).step()
    s = torch.linalg.svdvals(w.detach().double())
    return (s[0] / s[-1]).item()


def test_swan_whitens_an_ill_conditioned_gradient():
    g = _ill_conditioned_gradient()
    s = torch.linalg.svdvals(_ref_grad_norm(g.double(), 1e-8))
    assert 1000 < s[0] / s[-1] < 3000  # the case is as hard as stated
    assert _update_spread(g) <= 3.0  # the default: five minimax steps
    assert _update_spread(g, ns_dtype="bfloat16") <= 3.0  # no blow-up from bf16 rounding
    assert _update_spread(g, whitening="coupled") > 20.0  # why the default changed: 10 coupled steps


def test_minimax_coefficients_equioscillate():
    """Each step's quintic is a minimax fit of a constant on its interval [low, 1 + MARGIN], scaled
    to peak at 1: it touches its minimum at `low` and at its interior local minimum, and its
    maximum 1 at its interior local maximum and at 1 + MARGIN (Chebyshev's alternation); the
    composition lands [SMALLEST, 1] where the docstrings say."""
    low = SMALLEST
    for a, b, c in minimax_coefficients(5, SMALLEST):
        s = torch.logspace(math.log10(low), math.log10(1 + MARGIN), 400001, dtype=torch.float64)
        p = a * s + b * s**3 + c * s**5
        rising = (p[1:] > p[:-1]).int()
        turns = (rising[1:] - rising[:-1]).nonzero().flatten() + 1  # local extrema of p
        assert len(turns) == 2 and rising[0] == 1  # up to a maximum, down to a minimum, up again
        peak, valley = turns.tolist()
        assert p[peak].item() == pytest.approx(1.0, abs=1e-7) and p[-1].item() == pytest.approx(1.0, abs=1e-7)
        assert p[valley].item() == pytest.approx(p[0].item(), abs=1e-7)
        low = p[s <= 1].min().item()
    assert 0.5 < low < 0.55


def test_swan_whitening_converges_to_polar_factor():
    """With enough steps and beta = 1/2 the whitened update is the polar factor U V^T of G~."""
    gen = torch.Generator().manual_seed(5)
    w = torch.zeros(8, 32, requires_grad=True)
    g = torch.randn(8, 32, generator=gen)
    opt = SWAN([w], lr=1.0, ns_steps=40)
    w.grad = g.clone()
    opt.step()
    gd = g.double()
    gn = (gd - gd.mean(1, keepdim=True)) / (gd.std(1, unbiased=False, keepdim=True) + 1e-8)
    u, _, vh = torch.linalg.svd(gn, full_matrices=False)
    polar = u @ vh
    expected = -math.sqrt(8 * 32) * polar / polar.norm()
    assert (w.detach().double() - expected).abs().max().item() < 1e-4


def test_swan_nonmatrix_sgd_and_conv():
    conv = torch.nn.Conv2d(3, 4, 3)
    opt = SWAN(conv.parameters(), nonmatrix_rule="sgd", lr=0.1)
    conv.weight.grad = torch.randn_like(conv.weight)
    conv.bias.grad = torch.ones_like(conv.bias)
    b0 = conv.bias.detach().clone()
    w0 = conv.weight.detach().clone()
    opt.step()
    assert torch.allclose(conv.bias.detach(), b0 - 0.1)
    d = (conv.weight.detach() - w0).reshape(4, 27)
    assert math.isclose(d.norm().item(), 0.1 * math.sqrt(4 * 27), rel_tol=1e-5)
    assert state_bytes(opt) == 0


# ---- rank of the update --------------------------------------------------------------------------


def _update_rank(opt_factory):
    gen = torch.Generator().manual_seed(6)
    w = torch.zeros(48, 80, requires_grad=True)
    opt = opt_factory([{"params": [w]}])
    w.grad = torch.randn(48, 80, generator=gen)
    opt.step()
    return int(torch.linalg.matrix_rank(w.detach().double(), rtol=1e-4))


def test_update_ranks():
    assert _update_rank(lambda g: GaLoreAdamW(g, rank=RANK)) <= RANK
    assert _update_rank(lambda g: FiraAdamW(g, rank=RANK)) > RANK
    assert _update_rank(lambda g: FRUGAL(g, density=DENSITY, proj_type="svd")) > RANK
    assert _update_rank(lambda g: FRUGAL(g, density=DENSITY, proj_type="random_columns")) > RANK
    assert _update_rank(lambda g: FRUGAL(g, density=DENSITY, proj_type="svd", inactive_update_rule="no")) <= RANK


# ---- state_dict round trip -----------------------------------------------------------------------

FACTORIES = {
    "galore": lambda ps: GaLoreAdamW(ps, update_proj_gap=3, weight_decay=WD),
    "fira": lambda ps: FiraAdamW(ps, update_proj_gap=3, weight_decay=WD),
    "frugal_svd": lambda ps: FRUGAL(ps, density=DENSITY, update_gap=3, proj_type="svd", weight_decay=WD),
    "frugal_cols": lambda ps: FRUGAL(ps, density=DENSITY, update_gap=3, proj_type="random_columns"),
    "frugal_block": lambda ps: FRUGAL(ps, density=0.5, update_gap=3, proj_type="block", block_order="random"),
    "frugal_block_desc": lambda ps: FRUGAL(ps, density=0.5, update_gap=3, proj_type="block"),
    "swan": lambda ps: SWAN(ps, weight_decay=WD),
}


def _rt_groups(params, name):
    key = {"galore": "rank", "fira": "rank"}.get(name.split("_")[0], "density")
    value = RANK if key == "rank" else (DENSITY if "block" not in name else 0.5)
    if name == "swan":
        return [{"params": [params["A"], params["c"]], "lr": LR1}, {"params": [params["B"]], "lr": LR2}]
    return [{"params": [params["A"], params["c"], params["B"]], key: value, "lr": LR1}]


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_state_dict_round_trip_is_bit_exact(name):
    params, grads = _setup(seed=1)
    straight = {k: p.detach().clone().requires_grad_() for k, p in params.items()}
    opt = FACTORIES[name](_rt_groups(straight, name))
    _run(opt, straight, grads, 10)

    first = {k: p.detach().clone().requires_grad_() for k, p in params.items()}
    opt1 = FACTORIES[name](_rt_groups(first, name))
    _run(opt1, first, grads, 5)
    buf = io.BytesIO()
    torch.save(opt1.state_dict(), buf)
    buf.seek(0)
    resumed = {k: p.detach().clone().requires_grad_() for k, p in first.items()}
    opt2 = FACTORIES[name](_rt_groups(resumed, name))
    opt2.load_state_dict(torch.load(buf, weights_only=False))
    _run(opt2, resumed, grads, 5, start=5)
    for k in params:
        assert torch.equal(straight[k], resumed[k]), k


# ---- state_bytes formulas ------------------------------------------------------------------------


def _galore_bytes(m, n, r):
    return 4 * r * (min(m, n) + 2 * max(m, n))


def test_state_bytes_formulas():
    for cls, key, value, extra in ((GaLoreAdamW, "rank", RANK, 0), (FiraAdamW, "rank", RANK, 4)):
        params, grads = _setup()
        opt = cls(_groups(params, key, value), update_proj_gap=GAP)
        _run(opt, params, grads, 3)
        assert state_bytes(opt) == 2 * (_galore_bytes(48, 80, RANK) + extra) + 8 * 48
    params, grads = _setup()
    opt = FRUGAL(_groups(params, "density", DENSITY), update_gap=GAP, proj_type="svd")
    _run(opt, params, grads, 3)
    assert state_bytes(opt) == 2 * _galore_bytes(48, 80, RANK) + 8 * 48
    params, grads = _setup()
    opt = FRUGAL(_groups(params, "density", DENSITY), update_gap=GAP, proj_type="random_columns")
    _run(opt, params, grads, 3)
    k_a, k_b = int(DENSITY * 80), int(DENSITY * 48)
    assert state_bytes(opt) == (8 * k_a + 8 * 48 * k_a) + (8 * k_b + 8 * 80 * k_b) + 8 * 48


def test_plain_list_rule_through_create():
    params, grads = _setup()
    ps = [params["A"], params["c"], params["B"]]
    opt = create("galore", ps, rank=RANK, update_proj_gap=GAP)
    _run(opt, params, grads, 2)
    assert "proj" in opt.state[params["A"]] and "proj" in opt.state[params["B"]]
    assert state_bytes(opt) == 2 * _galore_bytes(48, 80, RANK) + 8 * 48
    # rank >= min(m, n) in "auto" mode: AdamW for that matrix, no error
    opt = create("fira", ps, rank=48)
    _run(opt, params, grads, 1)
    assert "proj" not in opt.state[params["A"]]
    assert opt.state[params["A"]]["exp_avg"].shape == (48, 80)
    opt = create("galore", ps, rank_fraction=0.25)
    _run(opt, params, grads, 1)
    assert opt.state[params["A"]]["proj"].shape == (48, 12)
    for name in ("frugal", "swan"):
        opt = create(name, ps)
        _run(opt, params, grads, 2)
    # a dict group without the method's key next to one with it: plain AdamW (official layout)
    opt = GaLoreAdamW([{"params": [params["A"]]}, {"params": [params["B"]], "rank": RANK}])
    _run(opt, params, grads, 1)
    assert "proj" not in opt.state[params["A"]] and "proj" in opt.state[params["B"]]
    assert [g["projection"] for g in opt.param_groups] == ["none", "all"]
    # no group names the key: every group is "auto" with the constructor's rank
    opt = GaLoreAdamW([{"params": [params["A"]], "lr": LR1}, {"params": [params["B"]]}], rank=RANK)
    _run(opt, params, grads, 1)
    assert "proj" in opt.state[params["A"]] and "proj" in opt.state[params["B"]]
    opt.add_param_group({"params": [params["c"]]})
    assert opt.param_groups[-1]["projection"] == "auto"


def test_closure_and_model_training():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 8, 3),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 36, 40),
        torch.nn.ReLU(),
        torch.nn.Linear(40, 3),
    )
    x, y = torch.randn(16, 2, 8, 8), torch.randint(0, 3, (16,))
    for name, kw in (("galore", dict(rank=4)), ("fira", dict(rank=4)), ("frugal", {}), ("swan", {})):
        m = __import__("copy").deepcopy(model)
        opt = create(name, m.parameters(), lr=1e-2, **kw)

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(m(x), y)
            loss.backward()
            return loss

        first = opt.step(closure).item()
        for _ in range(15):
            last = opt.step(closure).item()
        assert math.isfinite(last) and last < first, name


# ---- bf16 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_bf16_params_keep_fp32_state(name):
    params, grads = _setup(dtype=torch.bfloat16)
    before = {k: p.detach().clone() for k, p in params.items()}
    opt = FACTORIES[name](_rt_groups(params, name))
    _run(opt, params, grads, 4)
    for k, p in params.items():
        assert p.dtype == torch.bfloat16 and torch.isfinite(p).all() and not torch.equal(p, before[k])
    floats = [
        v for st in opt.state.values() for v in st.values() if isinstance(v, torch.Tensor) and v.is_floating_point()
    ]
    assert all(v.dtype == torch.float32 for v in floats)
    opt2 = FACTORIES[name](_rt_groups(params, name))
    opt2.load_state_dict(opt.state_dict())
    for p in opt.state:
        for key, v in opt.state[p].items():
            if isinstance(v, torch.Tensor):
                assert opt2.state[p][key].dtype == v.dtype and torch.equal(opt2.state[p][key], v)


# ---- validation ----------------------------------------------------------------------------------


def test_bad_inputs_raise():
    params, _ = _setup()
    with pytest.raises(ValueError, match=r"rank must be in \[1, 48\]"):
        GaLoreAdamW(_groups(params, "rank", 49))
    with pytest.raises(ValueError, match=r"rank must be in \[1, 48\]"):
        FiraAdamW([{"params": [params["B"]], "rank": 100}])
    with pytest.raises(ValueError, match="rank"):
        GaLoreAdamW([params["A"]], rank=0)
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="density"):
            FRUGAL([params["A"]], density=bad)
        with pytest.raises(ValueError, match="density"):
            FRUGAL([{"params": [params["A"]], "density": bad}])
    for cls in (GaLoreAdamW, FiraAdamW, FRUGAL, SWAN):
        with pytest.raises(ValueError, match="lr"):
            cls([params["A"]], lr=-1e-3)
        with pytest.raises(ValueError, match="lr"):
            cls([{"params": [params["A"]], "lr": -1.0}])
        with pytest.raises(ValueError, match="beta1"):
            cls([params["A"]], betas=(1.0, 0.999))
        with pytest.raises(ValueError, match="beta2"):
            cls([params["A"]], betas=(0.9, -0.1))
    with pytest.raises(ValueError, match="proj_type"):
        FRUGAL([params["A"]], proj_type="rows")
    with pytest.raises(ValueError, match="inactive_update_rule"):
        FRUGAL([params["A"]], inactive_update_rule="adam")
    with pytest.raises(ValueError, match="update_proj_gap"):
        GaLoreAdamW([params["A"]], update_proj_gap=0)
    with pytest.raises(ValueError, match="proj_refresh must be one of warm, svd"):
        FiraAdamW([params["A"]], proj_refresh="qr")
    with pytest.raises(ValueError, match="gamma"):
        FiraAdamW([params["A"]], gamma=0.5)
    with pytest.raises(ValueError, match="ns_steps"):
        SWAN([params["A"]], ns_steps=0)
    with pytest.raises(ValueError, match="density"):
        create("frugal", [params["A"]], density=2.0)


# ---- under torch.compile of the model ----------------------------------------------------------


@pytest.fixture(scope="module")
def compiled_mlp():
    """A model whose weights are non-square matrices (40x24, 24x8), compiled once with inductor."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(24, 40), torch.nn.Tanh(), torch.nn.Linear(40, 8))
    try:
        compiled = torch.compile(model)
        compiled(torch.randn(2, 24)).sum().backward()
    except Exception as exc:  # pragma: no cover - depends on the platform
        compiler_unavailable("torch.compile (inductor)", exc)
    return model, compiled, {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_works_with_compiled_model(name, compiled_mlp):
    """The optimizer sees the same gradients from a compiled model as from the eager one, so 4
    steps (one projection refresh included) land on the same weights."""
    model, compiled, initial = compiled_mlp
    x = torch.randn(32, 24, generator=torch.Generator().manual_seed(3))
    y = torch.randn(32, 8, generator=torch.Generator().manual_seed(4))
    key = {"galore": "rank", "fira": "rank"}.get(name.split("_")[0])
    results = []
    for module in (model, compiled):
        model.load_state_dict(initial)
        group = {"params": list(model.parameters())}
        if key:
            group[key] = 4
        elif name != "swan":
            group["density"] = 0.5 if "block" in name else DENSITY
        opt = FACTORIES[name]([group])
        for _ in range(4):
            opt.zero_grad()
            torch.nn.functional.mse_loss(module(x), y).backward()
            opt.step()
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
