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

    python benchmarks/optimizer_step.py --params 5e6 --steps 50 --device auto [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from trainlab.optim import create

TENSORS_MOVED = {"adamw (foreach)": 7, "adamw (fused)": 7, "nadamw": 7, "lion": 5, "diffgrad": 9,
                 "signsgd": 3, "signum": 5, "sfadamw": 7}

OPTIMIZERS = {  # label -> (registry name, hparams)
    "adamw (foreach)": ("adamw", dict(lr=1e-3, weight_decay=0.01, foreach=True)),
    "adamw (fused)": ("adamw", dict(lr=1e-3, weight_decay=0.01, fused=True)),
    "nadamw": ("nadamw", dict(lr=1e-3, weight_decay=0.01)),
    "lion": ("lion", dict(lr=1e-4, weight_decay=0.1)),
    "diffgrad": ("diffgrad", dict(lr=1e-3, weight_decay=0.01)),
    "signsgd": ("signsgd", dict(lr=1e-4, weight_decay=0.01)),
    "signum": ("signum", dict(lr=1e-4, weight_decay=0.01)),
    "sfadamw": ("sfadamw", dict(lr=2.5e-3, weight_decay=0.01)),
}


def shapes_for(n_params: int) -> list[tuple[int, ...]]:
    """Transformer-block-like Linear shapes (out x in) plus biases, about `n_params` entries."""
    d = max(64, round((n_params / 12) ** 0.5 / 64) * 64)
    return [(4 * d, d), (4 * d,), (d, 4 * d), (d,), (d, d), (d,), (d, d), (d,), (d, d), (d,),
            (d, d), (d,)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_times(fn, device: torch.device, steps: int, warmup: int) -> tuple[float, float]:
    """(median, minimum) seconds of `fn()` over `steps` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=float, default=5e6, help="about how many fp32 parameters")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per optimizer")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, ...")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (0: torch's default); 1 is steadier on a busy machine")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                          if args.device == "auto" else args.device)

    gen = torch.Generator().manual_seed(0)
    shapes = shapes_for(int(args.params))
    base = [torch.randn(s, generator=gen).to(device) for s in shapes]
    grads = [torch.randn(s, generator=gen).to(device) * 1e-2 for s in shapes]
    n = sum(t.numel() for t in base)

    dst = [torch.empty_like(t) for t in base]
    copy_time, copy_min = step_times(lambda: torch._foreach_copy_(dst, base), device, args.steps, args.warmup)
    bandwidth = 2 * 4 * n / copy_time  # bytes per second, reads + writes
    del dst

    rows = []
    for label, (name, hparams) in OPTIMIZERS.items():
        params = [t.clone().requires_grad_() for t in base]
        for p, g in zip(params, grads):
            p.grad = g
        try:
            opt = create(name, params, **hparams)
            seconds, fastest = step_times(opt.step, device, args.steps, args.warmup)
        except (RuntimeError, ValueError) as exc:  # e.g. no fused AdamW on this device
            rows.append((label, None, None, str(exc).splitlines()[0]))
            continue
        rows.append((label, seconds, fastest, None))
        del opt, params

    fused = next((s for label, s, _, _ in rows if label == "adamw (fused)" and s is not None), None)
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {device} ({name}{threads}); torch {torch.__version__}; {n / 1e6:.2f}M fp32 params "
          f"in {len(shapes)} tensors; median of {args.steps} steps after {args.warmup} warm-up")
    print(f"copy bandwidth (torch._foreach_copy_, read+write): {bandwidth / 1e9:.1f} GB/s "
          f"(median {copy_time * 1e3:.3f} ms, min {copy_min * 1e3:.3f} ms, for {8 * n / 1e6:.1f} MB)\n")
    print("| optimizer | bytes/param | median step (ms) | min step (ms) | bound (ms) | step / bound "
          "| step / adamw fused |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, seconds, fastest, error in rows:
        moved = 4 * TENSORS_MOVED[label]
        bound = moved * n / bandwidth
        if seconds is None:
            print(f"| {label} | {moved} | n/a ({error}) | | {bound * 1e3:.3f} | | |")
            continue
        vs_fused = f"{seconds / fused:.2f}" if fused else "n/a"
        print(f"| {label} | {moved} | {seconds * 1e3:.3f} | {fastest * 1e3:.3f} | {bound * 1e3:.3f} | "
              f"{seconds / bound:.2f} | {vs_fused} |")


if __name__ == "__main__":
    main()
