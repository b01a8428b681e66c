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


def metric_vs_time(
    workload: str, curves: list[dict[str, Any]], target: float, metric: str, higher_is_better: bool, path: Path
) -> Path:
    """Validation metric against training time; one line per trial, one colour per algorithm."""
    colors = _colors(sorted({c["algorithm"] for c in curves}))
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    labelled = set()
    for curve in curves:
        name = curve["algorithm"]
        ax.plot(
            curve["seconds"],
            curve["metric"],
            color=colors[name],
            alpha=0.85,
            lw=1.6,
            marker="o",
            ms=2.5,
            label=None if name in labelled else name,
        )
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
    algorithms = sorted({r.label for r in rows})
    colors = _colors(algorithms)
    fig, axes = plt.subplots(1, len(workloads), figsize=(3.4 * len(workloads) + 0.6, 3.6), dpi=120, squeeze=False)
    for ax, workload in zip(axes[0], workloads):
        found = {r.label: r for r in rows if r.workload == workload}
        finite = [r.time_to_target for r in found.values() if math.isfinite(r.time_to_target)]
        stub = (max(finite) if finite else 1.0) * 1.08
        for i, name in enumerate(algorithms):
            row = found.get(name)
            if row is None:
                continue
            if math.isfinite(row.time_to_target):
                ax.bar(i, row.time_to_target, color=colors[name], label=name)
                ax.text(
                    i,
                    row.time_to_target,
                    f"{row.time_to_target:.3g} s\n{row.steps_to_target:.0f} steps",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
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


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both axes (smaller memory and smaller time), by memory.

    Only finite times count (a miss is on no front); of equal memory only the fastest can be on it."""
    front: list[tuple[float, float]] = []
    for x, y in sorted((x, y) for x, y in points if math.isfinite(y)):
        if not front or y < front[-1][1]:
            front.append((x, y))
    return front


def _byte_ticks(value: float, _pos: Any) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.3g} {unit}"
        value /= 1024
    return f"{value:.3g}"


def memory_vs_time(rows: list[SummaryRow], path: Path) -> Path:
    """Per workload: peak memory (x) against median time-to-target (y), one point per row (algorithm
    and memory options). Misses sit on a line above the plotted times as hollow markers; the dashed
    step line is the Pareto front (no other row is both smaller and faster)."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    workloads = sorted({r.workload for r in rows})
    labels = sorted({r.label for r in rows})
    colors = _colors(labels)
    fig, axes = plt.subplots(1, len(workloads), figsize=(3.8 * len(workloads) + 2.2, 3.8), dpi=120, squeeze=False)
    for ax, workload in zip(axes[0], workloads):
        found = [r for r in rows if r.workload == workload]
        finite = [r.time_to_target for r in found if math.isfinite(r.time_to_target)]
        top = (max(finite) if finite else 1.0) * 1.15
        xs = [float(r.peak_memory_bytes) for r in found]
        for r in found:
            hit = math.isfinite(r.time_to_target)
            y = r.time_to_target if hit else top
            ax.scatter(
                [r.peak_memory_bytes],
                [y],
                s=42,
                zorder=3,
                facecolors=colors[r.label] if hit else "none",
                edgecolors=colors[r.label],
                linewidths=1.4,
            )
            ax.annotate(r.label, (r.peak_memory_bytes, y), xytext=(4, 4), textcoords="offset points", fontsize=6.5)
        front = pareto_front([(float(r.peak_memory_bytes), r.time_to_target) for r in found])
        if front:
            fx = [x for x, _ in front] + [max(xs)]
            fy = [y for _, y in front] + [front[-1][1]]
            ax.step(fx, fy, where="post", color="black", lw=1, ls="--", alpha=0.7, zorder=2)
        if len(finite) < len(found):
            ax.axhline(top, color="grey", lw=0.6, ls=":", zorder=1)
            ax.text(0.01, top, "missed", transform=ax.get_yaxis_transform(), fontsize=7, va="bottom", color="grey")
        if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.xaxis.set_major_formatter(FuncFormatter(_byte_ticks))
        ax.tick_params(axis="x", labelsize=7)
        ax.margins(x=0.25, y=0.15)
        ax.set_xlabel("peak memory")
        ax.set_ylabel("time-to-target (s)")
        ax.set_title(workload, fontsize=9)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], ls="", marker="o", color=colors[name], label=name) for name in labels]
    handles += [
        Line2D([], [], ls="", marker="o", markerfacecolor="none", color="grey", label="missed target"),
        Line2D([], [], ls="--", color="black", lw=1, label="Pareto front"),
    ]
    fig.legend(handles=handles, loc="center right", frameon=False, fontsize=7)
    fig.tight_layout(rect=(0, 0, 1 - 2.0 / fig.get_figwidth(), 1))
    fig.savefig(path)
    plt.close(fig)
    return path


def lr_schedules(workload: str, schedules: dict[str, list[float]], path: Path) -> Path:
    """Learning-rate multiplier against step for each algorithm's schedule on one workload."""
    colors = _colors(list(schedules))
    fig, ax = plt.subplots(figsize=(7, 3.4), dpi=120)
    for name, values in sorted(schedules.items()):
        ax.plot(range(len(values)), values, color=colors[name], lw=1.6, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("learning-rate multiplier")
    ax.set_title(f"{workload}: schedules")
    ax.set_ylim(-0.03, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def refinement(workload: str, norms: list[float], schedule: list[float], norm_name: str, path: Path) -> Path:
    """A first run's per-step gradient norms and the refined schedule derived from them."""
    fig, ax = plt.subplots(figsize=(7, 3.4), dpi=120)
    ax.plot(range(len(norms)), norms, color="tab:gray", lw=0.8, alpha=0.8, label=f"gradient {norm_name} norm (pass 1)")
    ax.set_xlabel("step")
    ax.set_ylabel(f"gradient {norm_name} norm")
    ax.set_yscale("log")
    twin = ax.twinx()
    twin.plot(range(len(schedule)), schedule, color="tab:red", lw=1.8, label="refined schedule")
    twin.set_ylabel("learning-rate multiplier")
    twin.set_ylim(-0.03, 1.05)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [str(h.get_label()) for h in handles], frameon=False, fontsize=8, loc="upper center")
    ax.set_title(f"{workload}: refinement")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
