"""Muon: a float64 re-derivation of its rule, torch.optim.Muon as an independent peer, state_dict
round trips, exact state bytes, the recipe's parameter selection, and bad input."""

from __future__ import annotations

import io
import math

import pytest
import torch

from trainlab.optim import Muon, create, state_bytes
from trainlab.optim.selection import recipe_groups

SHAPES = [(48, 80), (80, 48), (80,)]
A, B, C = 3.4445, -4.7750, 2.0315
H = dict(lr=0.02, momentum=0.95, weight_decay=0.1, adamw_lr_ratio=0.25, adamw_betas=(0.9, 0.95), adamw_eps=1e-10)


def params_and_grads(steps, seed=0):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=gen).requires_grad_() for s in SHAPES]
    # low-rank-plus-noise gradients (rank 6 < min(m, n)): the spectrum NS has to flatten
    grads = []
    for _ in range(steps):
        step = []
        for s in SHAPES:
            if len(s) == 2:
                g = torch.randn(s[0], 6, generator=gen) @ torch.randn(6, s[1], generator=gen)
                step.append(g + 0.01 * torch.randn(s, generator=gen))
            else:
                step.append(torch.randn(s, generator=gen))
        grads.append(step)
    return params, grads


def run(opt, params, grads):
    for step in grads:
        for p, g in zip(params, step):
            p.grad = g.clone()
        opt.step()


def ref_ns(u):
    x = u.T if u.shape[0] > u.shape[1] else u
    x = x / (torch.sqrt((x * x).sum()) + 1e-7)
    for _ in range(5):
        a = x @ x.T
        x = A * x + (B * a + C * a @ a) @ x
    return x.T if u.shape[0] > u.shape[1] else x


def test_matches_float64_reference():
    params, grads = params_and_grads(4)
    opt = Muon([{"params": params[:2]}, {"params": params[2:], "muon": False}], ns_dtype="float64", **H)
    ref = [p.detach().double() for p in params]
    buf = [torch.zeros_like(r) for r in ref[:2]]
    m, v = torch.zeros_like(ref[2]), torch.zeros_like(ref[2])
    for t, step in enumerate(grads, start=1):
        for p, g in zip(params, step):
            p.grad = g.clone()
        opt.step()
        for i in range(2):
            g = step[i].double()
            buf[i] = 0.95 * buf[i] + 0.05 * g
            u = 0.05 * g + 0.95 * buf[i]
            scale = math.sqrt(max(1.0, u.shape[0] / u.shape[1]))
            ref[i] = ref[i] * (1 - 0.02 * 0.1) - 0.02 * scale * ref_ns(u)
        g, lr = step[2].double(), 0.02 * 0.25
        ref[2] = ref[2] * (1 - lr * 0.1)
        m = 0.9 * m + 0.1 * g
        v = 0.95 * v + 0.05 * g * g
        ref[2] = ref[2] - lr * (m / (1 - 0.9**t)) / (torch.sqrt(v / (1 - 0.95**t)) + 1e-10)
        for p, r in zip(params, ref):
            assert (p.detach().double() - r).abs().max().item() <= 1e-6, t


def test_newton_schulz_flattens_a_low_rank_spectrum():
    from trainlab.optim.muon import newton_schulz

    _, grads = params_and_grads(1)
    g = grads[0][0].double()
    before = torch.linalg.svdvals(g)
    after = torch.linalg.svdvals(newton_schulz(g, 5, torch.float64))
    assert before[0] / before[5] > 1.5  # the top 6 directions differ in scale
    assert 0.6 < after[:6].min() and after[:6].max() < 1.25  # NS5 maps them near 1


def test_agrees_with_torch_optim_muon():
    """torch's own Muon, an independent implementation whose Newton-Schulz always runs in bf16.
    Full-rank gradients: on near-low-rank ones NS5 amplifies the small directions, and bf16's
    rounding there moves the result by 5-7 % (measured), in torch's code and ours alike."""
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(48, 80, generator=gen)
    grads = [[torch.randn(48, 80, generator=gen)] for _ in range(5)]

    def trained(make):
        p = start.clone().requires_grad_()
        run(make([p]), [p], grads)
        return p.detach()

    theirs = trained(lambda ps: torch.optim.Muon(ps, lr=0.02, momentum=0.95, weight_decay=0.1))
    moved = (theirs - start).norm()
    for dtype, tolerance in (("float64", 1e-2), ("bfloat16", 2.5e-2)):
        ours = trained(lambda ps: Muon(ps, lr=0.02, momentum=0.95, weight_decay=0.1, ns_dtype=dtype))
        assert (ours - theirs).norm() / moved < tolerance, dtype


