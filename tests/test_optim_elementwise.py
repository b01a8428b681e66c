"""Elementwise optimizers: each checked against an independent float64 re-derivation of its rule.

The references below are written from the formulas in the papers / official code (see each class's
docstring and the paper), with plain dense torch ops in float64: they share no code
with the implementations.
"""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from conftest import compiler_unavailable
from trainlab.optim import create, state_bytes
from trainlab.optim import AdEMAMix, DiffGrad, Lion, ScheduleFreeAdamW, SignSGD, Signum
from trainlab.optim.nadamw import NAdamW

SHAPES = [(48, 80), (80, 48), (80,)]
STEPS = 4
LR2_FACTOR = 2.5  # the second param group (the 1-D parameter) runs at lr * LR2_FACTOR


# ---- float64 references: one step of one parameter --------------------------------------------


def ref_adamw(p, g, s, t, lr, h):
    b1, b2 = h["betas"]
    s.setdefault("m", torch.zeros_like(p))
    s.setdefault("v", torch.zeros_like(p))
    p = p * (1 - lr * h["weight_decay"])
    s["m"] = b1 * s["m"] + (1 - b1) * g
    s["v"] = b2 * s["v"] + (1 - b2) * g * g
    m_hat = s["m"] / (1 - b1**t)
    return p - lr * m_hat / (torch.sqrt(s["v"]) / math.sqrt(1 - b2**t) + h["eps"])


def ref_nadamw(p, g, s, t, lr, h):
    b1, b2 = h["betas"]
    s.setdefault("m", torch.zeros_like(p))
    s.setdefault("v", torch.zeros_like(p))
    p = p * (1 - lr * h["weight_decay"])
    s["m"] = b1 * s["m"] + (1 - b1) * g
    s["v"] = b2 * s["v"] + (1 - b2) * g * g
    m_bar = b1 * s["m"] + (1 - b1) * g
    return p - lr * (m_bar / (1 - b1**t)) / (torch.sqrt(s["v"]) / math.sqrt(1 - b2**t) + h["eps"])


def ref_sgd_nesterov(p, g, s, t, lr, h):
    mu = h["momentum"]
    g = g + h["weight_decay"] * p
    s["buf"] = g.clone() if t == 1 else mu * s["buf"] + g
    return p - lr * (g + mu * s["buf"])


def ref_lion(p, g, s, t, lr, h):
    b1, b2 = h["betas"]
    s.setdefault("m", torch.zeros_like(p))
    p = p * (1 - lr * h["weight_decay"])
    p = p - lr * torch.sign(b1 * s["m"] + (1 - b1) * g)
    s["m"] = b2 * s["m"] + (1 - b2) * g
    return p


def ref_diffgrad(p, g, s, t, lr, h):
    b1, b2 = h["betas"]
    for key in ("m", "v", "prev"):
        s.setdefault(key, torch.zeros_like(p))
    g = g + h["weight_decay"] * p
    s["m"] = b1 * s["m"] + (1 - b1) * g
    s["v"] = b2 * s["v"] + (1 - b2) * g * g
    xi = 1.0 / (1.0 + torch.exp(-torch.abs(s["prev"] - g)))
    s["prev"] = g.clone()
    step_size = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
    return p - step_size * xi * s["m"] / (torch.sqrt(s["v"]) + h["eps"])


def ref_signsgd(p, g, s, t, lr, h):
    beta = h.get("momentum", 0.0)
    if beta:
        s["m"] = beta * s.get("m", torch.zeros_like(p)) + (1 - beta) * g
        direction = torch.sign(s["m"])
    else:
        direction = torch.sign(g)
    return p * (1 - lr * h["weight_decay"]) - lr * direction


def ref_sfadamw(p, g, s, t, lr, h):
    """The x/y/z form (adamw_schedulefree_reference.py's recursion); p is y. Keeps x in s["x"]."""
    b1, b2 = h["betas"]
    if "z" not in s:
        s.update(z=p.clone(), x=p.clone(), v=torch.zeros_like(p), lr_max=-1.0, weight_sum=0.0)
    k = t - 1
    warm = h.get("warmup_steps", 0)
    gamma = lr * ((k + 1) / warm if k < warm else 1.0)
    s["lr_max"] = max(s["lr_max"], gamma)
    w = (k + 1) ** h.get("r", 0.0) * s["lr_max"] ** h.get("weight_lr_power", 2.0)
    s["weight_sum"] += w
    c = w / s["weight_sum"]
    y = p
    s["v"] = b2 * s["v"] + (1 - b2) * g * g
    u = g / (torch.sqrt(s["v"] / (1 - b2**t)) + h["eps"]) + h["weight_decay"] * y
    s["z"] = s["z"] - gamma * u
    s["x"] = (1 - c) * s["x"] + c * s["z"]
    return b1 * s["x"] + (1 - b1) * s["z"]


