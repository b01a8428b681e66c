"""ADOPT and the `cautious` / `mars` / `cautious_wd` modifiers (trainlab.optim.modifiers) on every base that takes
them, each checked against an independent float64 re-derivation from the papers' official code,
against trainlab's AdamW rule vs torch.optim.AdamW, and against pytorch-optimizer 4.1.0 where it
is installed (the `reference` extra).

The references share no code with the implementations: plain dense float64 torch, the official
code's branches written out (`if ||c|| > 1`, `u * g > 0`, ADOPT's `if step == 0: continue`).
"""

from __future__ import annotations

import io
import math

import pytest
import torch

from trainlab import optim
from trainlab.optim import ADOPT, AdamW, create, state_bytes

SHAPES = [(48, 80), (80, 48), (80,)]
GRAD_SCALE = [1.0, 1.0, 0.01]  # the bias's gradient has norm < 1: MARS's clip is off there, on elsewhere
STEPS = 5
LR2_FACTOR = 2.5  # the second param group (the bias) runs at lr * LR2_FACTOR


def make_params(seed=0):
    gen = torch.Generator().manual_seed(seed)
    low_rank = torch.randn(48, 6, generator=gen) @ torch.randn(6, 80, generator=gen)  # rank 6
    return [p.requires_grad_() for p in (low_rank, torch.randn(80, 48, generator=gen), torch.randn(80, generator=gen))]


def make_grads(steps, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=gen) * k for s, k in zip(SHAPES, GRAD_SCALE)] for _ in range(steps)]


def run_steps(opt, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        opt.step()


# ---- float64 references: (new p) for one parameter, one step ---------------------------------------


def ref_adamw(p, x, s, t, lr, h):
    """-> (decay, step size, direction u): p_new = p * decay - step * u."""
    b1, b2 = h["betas"]
    s["m"] = b1 * s.get("m", torch.zeros_like(p)) + (1 - b1) * x
    s["v"] = b2 * s.get("v", torch.zeros_like(p)) + (1 - b2) * x * x
    u = (s["m"] / (1 - b1**t)) / (torch.sqrt(s["v"]) / math.sqrt(1 - b2**t) + h["eps"])
    return 1 - lr * h["weight_decay"], lr, u


def ref_nadamw(p, x, s, t, lr, h):
    b1, b2 = h["betas"]
    s["m"] = b1 * s.get("m", torch.zeros_like(p)) + (1 - b1) * x
    s["v"] = b2 * s.get("v", torch.zeros_like(p)) + (1 - b2) * x * x
    m_bar = b1 * s["m"] + (1 - b1) * x
    u = (m_bar / (1 - b1**t)) / (torch.sqrt(s["v"]) / math.sqrt(1 - b2**t) + h["eps"])
    return 1 - lr * h["weight_decay"], lr, u


def ref_lion(p, x, s, t, lr, h):
    b1, b2 = h["betas"]
    m = s.get("m", torch.zeros_like(p))
    u = torch.sign(b1 * m + (1 - b1) * x)
    s["m"] = b2 * m + (1 - b2) * x
    return 1 - lr * h["weight_decay"], lr, u


def ref_adopt(p, x, s, t, lr, h):
    """iShohei220/adopt's _single_tensor_adopt; its 0-based step is t - 1."""
    b1, b2 = h["betas"]
    wd, decouple = h["weight_decay"], h.get("decouple", False)
    if wd and not decouple:
        x = x + wd * p
    step = t - 1
    if step == 0:
        s["v"] = x * x
        s["m"] = torch.zeros_like(p)
        return 1.0, 0.0, torch.zeros_like(p)
    normed = (x / torch.clamp(torch.sqrt(s["v"]), min=h["eps"])).clamp(-(step**0.25), step**0.25)
    s["m"] = s["m"] + (1 - b1) * (normed - s["m"])
    s["v"] = b2 * s["v"] + (1 - b2) * x * x
    return (1 - lr * wd) if decouple else 1.0, lr, s["m"]


DIRECTIONS = {"adamw": ref_adamw, "nadamw": ref_nadamw, "lion": ref_lion, "adopt": ref_adopt}


def ref_step(name, p, g, s, t, lr, h):
    x = g
    if h.get("mars"):  # AGI-Arena/MARS, mars.py: c_t, clipped to unit norm when its norm exceeds 1
        b1, gamma = h["betas"][0], h.get("mars_gamma", 0.025)
        c = g + gamma * (b1 / (1 - b1)) * (g - s.get("last_grad", torch.zeros_like(g)))
        norm = torch.linalg.norm(c)
        if norm > 1:
            c = c / norm
        s["last_grad"] = g.clone()
        x = c
    decay, step, u = DIRECTIONS[name](p, x, s, t, lr, h)
    if h.get("cautious"):  # kyleliang919/C-Optim, c_adamw.py
        mask = (u * g > 0).double()
        u = u * (mask / max(mask.mean().item(), 1e-3))
    if h.get("cautious_wd"):  # arXiv 2510.12402, Algorithm 1: x - lr (u + wd I(u x >= 0) x)
        return p - step * u - (1 - decay) * (u * p >= 0).double() * p
    return p * decay - step * u


HPARAMS = {
    "adamw": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1),
    "nadamw": dict(lr=1e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1),
    "lion": dict(lr=1e-3, betas=(0.9, 0.99), weight_decay=0.5),
    "adopt": dict(lr=1e-3, betas=(0.9, 0.9999), eps=1e-6, weight_decay=0.1),
}
MODIFIERS = {
    "plain": {},
    "cautious": dict(cautious=True),
    "mars": dict(mars=True, mars_gamma=0.05),
    "cautious+mars": dict(cautious=True, mars=True),
    "cwd": dict(cautious_wd=True),
    "cautious+mars+cwd": dict(cautious=True, mars=True, cautious_wd=True),
}
CASES = [(n, m) for n in HPARAMS for m in MODIFIERS if not (n != "adopt" and m == "plain")]
CASES += [("adopt", "decoupled"), ("adopt", "decoupled+cautious"), ("adopt", "decoupled+cwd")]


