"""The batch sweep's report: lr against batch size per algorithm, the fitted exponents beside the
paper's slopes, 2 / lambda_max beside the largest stable SGD lr, and steps to target at the best lr."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from trainlab.benchmark.batch_sweep import SweepPoint, fit_exponent  # noqa: E402

PAPER_SLOPES = {"linear": 1.0, "sqrt": 0.5}


def exponents(points: list[SweepPoint], which: str) -> dict[tuple[str, str], float | None]:
    """Per (workload, algorithm): the fitted slope of log lr (`which`: largest_stable or best) on
    log B, over the batch sizes where the lr was found (for the largest stable lr, not where it sat
    on the grid's top, which only bounds it); None with fewer than two."""
    out: dict[tuple[str, str], float | None] = {}
    for key in sorted({(p.workload, p.algorithm) for p in points}):
        mine = [p for p in points if (p.workload, p.algorithm) == key and not (which == "largest_stable" and p.edge)]
        found = [(p.batch_size, getattr(p, which)) for p in mine]
        found = [(b, lr) for b, lr in found if lr is not None]
        out[key] = fit_exponent(*zip(*found))[0] if len(found) >= 2 else None
    return out


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.inf


def write_report(points: list[SweepPoint], out_dir: str | Path, command: str | None = None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    largest, best = exponents(points, "largest_stable"), exponents(points, "best")
    lines = ["# Learning rate against batch size", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [
        "Protocol: `trainlab/benchmark/batch_sweep.py` (grid of lrs at factors of 2 per batch size, "
        "short runs for stability and the best lr, full runs to the target at the best lr). With a "
        "grid of factor 2 each lr is known to within a factor of 2, so a fitted slope over a 32x range "
        "of batch sizes is uncertain by about +-0.2: it can tell 1 from 1/2, not 0.5 from 0.6.",
        "",
        "## Fitted exponents (slope of log lr on log batch size)",
        "",
        "Largest stable lr: fitted where it lay inside the grid (a grid-top value is only a lower bound).",
        "",
        "| workload | algorithm | largest stable lr | best lr | the paper |",
        "|---|---|---:|---:|---:|",
    ]
    from trainlab.algorithms import make_algorithm
    from trainlab.algorithms.rules import default_rule

    for key in sorted(largest):
        optimizer = make_algorithm(key[1]).optimizer
        rule = default_rule(optimizer)
        paper = PAPER_SLOPES[rule] if optimizer in ("sgd", "adamw") else None  # the two it analysed
        fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
        lines.append(
            f"| {key[0]} | {key[1]} | {fmt(largest[key])} | {fmt(best[key])} | "
            + (f"{paper:g} ({rule})" if paper is not None else "not analysed")
            + " |"
        )
    lines += [
        "",
        "## Per batch size",
        "",
        "| workload | algorithm | batch | largest stable lr | best lr | steps to target (median) | "
        "seconds to target (median) | 2 / lambda_max |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in sorted(points, key=lambda p: (p.workload, p.algorithm, p.batch_size)):
        steps, secs = _median(p.steps_to_target), _median(p.seconds_to_target)
        lines.append(
            f"| {p.workload} | {p.algorithm} | {p.batch_size} | "
            + ("none" if p.largest_stable is None else f"{p.largest_stable:.3g}" + (" (grid top)" if p.edge else ""))
            + f" | {'none' if p.best is None else f'{p.best:.3g}'} | "
            + f"{'miss' if not math.isfinite(steps) else int(steps)} | "
            + f"{'miss' if not math.isfinite(secs) else f'{secs:.2f}'} | "
            + f"{'n/a' if not p.lambda_max else f'{2 / p.lambda_max:.3g}'} |"
        )
    for workload in sorted({p.workload for p in points}):
        path = out / f"lr_vs_batch_{workload}.png"
        _plot([p for p in points if p.workload == workload], workload, path)
        lines += ["", f"![lr against batch size, {workload}]({path.name})"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "sweep.json").write_text(json.dumps([_as_dict(p) for p in points], indent=1) + "\n")
    return out / "report.md"


def _as_dict(p: SweepPoint) -> dict[str, Any]:
    data = dict(vars(p))
    for key in ("steps_to_target", "seconds_to_target", "metrics"):
        data[key] = [v if math.isfinite(v) else None for v in data[key]]
    return data


def _plot(points: list[SweepPoint], workload: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    cmap = plt.get_cmap("tab10")
    names = sorted({p.algorithm for p in points})
    for i, name in enumerate(names):
        mine = sorted((p for p in points if p.algorithm == name), key=lambda p: p.batch_size)
        found = [(p.batch_size, p.largest_stable) for p in mine if p.largest_stable is not None]
        if found:
            b, lr = zip(*found)
            ax.plot(b, lr, "o-", color=cmap(i), label=f"{name}: largest stable")
            for slope, style in ((1.0, ":"), (0.5, "--")):
                ax.plot([b[0], b[-1]], [lr[0], lr[0] * (b[-1] / b[0]) ** slope], style, color=cmap(i), lw=0.8)
    sgd = sorted((p for p in points if p.lambda_max), key=lambda p: p.batch_size)
    if sgd:
        ax.plot(
            [p.batch_size for p in sgd],
            [2 / (p.lambda_max or math.nan) for p in sgd],
            "k^-",
            lw=0.8,
            ms=4,
            label="2 / lambda_max",
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("learning rate")
    ax.set_title(f"{workload}: largest stable lr (dotted: slope 1, dashed: slope 1/2)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
