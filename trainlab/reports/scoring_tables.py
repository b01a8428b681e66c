"""Paper-ready scoring tables (Markdown and LaTeX booktabs): per-workload cost with its bootstrap
interval, benchmark score and geometric-mean speedup, one row per algorithm, best score first.

Both formats are built from the same cells so they can never disagree."""

from __future__ import annotations

import math
from collections.abc import Mapping

Costs = Mapping[str, Mapping[str, float]]
Intervals = Mapping[str, Mapping[str, tuple[float, float]]]
Speedups = Mapping[str, tuple[float, int, int]]

MISS = "miss"


def _decimals(value: float) -> int:
    """Three significant digits for the point estimate, and the same decimals for its interval,
    so "12.3 [10.1, 15.0]" lines up instead of mixing "15" and "10.1"."""
    if value == 0 or not math.isfinite(value):
        return 0
    return max(0, 2 - math.floor(math.log10(abs(value))))


def _number(value: float, decimals: int, infinity: str) -> str:
    return f"{value:.{decimals}f}" if math.isfinite(value) else infinity


def _cost_cell(cost: float | None, interval: tuple[float, float] | None, infinity: str) -> str:
    if cost is None:
        return "n/a"
    if not math.isfinite(cost):
        return MISS
    d = _decimals(cost)
    text = _number(cost, d, infinity)
    if interval is not None:
        low, high = interval
        text += f" [{_number(low, d, infinity)}, {_number(high, d, infinity)}]"
    return text


def _speedup_cell(entry: tuple[float, int, int] | None, times: str) -> str:
    if entry is None:
        return "n/a"
    value, used, total = entry
    shown = f"{value:.2f}{times}" if math.isfinite(value) else "–"
    return f"{shown} ({used}/{total})"


def _rows(
    costs: Costs, intervals: Intervals, scores: Mapping[str, float], speedups: Speedups, *, infinity: str, times: str
) -> tuple[list[str], list[list[str]]]:
    """Workload names and the cell texts per algorithm, sorted by score (missing scores last)."""
    workloads = sorted({w for per_workload in costs.values() for w in per_workload})

    def order(algorithm: str) -> tuple[float, str]:
        score = scores.get(algorithm, math.nan)
        return (-score if math.isfinite(score) else math.inf, algorithm)

    rows = []
    for algorithm in sorted(costs, key=order):
        cells = [algorithm]
        for w in workloads:
            interval = intervals.get(algorithm, {}).get(w)
            cells.append(_cost_cell(costs[algorithm].get(w), interval, infinity))
        score = scores.get(algorithm)
        cells.append(f"{score:.3f}" if score is not None and math.isfinite(score) else "n/a")
        cells.append(_speedup_cell(speedups.get(algorithm), times))
        rows.append(cells)
    return workloads, rows


def _speedup_header(baseline: str | None) -> str:
    return f"speedup vs {baseline}" if baseline else "speedup"


def scoring_table_markdown(
    costs: Costs,
    intervals: Intervals,
    scores: Mapping[str, float],
    speedups: Speedups,
    *,
    unit: str = "s",
    baseline: str | None = None,
) -> str:
    """Markdown table: "cost [low, high]" per workload ("miss" for inf), the benchmark score to 3
    decimals and "1.23x (2/3)" = geometric-mean speedup over 2 of 3 workloads."""
    workloads, rows = _rows(costs, intervals, scores, speedups, infinity="inf", times="x")

    def esc(text: str) -> str:
        return text.replace("|", r"\|")

    header = ["algorithm", *(f"{w} ({unit})" for w in workloads), "score", _speedup_header(baseline)]
    lines = [
        "| " + " | ".join(esc(h) for h in header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\^{}",
}


# Placeholders no escaped name can contain, swapped for math after escaping.
_INF, _TIMES = "\x00inf\x00", "\x00times\x00"


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


def scoring_table_latex(
    costs: Costs,
    intervals: Intervals,
    scores: Mapping[str, float],
    speedups: Speedups,
    *,
    unit: str = "s",
    baseline: str | None = None,
) -> str:
    """The same table as `scoring_table_markdown`, as a booktabs tabular (needs \\usepackage{booktabs})."""
    workloads, rows = _rows(costs, intervals, scores, speedups, infinity=_INF, times=_TIMES)
    header = ["algorithm", *(f"{w} ({unit})" for w in workloads), "score", _speedup_header(baseline)]

    def cell(text: str) -> str:
        return _latex_escape(text).replace(_INF, r"$\infty$").replace(_TIMES, r"$\times$").replace("–", "--")

    lines = [
        r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
        r"\toprule",
        " & ".join(_latex_escape(h) for h in header) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(cell(c) for c in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"
