"""The leaderboard's ten-second plot: optimizer state (relative to AdamW) against steps to target,
one panel per workload; lower-left is better, the dashed line is the Pareto front."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from trainlab.reports.plots import _colors, pareto_front  # noqa: E402


def pareto_plot(
    costs: Mapping[str, Mapping[str, float]],
    memory: Mapping[tuple[str, str], Mapping[str, Any]],
    workloads: list[str],
    path: Path,
    baseline: str = "adamw",
) -> Path:
    """x: optimizer-state bytes / the baseline's (linear, so a stateless method sits at 0); y: steps
    to target. Methods that missed are named in the panel instead of drawn; the baseline is ringed."""
    algorithms = sorted(costs)
    colors = _colors(algorithms)
    fig, axes = plt.subplots(1, len(workloads), figsize=(4.3 * len(workloads), 4.0), dpi=120, squeeze=False)
    for ax, w in zip(axes[0], workloads):
        base = memory.get((baseline, w), {}).get("state")
        points: list[tuple[str, float, float]] = []
        missed: list[tuple[str, float, float]] = []
        for a in algorithms:
            state = memory.get((a, w), {}).get("state")
            if state is None or not base:
                continue
            y = costs[a].get(w, math.inf)
            (points if math.isfinite(y) else missed).append((a, state / base, y))
        for a, x, y in points:
            ax.scatter([x], [y], s=46, zorder=3, color=colors[a])
            if a == baseline:
                ax.scatter([x], [y], s=170, zorder=2, facecolors="none", edgecolors="black", linewidths=0.8)
            ax.annotate(a, (x, y), xytext=(5, 3), textcoords="offset points", fontsize=7)
        front = pareto_front([(x, y) for _, x, y in points])
        if front:
            right = max([x for _, x, _ in points] + [1.0]) * 1.05
            ax.step(
                [x for x, _ in front] + [right],
                [y for _, y in front] + [front[-1][1]],
                where="post",
                color="black",
                lw=1,
                ls="--",
                alpha=0.7,
                zorder=1,
            )
        if missed:
            ax.text(
                0.02,
                0.98,
                "missed the target:\n" + ", ".join(a for a, _, _ in missed),
                transform=ax.transAxes,
                fontsize=7,
                va="top",
                color="dimgrey",
                wrap=True,
            )
        ax.set_xlim(left=-0.05)
        ax.set_xlabel(f"optimizer state / {baseline}'s")
        ax.set_ylabel("steps to target (held out, median)")
        ax.set_title(w, fontsize=9)
        ax.grid(alpha=0.3)
        ax.margins(x=0.15, y=0.2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