def ref_ademamix(p, g, s, t, lr, h):
    """apple/ml-ademamix's PyTorch update, written out: half-life interpolated beta3, linear alpha."""
    b1, b2, b3 = h["betas"]
    for key in ("m1", "m2", "v"):
        s.setdefault(key, torch.zeros_like(p))
    t_a, t_b = h["alpha_warmup"], h["beta3_warmup"]
    alpha = h["alpha"] * min(1.0, t / t_a)
    if t < t_b:
        half = lambda b: math.log(0.5) / math.log(b + 1e-8)  # noqa: E731
        b3 = 0.5 ** (1 / ((1 - t / t_b) * half(b1) + (t / t_b) * half(b3)))
    s["m1"] = b1 * s["m1"] + (1 - b1) * g
    s["m2"] = b3 * s["m2"] + (1 - b3) * g
    s["v"] = b2 * s["v"] + (1 - b2) * g * g
    denom = torch.sqrt(s["v"]) / math.sqrt(1 - b2**t) + h["eps"]
    return p - lr * ((s["m1"] / (1 - b1**t) + alpha * s["m2"]) / denom + h["weight_decay"] * p)


# name -> (factory(params_or_groups, **h), hparams used in the test (lr included), reference)
CASES = {
    "adamw": (
        lambda ps, **h: create("adamw", ps, **h),
        dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1),
        ref_adamw,
    ),
    "sgd": (lambda ps, **h: create("sgd", ps, **h), dict(lr=0.05, momentum=0.9, weight_decay=0.01), ref_sgd_nesterov),
    "nadamw": (NAdamW, dict(lr=1e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1), ref_nadamw),
    "lion": (Lion, dict(lr=1e-3, betas=(0.9, 0.99), weight_decay=0.5), ref_lion),
    "diffgrad": (DiffGrad, dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05), ref_diffgrad),
    "signsgd": (SignSGD, dict(lr=1e-3, weight_decay=0.5), ref_signsgd),
    "signum": (Signum, dict(lr=1e-3, momentum=0.9, weight_decay=0.5), ref_signsgd),
    "sfadamw": (
        ScheduleFreeAdamW,
        dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, warmup_steps=2, r=0.5, weight_lr_power=2.0),
        ref_sfadamw,
    ),
    "ademamix": (
        AdEMAMix,
        dict(lr=1e-3, betas=(0.9, 0.99, 0.999), alpha=5.0, alpha_warmup=3, beta3_warmup=3, eps=1e-8, weight_decay=0.1),
        ref_ademamix,
    ),
}
NAMES = list(CASES)
# Only our ElementwiseOptimizer subclasses take foreach=False through the same code as the registry's.
OURS = ["nadamw", "lion", "diffgrad", "signsgd", "signum", "sfadamw", "ademamix"]


def make_params(dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen).to(dtype).requires_grad_() for s in SHAPES]


def make_grads(steps, dtype=torch.float32, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=gen).to(dtype) for s in SHAPES] for _ in range(steps)]


def build(name, params, **override):
    factory, h, _ = CASES[name]
    h = {**h, **override}
    groups = [{"params": params[:2]}, {"params": params[2:], "lr": h["lr"] * LR2_FACTOR}]
    return factory(groups, **h)


