"""Low-precision optimizer state (`state_dtype`, `trainlab.optim.lowprec`): bytes, drift, step time.

A script, not a test. For each elementwise optimizer, on an MLP (784-W, LayerNorm, 4 x W-W, W-10;
W=1024 is `benchmarks/optimizer_step.py`'s 5.0 M model) regressing a fixed random linear teacher
on random batches: `optim.state_bytes` with `state_dtype` float32, bfloat16 and int8 (ratio to
float32), the training loss (mean of the last 10 steps) and the median step time of each on the
foreach path. (Parameter drift from the float32 run is not shown: on this model a rounding-level
difference, torch's AdamW against trainlab's float32 rule, already drifts 1 % in 20 steps.)

    python benchmarks/lowprec_state.py --width 512 --steps 100   # the docs' table (docs/optimizers.md)
    python benchmarks/lowprec_state.py --width 128 --steps 20 --only adamw
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from trainlab.optim import create, state_bytes

METHODS = {"adamw": 1e-3, "nadamw": 1e-3, "adopt": 1e-3, "ademamix": 1e-3, "diffgrad": 1e-3, "lion": 1e-4}
METHODS.update({"signum": 1e-4, "sfadamw": 2.5e-3})


def make_model(width: int) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(784, width), nn.LayerNorm(width)]
    for _ in range(4):
        layers += [nn.ReLU(), nn.Linear(width, width)]
    return nn.Sequential(*layers, nn.ReLU(), nn.Linear(width, 10))


def run(method: str, state_dtype: str, args: argparse.Namespace) -> tuple[int, float, float]:
    """(state bytes, mean loss of the last 10 steps, median step seconds)."""
    model = make_model(args.width)
    opt = create(method, model.parameters(), lr=METHODS[method], state_dtype=state_dtype, fused=False)
    gen = torch.Generator().manual_seed(1)
    teacher = torch.randn(784, 10, generator=gen) / 28
    times, losses = [], []
    for _ in range(args.steps):
        x = torch.randn(128, 784, generator=gen)
        loss = (model(x) - x @ teacher).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        begin = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - begin)
        losses.append(loss.item())
    return state_bytes(opt), statistics.fmean(losses[-10:]), statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=1024, help="hidden width (default: 1024, 5.0 M params)")
    parser.add_argument("--steps", type=int, default=20, help="steps per run (default: 20)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    parser.add_argument("--only", default="", help="comma-separated methods (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    methods = [m for m in args.only.split(",") if m] or list(METHODS)
    n = sum(p.numel() for p in make_model(args.width).parameters())
    print(f"torch {torch.__version__}, {args.threads} thread(s); MLP width {args.width}, {n / 1e6:.2f} M fp32 params;")
    print(f"{args.steps} steps, foreach path; loss: mean of the last 10 steps\n")
    print(
        "| method | fp32 state (MB) | bf16 / fp32 bytes | int8 / fp32 bytes | loss fp32 / bf16 / int8 "
        "| step fp32 / bf16 / int8 (ms) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for method in methods:
        full, loss, seconds = run(method, "float32", args)
        cells = [method, f"{full / 1e6:.1f}"]
        losses, times = [f"{loss:.4f}"], [f"{seconds * 1e3:.1f}"]
        for dtype in ("bfloat16", "int8"):
            size, loss, seconds = run(method, dtype, args)
            cells.append(f"{size / full:.3f}")
            losses.append(f"{loss:.4f}")
            times.append(f"{seconds * 1e3:.1f}")
        print("| " + " | ".join([*cells, " / ".join(losses), " / ".join(times)]) + " |", flush=True)


if __name__ == "__main__":
    main()
