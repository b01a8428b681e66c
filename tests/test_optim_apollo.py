"""APOLLO against a plain float64 re-derivation of the paper's Algorithm 1 and against apollo-torch 1.0.3.

The re-derivation takes one thing from the implementation: the random basis of each refresh, read
from optimizer state after the step that drew it (the draw is random by design; what is checked is
the arithmetic given it, and the draw itself is checked against the package, seed for seed).
Gradients are rank 2 on a tall (RIGHT: per-row channels) and a wide (LEFT: per-column) matrix.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import io
import math
import sys
import types

import pytest
import torch

from trainlab.optim import APOLLO, create, state_bytes

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPES = {"A": (12, 7), "B": (5, 9), "b": (12,)}
STEPS, GAP = 6, 2  # refreshes at t = 1, 3, 5
LR1, LR2, WD = 0.02, 0.01, 0.1
B1, B2, EPS = 0.9, 0.999, 1e-6


def _problem():
    gen = torch.Generator().manual_seed(0)
    params = {k: (0.1 * torch.randn(s, generator=gen)).requires_grad_() for k, s in SHAPES.items()}
    grads = []
    for _ in range(12):
        step = {}
        for k, s in SHAPES.items():
            if len(s) == 2:
                low = torch.randn(s[0], 2, generator=gen) @ torch.randn(2, s[1], generator=gen)
                step[k] = low * torch.linspace(1, 3, s[1])  # rank 2, columns 1 ... 3 apart
            else:
                step[k] = torch.randn(s, generator=gen)
        grads.append(step)
    return params, grads


def _groups(params, **method):
    return [
        {"params": [params["A"], params["b"]], "rank": 3, "lr": LR1, **method},
        {"params": [params["B"]], "rank": 2, "lr": LR2, **method},
    ]


def _run(opt, params, grads, steps, start=0, bases=None):
    for t in range(start, start + steps):
        for k, p in params.items():
            p.grad = grads[t][k].clone()
        opt.step()
        if bases is not None:
            bases.append({k: opt.state[params[k]]["proj"].clone() for k in "AB"})


def _plain(start, grads, bases, steps, scale, channel):
    """Algorithm 1 per matrix (loops over channels) and HF-form AdamW for the bias, in float64."""
    w = {k: v.detach().double().clone() for k, v in start.items()}
    lr = {"A": LR1, "b": LR1, "B": LR2}
    m = {k: 0.0 for k in w}
    v = {k: 0.0 for k in w}
    last = {}
    for t in range(1, steps + 1):
        c = math.sqrt(1 - B2**t) / (1 - B1**t)
        for k in w:
            g = grads[t - 1][k].double()
            if k == "b":
                m[k] = B1 * m[k] + (1 - B1) * g
                v[k] = B2 * v[k] + (1 - B2) * g * g
                w[k] = w[k] - lr[k] * c * m[k] / (v[k].sqrt() + EPS)
                w[k] = w[k] * (1 - lr[k] * WD)
                continue
            p = bases[t - 1][k].double()
            tall = g.shape[0] >= g.shape[1]
            r = g @ p.T if tall else p.T @ g
            m[k] = B1 * m[k] + (1 - B1) * r
            v[k] = B2 * v[k] + (1 - B2) * r * r
            psi = m[k] / (v[k].sqrt() + EPS)
            scaled = g.clone()
            if channel and tall:
                for i in range(g.shape[0]):
                    scaled[i] = g[i] * psi[i].norm() / (r[i].norm() + 1e-8)
            elif channel:
                for j in range(g.shape[1]):
                    scaled[:, j] = g[:, j] * psi[:, j].norm() / (r[:, j].norm() + 1e-8)
            else:
                scaled = g * psi.norm() / (r.norm() + 1e-8)
            norm = scaled.norm()
            if k in last:
                zeta = max(float(norm / (last[k] + 1e-8)), 1.01) / 1.01
                scaled, norm = scaled / zeta, norm / zeta
            last[k] = norm
            w[k] = w[k] - lr[k] * c * math.sqrt(scale) * scaled
            w[k] = w[k] * (1 - lr[k] * WD)
    return w


@pytest.mark.parametrize("scale,scale_type", [(1.0, "channel"), (128.0, "tensor")])
def test_matches_a_float64_rederivation(scale, scale_type):
    params, grads = _problem()
    start = {k: p.detach().clone() for k, p in params.items()}
    method = dict(update_proj_gap=GAP, scale=scale, scale_type=scale_type)
    opt = create("apollo", _groups(params, **method), weight_decay=WD)
    bases: list[dict[str, torch.Tensor]] = []
    _run(opt, params, grads, STEPS, bases=bases)
    assert not torch.equal(bases[0]["A"], bases[2]["A"]) and torch.equal(bases[0]["A"], bases[1]["A"])
    assert bases[0]["A"].shape == (3, 7) and bases[0]["B"].shape == (5, 2)  # RIGHT and LEFT sides
    expected = _plain(start, grads, bases, STEPS, scale, scale_type == "channel")
    for k, p in params.items():
        assert (p.detach() - start[k]).abs().max() > 1e-2, k
        torch.testing.assert_close(p.detach().double(), expected[k], rtol=0, atol=1e-5)


@functools.cache
def _package():
    """apollo-torch's APOLLO AdamW, loaded from its own file: the package's __init__ imports
    bitsandbytes and transformers (for 8-bit and Adafactor variants, and a torch version check),
    which the reference test does not install; while it loads, a stub stands in for the check."""
    found = importlib.util.find_spec("apollo_torch")
    if found is None or not found.submodule_search_locations:
        pytest.skip("apollo-torch not installed (pip install --no-deps apollo-torch==1.0.3)")
    folder = list(found.submodule_search_locations)[0]
    stubbed = ("apollo_torch", "apollo_torch.apollo")
    if "transformers" not in sys.modules and importlib.util.find_spec("transformers") is None:
        stubbed += ("transformers", "transformers.utils", "transformers.utils.versions")
    saved = {k: sys.modules.get(k) for k in stubbed}
    for name in stubbed[2:]:
        sys.modules[name] = types.ModuleType(name)
    if len(stubbed) > 2:
        sys.modules["transformers.utils.versions"].require_version = lambda *a, **k: None  # type: ignore[attr-defined]
    package = types.ModuleType("apollo_torch")
    package.__path__ = [folder]
    sys.modules["apollo_torch"] = package
    try:
        spec = importlib.util.spec_from_file_location("apollo_torch.apollo", f"{folder}/apollo.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module.AdamW


@pytest.mark.parametrize("rank,scale,scale_type", [(4, 1.0, "channel"), (1, 128.0, "tensor")])
def test_matches_apollo_torch_seed_for_seed(rank, scale, scale_type):
    reference = _package()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 20), torch.nn.Tanh(), torch.nn.Linear(20, 6))
    twin = copy.deepcopy(model)
    method = dict(rank=rank, update_proj_gap=3, scale=scale, scale_type=scale_type)

    def groups(m):
        return [{"params": [m[0].weight, m[2].weight], **method}, {"params": [m[0].bias, m[2].bias]}]

    ours = APOLLO(groups(model), lr=1e-2, weight_decay=0.05)
    theirs = reference(
        [{**groups(twin)[0], "proj": "random", "proj_type": "std"}, groups(twin)[1]], lr=1e-2, weight_decay=0.05
    )
    x, y = torch.randn(32, 12), torch.randn(32, 6)
    start = [p.detach().clone() for p in model.parameters()]
    for _ in range(8):
        for m, opt in ((model, ours), (twin, theirs)):
            opt.zero_grad()
            torch.nn.functional.mse_loss(m(x), y).backward()
            opt.step()
    for a, b, s in zip(model.parameters(), twin.parameters(), start):
        assert (a - s).abs().max() > 1e-2
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_state_dict_round_trip_draws_the_same_bases():
    params, grads = _problem()
    opt = create("apollo", _groups(params, update_proj_gap=GAP))
    _run(opt, params, grads, 4)  # the next step (t = 5) draws a new basis from the stored seed
    buffer = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "params": {k: p.detach() for k, p in params.items()}}, buffer)
    _run(opt, params, grads, 3, start=4)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    again = {k: v.clone().requires_grad_() for k, v in saved["params"].items()}
    resumed = APOLLO(_groups(again, update_proj_gap=GAP))
    resumed.load_state_dict(saved["opt"])
    _run(resumed, again, grads, 3, start=4)
    for k in params:
        assert torch.equal(params[k].detach(), again[k].detach()), k


def test_state_bytes_follow_the_documented_formula():
    params, grads = _problem()
    opt = create("apollo", _groups(params))
    _run(opt, params, grads, 2)
    # per matrix 4 r (min + 2 max) + 4 (limiter norm); the bias: AdamW's 8 B/param
    expected = 4 * 3 * (7 + 2 * 12) + 4 + 4 * 2 * (5 + 2 * 9) + 4 + 8 * 12
    assert state_bytes(opt) == expected
    assert sum(isinstance(v, int) for v in opt.state[params["A"]].values()) >= 2  # step, seed: no bytes


def test_the_seed_decides_the_random_basis_and_svd_gives_an_orthonormal_one():
    def basis(**method):
        params, grads = _problem()
        opt = create("apollo", _groups(params, **method))
        _run(opt, params, grads, 1)
        return opt.state[params["A"]]["proj"]

    assert torch.equal(basis(seed=0), basis(seed=0))
    assert not torch.allclose(basis(seed=0), basis(seed=1))
    assert basis(seed=0).std().item() == pytest.approx(1 / math.sqrt(3), rel=0.3)  # N(0, 1/r), r = 3
    svd = basis(proj="svd")
    torch.testing.assert_close(svd @ svd.T, torch.eye(3), rtol=0, atol=1e-5)
