"""The leaderboard's ten-second plot: optimizer state against steps to target, one panel per workload."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from trainlab.reports.plots import _byte_ticks, _colors, pareto_front  # noqa: E402


def pareto_plot(costs: Mapping[str, Mapping[str, float]], memory: Mapping[tuple[str, str], Mapping[str, Any]],
                workloads: list[str], path: Path, baseline: str = "adamw") -> Path:
    """x: optimizer-state bytes; y: steps to target (misses drawn hollow on a line above); the
    dashed step line is the front; the baseline is ringed so the eye finds the reference."""
    from matplotlib.ticker import FuncFormatter

    algorithms = sorted(costs)
    colors = _colors(algorithms)
    fig, axes = plt.subplots(1, len(workloads), figsize=(4.2 * len(workloads), 3.9), dpi=120, squeeze=False)
    for ax, w in zip(axes[0], workloads):
        points = [(a, memory.get((a, w), {}).get("state"), costs[a].get(w, math.inf)) for a in algorithms]
        points = [(a, float(x), y) for a, x, y in points if x is not None]
        finite = [y for _, _, y in points if math.isfinite(y)]
        top = (max(finite) if finite else 1.0) * 1.15
        for a, x, y in points:
            hit = math.isfinite(y)
            yy = y if hit else top
            ax.scatter([max(x, 1.0)], [yy], s=46, zorder=3, facecolors=colors[a] if hit else "none",
                       edgecolors=colors[a], linewidths=1.5)
            if a == baseline:
                ax.scatter([max(x, 1.0)], [yy], s=170, zorder=2, facecolors="none", edgecolors="black",
                           linewidths=0.8)
            ax.annotate(a, (max(x, 1.0), yy), xytext=(4, 3), textcoords="offset points", fontsize=7)
        front = pareto_front([(max(x, 1.0), y) for _, x, y in points])
        if front:
            xs = [max(x, 1.0) for _, x, _ in points]
            ax.step([x for x, _ in front] + [max(xs)], [y for _, y in front] + [front[-1][1]],
                    where="post", color="black", lw=1, ls="--", alpha=0.7, zorder=1)
        if len(finite) < len(points):
            ax.axhline(top, color="grey", lw=0.6, ls=":")
            ax.text(0.01, top, "missed", transform=ax.get_yaxis_transform(), fontsize=7, va="bottom",
                    color="grey")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(_byte_ticks))
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlabel("optimizer state (log scale)")
        ax.set_ylabel("steps to target")
        ax.set_title(w, fontsize=9)
        ax.grid(alpha=0.3)
        ax.margins(x=0.2, y=0.12)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
