"""What each published point did on the tuning seeds (the external-validity report's evidence for
its disagreements): every point's result, and the learning rates that reached a target."""

from __future__ import annotations

import json
import math
from typing import Any

from trainlab.tuning.external_validity import PUBLISHED


def lr_facts(summary: dict[str, Any]) -> dict[str, Any]:
    """The largest learning rate of each space, and those of the tuning trials that reached a target."""
    spaces = {f: s for f, s in summary["spaces"].items() if isinstance(s, list)}
    reached = [
        spaces[f][draw].get("learning_rate")
        for (f, _, draw), run in summary["tuning"].items()
        if f in spaces and math.isfinite(run["steps"])
    ]
    reached = [lr for lr in reached if lr is not None]
    return {
        "largest_in_space": {f: max(p.get("learning_rate", math.nan) for p in s) for f, s in spaces.items()},
        "reached_target": len(reached),
        "tuning_trials": len(summary["tuning"]),
        "reached_range": [min(reached), max(reached)] if reached else None,
    }


def learning_rates(summary: dict[str, Any]) -> str:
    facts = lr_facts(summary)
    text = "Largest learning rate in each published space: " + ", ".join(
        f"{PUBLISHED[f][0]} {lr:.2e}" for f, lr in facts["largest_in_space"].items()
    )
    if facts["reached_range"]:
        low, high = facts["reached_range"]
        text += (
            f". Tuning trials that reached a target: {facts['reached_target']}, all at learning rates "
            f"{low:.2e} to {high:.2e} (the table below has every point)."
        )
    return text


def points_table(summary: dict[str, Any]) -> list[str]:
    """Every point of every space on the tuning seeds: which learning rates reached the target."""
    workloads = summary["workloads"]
    lines = [
        "## Every point of every space (tuning seeds)",
        "",
        "Best validation accuracy of each published point's tuning trial, and the step it reached the "
        "target at (* = the study's chosen point).",
        "",
        "| submission | point | learning_rate | warmup_factor | other keys that differ |"
        + "".join(f" {w} |" for w in workloads),
        "|---|---:|---:|---:|---|" + "---:|" * len(workloads),
    ]
    for folder, space in summary["spaces"].items():
        if not isinstance(space, list):
            continue
        for draw, point in enumerate(space):
            varying = sorted(k for k in point if k not in ("learning_rate", "warmup_factor") and _varies(space, k))
            cells = [PUBLISHED[folder][0], str(draw), f"{point.get('learning_rate', math.nan):.2e}"]
            cells += [f"{point.get('warmup_factor', math.nan):g}", ", ".join(f"{k}={point[k]:g}" for k in varying)]
            for w in workloads:
                run = summary["tuning"].get((folder, w, draw))
                best = summary["chosen"].get((folder, w))
                mark = "*" if best and best["draw"] == draw else ""
                if run is None:
                    cells.append("")
                    continue
                reached = f" (step {run['steps']:.0f})" if math.isfinite(run["steps"]) else ""
                cells.append(f"{_metric(run['best_metric'])}{reached}{mark}")
            lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _varies(space: list[dict[str, Any]], key: str) -> bool:
    values = {json.dumps(p.get(key)) for p in space}
    return len(values) > 1 and all(isinstance(p.get(key), int | float) for p in space)


def _metric(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.4f}"
