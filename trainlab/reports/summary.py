"""One row per (workload, algorithm, memory options): the race's result aggregated over seeds.

Time-to-target is the median over seeds with misses counted as infinity (AlgoPerf's convention), so
a row whose seeds mostly miss reports "missed" rather than the time of its one lucky seed.
Memory options (activation compression, precision, frozen parameters) are part of a row's identity:
the same algorithm with other memory savers is another row, labelled "algorithm [options]".
Trials stored before the memory columns existed count as fp32, uncompressed, nothing frozen.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from trainlab.memory.names import saver_labels
from trainlab.store.results import FINISHED


@dataclass
class SummaryRow:
    workload: str
    algorithm: str
    metric_name: str
    higher_is_better: bool
    target: float
    seeds: int
    reached: int
    time_to_target: float  # median over seeds, inf when most missed
    steps_to_target: float  # median over seeds, inf when most missed
    final_metric: float  # mean over seeds
    final_metric_std: float  # sample std over seeds (0 for one seed)
    train_seconds: float  # mean full-budget training time
    state_bytes: int
    peak_memory_bytes: int
    diverged: int = 0
    saved_activation_bytes: int | None = None  # max over seeds; None when not measured (old trials)
    options: str = ""  # memory savers, e.g. "acts 4-bit, bf16-autocast"; "" when none

    @property
    def label(self) -> str:
        """The algorithm, with its memory options when it has any."""
        return f"{self.algorithm} [{self.options}]" if self.options else self.algorithm


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.inf


def memory_options(trial: dict[str, Any]) -> str:
    """A short label of a trial's memory savers ("" for none)."""
    return ", ".join(saver_labels(trial, short=True))


def summarize(trials: Iterable[dict[str, Any]]) -> list[SummaryRow]:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for trial in trials:
        if trial["status"] in FINISHED:
            groups.setdefault((trial["workload"], trial["algorithm"], memory_options(trial)), []).append(trial)
    rows = []
    for (workload, algorithm, options), items in groups.items():
        saved = [t["saved_activation_bytes"] for t in items if t.get("saved_activation_bytes") is not None]
        finals = [t["final_metric"] for t in items if t["final_metric"] is not None]
        steps = [float(t["steps_to_target"]) if t["reached"] else math.inf for t in items]
        rows.append(
            SummaryRow(
                workload=workload,
                algorithm=algorithm,
                metric_name=items[0]["metric_name"],
                higher_is_better=bool(items[0]["higher_is_better"]),
                target=items[0]["target"],
                seeds=len(items),
                reached=sum(bool(t["reached"]) for t in items),
                time_to_target=_median([t["time_to_target"] for t in items]),
                steps_to_target=_median(steps),
                final_metric=statistics.fmean(finals) if finals else math.nan,
                final_metric_std=statistics.stdev(finals) if len(finals) > 1 else 0.0,
                train_seconds=statistics.fmean(t["train_seconds"] or 0.0 for t in items),
                state_bytes=max(t["state_bytes"] or 0 for t in items),
                peak_memory_bytes=max(t["peak_memory_bytes"] or 0 for t in items),
                diverged=sum(t["status"] == "diverged" for t in items),
                saved_activation_bytes=max(saved) if saved else None,
                options=options,
            )
        )
    return rows


def format_bytes(n: float) -> str:
    """Bytes in B, KiB, MiB or GiB, one decimal."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def format_table(rows: list[SummaryRow]) -> str:
    """A Markdown table (also readable as plain text in a terminal)."""
    header = (
        "| workload | algorithm | reached | time-to-target (s) | steps-to-target | "
        "final metric | train time (s) | optimizer state | saved activations | peak memory |"
    )
    lines = [header, "|" + "---|" * 10]
    for r in sorted(rows, key=lambda r: (r.workload, r.algorithm, r.options)):
        ttt = f"{r.time_to_target:.1f}" if math.isfinite(r.time_to_target) else "missed"
        stt = f"{r.steps_to_target:.0f}" if math.isfinite(r.steps_to_target) else "—"
        spread = f" ± {r.final_metric_std:.4f}" if r.seeds > 1 else ""
        arrow = "≥" if r.higher_is_better else "≤"
        final = f"{r.final_metric:.4f}{spread}" if math.isfinite(r.final_metric) else "nan"
        if r.diverged:
            final += f", {r.diverged} diverged"
        saved = "—" if r.saved_activation_bytes is None else format_bytes(r.saved_activation_bytes)
        peak = format_bytes(r.peak_memory_bytes) if r.peak_memory_bytes else "—"
        lines.append(
            f"| {r.workload} | {r.label} | {r.reached}/{r.seeds} | {ttt} | {stt} | "
            f"{r.metric_name} {final} (target {arrow} {r.target:g}) | "
            f"{r.train_seconds:.1f} | {format_bytes(r.state_bytes)} | {saved} | {peak} |"
        )
    return "\n".join(lines)