def hparams(name, modifier):
    h = dict(HPARAMS[name])
    if modifier.startswith("decoupled"):
        h["decouple"] = True
        modifier = modifier.removeprefix("decoupled").removeprefix("+") or "plain"
    return {**h, **MODIFIERS[modifier]}


def build(name, params, h, **switches):
    groups = [{"params": params[:2]}, {"params": params[2:], "lr": h["lr"] * LR2_FACTOR}]
    return create(name, groups, **h, **switches)


@pytest.mark.parametrize("name,modifier", CASES)
@pytest.mark.parametrize("foreach", [True, False])
def test_matches_float64_reference(name, modifier, foreach):
    h = hparams(name, modifier)
    params, grads = make_params(), make_grads(STEPS)
    ref_p = [p.detach().double() for p in params]
    ref_s: list[dict] = [{} for _ in params]
    opt = build(name, params, h, foreach=foreach, fused=False)
    for t, step_grads in enumerate(grads, start=1):
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        opt.step()
        for i, g in enumerate(step_grads):
            lr = h["lr"] * (LR2_FACTOR if i == 2 else 1.0)
            ref_p[i] = ref_step(name, ref_p[i], g.double(), ref_s[i], t, lr, h)
        for p, r in zip(params, ref_p):  # fp32 rounding of entries up to ~10 (the rank-6 product)
            assert ((p.detach().double() - r).abs() / (1 + r.abs())).max().item() <= 1e-6, (name, modifier, t)
    assert all((p.detach() - q).abs().max() > 1e-4 for p, q in zip(params, make_params()))


def test_cautious_masks_and_mars_clips_for_real():
    """The modifiers change the update (not a no-op), and a tensor's cautious mean is its own."""
    params, grads = make_params(), make_grads(3)
    results = {}
    for modifier in ("plain", "cautious", "mars", "cwd"):
        ps = [p.detach().clone().requires_grad_() for p in params]
        run_steps(build("lion", ps, hparams("lion", modifier) if modifier != "plain" else HPARAMS["lion"]), ps, grads)
        results[modifier] = ps
    for modifier in ("cautious", "mars", "cwd"):
        assert all(not torch.equal(a, b) for a, b in zip(results["plain"], results[modifier])), modifier