def _roundtrip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_state_dict_round_trip_is_bit_exact_and_state_bytes_exact():
    params, grads = params_and_grads(8)
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "muon": False}]  # noqa: E731
    straight = [p.detach().clone().requires_grad_() for p in params]
    run(Muon(groups(straight), **H), straight, grads)
    first = [p.detach().clone().requires_grad_() for p in params]
    opt = Muon(groups(first), **H)
    assert state_bytes(opt) == 0
    run(opt, first, grads[:4])
    assert state_bytes(opt) == 4 * (48 * 80 + 80 * 48) + 8 * 80
    saved = _roundtrip(opt.state_dict())
    resumed = [p.detach().clone().requires_grad_() for p in first]
    again = Muon(groups(resumed), **{**H, "lr": 9.0})
    again.load_state_dict(saved)
    run(again, resumed, grads[4:])
    for x, y in zip(straight, resumed):
        assert torch.equal(x, y)


def test_recipe_orthogonalises_hidden_matrices_only():
    from trainlab.workloads import create_workload

    model = create_workload("text_lm").init_model()
    opt = create("muon", recipe_groups(Muon, model))
    covered, total = opt.coverage()
    hidden = sum(p.numel() for n, p in model.named_parameters() if n.startswith("blocks.") and p.ndim == 2)
    assert covered == hidden and total == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(adjust_lr="rms"), "adjust_lr must be one of original, match_rms_adamw"),
        (dict(ns_dtype="half"), "ns_dtype must be one of"),
        (dict(ns_coefficients="cubic"), "ns_coefficients must be one of muon, polar_express"),
        (dict(momentum=1.0), r"momentum must be in \[0.0, 1.0\)"),
        (dict(ns_steps=0), "ns_steps must be an integer >= 1"),
        (dict(lr=-1.0), "lr"),
    ],
)
def test_bad_hyperparameters(bad, message):
    with pytest.raises(ValueError, match=message):
        Muon([torch.zeros(3, 4, requires_grad=True)], **bad)


# ---- Polar Express (Amsel, Persson, Musco, Gower 2025, arXiv 2505.16932) ------------------------

# Algorithm 1's `coeffs_list` as printed in the paper (degree 5, l = 1e-3), typed here from it
PAPER_COEFFS = [
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
    (1.875, -1.25, 0.375),
]


def ill_conditioned(m=96, n=40, smallest=1e-3, seed=0):
    """A tall m x n matrix with singular values log-spaced from 1 down to `smallest`, and its
    exact polar factor U V^T."""
    gen = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(m, n, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    s = torch.logspace(0, math.log10(smallest), n, dtype=torch.float64)
    return (u * s) @ v.T, u @ v.T


def test_polar_express_coefficients_are_the_papers_with_its_safety_factor():
    from trainlab.optim.orthogonalize import polar_express_coefficients

    got = polar_express_coefficients(10)
    for k in range(10):
        a, b, c = PAPER_COEFFS[min(k, 7)]
        f = 1.0 if k >= 7 else 1.01  # the paper's safety factor spares the last polynomial
        assert got[k] == pytest.approx((a / f, b / f**3, c / f**5), rel=1e-15), k
    # what the schedule promises: the composition maps [1e-3, 1] into a band around 1
    s = torch.logspace(-3, 0, 2001, dtype=torch.float64) / 1.01
    for a, b, c in got[:8]:
        s = a * s + b * s**3 + c * s**5
    assert (s - 1).abs().max() < 1e-4


def test_polar_express_is_closer_to_the_polar_factor_than_muons_coefficients():
    from trainlab.optim.orthogonalize import newton_schulz

    g, polar = ill_conditioned()
    for steps, factor in ((5, 0.6), (8, 1e-3)):
        error = {
            kind: ((newton_schulz(g, steps, torch.float64, kind) - polar).norm() / polar.norm()).item()
            for kind in ("muon", "polar_express")
        }
        assert error["muon"] > 0.15  # Muon's triple parks singular values in about [0.7, 1.2]
        assert error["polar_express"] < factor * error["muon"], (steps, error)


def test_muon_runs_polar_express_when_asked():
    """One step from zero momentum with nesterov off: theta moves by -lr s PE(G) exactly (tall G:
    iterated on G^T, s = sqrt(80 / 48))."""
    g, _ = ill_conditioned(80, 48)
    p = torch.zeros(80, 48, dtype=torch.float64, requires_grad=True)
    p.grad = g.clone()
    Muon([p], lr=0.1, nesterov=False, ns_dtype="float64", ns_coefficients="polar_express").step()
    x = 0.05 * g.T / (1.01 * 0.05 * g.norm() + 1e-7)  # the EMA momentum (1 - mu) G, wide side
    for a, b, c in PAPER_COEFFS[:5]:
        a, b, c = a / 1.01, b / 1.01**3, c / 1.01**5
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    torch.testing.assert_close(p.detach(), -0.1 * math.sqrt(80 / 48) * x.T, rtol=0, atol=1e-12)
