"""The external-validity plot: trainlab's score against AlgoPerf's published one, and the two rankings."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from trainlab.tuning.external_validity import NOT_RUNNABLE, PUBLISHED  # noqa: E402


def ranks(scores: dict[str, float]) -> dict[str, float]:
    """1 = best; tied scores share their average rank."""
    ordered = sorted(scores, key=lambda f: -scores[f])
    ranks: dict[str, float] = {}
    for f in ordered:
        tied = [g for g in ordered if scores[g] == scores[f]]
        ranks[f] = statistics.mean(ordered.index(g) + 1 for g in tied)
    return ranks


def plot(scores: dict[str, float], path: Path, stats: dict[str, Any] | None = None) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for i, f in enumerate(sorted(scores, key=lambda f: PUBLISHED[f][1])):  # labels staggered: ties overlap
        theirs, ours = PUBLISHED[f][1], scores[f]
        left.scatter(theirs, ours, color="tab:blue")
        offset = ((4, -14) if i % 2 == 0 and ours > 0.05 else (4, 6)) if ours < 0.9 else (-6, -4)
        left.annotate(
            PUBLISHED[f][0],
            (theirs, ours),
            textcoords="offset points",
            xytext=offset,
            fontsize=8,
            ha="left" if ours < 0.9 else "right",
        )
    for f in NOT_RUNNABLE:
        left.axvline(PUBLISHED[f][1], color="0.8", linestyle=":", linewidth=1)
        left.annotate(
            f"{PUBLISHED[f][0]}\n(not runnable on CPU)",
            (PUBLISHED[f][1], 0.02),
            fontsize=7,
            color="0.5",
            rotation=90,
            va="bottom",
        )
    left.set(xlabel="AlgoPerf v0.5 score (published)", ylabel="trainlab score (held-out steps)", xlim=(-0.05, 0.9))
    left.set_ylim(-0.05, 1.05)
    title = "scores"
    if stats is not None:
        title += f" (n = {stats['n']}: tau-b {stats['kendall_tau']:.2f}, rho {stats['spearman_rho']:.2f})"
    left.set_title(title)
    theirs_rank = ranks({f: PUBLISHED[f][1] for f in scores})
    ours_rank = ranks(scores)
    for f in scores:
        right.plot([0, 1], [theirs_rank[f], ours_rank[f]], marker="o")
        right.annotate(PUBLISHED[f][0], (0, theirs_rank[f]), xytext=(-6, 0), textcoords="offset points", ha="right")
        right.annotate(f"{ours_rank[f]:g}", (1, ours_rank[f]), xytext=(6, 0), textcoords="offset points")
    right.set_xticks([0, 1], ["AlgoPerf v0.5 rank", "trainlab rank"])
    right.set_xlim(-0.9, 1.3)
    right.set_ylim(len(scores) + 0.5, 0.5)
    right.set_title("ranks among the runnable submissions (1 = best)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