def run_steps(opt, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        opt.step()


# ---- exactness against the references ---------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_matches_float64_reference(name):
    _, h, ref = CASES[name]
    params = make_params()
    grads = make_grads(STEPS)
    ref_p = [p.detach().double() for p in params]
    ref_s = [{} for _ in params]
    opt = build(name, params)
    for t, step_grads in enumerate(grads, start=1):
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        opt.step()
        for i, g in enumerate(step_grads):
            lr = h["lr"] * (LR2_FACTOR if i == 2 else 1.0)
            ref_p[i] = ref(ref_p[i], g.double(), ref_s[i], t, lr, h)
        for p, r in zip(params, ref_p):
            assert p.dtype == torch.float32
            assert (p.detach().double() - r).abs().max().item() <= 1e-6, (name, t)
    if name == "sfadamw":  # p holds y in training; eval() must give x, train() y again
        opt.eval()
        for p, r, s in zip(params, ref_p, ref_s):
            assert (p.detach().double() - r).abs().max().item() > 1e-4  # x is not y: a real check
            assert (p.detach().double() - s["x"]).abs().max().item() <= 1e-6
        opt.train()
        for p, r in zip(params, ref_p):
            assert (p.detach().double() - r).abs().max().item() <= 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_foreach_and_per_tensor_agree(name):
    grads = make_grads(STEPS)
    a, b = make_params(), make_params()
    run_steps(build(name, a, foreach=True), a, grads)
    run_steps(build(name, b, foreach=False), b, grads)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", [n for n in OURS if n != "sfadamw"])
def test_parameters_with_different_step_counts(name):
    """A parameter that missed steps is bucketed apart: its bias corrections use its own count."""
    grads = make_grads(3)
    params = make_params()
    opt = build(name, params)
    for t, step_grads in enumerate(grads):
        for i, (p, g) in enumerate(zip(params, step_grads)):
            p.grad = None if (i == 1 and t == 0) else g.clone()  # params[1] skips step 1
        opt.step()
    assert opt.state[params[0]]["step"] == 3 and opt.state[params[1]]["step"] == 2
    alone = make_params()[1]
    solo = CASES[name][0]([alone], **CASES[name][1])  # same lr as params[1]'s group
    run_steps(solo, [alone], [[g[1]] for g in grads[1:]])
    assert torch.equal(alone, params[1])


# ---- state_dict, state bytes --------------------------------------------------------------------


def _roundtrip(state_dict):
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_is_bit_exact(name):
    grads = make_grads(10)
    straight = make_params()
    opt = build(name, straight)
    run_steps(opt, straight, grads)

    first = make_params()
    opt1 = build(name, first)
    run_steps(opt1, first, grads[:5])
    saved = _roundtrip(opt1.state_dict())
    resumed = [p.detach().clone().requires_grad_() for p in first]
    opt2 = build(name, resumed, lr=123.0, weight_decay=0.0)  # the loaded groups must win
    opt2.load_state_dict(saved)
    run_steps(opt2, resumed, grads[5:])
    for x, y in zip(straight, resumed):
        assert torch.equal(x, y)
    if name == "sfadamw":
        opt.eval()
        opt2.eval()
        for x, y in zip(straight, resumed):
            assert torch.equal(x, y)


def _numel(params):
    return sum(p.numel() for p in params)


EXPECTED_STATE_BYTES = {  # fp32: bytes per parameter entry, plus torch.optim's per-tensor step
    "adamw": lambda ps: 8 * _numel(ps) + 4 * len(ps),  # torch keeps `step` as a 0-d fp32 tensor
    "sgd": lambda ps: 4 * _numel(ps),
    "nadamw": lambda ps: 8 * _numel(ps),
    "lion": lambda ps: 4 * _numel(ps),
    "diffgrad": lambda ps: 12 * _numel(ps),
    "signsgd": lambda ps: 0,
    "signum": lambda ps: 4 * _numel(ps),
    "sfadamw": lambda ps: 8 * _numel(ps),
    "ademamix": lambda ps: 12 * _numel(ps),
}


@pytest.mark.parametrize("name", NAMES)
def test_state_bytes_match_documented_formula(name):
    params = make_params()
    opt = build(name, params)
    assert state_bytes(opt) == 0  # state is created lazily
    run_steps(opt, params, make_grads(2))
    assert state_bytes(opt) == EXPECTED_STATE_BYTES[name](params)


# ---- dtypes, closure, compile ---------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_bf16_parameters(name):
    params = make_params(torch.bfloat16)
    opt = build(name, params)
    run_steps(opt, params, make_grads(3, torch.bfloat16))
    if name == "sfadamw":
        opt.eval()
        opt.train()
    for p in params:
        assert p.dtype == torch.bfloat16 and torch.isfinite(p).all()
    if name in OURS:  # documented: state in the parameter's dtype
        for state in opt.state.values():
            assert all(v.dtype == torch.bfloat16 for v in state.values() if torch.is_tensor(v))


@pytest.mark.parametrize("name", OURS)
def test_closure_and_sparse(name):
    params = make_params()
    opt = build(name, params)
    target = torch.ones(48, 80)

    def closure():
        opt.zero_grad()
        loss = ((params[0] - target) ** 2).mean()
        loss.backward()
        return loss

    before = params[0].detach().clone()
    loss = opt.step(closure)
    assert torch.is_tensor(loss) and not torch.equal(before, params[0])
    assert params[1].grad is None and opt.state[params[1]] == {}  # no grad: untouched, no state
    sparse = torch.zeros(5, 3, requires_grad=True)
    sparse.grad = torch.sparse_coo_tensor([[0]], torch.ones(1, 3), (5, 3), check_invariants=True)
    with pytest.raises(RuntimeError, match="sparse"):
        CASES[name][0]([sparse], **CASES[name][1]).step()


@pytest.fixture(scope="module")
def compiled_model():
    if not hasattr(torch, "compile"):
        compiler_unavailable("torch.compile", AttributeError("this torch has no torch.compile"))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    try:
        compiled = torch.compile(model)  # inductor: generated kernels for forward and backward
        compiled(torch.randn(2, 8)).sum().backward()
    except Exception as exc:  # pragma: no cover - depends on the platform
        compiler_unavailable("torch.compile (inductor)", exc)
    return model, compiled, {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", NAMES)
def test_works_with_compiled_model(name, compiled_model):
    model, compiled, initial = compiled_model
    x, y = torch.randn(16, 8, generator=torch.Generator().manual_seed(3)), torch.randn(16, 4)
    results = []
    for module in (model, compiled):
        model.load_state_dict(initial)
        params = list(model.parameters())
        opt = CASES[name][0](params, **CASES[name][1])
        for _ in range(2):
            opt.zero_grad()
            nn.functional.mse_loss(module(x), y).backward()
            opt.step()
        if name == "sfadamw":
            opt.eval()
        results.append([p.detach().clone() for p in params])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


# ---- Schedule-Free modes, bad input ----------------------------------------------------------------


def test_schedule_free_modes():
    params = make_params()
    opt = build("sfadamw", params)
    opt.eval()  # before any step: x = y = z, nothing to swap
    assert torch.equal(params[0], make_params()[0])
    opt.train()
    run_steps(opt, params, make_grads(2))
    y = [p.detach().clone() for p in params]
    opt.eval()
    opt.eval()  # idempotent
    with pytest.raises(RuntimeError, match=r"train\(\)"):
        opt.step()
    opt.train()
    opt.train()
    for a, b in zip(params, y):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


CLASSES = [NAdamW, Lion, DiffGrad, SignSGD, Signum, ScheduleFreeAdamW, AdEMAMix]


@pytest.mark.parametrize("cls", CLASSES)
def test_bad_hyperparameters(cls):
    p = [torch.zeros(3, requires_grad=True)]
    with pytest.raises(ValueError, match=r"\blr\b.*>= 0"):
        cls(p, lr=-1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        cls(p, weight_decay=-0.1)
    if cls in (SignSGD, Signum):
        with pytest.raises(ValueError, match=r"momentum must be in \[0.0, 1.0\)"):
            cls(p, momentum=1.0)
    else:
        with pytest.raises(ValueError, match=r"beta1 \(in betas\) must be in \[0, 1\)"):
            cls(p, betas=(1.0, 0.9))
        with pytest.raises(ValueError, match="beta2"):
            cls(p, betas=(0.9, -0.5))


def test_bad_input_through_registry():
    p = [torch.zeros(3, requires_grad=True)]
    valid = "betas, cautious, cautious_wd, lr, mars, mars_gamma, state_dtype, weight_decay, weight_update"
    with pytest.raises(ValueError, match=rf"no hyperparameter 'lrr'; valid: {valid}"):
        create("lion", p, lrr=1)
    with pytest.raises(ValueError, match="warmup_steps"):
        create("sfadamw", p, warmup_steps=-1)
    with pytest.raises(ValueError, match=r"beta1 .*\(0, 1\)"):
        create("sfadamw", p, betas=(0.0, 0.9))
    with pytest.raises(ValueError, match="betas"):
        create("diffgrad", p, betas=0.9)


def test_ademamix_with_alpha_zero_is_torch_adamw():
    """The paper's reduction, against torch's own AdamW (independent code)."""
    a, b = make_params(), make_params()
    grads = make_grads(6)
    run_steps(AdEMAMix(a, lr=1e-2, betas=(0.9, 0.999, 0.9999), alpha=0.0, weight_decay=0.1), a, grads)
    run_steps(torch.optim.AdamW(b, lr=1e-2, betas=(0.9, 0.999), weight_decay=0.1), b, grads)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=0)  # fp32 rounding of values near 2


def test_ademamix_warmups_follow_the_race_budget():
    from trainlab.algorithms import TrainingAlgorithm, make_algorithm

    algorithm = TrainingAlgorithm(make_algorithm("ademamix"), nn.Linear(3, 2), total_steps=600)
    group = algorithm.optimizer.param_groups[0]
    assert group["alpha_warmup"] == 600 and group["beta3_warmup"] == 600 and group["alpha"] == 8.0


# ---- every registered elementwise rule, from the registry (a new one needs no edit here) ----------
def _elementwise_names():
    from trainlab import optim
    from trainlab.optim.base import ElementwiseOptimizer

    return sorted(
        n
        for n in optim.available()
        if isinstance(optim.entry(n).factory, type) and issubclass(optim.entry(n).factory, ElementwiseOptimizer)
    )


def _with_modifiers():
    """Every base that takes the modifiers (trainlab.optim.modifiers), with both on."""
    from trainlab import optim

    names = [n for n in optim.available() if "cautious" in optim.entry(n).hyperparameters()]
    return [f"{n}[cautious,mars,cwd]" for n in sorted(names)]


@pytest.mark.parametrize("name", _elementwise_names() + _with_modifiers())
def test_foreach_path_is_the_rule_run_on_the_whole_bucket(name):
    """The foreach path is derived from the per-tensor rule (`trainlab.optim.tensorlist`): on a
    rank-deficient 48x80 matrix, its transpose's shape and a bias, in two groups with weight decay,
    it gives the per-tensor path's parameters and state bit for bit, step after step."""
    from trainlab import optim

    name, _, modified = name.partition("[")
    entry = optim.entry(name)
    h = {k: v for k, v in entry.race_defaults.items() if k in entry.hyperparameters()}
    if "weight_decay" in entry.hyperparameters():
        h["weight_decay"] = 0.1
    if modified:
        h.update(cautious=True, mars=True, cautious_wd=True)
    gen = torch.Generator().manual_seed(0)
    low_rank = torch.randn(48, 6, generator=gen) @ torch.randn(6, 80, generator=gen)
    start = [low_rank, torch.randn(80, 48, generator=gen), torch.randn(80, generator=gen)]
    runs = []
    for foreach in (True, False):
        params = [p.clone().requires_grad_() for p in start]
        groups = [{"params": params[:2]}, {"params": params[2:], "lr": 2.5 * h["lr"]}]
        opt = optim.create(name, groups, **h, foreach=foreach, fused=False)
        for t in range(4):
            g = torch.Generator().manual_seed(10 + t)
            for p in params:
                p.grad = torch.randn(p.shape, generator=g)
            opt.step()
        runs.append((params, opt))
    (a, opt_a), (b, opt_b) = runs
    assert all(not torch.equal(p, q) for p, q in zip(a, start))  # the steps moved every parameter
    assert all(torch.equal(p, q) for p, q in zip(a, b)), name
    for p, q in zip(a, b):
        sa, sb = opt_a.state[p], opt_b.state[q]
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) if torch.is_tensor(sa[k]) else sa[k] == sb[k] for k in sa), name


