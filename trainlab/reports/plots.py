"""PNG plots of a race (matplotlib, headless Agg backend)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from trainlab.reports.summary import SummaryRow  # noqa: E402


def _colors(algorithms: list[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    return {name: cmap(i % 10) for i, name in enumerate(sorted(algorithms))}


def metric_vs_time(workload: str, curves: list[dict[str, Any]], target: float, metric: str,
                   higher_is_better: bool, path: Path) -> Path:
    """Validation metric against training time; one line per trial, one colour per algorithm."""
    colors = _colors(sorted({c["algorithm"] for c in curves}))
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    labelled = set()
    for curve in curves:
        name = curve["algorithm"]
        ax.plot(curve["seconds"], curve["metric"], color=colors[name], alpha=0.85, lw=1.6,
                marker="o", ms=2.5, label=None if name in labelled else name)
        labelled.add(name)
        if curve.get("time_to_target") is not None and math.isfinite(curve["time_to_target"]):
            ax.axvline(curve["time_to_target"], color=colors[name], ls=":", lw=0.8, alpha=0.6)
    ax.axhline(target, color="black", ls="--", lw=1, label=f"target {target:g}")
    ax.set_xlabel("training time (s, evaluation excluded)")
    ax.set_ylabel(f"validation {metric} ({'higher' if higher_is_better else 'lower'} is better)")
    ax.set_title(workload)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    values = [v for c in curves for v in c["metric"] if v is not None and math.isfinite(v)]
    if values and not higher_is_better:
        # Early LM evaluations are far above the target; keep the interesting range readable.
        lo = min(values + [target])
        ax.set_ylim(lo - 0.05 * abs(lo), min(max(values), target + 3 * (target - lo) + 0.5))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def time_to_target_bars(rows: list[SummaryRow], path: Path) -> Path:
    """Median time-to-target per workload and algorithm; misses drawn as hatched stubs."""
    workloads = sorted({r.workload for r in rows})
    algorithms = sorted({r.algorithm for r in rows})
    colors = _colors(algorithms)
    width = 0.8 / max(1, len(algorithms))
    fig, axes = plt.subplots(1, len(workloads), figsize=(3.4 * len(workloads) + 0.6, 3.6), dpi=120,
                             squeeze=False)
    for ax, workload in zip(axes[0], workloads):
        found = {r.algorithm: r for r in rows if r.workload == workload}
        finite = [r.time_to_target for r in found.values() if math.isfinite(r.time_to_target)]
        stub = (max(finite) if finite else 1.0) * 1.08
        for i, name in enumerate(algorithms):
            row = found.get(name)
            if row is None:
                continue
            if math.isfinite(row.time_to_target):
                ax.bar(i, row.time_to_target, color=colors[name], label=name)
                ax.text(i, row.time_to_target, f"{row.time_to_target:.3g} s\n{row.steps_to_target:.0f} steps",
                        ha="center", va="bottom", fontsize=7)
            else:
                ax.bar(i, stub, color="white", edgecolor=colors[name], hatch="//", label=name)
                ax.text(i, stub, "missed", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(algorithms)), algorithms, rotation=30, ha="right", fontsize=8)
        ax.set_title(workload, fontsize=9)
        ax.margins(y=0.18)  # room for the labels above the bars
        ax.set_ylabel("time-to-target (s)")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
