"""Optimizer step time against the memory-bandwidth bound (a script, not a test).

An elementwise optimizer step does O(1) flops per byte: it is bound by memory traffic. This script
measures, in one run and on one device:

1. the copy bandwidth: median time of `torch._foreach_copy_(dst, src)` over the whole parameter set
   (reads 4 B + writes 4 B per fp32 entry), bandwidth = 8 * N / time;
2. for each optimizer, the median (and minimum) `step()` time over --steps steps after a warm-up;
3. the ideal bytes one step must move per parameter entry (below), the bandwidth-bound time
   bytes * N / bandwidth, and the ratios of the median time to that bound and to
   torch.optim.AdamW(fused=True).

Bytes per fp32 parameter entry (4 B per tensor read or written; gradients are only read):

    adamw, nadamw : p r+w, g r, exp_avg r+w, exp_avg_sq r+w          = 7 x 4 = 28 B
    lion, signum  : p r+w, g r, momentum r+w                          = 5 x 4 = 20 B
    diffgrad      : p r+w, g r, exp_avg r+w, exp_avg_sq r+w, prev r+w = 9 x 4 = 36 B
    signsgd       : p r+w, g r                                        = 3 x 4 = 12 B
    sfadamw       : p(=y) r+w, g r, z r+w, exp_avg_sq r+w             = 7 x 4 = 28 B

These are lower bounds: a foreach implementation makes several passes and allocates temporaries,
a fused kernel makes one. On a CPU the 20-100 MB working set can sit partly in cache, and a loaded
machine adds noise: read the numbers as rough.

Rows "NAME (fused)" are trainlab's `fused=True` path (torch.compile/inductor, one pass per tensor).
Their first step compiles; it is one of the untimed warm-up steps (at least one), and the compile
time (wall time of the steps that compiled, from `trainlab.optim.fused.stats()`) gets its own
column, since a timed race pays it once. Inductor caches compiled graphs on disk, so a second run
of this script compiles faster than the first. A recompile during the timed steps is reported.

    python benchmarks/optimizer_step.py --params 5e6 --steps 50 --device auto [--threads 1]
    python benchmarks/optimizer_step.py --params 2e5 --steps 3 --warmup 1   # smoke test
    python benchmarks/optimizer_step.py --only nadamw,lion                  # a subset of rows
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from trainlab.optim import create
from trainlab.optim.fused import stats as fused_stats

TENSORS_MOVED = {
    "adamw": 7,
    "nadamw": 7,
    "lion": 5,
    "diffgrad": 9,
    "signsgd": 3,
    "signum": 5,
    "sfadamw": 7,
}  # registry name -> tensors read or written per entry (above)

OURS = {  # trainlab's elementwise optimizers: each gets a foreach row and a fused row
    "nadamw": dict(lr=1e-3, weight_decay=0.01),
    "lion": dict(lr=1e-4, weight_decay=0.1),
    "diffgrad": dict(lr=1e-3, weight_decay=0.01),
    "signsgd": dict(lr=1e-4, weight_decay=0.01),
    "signum": dict(lr=1e-4, weight_decay=0.01),
    "sfadamw": dict(lr=2.5e-3, weight_decay=0.01),
}

OPTIMIZERS = {  # label -> (registry name, hparams)
    "adamw (foreach)": ("adamw", dict(lr=1e-3, weight_decay=0.01, foreach=True)),
    "adamw (fused)": ("adamw", dict(lr=1e-3, weight_decay=0.01, fused=True)),
    **{
        label: (name, {**h, **switch})
        for name, h in OURS.items()
        for label, switch in ((name, {}), (f"{name} (fused)", dict(fused=True)))
    },
}


def shapes_for(n_params: int) -> list[tuple[int, ...]]:
    """Transformer-block-like Linear shapes (out x in) plus biases, about `n_params` entries."""
    d = max(64, round((n_params / 12) ** 0.5 / 64) * 64)
    return [(4 * d, d), (4 * d,), (d, 4 * d), (d,), (d, d), (d,), (d, d), (d,), (d, d), (d,), (d, d), (d,)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warm_up(fn, device: torch.device, calls: int) -> None:
    for _ in range(calls):
        fn()
    sync(device)


def step_times(fn, device: torch.device, steps: int, warmup: int) -> tuple[float, float]:
    """(median, minimum) seconds of `fn()` over `steps` calls after `warmup` untimed ones."""
    warm_up(fn, device, warmup)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def compiled(fn):
    """`fn` plus (compilations, compile seconds) of trainlab's fused path while it ran."""
    before = fused_stats()
    result = fn()
    after = fused_stats()
    return result, (after["compiles"] - before["compiles"], after["compile_seconds"] - before["compile_seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=float, default=5e6, help="about how many fp32 parameters")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per optimizer")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, ...")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for torch (0: torch's default); 1 is steadier on a busy machine",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated registry names to run (adamw fused is always kept, as the reference); default: all",
    )
    args = parser.parse_args()
    only = {name for name in args.only.split(",") if name}
    if only - set(TENSORS_MOVED):
        parser.error(
            f"--only: unknown {', '.join(sorted(only - set(TENSORS_MOVED)))}; known: {', '.join(TENSORS_MOVED)}"
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)

    gen = torch.Generator().manual_seed(0)
    shapes = shapes_for(int(args.params))
    base = [torch.randn(s, generator=gen).to(device) for s in shapes]
    grads = [torch.randn(s, generator=gen).to(device) * 1e-2 for s in shapes]
    n = sum(t.numel() for t in base)

    dst = [torch.empty_like(t) for t in base]
    copy_time, copy_min = step_times(lambda: torch._foreach_copy_(dst, base), device, args.steps, args.warmup)
    bandwidth = 2 * 4 * n / copy_time  # bytes per second, reads + writes
    del dst

    rows = []  # (label, registry name, median, min, compile seconds or None, note)
    for label, (name, hparams) in OPTIMIZERS.items():
        if only and name not in only and label != "adamw (fused)":
            continue
        params = [t.clone().requires_grad_() for t in base]
        for p, g in zip(params, grads):
            p.grad = g
        ours_fused = name in OURS and hparams.get("fused", False)
        try:
            opt = create(name, params, **hparams)
            # warm-up (the fused path compiles on its first step), then the timed steps
            _, (_, compile_s) = compiled(
                lambda: warm_up(opt.step, device, max(args.warmup, 1) if ours_fused else args.warmup)
            )
            (seconds, fastest), (recompiles, _) = compiled(lambda: step_times(opt.step, device, args.steps, 0))
        except (RuntimeError, ValueError) as exc:  # e.g. no fused AdamW on this device
            rows.append((label, name, None, None, None, str(exc).splitlines()[0]))
            continue
        note = f"{recompiles} recompiles while timed" if recompiles else ""
        rows.append((label, name, seconds, fastest, compile_s if ours_fused else None, note))
        del opt, params

    fused = next((s for label, _, s, _, _, _ in rows if label == "adamw (fused)" and s is not None), None)
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"device: {device} ({name}{threads}); torch {torch.__version__}; {n / 1e6:.2f}M fp32 params "
        f"in {len(shapes)} tensors; median of {args.steps} steps after {args.warmup} warm-up"
    )
    print(
        f"copy bandwidth (torch._foreach_copy_, read+write): {bandwidth / 1e9:.1f} GB/s "
        f"(median {copy_time * 1e3:.3f} ms, min {copy_min * 1e3:.3f} ms, for {8 * n / 1e6:.1f} MB)\n"
    )
    print(
        "| optimizer | bytes/param | median step (ms) | min step (ms) | bound (ms) | step / bound "
        "| step / adamw fused | compile (s) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, name, seconds, fastest, compile_s, note in rows:
        moved = 4 * TENSORS_MOVED[name]
        bound = moved * n / bandwidth
        if seconds is None:
            print(f"| {label} | {moved} | n/a ({note}) | | {bound * 1e3:.3f} | | | |")
            continue
        vs_fused = f"{seconds / fused:.2f}" if fused else "n/a"
        compile_col = f"{compile_s:.1f}" if compile_s is not None else ""
        print(
            f"| {label} | {moved} | {seconds * 1e3:.3f} | {fastest * 1e3:.3f} | {bound * 1e3:.3f} | "
            f"{seconds / bound:.2f} | {vs_fused} | {compile_col}{' (' + note + ')' if note else ''} |"
        )


if __name__ == "__main__":
    main()
