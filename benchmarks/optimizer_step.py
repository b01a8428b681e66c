"""Optimizer step time: trainlab against the memory-bandwidth bound and the peer implementations.

A script, not a test. One run times, on one device and model, each implementation in a fresh
process (so no implementation inherits another's caches, compiled kernels or allocator state):

- the copy bandwidth (a 256 MB fp32 copy, 8 B per entry: past the caches, as the optimizers'
  40-100 MB working sets are), and for each elementwise method the bandwidth bound: the bytes one
  step must move (below) / bandwidth;
- the cost floor of orthogonalisation: five fp32 quintic Newton-Schulz iterations (Muon's
  polynomial, no state) on every matrix the matrix recipe treats; the cost floor of projection:
  GaLore's two rank-128 matmuls per such matrix (project, add back), no state; and GaLore/Fira's projector
  refresh on those matrices, by full SVD and by the warm subspace iteration (their default);
- for each method, trainlab's default step (for the elementwise methods the fused kernel, for
  AdamW torch's fused kernel), its foreach chain (`fused=False`) where it has one, and with
  `--peers` every installed peer implementation of the same method (the `bench` extra:
  pytorch_optimizer, torch-optimi, schedulefree, lion-pytorch, heavyball; torch's own AdamW and
  Muon), each at its own defaults but the learning rate: median of --steps steps after --warmup
  untimed ones. The default's first step is timed in two processes sharing an empty kernel cache
  (`TRAINLAB_KERNEL_CACHE`): cold (the first process on a machine builds the kernel) and warm (a
  later process loads it); the median comes from the warm process.

The model is the MLP of issue 16: 784-1024, LayerNorm, 4 x (1024x1024 + bias), 1024-10, about
5.0 M fp32 parameters; gradients are fixed random tensors. Matrix methods get the recipes' layout
(trainlab: `recipe_groups`; peers: the same hidden matrices in their groups' terms); GaLore and
Fira rank 128, FRUGAL density 0.25, SOAP and GaLore refresh at their defaults (so the median
step is a step between refreshes).

Bytes per fp32 parameter entry (4 B per tensor read or written; gradients are only read):

    adamw, nadamw, sfadamw : p r+w, g r, two moments r+w           = 7 x 4 = 28 B
    lion, signum           : p r+w, g r, momentum r+w              = 5 x 4 = 20 B
    diffgrad               : p r+w, g r, two moments, prev g r+w   = 9 x 4 = 36 B
    signsgd                : p r+w, g r                            = 3 x 4 = 12 B
    ademamix               : p r+w, g r, three moments r+w         = 9 x 4 = 36 B

    python benchmarks/optimizer_step.py --peers                 # the README table (minutes)
    python benchmarks/optimizer_step.py --only lion,swan --peers
    python benchmarks/optimizer_step.py --width 128 --steps 3 --warmup 1   # smoke test
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

TENSORS_MOVED = {  # method -> tensors read or written per entry (above)
    **{"adamw": 7, "nadamw": 7, "sfadamw": 7, "lion": 5, "signum": 5},
    **{"diffgrad": 9, "signsgd": 3, "ademamix": 9, "adopt": 7},
}
OURS: dict[str, dict[str, Any]] = {  # method -> trainlab hparams (lr only, as for the peers)
    "adamw": dict(lr=1e-3),
    "nadamw": dict(lr=1e-3),
    "lion": dict(lr=1e-4),
    "diffgrad": dict(lr=1e-3),
    "signsgd": dict(lr=1e-4),
    "signum": dict(lr=1e-4),
    "sfadamw": dict(lr=2.5e-3),
    "ademamix": dict(lr=1e-3),
    "galore": dict(lr=1e-3, rank=128),
    "fira": dict(lr=1e-3, rank=128),
    "frugal": dict(lr=1e-3, density=0.25),
    "swan": dict(lr=1e-3),
    "muon": dict(lr=0.02),
    "soap": dict(lr=3e-3),
    "adopt": dict(lr=1e-3),
    "prodigy": dict(lr=1.0),
    "adam_mini": dict(lr=1e-3),
    "apollo": dict(lr=1e-3, rank=128),
    "normuon": dict(lr=0.02),
    "kron": dict(lr=3e-4),
}
FOREACH = {"adamw", "nadamw", "lion", "diffgrad", "signsgd", "signum", "sfadamw", "ademamix", "adopt"}  # fused=False


# ---- the model and its fixed gradients ------------------------------------------------------------


def make_model(width: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Linear(784, width), nn.LayerNorm(width)]
    for _ in range(4):
        layers += [nn.ReLU(), nn.Linear(width, width)]
    layers += [nn.ReLU(), nn.Linear(width, 10)]
    torch.manual_seed(0)
    return nn.Sequential(*layers)


def attach_grads(model: nn.Module, device: torch.device) -> None:
    gen = torch.Generator().manual_seed(1)
    for p in model.parameters():
        p.grad = (torch.randn(p.shape, generator=gen) * 1e-2).to(device)


def hidden_and_rest(model: nn.Module) -> tuple[list, list]:
    from trainlab.optim.selection import split_hidden

    return split_hidden(model)


# ---- implementations: (method, implementation) -> a zero-argument step function ----------------


def ours(method: str, foreach: bool) -> Callable[[nn.Module], Callable[[], Any]]:
    def build(model):
        from trainlab.optim import create
        from trainlab.optim.registry import entry
        from trainlab.optim.selection import recipe_groups

        hparams = {**OURS[method], **({"fused": False} if foreach else {})}
        return create(method, recipe_groups(entry(method).factory, model), **hparams).step

    return build


def peer_groups(model, hidden_key: dict[str, Any], rest_key: dict[str, Any]) -> list[dict[str, Any]]:
    hidden, rest = hidden_and_rest(model)
    return [{"params": hidden, **hidden_key}, {"params": rest, **rest_key}]


def _po(name: str, groups: Callable | None = None, **kw):
    def build(model):
        import pytorch_optimizer

        params = groups(model) if groups else model.parameters()
        return pytorch_optimizer.load_optimizer(name)(params, **kw).step

    return build


def _torch_muon(model):
    hidden, rest = hidden_and_rest(model)
    muon = torch.optim.Muon(hidden, lr=0.02)
    adamw = torch.optim.AdamW(rest, lr=3e-4)

    def step():
        muon.step()
        adamw.step()

    return step


def _eager_heavyball(name: str, **kw):
    """heavyball with its torch.compile switched off (its helpers' compile fails on CPU builds)."""

    def build(model):
        import heavyball
        import heavyball.utils as helpers

        helpers.compile_mode = None
        helpers.compile_mode_recommended_to_none = None
        return getattr(heavyball, name)(model.parameters(), **kw).step

    return build


def _adam_mini(model):
    import adam_mini

    return adam_mini.Adam_mini(model.named_parameters(), lr=1e-3, verbose=False).step


def _class(module: str, name: str, train: bool = False, **kw):
    def build(model):
        cls = getattr(importlib.import_module(module), name)
        opt = cls(model.parameters(), **kw)
        if train:
            opt.train()
        return opt.step

    return build


LOW_RANK = dict(rank=128, update_proj_gap=200, scale=0.25, projection_type="std")
PEERS: dict[str, dict[str, tuple[str, Callable]]] = {  # method -> label -> (package, builder)
    "adamw": {
        "torch fused": ("torch", _class("torch.optim", "AdamW", lr=1e-3, fused=True)),
        "torch foreach": ("torch", _class("torch.optim", "AdamW", lr=1e-3, foreach=True)),
        "optimi": ("optimi", _class("optimi", "AdamW", lr=1e-3)),
        "heavyball": ("heavyball", _class("heavyball", "AdamW", lr=1e-3)),
    },
    "lion": {
        "optimi": ("optimi", _class("optimi", "Lion", lr=1e-4)),
        "lion-pytorch": ("lion_pytorch", _class("lion_pytorch", "Lion", lr=1e-4)),
        "pytorch_optimizer": ("pytorch_optimizer", _po("lion", lr=1e-4)),
    },
    "diffgrad": {"pytorch_optimizer": ("pytorch_optimizer", _po("diffgrad", lr=1e-3))},
    "signsgd": {"pytorch_optimizer": ("pytorch_optimizer", _po("signsgd", lr=1e-4, momentum=0.0))},
    "signum": {"pytorch_optimizer": ("pytorch_optimizer", _po("signsgd", lr=1e-4, momentum=0.9))},
    "sfadamw": {
        "schedulefree": ("schedulefree", _class("schedulefree", "AdamWScheduleFree", train=True, lr=2.5e-3)),
        "pytorch_optimizer": ("pytorch_optimizer", _po("schedulefreeadamw", lr=2.5e-3)),
        "heavyball": ("heavyball", _class("heavyball", "SFAdamW", lr=2.5e-3)),
    },
    "ademamix": {
        "pytorch_optimizer": ("pytorch_optimizer", _po("ademamix", lr=1e-3)),
        "heavyball": ("heavyball", _class("heavyball", "AdEMAMix", lr=1e-3)),
    },
    "galore": {
        "pytorch_optimizer": ("pytorch_optimizer", _po("galore", lambda m: peer_groups(m, LOW_RANK, {}), lr=1e-3))
    },
    "fira": {"pytorch_optimizer": ("pytorch_optimizer", _po("fira", lambda m: peer_groups(m, LOW_RANK, {}), lr=1e-3))},
    "muon": {
        "torch.optim.Muon": ("torch", _torch_muon),
        "heavyball (eager)": ("heavyball", _eager_heavyball("Muon", lr=0.02)),
        "pytorch_optimizer": (
            "pytorch_optimizer",
            _po("muon", lambda m: peer_groups(m, {"use_muon": True}, {"use_muon": False}), lr=0.02),
        ),
    },
    "soap": {
        "heavyball": ("heavyball", _class("heavyball", "SOAP", lr=3e-3)),
        "heavyball (eager)": ("heavyball", _eager_heavyball("SOAP", lr=3e-3)),
        "pytorch_optimizer": ("pytorch_optimizer", _po("soap", lr=3e-3)),
    },
    "adopt": {"pytorch_optimizer": ("pytorch_optimizer", _po("adopt", lr=1e-3))},
    "prodigy": {"prodigyopt": ("prodigyopt", _class("prodigyopt", "Prodigy", lr=1.0))},
    "adam_mini": {"adam-mini": ("adam_mini", _adam_mini)},
    "kron": {"heavyball PSGDKron (eager)": ("heavyball", _eager_heavyball("PSGDKron", lr=3e-4))},
}


def ns_floor(model):
    """Five fp32 quintic Newton-Schulz iterations (Muon's) on every hidden matrix: no state."""
    from trainlab.optim.orthogonalize import MUON_COEFFICIENTS, orthogonalize

    hidden, _ = hidden_and_rest(model)

    def step():
        for p in hidden:
            orthogonalize(p.grad, (MUON_COEFFICIENTS,) * 5, torch.float32)

    return step


def projection_floor(model):
    """GaLore's two matmuls per hidden matrix at rank 128, no state and no Adam: project the
    gradient onto a fixed orthonormal basis and add a rank-128 update back into the weight."""
    hidden, _ = hidden_and_rest(model)
    gen = torch.Generator().manual_seed(3)
    work = []
    for p in hidden:
        g = p.grad.reshape(p.shape[0], -1)
        m, n = g.shape
        basis = torch.linalg.qr(torch.randn(n if m >= n else m, 128, generator=gen)).Q.to(g.device)
        work.append((p.data.view(m, n), g, basis.T.contiguous() if m >= n else basis.contiguous(), m >= n))

    def step():
        for w, g, b, right in work:
            if right:  # b is r x n: R = G b^T, W += R b
                w.addmm_(g @ b.T, b, alpha=-1e-12)
            else:  # b is m x r: R = b^T G, W += b R
                w.addmm_(b, b.T @ g, alpha=-1e-12)

    return step


COPY_ENTRIES = 1 << 26  # 256 MB per side: far past any last-level cache, so the copy streams DRAM


def refresh(kind: str):
    """One projector refresh of GaLore/Fira on every hidden matrix (rank 128): the full SVD, or the
    warm subspace iteration from the basis of a gradient the fixed one drifted from."""

    def build(model):
        from trainlab.optim.projector import Projector

        hidden, _ = hidden_and_rest(model)
        gen = torch.Generator().manual_seed(2)
        grads = [p.grad.reshape(p.shape[0], -1) for p in hidden]
        old = [Projector.svd(g + 0.5 * torch.randn(g.shape, generator=gen).to(g.device) * g.std(), 128) for g in grads]
        if kind == "svd":
            return lambda: [Projector.svd(g, 128) for g in grads]
        return lambda: [o.refit(g, 128, "warm") for o, g in zip(old, grads)]

    return build


def copy_all(model):
    """A copy through memory (a buffer too big to sit in cache: the optimizers' working sets, 40-100
    MB here, do not fit either), timed as one step: 8 B per entry per copy."""
    device = next(model.parameters()).device
    src = torch.ones(COPY_ENTRIES, device=device)
    dst = torch.empty_like(src)
    return lambda: dst.copy_(src)


def builder(spec: str) -> Callable:
    method, impl = spec.split(":", 1)
    if method == "copy":
        return copy_all
    if method == "floor":
        return ns_floor
    if method == "projfloor":
        return projection_floor
    if method == "refresh":
        return refresh(impl)
    if impl in ("default", "foreach"):
        return ours(method, impl == "foreach")
    return PEERS[method][impl][1]


# ---- one implementation, in this process -------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_one(spec: str, args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = make_model(args.width).to(device)
    attach_grads(model, device)
    pairs = [(p, p.grad) for p in model.parameters()]
    step = builder(spec)(model)

    def timed() -> float:
        for p, g in pairs:  # some peers set p.grad = None after stepping: every step sees the gradients
            p.grad = g
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        return time.perf_counter() - start

    # --budget caps an implementation's time (bf16 Newton-Schulz on a CPU without bf16 matmuls
    # takes minutes per step): warm-up stops early, and timing after 3 steps, once it is spent
    start = time.perf_counter()
    first = timed()
    if first > args.budget / 2:  # one step is all the budget affords: report it (compilation included)
        return {"median": first, "min": first, "first": first, "steps": 1}
    for _ in range(max(args.warmup - 1, 0)):
        if time.perf_counter() - start > args.budget / 4:
            break
        timed()
    times: list[float] = []
    while len(times) < args.steps and (len(times) < 3 or time.perf_counter() - start < args.budget):
        times.append(timed())
    return {"median": statistics.median(times), "min": min(times), "first": first, "steps": len(times)}


def in_fresh_process(spec: str, args: argparse.Namespace, env: dict[str, str] | None = None) -> dict[str, Any]:
    flags = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]
    flags += ["--budget", str(args.budget)]
    flags += ["--device", args.device, "--width", str(args.width)]
    done = subprocess.run(
        [sys.executable, __file__, "--worker", spec, *flags],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return {"error": lines[-1] if lines else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- the table ---------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}" if seconds < 10 else f"{seconds * 1e3:,.0f}"


def timing(result: dict[str, Any], steps: int) -> str:
    """The median in ms, noting how many steps when --budget cut it short."""
    if "error" in result:
        return f"error: {result['error'][:80]}"
    short = "" if result["steps"] >= steps else f" ({result['steps']} steps)"
    short = " (first step only)" if result["steps"] == 1 else short
    return ms(result["median"]) + short


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per implementation (default: 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first, the first included (default: 3)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per process (default: 2; 0: torch's)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, ... (default: auto)")
    parser.add_argument("--width", type=int, default=1024, help="hidden width (default: 1024, the 5.0 M model)")
    parser.add_argument(
        "--budget", type=float, default=90, help="seconds after which an implementation stops timing (default: 90)"
    )
    parser.add_argument("--peers", action="store_true", help="also time the installed peer implementations")
    parser.add_argument("--only", default="", help="comma-separated methods (default: all)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.worker:
        print(json.dumps(time_one(args.worker, args)))
        return
    only = [m for m in args.only.split(",") if m]
    unknown = sorted(set(only) - set(OURS))
    if unknown:
        parser.error(f"--only: unknown {', '.join(unknown)}; known: {', '.join(OURS)}")
    methods = only or list(OURS)

    n = sum(p.numel() for p in make_model(args.width).parameters())
    copy = in_fresh_process("copy:", args)
    bandwidth = 8 * COPY_ENTRIES / copy["median"]
    print(
        f"device {args.device}, {args.threads} threads, torch {torch.__version__}; MLP width {args.width}, "
        f"{n / 1e6:.2f} M fp32 params; median of {args.steps} steps after {args.warmup} untimed, each "
        f"implementation in a fresh process; copy bandwidth {bandwidth / 1e9:.1f} GB/s",
        flush=True,
    )
    floor = None
    if {"swan", "muon"} & set(methods):
        floor = in_fresh_process("floor:", args)
        print(f"orthogonalisation floor (5 fp32 quintic NS steps per hidden matrix): {ms(floor['median'])} ms\n")
    projection = None
    if {"galore", "fira"} & set(methods):
        projection = in_fresh_process("projfloor:", args)
        print(f"projection floor (GaLore's two rank-128 matmuls per hidden matrix): {ms(projection['median'])} ms")
    if {"galore", "fira"} & set(methods):
        svd, warm = in_fresh_process("refresh:svd", args), in_fresh_process("refresh:warm", args)
        if "error" not in svd and "error" not in warm:
            print(
                f"GaLore/Fira projector refresh, all hidden matrices at rank 128: SVD {ms(svd['median'])} ms, "
                f"warm subspace iteration {ms(warm['median'])} ms ({svd['median'] / warm['median']:.1f}x)\n"
            )
    print(
        "| method | trainlab default (ms) | x bound | first step cold / warm (s) | trainlab foreach (ms) "
        "| fastest peer (ms) | default / fastest peer | other peers (ms) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | --- | ---: | --- |")
    for method in methods:
        with tempfile.TemporaryDirectory() as cache:
            env = {"TRAINLAB_KERNEL_CACHE": cache, "TRAINLAB_FUSED": "1"}
            cold = in_fresh_process(f"{method}:default", args, env)
            default = in_fresh_process(f"{method}:default", args, env)
        cells = [method, timing(default, args.steps)]
        moved = TENSORS_MOVED.get(method)
        bound = 4 * moved * n / bandwidth if moved else None
        if bound and "error" not in default:
            cells.append(f"{default['median'] / bound:.2f}")
        elif method in ("swan", "muon") and floor and "error" not in default:
            cells.append(f"{default['median'] / floor['median']:.2f} x floor")
        elif method in ("galore", "fira") and projection and "error" not in default:
            cells.append(f"{default['median'] / projection['median']:.2f} x floor")
        else:
            cells.append("")
        cells.append(
            f"{cold['first']:.1f} / {default['first']:.2f}" if "error" not in cold and "error" not in default else ""
        )
        if method in FOREACH:
            chain = in_fresh_process(f"{method}:foreach", args)
            cells.append(timing(chain, args.steps))
        else:
            cells.append("")
        peers = {}
        if args.peers:
            for label, (package, _) in PEERS.get(method, {}).items():
                if importlib.util.find_spec(package) is None:
                    continue
                peers[label] = in_fresh_process(f"{method}:{label}", args)
        timed = {k: v for k, v in peers.items() if "error" not in v}
        if timed:
            best = min(timed, key=lambda k: timed[k]["median"])
            ratio = default["median"] / timed[best]["median"] if "error" not in default else float("nan")
            cells += [f"{best} {timing(timed[best], args.steps)}", f"{ratio:.2f}"]
        else:
            cells += ["--" if args.peers else "", ""]
        others = [f"{k} {timing(v, args.steps)}" for k, v in peers.items()]
        others = [o for o in others if not (timed and o.startswith(f"{best} "))]
        cells.append("; ".join(others))
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