def test_adopt_first_step_only_initialises():
    params, grads = make_params(), make_grads(1)
    before = [p.detach().clone() for p in params]
    opt = build("adopt", params, hparams("adopt", "decoupled+cautious"))
    run_steps(opt, params, grads)
    assert all(torch.equal(p, q) for p, q in zip(params, before))
    for p, g in zip(params, grads[0]):
        assert torch.equal(opt.state[p]["exp_avg"], torch.zeros_like(p))
        assert torch.equal(opt.state[p]["exp_avg_sq"], g * g)


def test_trainlab_adamw_rule_is_torch_adamw():
    """trainlab's AdamW rule (what the modifiers compose with) against torch.optim.AdamW, and the
    registered `adamw` without a modifier still is torch's own optimizer."""
    grads = make_grads(8)
    for foreach in (True, False):
        a, b = make_params(), make_params()
        h = HPARAMS["adamw"]
        ours = AdamW([{"params": a[:2]}, {"params": a[2:], "lr": 2.5e-3}], **h, foreach=foreach, fused=False)
        ref = torch.optim.AdamW([{"params": b[:2]}, {"params": b[2:], "lr": 2.5e-3}], **h, foreach=False)
        run_steps(ours, a, grads)
        run_steps(ref, b, grads)
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, atol=1e-7, rtol=1.5e-7)  # one float32 ulp
    assert type(create("adamw", make_params())) is torch.optim.AdamW
    assert type(create("adamw", make_params(), cautious=True)) is AdamW
    assert type(create("adamw", make_params(), mars=True)) is AdamW


def _roundtrip(state_dict):
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("name,modifier", [("adamw", "cautious+mars"), ("lion", "cautious+mars"), ("adopt", "plain")])
def test_state_dict_round_trip_is_bit_exact(name, modifier):
    h, grads = hparams(name, modifier), make_grads(8)
    straight = make_params()
    run_steps(build(name, straight, h), straight, grads)
    first = make_params()
    opt1 = build(name, first, h)
    run_steps(opt1, first, grads[:4])
    saved = _roundtrip(opt1.state_dict())
    resumed = [p.detach().clone().requires_grad_() for p in first]
    opt2 = build(name, resumed, {**h, "lr": 123.0, "weight_decay": 0.0}, foreach=False)  # the loaded groups win
    opt2.load_state_dict(saved)
    run_steps(opt2, resumed, grads[4:])
    for x, y in zip(straight, resumed):
        assert torch.equal(x, y)


@pytest.mark.parametrize(
    "name,modifier,per_param",
    [("adopt", "plain", 8), ("lion", "cautious", 4), ("lion", "mars", 8), ("adamw", "cautious+mars", 12)],
)
def test_state_bytes(name, modifier, per_param):
    params = make_params()
    opt = build(name, params, hparams(name, modifier))
    assert state_bytes(opt) == 0
    run_steps(opt, params, make_grads(2))
    assert state_bytes(opt) == per_param * sum(p.numel() for p in params)  # + prev_grad with mars


def test_bad_options():
    p = [torch.zeros(3, requires_grad=True)]
    with pytest.raises(ValueError, match="mars_gamma"):
        create("lion", p, mars=True, mars_gamma=-1.0)
    with pytest.raises(ValueError, match="cautious must be a bool"):
        create("adamw", p, cautious="yes")
    with pytest.raises(ValueError, match="cautious_wd must be a bool"):
        create("lion", p, cautious_wd=1)
    with pytest.raises(ValueError, match="no hyperparameter 'cautious'"):
        create("diffgrad", p, cautious=True)  # a base without a direction does not take them
    with pytest.raises(ValueError, match="beta2"):
        ADOPT(p, betas=(0.9, 1.5))


