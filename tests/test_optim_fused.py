"""The fused kernels (AOTInductor, built once per machine) against the foreach path of every
elementwise optimizer.

Building a kernel dominates the cost, so each optimizer's fused run happens once, in a
module-scoped fixture, on small tensors; the tests read its results, and later fused optimizers
reuse its kernel (one per rule and dtype, whatever the shapes), which builds nothing.
"""

from __future__ import annotations

import io

import pytest
import torch

from conftest import compiler_unavailable
from trainlab import optim
from trainlab.optim import create, fused
from trainlab.optim.base import ElementwiseOptimizer


@pytest.fixture(scope="module", autouse=True)
def one_thread_module():
    """Single-threaded for the whole module (see conftest's `one_thread`), set before the
    module-scoped runs build: a CPU kernel's thread count is part of it, so a change would build
    another."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SHAPES = [(48, 80), (80, 48), (80,)]  # group 0: the two matrices; group 1: the bias
STEPS = 3  # fused vs foreach, lr changed after every step
MORE = 2  # steps after a state_dict hand-over
LR_DECAY = 0.5  # lr multiplier between steps: a baked-in lr would be off by 2x at once

OVERRIDES = {  # registry name -> hparams exercising the rule's every term (weight decay on everywhere)
    "nadamw": dict(lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1),
    "lion": dict(lr=1e-3, betas=(0.9, 0.99), weight_decay=0.5),
    "diffgrad": dict(lr=1e-3, weight_decay=0.05),
    "signsgd": dict(lr=1e-3, weight_decay=0.5),
    "signum": dict(lr=1e-3, momentum=0.9, weight_decay=0.5),
    "sfadamw": dict(lr=2e-3, weight_decay=0.1, warmup_steps=2, r=0.5),
    "ademamix": dict(lr=1e-3, alpha=5.0, alpha_warmup=3, beta3_warmup=3, weight_decay=0.1),
}


def _defaults(name):
    """A newly registered elementwise optimizer's race defaults (decay on): covered with no edit here."""
    entry = optim.entry(name)
    known = entry.hyperparameters()
    h = {k: v for k, v in entry.race_defaults.items() if k in known}
    return {**h, "weight_decay": 0.1} if "weight_decay" in known else h


# every registered elementwise optimizer with a rule, from the registry: none can escape comparison
ELEMENTWISE = sorted(
    n
    for n in optim.available()
    if isinstance(optim.entry(n).factory, type) and issubclass(optim.entry(n).factory, ElementwiseOptimizer)
)
CASES = {name: OVERRIDES.get(name) or _defaults(name) for name in ELEMENTWISE}
# the modifiers (trainlab.optim.modifiers) on every base that takes them, all at once: one kernel
# with both per-tensor reductions (MARS's norm, the cautious mask's mean); adamw's is trainlab's rule
ALL_MODIFIERS = dict(cautious=True, mars=True, cautious_wd=True)
CASES.update(
    {
        f"{name}[cautious,mars,cwd]": {**CASES.get(name, _defaults(name)), **ALL_MODIFIERS}
        for name in optim.available()
        if name in CASES or name == "adamw"
        if "cautious" in optim.entry(name).hyperparameters()
    }
)

# int8 state (trainlab.optim.lowprec): the same kernels run on the dequantised float32 state
CASES.update({f"{name}[int8]": {**CASES[name], "state_dtype": "int8"} for name in ("lion", "nadamw")})


def base_name(case):
    return case.partition("[")[0]


def make_params(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen).requires_grad_() for s in SHAPES]


GRADS = [
    [torch.randn(s, generator=torch.Generator().manual_seed(100 * t + i)) for i, s in enumerate(SHAPES)]
    for t in range(STEPS + MORE)
]


def build(name, params, **override):
    h = {**CASES[name], **override}
    groups = [{"params": params[:2]}, {"params": params[2:], "lr": 2.5 * h["lr"]}]
    return create(base_name(name), groups, **h)


def step(opt, params, grads):
    for p, g in zip(params, grads):
        p.grad = g.clone()
    before = fused.stats()["builds"]
    opt.step()
    return fused.stats()["builds"] - before


def max_diff(xs, ys):
    return max(((x.detach() - y.detach()).abs().max().item() for x, y in zip(xs, ys)), default=0.0)


def state_tensors(opt, params):
    return [v for p in params for _, v in sorted(opt.state[p].items()) if torch.is_tensor(v)]


@pytest.fixture(scope="module")
def kernels(one_thread_module):
    """A fused kernel builds on this machine (the C++ compiler works), else the policy of
    `conftest.compiler_unavailable`: fail in CI, skip with the reason elsewhere."""
    p = torch.ones(3, requires_grad=True)
    p.grad = torch.ones(3)
    try:
        create("nadamw", [p], lr=1e-3, fused=True).step()  # the kernel the runs below use first
    except fused.KernelUnavailable as exc:
        compiler_unavailable("the fused kernels' C++ build", exc)


@pytest.fixture(scope="module", params=list(CASES))
def run(request, kernels):
    """STEPS steps of a fused and a foreach optimizer on the same gradients, lr cut after each."""
    name = request.param
    a, b = make_params(), make_params()
    foreach, fuse = build(name, a, fused=False), build(name, b, fused=True)
    calls = fused.stats()["calls"]
    compiles = []
    for grads in GRADS[:STEPS]:
        step(foreach, a, grads)
        compiles.append(step(fuse, b, grads))
        for opt in (foreach, fuse):
            for group in opt.param_groups:
                group["lr"] *= LR_DECAY
    calls = fused.stats()["calls"] - calls
    return dict(name=name, foreach=foreach, fused=fuse, a=a, b=b, compiles=compiles, calls=calls)


