"""PNG plots of AlgoPerf-style scoring: performance profiles, workload costs with bootstrap
intervals, and tuning curves (headless Agg backend, same look as `trainlab.reports.plots`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from trainlab.reports.plots import _colors  # noqa: E402
from trainlab.scoring.profiles import benchmark_score, performance_profile  # noqa: E402


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def performance_profiles_plot(ratios: Mapping[str, Mapping[str, float]], path: str | Path, r_max: float = 4.0) -> Path:
    """rho_s(tau) for tau in [1, r_max], one step curve per algorithm; the legend gives each
    benchmark score (the normalised area under its curve), best first."""
    scores = benchmark_score(ratios, r_max)
    colors = _colors(list(ratios))
    # rho only changes at the ratios themselves, so those (plus the ends) are all the points needed.
    taus = sorted({1.0, r_max} | {r for rs in ratios.values() for r in rs.values() if 1.0 <= r <= r_max})
    profile = performance_profile(ratios, taus)
    right = r_max + 0.03 * (r_max - 1)  # a jump exactly at r_max (ratio r_max) stays visible
    styles = ["-", "--", "-.", ":"]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    ranked = sorted(ratios, key=lambda a: (-scores[a], a))
    for i, name in enumerate(ranked):
        # Decreasing widths and varied dashes keep identical stretches of curves distinguishable.
        ax.step(
            taus + [right],
            profile[name] + [profile[name][-1]],
            where="post",
            color=colors[name],
            lw=max(1.0, 2.6 - 0.4 * i),
            ls=styles[i % len(styles)],
            alpha=0.9,
            label=f"{name} (score {scores[name]:.3f})",
        )
    ax.axvline(r_max, color="grey", lw=0.8, ls=":")
    ax.set_xlim(1.0, right)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("τ (cost relative to the fastest algorithm)")
    ax.set_ylabel("fraction of workloads within τ")
    ax.set_title("performance profiles")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8, loc="best")
    return _save(fig, path)


def workload_costs_plot(rows: Sequence[Mapping[str, Any]], path: str | Path, unit: str = "s") -> Path:
    """One panel per workload (workloads differ in scale by orders of magnitude), a horizontal bar
    per algorithm with its bootstrap interval as a whisker. A miss is a hatched stub labelled
    "missed" just past the largest finite value, and an interval reaching inf ends in an arrow."""
    if not rows:
        raise ValueError("no rows to plot")
    workloads = sorted({r["workload"] for r in rows})
    algorithms = sorted({r["algorithm"] for r in rows})
    colors = _colors(algorithms)
    fig, axes = plt.subplots(
        len(workloads), 1, dpi=120, squeeze=False, figsize=(7, 0.9 + len(workloads) * (0.6 + 0.32 * len(algorithms)))
    )
    for ax, workload in zip(axes[:, 0], workloads):
        found = {r["algorithm"]: r for r in rows if r["workload"] == workload}
        finite = [
            float(v)
            for r in found.values()
            for v in (r["cost"], r.get("low"), r.get("high"))
            if v is not None and math.isfinite(v)
        ]
        stub = (max(finite) if finite else 1.0) * 1.1
        for y, name in enumerate(algorithms):
            row = found.get(name)
            if row is None:
                continue
            cost = float(row["cost"])
            low, high = row.get("low"), row.get("high")
            if not math.isfinite(cost):
                ax.barh(y, stub, color="white", edgecolor=colors[name], hatch="//", height=0.7)
                ax.text(stub, y, " missed", va="center", fontsize=7)
                continue
            ax.barh(y, cost, color=colors[name], height=0.7, alpha=0.85)
            end = cost
            if low is not None and high is not None:
                end = float(high) if math.isfinite(high) else stub
                # max(0, .): a percentile interval need not contain the point estimate.
                ax.errorbar(
                    cost,
                    y,
                    xerr=[[max(0.0, cost - float(low))], [max(0.0, end - cost)]],
                    color="black",
                    lw=1,
                    capsize=3,
                )
                if not math.isfinite(high):
                    ax.plot(stub, y, marker=">", color="black", ms=5)
            ax.text(end, y, f"  {cost:.3g} {unit}", va="center", fontsize=7)
        ax.set_yticks(range(len(algorithms)), algorithms, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, stub * 1.22)  # room for the labels after the bars
        ax.set_title(workload, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel(f"cost to target ({unit}): median, bootstrap interval", fontsize=8)
    return _save(fig, path)


def _best_so_far(costs: Sequence[float]) -> list[float]:
    best, out = math.inf, []
    for c in costs:
        best = min(best, float(c))
        out.append(best)
    return out


def tuning_curves_plot(curves: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Best cost so far against tuning trial, one line per (algorithm, study), one panel per
    workload: how fast tuning pays off and how much studies disagree. Trials before a study's first
    hit are not drawn (their best is still inf); studies that never hit are counted in the title."""
    if not curves:
        raise ValueError("no curves to plot")
    workloads = sorted({c["workload"] for c in curves})
    algorithms = sorted({c["algorithm"] for c in curves})
    colors = _colors(algorithms)
    fig, axes = plt.subplots(
        1, len(workloads), figsize=(max(7, 3.6 * len(workloads) + 1.6), 4.2), dpi=120, squeeze=False
    )
    for ax, workload in zip(axes[0], workloads):
        mine = [c for c in curves if c["workload"] == workload]
        never = 0
        drawn: list[float] = []
        for curve in mine:
            hits = [(i + 1, b) for i, b in enumerate(_best_so_far(curve["costs"])) if math.isfinite(b)]
            if not hits:
                never += 1
                continue
            xs, ys = zip(*hits)
            drawn.extend(ys)
            ax.plot(
                xs, ys, drawstyle="steps-post", color=colors[curve["algorithm"]], lw=1.5, alpha=0.8, marker="o", ms=2.5
            )
        if drawn and min(drawn) > 0 and max(drawn) / min(drawn) > 10:
            ax.set_yscale("log")  # early trials can be orders of magnitude slower than the best
        ax.set_xlim(0.5, max(1, *(len(c["costs"]) for c in mine)) + 0.5)  # every trial, drawn or not
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        title = workload if not never else f"{workload} ({never} of {len(mine)} never reached the target)"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("tuning trial")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("best cost to target so far")
    handles = [Line2D([], [], color=colors[a], lw=1.5, label=a) for a in algorithms]
    fig.legend(handles=handles, loc="center right", frameon=False, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1 - 1.0 / fig.get_figwidth(), 1))
    fig.savefig(Path(path))
    plt.close(fig)
    return Path(path)