def test_a_rule_with_an_op_that_has_no_multi_tensor_form_fails_loudly():
    from trainlab.optim.tensorlist import apply

    def rule(p, g, states, s):
        return (torch.tanh(p),)

    with pytest.raises(TypeError, match="tanh has no multi-tensor form"):
        apply(rule, [torch.ones(3)], [torch.ones(3)], [()], ())


def test_foreach_plan_writes_in_place_and_keeps_returns_apart():
    """The foreach path's plan (`tensorlist._plan`): Lion's rule allocates one temporary (the
    interpolation, while m is still needed) and copies nothing back; a rule whose values change
    slots (p's in-place product returned as a state, a state returned twice) gives the eager
    per-tensor results on the planned second call too."""
    from trainlab.optim import tensorlist
    from trainlab.optim.lion import lion_rule

    params = [torch.randn(5, 3), torch.randn(4)]
    grads = [torch.randn_like(p) for p in params]
    moms = [torch.randn_like(p) for p in params]
    scalars = (0.99, -1e-3, 0.1, 0.01)
    tensorlist.apply(lion_rule, params, grads, [(m,) for m in moms], scalars)
    plan = next(v for k, v in tensorlist._PLANS.items() if k[0] is lion_rule)
    assert sum(pos is None for pos in plan.inplace) == 1 and not any(plan.copy)

    def swapping(p, g, states, s):
        a, b = states
        doubled = p * s[0]  # p is dead after this op: planned in place, in p's own tensor
        return a + g, doubled, a * s[0]

    for _ in range(2):  # the first call records the plan, the second follows it
        ps, gs = [t.clone() for t in params], grads
        cols = [(t.clone(), t.clone() + 1) for t in moms]
        want = [swapping(p, g, c, (2.0,)) for p, g, c in zip(ps, gs, cols)]
        tensorlist.apply(swapping, ps, gs, cols, (2.0,))
        for p, (a, b), (w0, w1, w2) in zip(ps, cols, want):
            assert torch.equal(p, w0) and torch.equal(a, w1) and torch.equal(b, w2)
