"""Schedules read like their formulas: closed-form values at chosen steps, exact boundaries, the
LambdaLR adapter against the pure function, refinement (Defazio et al. 2023), UBA, batch scaling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainlab import optim
from trainlab.algorithms.rules import default_rule, kind_for, norm_kinds, scaling_rules
from trainlab.schedules import (
    SCHEDULE_HPARAMS,
    SCHEDULES,
    as_lr_scheduler,
    build_schedule,
    constant,
    cosine_decay,
    join,
    linear_decay,
    linear_warmup,
    piecewise_constant,
    refine,
    refined_schedule,
    scale,
    scale_lr,
    uba,
    wsd,
)

NORM_KIND, SCALING_RULE = norm_kinds(), scaling_rules()

T, W = 100, 10


# --- closed forms and boundaries ---------------------------------------------------------------


def test_warmup_starts_at_one_over_w_and_reaches_one_at_its_end():
    f = linear_warmup(W)
    assert f(0) == pytest.approx(1 / W)  # the first update is not taken at lr 0
    assert f(4) == pytest.approx(5 / W)
    assert f(W - 1) == 1.0  # last warm-up step: full lr
    assert f(W) == 1.0 and f(10 * W) == 1.0
    assert linear_warmup(0)(0) == 1.0


def test_cosine_and_linear_decay_closed_forms():
    cos, lin = cosine_decay(T, W), linear_decay(T, W)
    assert cos(0) == pytest.approx(1 / W) and lin(0) == pytest.approx(1 / W)
    assert cos(W) == 1.0 and lin(W) == 1.0
    assert cos(55) == pytest.approx(0.5) and lin(55) == pytest.approx(0.5)  # halfway through 90 steps
    assert cos(T - 1) == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))
    assert lin(T - 1) == pytest.approx(1 / 90)
    assert cos(T) == pytest.approx(0.0, abs=1e-15) and lin(T) == 0.0
    assert constant()(0) == constant()(12345) == 1.0


@pytest.mark.parametrize(
    "cooldown, mid, last",
    [
        ("linear", 0.5, 1 / 20),
        ("1-sqrt", 1 - math.sqrt(0.5), 1 - math.sqrt(19 / 20)),
        ("cosine", 0.5, 0.5 * (1 + math.cos(math.pi * 19 / 20))),
    ],
)
def test_wsd_boundaries(cooldown, mid, last):
    f = wsd(T, warmup_steps=5, decay_fraction=0.2, cooldown=cooldown)  # cool-down = steps 80..99
    assert f(0) == pytest.approx(1 / 5)
    assert f(4) == 1.0  # end of warm-up
    assert all(f(s) == 1.0 for s in range(5, 80))  # stable phase
    assert f(80) == 1.0  # first cool-down step: progress 0
    assert f(90) == pytest.approx(mid)
    assert f(99) == pytest.approx(last)  # last update
    assert f(100) == pytest.approx(0.0, abs=1e-15)  # the end of the budget
    assert all(f(s) >= f(s + 1) for s in range(4, 100))


def test_wsd_without_cooldown_stays_at_one():
    f = wsd(T, warmup_steps=0, decay_fraction=0.0)
    assert all(f(s) == 1.0 for s in range(T + 1))


def test_piecewise_constant():
    f = piecewise_constant([10, 20], [1.0, 0.1, 0.01])
    assert [f(0), f(9), f(10), f(19), f(20), f(10_000)] == [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]


def test_join_offsets_each_later_schedule_by_its_boundary():
    joined = join([linear_warmup(W), linear_decay(T - W)], [W])
    reference = linear_decay(T, W)
    assert all(joined(s) == pytest.approx(reference(s)) for s in range(T + 1))
    three = join([constant(), lambda s: float(s), lambda s: 100.0 + s], [5, 8])
    assert [three(4), three(5), three(7), three(8), three(9)] == [1.0, 0.0, 2.0, 100.0, 101.0]


def test_scale():
    f = scale(linear_decay(T), 0.5)
    assert f(0) == 0.5 and f(50) == pytest.approx(0.25)


# --- UBA (formula from a third-party implementation; see budget_aware.py) ----------------------


def test_uba_with_phi_2_is_cosine_annealing_at_every_step():
    for warmup in (0, W):
        f, g = uba(T, warmup, phi=2.0), cosine_decay(T, warmup)
        assert all(f(s) == pytest.approx(g(s), abs=1e-15) for s in range(T + 1))


@pytest.mark.parametrize("phi", [0.3, 0.8, 2.0, 5.0])
def test_uba_endpoints_and_monotone_decay(phi):
    f = uba(T, 0, phi)
    assert f(0) == 1.0
    assert f(T) == 0.0
    assert all(f(s) >= f(s + 1) for s in range(T))
    # phi < 2 decays more slowly than cosine, phi > 2 faster (property of this form).
    c = cosine_decay(T)(T // 2)
    assert (f(T // 2) > c) if phi < 2 else (f(T // 2) < c) if phi > 2 else f(T // 2) == pytest.approx(c)
    # Closed form at the midpoint: cos(pi/2) = 0, so f = 2 / (2 phi + 2 - phi) = 2 / (2 + phi).
    assert f(T // 2) == pytest.approx(2 / (2 + phi))


# --- the LambdaLR adapter driven by a real optimizer -------------------------------------------


@pytest.mark.parametrize(
    "schedule",
    [
        cosine_decay(T, W),
        linear_decay(T, W),
        wsd(T, 5, 0.2, "1-sqrt"),
        uba(T, W, 0.8),
        piecewise_constant([30, 60], [1.0, 0.3, 0.1]),
        refined_schedule(list(np.linspace(5.0, 1.0, T)), "sgd"),
    ],
    ids=["cosine", "linear", "wsd", "uba", "piecewise", "refined"],
)
def test_adapter_matches_the_pure_function_at_every_step(schedule):
    base_lr = 0.3
    param = torch.zeros(3, requires_grad=True)
    opt = torch.optim.SGD([param], lr=base_lr)
    scheduler = as_lr_scheduler(opt, schedule)
    for step in range(T):
        assert opt.param_groups[0]["lr"] == pytest.approx(base_lr * schedule(step), rel=1e-12, abs=1e-15)
        param.grad = torch.ones_like(param)
        opt.step()
        scheduler.step()


# --- refinement (Defazio et al. 2023, arXiv 2310.07831) -----------------------------------------


@pytest.mark.parametrize("kind", ["adam", "sgd"])
@pytest.mark.parametrize("steps", [2, 7, 100])
def test_constant_norms_give_linear_decay(kind, steps):
    # w_t = c for all t, so eta_t ∝ c * c * (T - 1 - t): normalized, (T - 1 - t) / (T - 1).
    eta = refine([2.5] * steps, kind)
    expected = (steps - 1 - np.arange(steps)) / (steps - 1)
    np.testing.assert_allclose(eta, expected, rtol=0, atol=1e-9)


def test_refined_is_non_negative_ends_at_zero_and_peaks_at_exactly_one():
    rng = np.random.default_rng(0)
    for kind in ("adam", "sgd"):
        eta = refine(rng.uniform(0.1, 10.0, size=300), kind)
        assert eta.shape == (300,)
        assert (eta >= 0).all() and eta[-1] == 0.0 and eta.max() == 1.0


def test_shrinking_norms_give_an_automatic_warmup():
    t = np.arange(200)
    eta = refine(1.0 + 9.0 * np.exp(-t / 10.0), "sgd")
    assert eta[0] < 0.1  # large early norms: small early steps
    assert eta[0] < eta[10] < eta[20]  # the schedule rises at the start
    assert int(np.argmax(eta)) > 0


def test_median_filter_removes_a_single_spike():
    norms = [1.0] * 100
    norms[50] = 1e6  # width 2*(10//2)+1 = 11 ignores one outlier
    np.testing.assert_allclose(refine(norms, "sgd"), refine([1.0] * 100, "sgd"), atol=1e-12)


def test_refined_schedule_matches_refine_and_is_zero_past_the_end():
    norms = list(np.linspace(3.0, 1.0, 50))
    eta, f = refine(norms, "adam"), refined_schedule(norms, "adam")
    assert [f(s) for s in range(50)] == [float(v) for v in eta]
    assert f(50) == 0.0 and f(1000) == 0.0


# --- registry ------------------------------------------------------------------------------------


def test_every_registered_schedule_builds_with_its_defaults():
    for name, defaults in SCHEDULE_HPARAMS.items():
        hp = dict(defaults)
        if name == "refined":
            hp.update(grad_norms=[1.0] * T, refine_kind="adam")
        f = build_schedule(name, T, hp)
        assert 0.0 <= f(0) <= 1.0 and f(T - 1) >= 0.0
    assert set(SCHEDULES) == set(SCHEDULE_HPARAMS)
    assert build_schedule("wsd", T, {"cooldown": "linear", "decay_fraction": 0.5, "warmup_fraction": 0.0})(
        75
    ) == pytest.approx(0.5)


def test_schedule_hparams_do_not_collide_with_optimizer_hparams():
    optimizer_keys = {k for n in optim.available() for k in optim.entry(n).hyperparameters()}
    for name, defaults in SCHEDULE_HPARAMS.items():
        assert not set(defaults) & optimizer_keys, name


# The named schedules' formulas, written out here (budget 40, warm-up 10 % = 4 steps): the k-th
# update (0-based) must train at lr * f(k). Each differs from `constant` and from the others.
NAMED_T, NAMED_W = 40, 4


def _warm(step: int) -> float:
    return (step + 1) / NAMED_W


def _decayed(step: int) -> float:
    return (step - NAMED_W) / (NAMED_T - NAMED_W)  # progress over the post-warm-up budget


def _uba_formula(step: int, phi: float) -> float:
    c = 1 + math.cos(math.pi * _decayed(step))
    return 2 * c / (2 * phi + (2 - phi) * c)


NAMED = {
    "adamw+constant": ({}, lambda s: 1.0),
    "adamw+cosine": ({}, lambda s: _warm(s) if s < NAMED_W else 0.5 * (1 + math.cos(math.pi * _decayed(s)))),
    "adamw": ({}, lambda s: _warm(s) if s < NAMED_W else 0.5 * (1 + math.cos(math.pi * _decayed(s)))),  # default
    "adamw+linear": ({}, lambda s: _warm(s) if s < NAMED_W else 1 - _decayed(s)),
    # cool-down over the last int(0.25 * 40) = 10 steps, 1 - sqrt(progress)
    "adamw+wsd": (
        {"decay_fraction": 0.25},
        lambda s: _warm(s) if s < NAMED_W else 1.0 if s < 30 else 1 - math.sqrt((s - 30) / 10),
    ),
    "adamw+uba": ({"phi": 0.5}, lambda s: _warm(s) if s < NAMED_W else _uba_formula(s, 0.5)),
    # constant gradient norms refine to linear decay from the first step, 0 at the last
    "sgd+refined": (
        {"grad_norms": tuple([1.0] * NAMED_T), "refine_kind": "sgd"},
        lambda s: (NAMED_T - 1 - s) / (NAMED_T - 1),
    ),
}


@pytest.mark.parametrize("name", sorted(NAMED))
def test_algorithms_train_at_the_named_schedules_formula(name):
    from trainlab.algorithms.base import TrainingAlgorithm
    from trainlab.algorithms.registry import make_algorithm

    overrides, formula = NAMED[name]
    if not name.endswith("refined"):
        overrides = {**overrides, "warmup_fraction": 0.1}
    spec = make_algorithm(name, overrides, untuned=True)
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    algo = TrainingAlgorithm(spec, model, total_steps=NAMED_T)
    batch = (torch.randn(8, 2), torch.randn(8, 1))
    lrs = []
    for _ in range(NAMED_T):
        lrs.append(algo.optimizer.param_groups[0]["lr"])
        algo.update(model, batch, lambda m, b: torch.nn.functional.mse_loss(m(b[0]), b[1]))
    lr = spec.hparams["lr"]
    for step in (0, 1, 3, 4, 10, 20, 29, 30, 33, 38, 39):
        assert lrs[step] == pytest.approx(lr * formula(step), rel=1e-12, abs=1e-15), (name, step)


def test_refined_without_norms_says_how_to_get_them():
    with pytest.raises(ValueError, match="trainlab refine"):
        build_schedule("refined", T, dict(SCHEDULE_HPARAMS["refined"]))
    with pytest.raises(ValueError, match="refine_kind"):
        build_schedule("refined", T, {"grad_norms": [1.0] * T, "refine_kind": None})
    with pytest.raises(ValueError, match="total_steps=100"):
        build_schedule("refined", T, {"grad_norms": [1.0] * 50, "refine_kind": "adam"})


def test_every_optimizer_has_a_norm_kind_and_a_batch_rule():
    assert set(NORM_KIND) == set(optim.available()) == set(SCALING_RULE)
    assert NORM_KIND["sgd"] == "l2" and NORM_KIND["adamw"] == "l1"
    assert kind_for("sgd") == "sgd" and kind_for("lion") == "adam"


# --- batch-size scaling (Granziol et al., JMLR 2022) ---------------------------------------------


def test_scale_lr_rules():
    assert scale_lr(0.1, 128, 256, "linear") == pytest.approx(0.2)
    assert scale_lr(1e-3, 128, 256, "sqrt") == pytest.approx(1e-3 * math.sqrt(2))
    assert scale_lr(1e-3, 256, 64, "sqrt") == pytest.approx(5e-4)
    assert default_rule("sgd") == "linear" and default_rule("adamw") == "sqrt"


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: cosine_decay(0), "total_steps"),
        (lambda: linear_decay(-5), "total_steps"),
        (lambda: wsd(0), "total_steps"),
        (lambda: uba(0), "total_steps"),
        (lambda: linear_decay(10, 11), "warmup_steps"),
        (lambda: wsd(10, 11), "warmup_steps"),
        (lambda: uba(10, 11), "warmup_steps"),
        (lambda: wsd(10, 0, 1.5), "decay_fraction"),
        (lambda: wsd(10, 0, -0.1), "decay_fraction"),
        (lambda: wsd(10, 5, 0.8), "overlap"),
        (lambda: wsd(10, 0, 0.2, "cubic"), "cooldown.*linear, 1-sqrt, cosine"),
        (lambda: uba(10, 0, 0.0), "phi"),
        (lambda: piecewise_constant([5], [1.0]), "boundar"),
        (lambda: piecewise_constant([5, 3], [1.0, 0.5, 0.1]), "increasing"),
        (lambda: piecewise_constant([5], [1.0, float("nan")]), "finite"),
        (lambda: join([constant()], [3]), "boundar"),
        (lambda: scale(constant(), -1.0), "factor"),
        (lambda: refine([]), "at least 2"),
        (lambda: refine([1.0]), "at least 2"),
        (lambda: refine([1.0, float("nan"), 2.0]), "finite and positive; step 1"),
        (lambda: refine([1.0, float("inf")]), "finite and positive"),
        (lambda: refine([1.0, 0.0, 2.0]), "finite and positive"),
        (lambda: refine([1.0, -2.0]), "finite and positive"),
        (lambda: refine([[1.0, 2.0]]), "flat"),
        (lambda: refine(["a", "b"]), "flat"),
        (lambda: refine([1.0, 2.0], kind="lamb"), "kind.*adam, sgd"),
        (lambda: refine([1.0, 2.0], tau=2.0), "tau"),
        (lambda: refine([1.0, 2.0], total_steps=3), "total_steps=3"),
        (lambda: scale_lr(0.1, 128, 256, "cubic"), "rule.*linear, sqrt"),
        (lambda: scale_lr(0.1, 0, 256), "base_batch"),
        (lambda: scale_lr(0.1, 128, 2.5), "batch"),
        (lambda: scale_lr(-0.1, 128, 256), "lr"),
        (lambda: default_rule("mystery"), "mystery"),
        (lambda: kind_for("mystery"), "mystery"),
        (lambda: build_schedule("nope", 10, {}), "unknown schedule"),
    ],
)
def test_bad_input_raises_value_error_naming_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_race_batch_scaling_carries_each_lr_from_the_default_batch(tmp_path):
    """TinyRegression trains at batch 32 by default; here at 128 (4x)."""
    from support_workloads import TinyRegression

    from trainlab.algorithms import make_algorithm
    from trainlab.benchmark.race import RacePlan, run_race
    from trainlab.store import ResultsStore

    cpu = torch.device("cpu")
    big = TinyRegression(batch_size=128)
    base = {name: make_algorithm(name).hparams["lr"] for name in ("sgd", "adamw")}
    auto = RacePlan([big], ["sgd", "adamw"], [0], cpu, batch_scaling="auto")
    assert auto.spec("sgd", big).hparams["lr"] == pytest.approx(4 * base["sgd"])  # linear
    assert auto.spec("adamw", big).hparams["lr"] == pytest.approx(2 * base["adamw"])  # square root
    forced = RacePlan([big], ["adamw"], [0], cpu, batch_scaling="linear")
    assert forced.spec("adamw", big).hparams["lr"] == pytest.approx(4 * base["adamw"])
    by_hand = RacePlan([big], ["sgd"], [0], cpu, batch_scaling="auto", overrides={"sgd": {"lr": 0.01}})
    assert by_hand.spec("sgd", big).hparams["lr"] == 0.01  # the user's lr at their batch size
    same = RacePlan([TinyRegression()], ["sgd"], [0], cpu, batch_scaling="auto")
    assert same.spec("sgd", TinyRegression()).hparams["lr"] == base["sgd"]  # default batch: nothing to carry
    store = ResultsStore(f"sqlite:///{tmp_path / 'r.db'}")
    race_id, _ = run_race(RacePlan([big], ["sgd"], [0], cpu, batch_scaling="auto"), store, progress=False)
    assert store.trials(race_id)[0]["hparams"]["lr"] == pytest.approx(4 * base["sgd"])
    assert store.race(race_id)["config"]["batch_scaling"] == "auto"


# ---- pinned by the mutation check (scripts/mutation-check) -------------------------------------


def test_refinement_weights_adam_by_l1_and_sgd_by_l2_inverse_norms():
    # tau = 0: no smoothing. Norms 1, 2, 4: adam w = 1, 1/2, 1/4 -> eta = (1 x 3/4, 1/2 x 1/4, 0)
    # = (1, 1/6, 0) after scaling; sgd w = 1, 1/4, 1/16 -> (1 x 5/16, 1/4 x 1/16, 0) = (1, 1/20, 0)
    assert refine([1.0, 2.0, 4.0], "adam", tau=0.0) == pytest.approx([1.0, 1 / 6, 0.0])
    assert refine([1.0, 2.0, 4.0], "sgd", tau=0.0) == pytest.approx([1.0, 1 / 20, 0.0])
    assert refine([1.0, 2.0, 4.0], tau=0.0) == pytest.approx([1.0, 1 / 6, 0.0])  # adam by default
    assert refined_schedule([1.0, 2.0, 4.0], tau=0.0)(1) == pytest.approx(1 / 6)
    assert refine([1.0, 2.0, 4.0], "adam", tau=1.0)[-1] == 0.0  # tau = 1 is allowed


def test_registered_schedules_default_to_their_listed_hyperparameters():
    # wsd: warm-up int(0.05 x 100) = 5, cool-down the last 20 steps, 1 - sqrt
    f = build_schedule("wsd", 100, {})
    assert [f(s) for s in (0, 4, 50, 80)] == pytest.approx([1 / 5, 1.0, 1.0, 1.0])
    assert f(90) == pytest.approx(1 - math.sqrt(0.5))
    # uba: phi 0.8 after the same warm-up
    c = 1 + math.cos(math.pi * 45 / 95)
    assert build_schedule("uba", 100, {})(50) == pytest.approx(2 * c / (1.6 + 1.2 * c))
    # refined: refine_tau 0.1 smooths one spike in 20 norms away (median of 3), tau 0 keeps it
    spike = [1.0] * 20
    spike[5] = 9.0
    smoothed = build_schedule("refined", 20, {"grad_norms": spike, "refine_kind": "sgd"})
    assert [smoothed(s) for s in range(20)] == pytest.approx([(19 - s) / 19 for s in range(20)])
    raw = build_schedule("refined", 20, {"grad_norms": spike, "refine_kind": "sgd", "refine_tau": 0.0})
    assert raw(5) < 0.05 < smoothed(5)


def test_decays_stay_at_zero_past_the_budget_and_validation_boundaries():
    assert wsd(100, 10, 0.2)(100) == 0.0 and wsd(100, 10, 0.2)(130) == 0.0
    assert uba(100, 10)(100) == pytest.approx(0.0) and uba(100, 10)(150) == pytest.approx(0.0)
    assert wsd(100, 0, 1.0, "linear")(50) == pytest.approx(0.5)  # decay_fraction 1: all cool-down
    assert wsd(100, 20, 0.8, "linear")(20) == 1.0  # the cool-down may start where warm-up ends
    for call, message in (
        (lambda: wsd(100, 0, 1.5), "decay_fraction must be a number in"),
        (lambda: uba(100, 0, "0.8"), "phi must be a finite positive number"),
        (lambda: refine([1.0, 2.0], tau="0.1"), "tau .* must be in"),
        (lambda: refined_schedule([1.0, 2.0])(-1), "step must be non-negative, got -1"),
    ):
        with pytest.raises(ValueError, match=message):
            call()


def test_schedule_bounds_and_messages_read_exactly():
    assert cosine_decay(1)(0) == 1.0  # a one-step budget is allowed
    assert cosine_decay(100, 10)(150) == 0.0 and linear_decay(100)(150) == 0.0  # past the budget
    for call, message in (
        (lambda: cosine_decay(0), r"^total_steps must be a positive integer, got 0$"),
        (lambda: linear_decay(2.5), r"^total_steps must be a positive integer, got 2.5$"),
        (
            lambda: build_schedule("cosine", 100, {"warmup_fraction": 1.0}),
            r"^warmup_fraction must be in \[0, 1\), got 1.0$",
        ),
        (
            lambda: build_schedule("refined", 10, {}),
            r"^refined needs gradient norms from a first run: use `trainlab refine` \(or pass the hyperparameter "
            r"grad_norms=\[\.\.\.\], one norm per step\)$",
        ),
        (
            lambda: build_schedule("refined", 2, {"grad_norms": [1.0, 1.0]}),
            r"^refined needs refine_kind, one of adam, sgd ",
        ),
        (lambda: build_schedule("nosuch", 10, {}), r"available: constant, cosine, linear, refined, uba, wsd$"),
        (lambda: refine([[1.0, 2.0], [3.0]]), r"^grad_norms must be a flat sequence of numbers$"),
    ):
        with pytest.raises(ValueError, match=message):
            call()
