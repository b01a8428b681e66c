"""Adam-mini against a plain float64 re-derivation of its block rule and against adam-mini 1.1.1.

The re-derivation loops over blocks one at a time (a row, a head, a whole vector), from the paper's
Algorithm 1; the gradients are rank 2 on non-square matrices, so rows differ in scale by design
and a per-row second moment differs from a per-tensor or per-entry one.
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch

from trainlab.optim import AdamMini, create, state_bytes

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPES = {"W": (12, 7), "H": (8, 6), "V": (5, 9), "b": (12,), "n": (9,)}
STEPS = 6
LR, BETAS, EPS = 0.02, (0.9, 0.999), 1e-8


def _problem(dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    params = {k: (0.3 * torch.randn(s, generator=gen)).to(dtype).requires_grad_() for k, s in SHAPES.items()}
    grads = []
    for t in range(12):
        step = {}
        for k, s in SHAPES.items():
            if len(s) == 2:  # rank 2, with rows scaled 1 ... 4 apart
                low = torch.randn(s[0], 2, generator=gen) @ torch.randn(2, s[1], generator=gen)
                step[k] = (low * torch.linspace(1, 4, s[0]).unsqueeze(1)).to(dtype)
            else:
                step[k] = torch.randn(s, generator=gen).to(dtype)
        grads.append(step)
    return params, grads


def _groups(params):
    return [
        {"params": [params["W"], params["b"]], "weight_decay": 0.1},  # rows; bias per entry
        {"params": [params["H"]], "head_numel": 12, "weight_decay": 0.1},  # 4 heads of 2 rows
        {"params": [params["V"], params["n"]], "vector_block": "tensor", "weight_decay": 0.0, "lr": LR / 2},
    ]


def _run(opt, params, grads, steps, start=0):
    for t in range(start, start + steps):
        for k, p in params.items():
            p.grad = grads[t][k].clone()
        opt.step()


def _plain(start, grads, steps):
    """Per block B: v_B = EMA of mean(g_B^2); x <- x (1 - lr wd) - lr m_hat / (sqrt(v_B_hat) + eps)."""
    blocks = {  # lists of index sets (flat) per parameter
        "W": [list(range(r * 7, r * 7 + 7)) for r in range(12)],
        "H": [list(range(h * 12, h * 12 + 12)) for h in range(4)],
        "V": [list(range(r * 9, r * 9 + 9)) for r in range(5)],
        "b": [[i] for i in range(12)],
        "n": [list(range(9))],
    }
    lr = {"W": LR, "H": LR, "b": LR, "V": LR / 2, "n": LR / 2}
    wd = {"W": 0.1, "H": 0.1, "b": 0.1, "V": 0.0, "n": 0.0}
    b1, b2 = BETAS
    x = {k: p.detach().clone().flatten() for k, p in start.items()}
    m = {k: torch.zeros_like(v) for k, v in x.items()}
    v = {k: [0.0] * len(blocks[k]) for k in x}
    for t in range(1, steps + 1):
        for k in x:
            g = grads[t - 1][k].flatten()
            x[k] = x[k] * (1 - lr[k] * wd[k])
            m[k] = b1 * m[k] + (1 - b1) * g
            for j, block in enumerate(blocks[k]):
                v[k][j] = b2 * v[k][j] + (1 - b2) * sum(float(g[i]) ** 2 for i in block) / len(block)
                denom = math.sqrt(v[k][j] / (1 - b2**t)) + EPS
                for i in block:
                    x[k][i] = x[k][i] - lr[k] * m[k][i] / (1 - b1**t) / denom
    return {k: x[k].reshape(start[k].shape) for k in x}


def test_matches_a_float64_rederivation_block_by_block():
    params, grads = _problem()
    start = {k: p.detach().clone() for k, p in params.items()}
    opt = create("adam_mini", _groups(params), lr=LR)
    _run(opt, params, grads, STEPS)
    expected = _plain(start, grads, STEPS)
    for k, p in params.items():
        assert (p.detach() - start[k]).abs().max() > 1e-2, k
        torch.testing.assert_close(p.detach(), expected[k], rtol=0, atol=1e-10)
    assert opt.state[params["W"]]["exp_avg_sq"].shape == (12, 1)  # one number per row
    assert opt.state[params["H"]]["exp_avg_sq"].shape == (4, 1)  # per head
    assert opt.state[params["n"]]["exp_avg_sq"].shape == ()  # per tensor
    assert opt.state[params["b"]]["exp_avg_sq"].shape == (12,)  # per entry


def test_matches_adam_mini_side_by_side():
    """The package names its blocks: "bias" per entry, "q_proj" per head (dim 12, 2 heads: 72 entries),
    "mlp" per row, anything else ("norm") per tensor; it never decays "bias" or "norm" names."""
    package = pytest.importorskip("adam_mini", reason="the reference extra (pip install -e '.[reference]')")
    torch.manual_seed(0)
    q = torch.nn.Linear(12, 12)
    mlp = torch.nn.Linear(12, 20)
    norm = torch.nn.LayerNorm(20)
    head = torch.nn.Linear(20, 6)
    model = torch.nn.ModuleList([q, mlp, norm, head])
    twin = copy.deepcopy(model)
    names = ["q_proj.weight", "q_proj.bias", "mlp.weight", "mlp.bias", "norm.weight", "norm.bias"]
    names += ["output.weight", "output.bias"]

    def forward(m, x):
        return m[3](m[2](torch.tanh(m[1](m[0](x)))))

    decayed, heads = [mlp.weight, head.weight], [q.weight]
    ours = AdamMini(
        [
            {"params": decayed, "weight_decay": 0.1},
            {"params": heads, "head_numel": 72, "weight_decay": 0.1},
            {"params": [q.bias, mlp.bias, norm.bias, head.bias]},
            {"params": [norm.weight], "vector_block": "tensor"},
        ],
        lr=1e-2,
    )
    theirs = package.Adam_mini(
        zip(names, twin.parameters()), lr=1e-2, weight_decay=0.1, dim=12, n_heads=2, verbose=False
    )
    x, y = torch.randn(32, 12), torch.randn(32, 6)
    start = [p.detach().clone() for p in model.parameters()]
    for _ in range(10):
        for m, opt in ((model, ours), (twin, theirs)):
            opt.zero_grad()
            torch.nn.functional.mse_loss(forward(m, x), y).backward()
            opt.step()
    for a, b, s in zip(model.parameters(), twin.parameters(), start):
        assert (a - s).abs().max() > 1e-2
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_state_dict_round_trip_resumes_bit_exactly():
    params, grads = _problem(torch.float32)
    opt = create("adam_mini", _groups(params), lr=LR)
    _run(opt, params, grads, 3)
    buffer = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "params": {k: p.detach() for k, p in params.items()}}, buffer)
    _run(opt, params, grads, 3, start=3)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    again = {k: v.clone().requires_grad_() for k, v in saved["params"].items()}
    resumed = AdamMini(_groups(again), lr=LR)
    resumed.load_state_dict(saved["opt"])
    _run(resumed, again, grads, 3, start=3)
    for k in params:
        assert torch.equal(params[k].detach(), again[k].detach()), k


def test_state_bytes_follow_the_documented_formula():
    params, grads = _problem(torch.float32)
    opt = create("adam_mini", _groups(params), lr=LR)
    _run(opt, params, grads, 1)
    # m everywhere; v: 12 rows of W, 4 heads of H, 5 rows of V, 12 entries of b, 1 for n
    numel = sum(p.numel() for p in params.values())
    assert state_bytes(opt) == 4 * numel + 4 * (12 + 4 + 5 + 12 + 1)
    plain = create("adam_mini", [params["W"], params["V"], params["b"]])
    _run(plain, {k: params[k] for k in "WVb"}, grads, 1)
    assert state_bytes(plain) == 4 * (84 + 45) + 4 * (12 + 5) + 8 * 12  # vs AdamW's 8 * (84 + 45 + 12)


def test_rejects_a_head_size_that_does_not_divide_the_matrix():
    params, grads = _problem(torch.float32)
    opt = create("adam_mini", [{"params": [params["W"]], "head_numel": 5}])
    params["W"].grad = grads[0]["W"]
    with pytest.raises(ValueError, match="head_numel 5"):
        opt.step()
    with pytest.raises(ValueError, match="vector_block"):
        create("adam_mini", [params["b"]], vector_block="row")


def _fsdp2_rank(rank: int, tmp: str) -> None:
    """Two FSDP2 ranks, each on half the batch: per-head blocks on shards, whole-vector blocks."""
    import os

    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=2)
    model = _mlp()
    mesh = init_device_mesh("cpu", (2,))
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    _train_mlp(model, rank)
    whole = [p.full_tensor().detach() for p in model.parameters()]
    if rank == 0:
        torch.save(whole, f"{tmp}/out.pt")
    torch.distributed.destroy_process_group()
    os._exit(0)  # gloo's teardown can abort under load (as tests/test_distributed.py)


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(48, 80), torch.nn.ReLU(), torch.nn.Linear(80, 10))


def _train_mlp(model, rank=None):
    w1, b1, w2, b2 = model.parameters()
    groups = [{"params": [w1], "head_numel": 8 * 48}, {"params": [w2, b2]}, {"params": [b1], "vector_block": "tensor"}]
    opt = AdamMini(groups, lr=1e-2, weight_decay=0.1)
    gen = torch.Generator().manual_seed(1)
    for _ in range(4):
        x, y = torch.randn(32, 48, generator=gen), torch.randint(0, 10, (32,), generator=gen)
        if rank is not None:
            x, y = x.chunk(2)[rank], y.chunk(2)[rank]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert all(s["step"] == 4 for s in opt.state.values())


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")
def test_fsdp2_shards_end_where_one_process_ends(tmp_path):
    import torch.multiprocessing as mp

    mp.start_processes(_fsdp2_rank, args=(str(tmp_path),), nprocs=2, start_method="spawn")
    model = _mlp()
    start = [p.detach().clone() for p in model.parameters()]
    _train_mlp(model)
    for a, b, s in zip(torch.load(tmp_path / "out.pt"), model.parameters(), start):
        assert (b - s).abs().max() > 1e-2
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=1e-6)


def test_a_channels_last_conv_kernel_gets_one_number_per_output_channel():
    gen = torch.Generator().manual_seed(0)
    kernel = torch.randn(6, 3, 3, 3, generator=gen)
    grads = [torch.randn(6, 3, 3, 3, generator=gen) for _ in range(3)]
    plain = kernel.clone().requires_grad_()
    strided = kernel.clone().to(memory_format=torch.channels_last).requires_grad_()
    flat = kernel.reshape(6, 27).clone().requires_grad_()  # the same rows as a matrix
    for p in (plain, strided, flat):
        opt = create("adam_mini", [p], lr=0.1)
        for g in grads:
            p.grad = g.reshape(p.shape).contiguous(
                memory_format=torch.channels_last if p is strided else torch.contiguous_format
            )
            opt.step()
        assert opt.state[p]["exp_avg_sq"].shape == (6, 1)
    torch.testing.assert_close(plain.detach(), strided.detach(), rtol=0, atol=1e-7)
    torch.testing.assert_close(plain.detach().reshape(6, 27), flat.detach(), rtol=0, atol=1e-7)