def test_algorithm_names_with_options():
    from trainlab.algorithms.registry import make_algorithm, parse_hparam_overrides
    from trainlab.cli.options import split_list
    from trainlab.errors import UsageError

    names = split_list("adamw[cautious=true,mars=true],lion[cautious=true]+constant,sso[inner=lion]", "algorithms")
    assert names == ["adamw[cautious=true,mars=true]", "lion[cautious=true]+constant", "sso[inner=lion]"]
    spec = make_algorithm(names[0])
    assert spec.optimizer == "adamw" and spec.hparams["cautious"] is True and spec.hparams["mars"] is True
    lion = make_algorithm(names[1])
    assert lion.schedule == "constant" and lion.hparams["cautious"] is True and lion.name == names[1]
    over = parse_hparam_overrides(["lion.cautious=true"], ["lion"])
    assert make_algorithm("lion", over["lion"]).hparams["cautious"] is True
    with pytest.raises(UsageError, match="no hyperparameter 'cautios'"):
        make_algorithm("lion[cautios=true]")
    with pytest.raises(UsageError, match="bad algorithm name"):
        make_algorithm("lion[cautious=true")


def test_registration():
    entry = optim.entry("adopt")
    assert entry.state_bytes.startswith("8 B/param") and not entry.linear_update
    assert set(entry.search_space) >= {"lr", "weight_decay", "warmup_fraction"}
    modifiers = {"cautious", "mars", "mars_gamma", "cautious_wd"}
    assert modifiers <= set(entry.hyperparameters())
    for name in ("adamw", "lion", "nadamw"):
        assert modifiers <= set(optim.entry(name).hyperparameters()), name


# ---- the peer implementation: pytorch-optimizer 4.1.0 (the `reference` extra) -------------------------


@pytest.fixture
def pytorch_optimizer(monkeypatch):
    ptopt = pytest.importorskip(
        "pytorch_optimizer", reason="pytorch-optimizer is not installed: pip install -e '.[reference]'"
    )
    from pytorch_optimizer.base.optimizer import BaseOptimizer

    def c_optim_mask(update, grad):  # C-Optim's normalisation (ours) in place of numel / (sum + 1)
        mask = (update * grad > 0).to(grad.dtype)
        mask.div_(mask.mean().clamp_(min=1e-3))
        update.mul_(mask)

    monkeypatch.setattr(BaseOptimizer, "apply_cautious", staticmethod(c_optim_mask))
    # MARS-AdamW's denominator there is sqrt(v + 1e-15) + eps: the official code's has no 1e-15,
    # which moves entries with v ~ 1e-16 (a gradient entry of 1e-5) by half their update
    ams_bound = BaseOptimizer.apply_ams_bound

    def official_denominator(ams, exp_avg_sq, max_exp_avg_sq, eps, exp_avg_sq_eps=1e-15):
        return ams_bound(ams, exp_avg_sq, max_exp_avg_sq, eps, exp_avg_sq_eps=0.0)

    monkeypatch.setattr(BaseOptimizer, "apply_ams_bound", staticmethod(official_denominator))
    return ptopt


def _peer_cases():
    return [
        # ADOPT with the official clip bound (pytorch-optimizer's is one step later), L2 decay
        ("adopt", dict(weight_decay=0.1), "ADOPT", dict(weight_decay=0.1, clip_lambda=lambda s: (s - 1) ** 0.25)),
        ("adopt", dict(cautious=True), "ADOPT", dict(cautious=True, clip_lambda=lambda s: (s - 1) ** 0.25)),
        ("lion", dict(weight_decay=0.5, cautious=True), "Lion", dict(weight_decay=0.5, cautious=True)),
        # MARS-AdamW (eps added before the bias correction there: eps ~ 0 makes the two forms equal)
        (
            "adamw",
            dict(betas=(0.9, 0.99), eps=1e-16, weight_decay=0.1, mars=True, cautious=True),
            "MARS",
            dict(betas=(0.9, 0.99), eps=1e-16, weight_decay=0.1, optimize_1d=True, cautious=True),
        ),
        # MARS-Lion is sign(m) with m the momentum of c: Lion's rule on c when beta1 = beta2
        (
            "lion",
            dict(betas=(0.95, 0.95), weight_decay=0.5, mars=True),
            "MARS",
            dict(betas=(0.95, 0.95), weight_decay=0.5, optimize_1d=True, mars_type="lion"),
        ),
    ]


