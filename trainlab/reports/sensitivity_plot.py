"""Learning-rate sensitivity: every tuning trial of a workload as a point (lr against steps to the
target), one panel per algorithm, so a reader sees where each optimum lies and how sharp it is."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

STUDY_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")


def sensitivity_plot(trials: list[dict[str, Any]], workload: str, algorithms: list[str], path: Path) -> Path:
    """Reached trials at their steps; misses (x) and divergences (^) on a band above the panel's
    highest step count, so nothing is dropped. Colour: the study."""
    mine = [t for t in trials if t["workload"] == workload and t.get("lr")]
    cols = min(5, max(1, len(algorithms)))
    rows = math.ceil(len(algorithms) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.2 * rows), dpi=110, squeeze=False, sharey=True)
    reached = [t["steps"] for t in mine if math.isfinite(t["steps"])]
    top = 1.15 * max(reached) if reached else 1.0
    for ax, a in zip(axes.flat, algorithms):
        for t in (t for t in mine if t["algorithm"] == a):
            color = STUDY_COLORS[t["study"] % len(STUDY_COLORS)]
            if math.isfinite(t["steps"]):
                ax.scatter([t["lr"]], [t["steps"]], s=14, color=color, zorder=3)
            else:
                marker = "^" if t["status"] == "diverged" or t["rank"] == (2,) else "x"
                ax.scatter([t["lr"]], [top], s=16, marker=marker, color=color, zorder=3)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(a, fontsize=8)
        ax.tick_params(labelsize=6)
        ax.axhline(top, color="0.85", lw=0.6, zorder=1)
    for ax in list(axes.flat)[len(algorithms) :]:
        ax.axis("off")
    fig.suptitle(f"{workload}: steps to target against learning rate (x miss, ^ diverged)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