def test_fused_matches_foreach(run):
    assert max_diff(run["a"], make_params()) > 1e-4  # the steps did move the parameters
    assert max_diff(run["a"], run["b"]) <= 1e-6, run["name"]
    assert max_diff(state_tensors(run["foreach"], run["a"]), state_tensors(run["fused"], run["b"])) <= 1e-6
    if run["name"] == "sfadamw":  # the averaged point x agrees too
        run["foreach"].eval()
        run["fused"].eval()
        assert max_diff(run["a"], run["b"]) <= 1e-6
        run["foreach"].train()
        run["fused"].train()


def test_one_kernel_serves_every_shape_group_and_lr(run):
    # Three shapes in two groups need one kernel, built on the first step unless an earlier run
    # (another test session, the same cache) built it. Later steps, with a halved lr (and for
    # sfadamw a new averaging weight and warmup factor), build nothing; their agreement with
    # foreach (test above) shows the new values were used, not stale constants. Every tensor went
    # through the kernel.
    assert run["compiles"][0] <= 1
    assert run["compiles"][1:] == [0] * (STEPS - 1), run["compiles"]
    assert run["calls"] == STEPS * len(SHAPES)


def test_a_later_process_loads_the_kernel_without_building(kernels):
    """A built kernel is a file: a new process (same cache, threads and dtype) loads it, builds
    nothing, and its default (fused=None) path is the kernel when TRAINLAB_FUSED allows."""
    import json
    import os
    import subprocess
    import sys

    name = "lion"
    params = make_params()
    step(build(name, params, fused=True), params, GRADS[0])  # built here, or by the run above

    script = f"""
import json, torch
torch.set_num_threads(1)
from trainlab import optim
from trainlab.optim import create, fused
from trainlab.optim.base import ElementwiseOptimizer
params = [torch.randn(s).requires_grad_() for s in {SHAPES!r}]
for p in params:
    p.grad = torch.randn_like(p)
opt = create({name!r}, params, **{CASES[name]!r})
opt.step()
print(json.dumps(fused.stats()))
"""
    env = {**os.environ, "TRAINLAB_FUSED": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    assert stats["builds"] == 0 and stats["loads"] == 1 and stats["calls"] == len(SHAPES), stats


def roundtrip(state_dict):
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def resume(name, source_params, state_dict, **switches):
    params = [p.detach().clone().requires_grad_() for p in source_params]
    opt = build(name, params, lr=123.0, **switches)  # the loaded lr must win
    opt.load_state_dict(roundtrip(state_dict))
    return opt, params


def test_state_dict_moves_between_fused_and_foreach(run):
    name, from_fused, from_foreach = run["name"], run["fused"], run["foreach"]
    for p, q in zip(run["a"], run["b"]):  # the same state layout: keys, shapes, dtypes, steps
        s, t = from_foreach.state[p], from_fused.state[q]
        assert s.keys() == t.keys() and s["step"] == t["step"] == STEPS
        for key in s:
            if torch.is_tensor(s[key]):
                assert (s[key].shape, s[key].dtype) == (t[key].shape, t[key].dtype), key
    to_foreach, x = resume(name, run["b"], from_fused.state_dict(), fused=False)  # fused -> foreach
    to_fused, y = resume(name, run["b"], from_fused.state_dict(), fused=True)  # fused -> fused
    back, z = resume(name, run["a"], from_foreach.state_dict(), fused=True)  # foreach -> fused
    assert [g["fused"] for g in to_foreach.param_groups] == [False, False]  # the loader's switch
    assert all(g["fused"] for g in to_fused.param_groups + back.param_groups)
    assert to_foreach.param_groups[0]["lr"] == CASES[name]["lr"] * LR_DECAY**STEPS
    for grads in GRADS[STEPS:]:
        step(to_foreach, x, grads)
        assert step(to_fused, y, grads) == 0 and step(back, z, grads) == 0  # kernels reused
    assert max_diff(x, y) <= 1e-6 and max_diff(z, y) <= 1e-6
    assert max_diff(x, run["b"]) > 1e-5  # the continuation moved the parameters


def test_a_failed_build_warns_once_and_runs_foreach_by_default(tmp_path):
    """A machine whose C++ compiler fails: the default path says so once and runs foreach (the same
    update), and an explicit fused=True raises the one-line error naming the fix."""
    import os
    import subprocess
    import sys

    script = """
import warnings, torch
from trainlab.optim import create
from trainlab.optim.fused import KernelUnavailable
params, ref = [torch.ones(8, 4, requires_grad=True)], [torch.ones(8, 4, requires_grad=True)]
for p in params + ref:
    p.grad = torch.full_like(p, 0.5)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    default = create("lion", params, lr=0.1)
    default.step(); default.step()
foreach = create("lion", ref, lr=0.1, fused=False)
foreach.step(); foreach.step()
assert torch.equal(params[0], ref[0]), "default and foreach differ"
messages = [str(w.message) for w in caught if "fused" in str(w.message)]
assert len(messages) == 1 and "TRAINLAB_FUSED=0" in messages[0], messages
try:
    p = torch.ones(3, requires_grad=True); p.grad = torch.ones(3)
    create("lion", [p], fused=True).step()
except KernelUnavailable as exc:
    print("raised:", exc)
"""
    env = {**os.environ, "TRAINLAB_FUSED": "1", "CXX": "/bin/false", "TRAINLAB_KERNEL_CACHE": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "raised: could not build the fused lion_rule kernel" in done.stdout and "fused=False" in done.stdout
    assert not list(tmp_path.glob("*.pt2"))  # nothing half-built left behind as a kernel