@pytest.mark.parametrize("case", range(len(_peer_cases())))
def test_matches_pytorch_optimizer(case, pytorch_optimizer):
    name, ours_h, peer_name, peer_h = _peer_cases()[case]
    lr = 1e-3
    a, b = make_params(), make_params()
    grads = make_grads(STEPS)
    ours = create(name, a, lr=lr, **ours_h)
    peer = getattr(pytorch_optimizer, peer_name)(b, lr=lr, foreach=False, **peer_h)
    run_steps(ours, a, grads)
    run_steps(peer, b, grads)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=0)
    assert all((p.detach() - q).abs().max() > 1e-4 for p, q in zip(a, make_params()))


def test_mars_switched_on_mid_run():
    """MARS turned on in a running optimizer's groups: its g_{t-1} starts at zero, as at step 1."""
    params, grads = make_params(), make_grads(3)
    opt = build("lion", params, HPARAMS["lion"])
    run_steps(opt, params, grads[:2])
    assert "prev_grad" not in opt.state[params[0]]
    for group in opt.param_groups:
        group["mars"] = True
    run_steps(opt, params, grads[2:])
    assert torch.equal(opt.state[params[0]]["prev_grad"], grads[2][0])


@pytest.mark.usefixtures("one_thread")
def test_a_race_names_the_modifiers(tmp_path):
    """`trainlab race --algorithms "adamw[cautious=true],lion[cautious=true]"`, in small."""
    from trainlab.benchmark.race import RacePlan, run_race
    from trainlab.cli.options import split_list
    from trainlab.store import ResultsStore
    from trainlab.workloads import create_workload

    names = split_list("adamw[cautious=true],lion[cautious=true,mars=true]", "algorithms")
    plan = RacePlan([create_workload("mnist1d_mlp", step_budget=12, eval_every=6)], names, [0], torch.device("cpu"))
    store = ResultsStore(f"sqlite:///{tmp_path / 'r.db'}")
    race_id, results = run_race(plan, store, progress=False)
    trials = store.trials(race_id)
    assert len(results) == 2 and {t["algorithm"] for t in trials} == set(names)
    assert {t["status"] for t in trials} == {"completed"}
    by_name = {t["algorithm"]: t["state_bytes"] for t in trials}
    assert by_name[names[0]] == by_name[names[1]] > 0  # AdamW's two moments; Lion's momentum + MARS's g_{t-1}


def test_a_bracketed_name_tunes_with_its_options_on_every_trial(tmp_path):
    """`tune` and `leaderboard` take `lion[cautious=true]` as races do: the base's search space,
    the option fixed on every tuning and evaluation trial (so the leaderboard can pair a modifier
    with its base)."""
    import optuna

    from conftest import run_main

    store = f"sqlite:///{tmp_path / 't.db'}"
    done = run_main(
        "tune", "--name", "t", "--workloads", "mnist1d_mlp", "--workload-option", "mnist1d_mlp.step_budget=20",
        "--workload-option", "mnist1d_mlp.eval_every=10", "--algorithms", "lion[cautious=true]", "--trials", "1",
        "--studies", "1", "--eval-seeds", "0", "--workers", "1", "--threads", "1", "--store", store,
        "--report-dir", str(tmp_path / "rep"), "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    runs = [
        t.user_attrs["result"]["hparams"]
        for s in optuna.get_all_study_summaries(store)
        for t in optuna.load_study(study_name=s.study_name, storage=store).trials
        if "result" in t.user_attrs
    ]
    assert len(runs) == 2 and all(h["cautious"] is True for h in runs), runs
