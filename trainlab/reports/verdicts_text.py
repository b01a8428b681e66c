"""The verdicts as markdown: the report's sections and the README's notes, every figure computed
(`trainlab.reports.verdicts.judge`), none typed."""

from __future__ import annotations

import math
from typing import Any

from trainlab.reports.verdicts import BASELINE, WITHIN, Verdicts, fmt_interval, fmt_steps


def bracket_lines(outcomes) -> list[str]:
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for b in outcomes.brackets:
        cells.setdefault((b["algorithm"], b["workload"]), []).append(b)
    open_ = [
        (a, w, b)
        for (a, w), studies in sorted(cells.items())
        for b in studies
        if not (b["bracketed_low"] and b["bracketed_high"])
    ]
    studies = sum(len(s) for s in cells.values())
    lines = [
        f"**{studies - len(open_)} of {studies} studies** have their best learning rate bracketed (a worse "
        "trial, or a divergence, on each side)."
    ]
    if open_:
        lines += ["", "| algorithm | workload | study | best lr | tried | open side |", "|---|---|---:|---:|---|---|"]
        for a, w, b in open_:
            side = ", ".join(s for s, ok in (("below", b["bracketed_low"]), ("above", b["bracketed_high"])) if not ok)
            lines.append(f"| {a} | {w} | {b['study']} | {b['lr']:.3g} | {b['low']:.3g} ... {b['high']:.3g} | {side} |")
    return lines


def _test_text(v: Verdicts, key: tuple[str, str, str]) -> str:
    t = v.tests.get(key)
    if t is None:
        return "--"
    verdict = "separable" if v.rejected.get(key) else "not separable"
    return f"{t.wins}-{t.losses} (p {t.p:.2g}, {verdict})"


def table_lines(v: Verdicts) -> list[str]:
    lines = [
        "| workload | algorithm | median steps | 95 % interval | runs (effective) | reached | "
        "against adamw: wins-losses (p, Holm) |",
        "|---|---|---:|---|---:|---:|---|",
    ]
    for w in v.workloads:
        present = sorted((a for a in v.algorithms if (a, w) in v.medians), key=lambda a: (v.medians[(a, w)], a))
        for a in present:
            iv = v.intervals[(a, w)]
            runs = [r for s in v.cells[(a, w)] for r in s]
            hits = sum(math.isfinite(r["steps"]) for r in runs)
            lines.append(
                f"| {w} | {a} | {fmt_steps(v.medians[(a, w)])} | {fmt_interval(iv)} | {iv.n} ({iv.n_eff:.1f}) | "
                f"{hits}/{len(runs)} | {_test_text(v, (w, a, BASELINE)) if a != BASELINE else '--'} |"
            )
    return lines


def detectable_lines(v: Verdicts) -> list[str]:
    parts = []
    for w in v.workloads:
        r = v.detectable.get(w)
        if r is None or math.isnan(r):
            parts.append(f"{w}: not computed (too few finished cells)")
        elif math.isinf(r):
            parts.append(f"{w}: none up to 4x (too few paired runs for the corrected level)")
        else:
            parts.append(f"{w}: {100 * (r - 1):.0f} %")
    return [
        "Smallest difference in steps each workload can detect (80 % power at the first Holm level, "
        "simulated at the workload's own spread between studies and seeds): " + "; ".join(parts) + "."
    ]


def speedup_lines(v: Verdicts) -> list[str]:
    lines = ["| algorithm | speedup over adamw (steps) | 95 % interval | workloads |", "|---|---:|---|---:|"]
    order = sorted(v.algorithms, key=lambda a: (-(v.speedups[a][0] if math.isfinite(v.speedups[a][0]) else -1), a))
    for a in order:
        x, lo, hi, n = v.speedups[a]
        if not math.isfinite(x):
            lines.append(f"| {a} | -- | -- | 0/{len(v.workloads)} |")
        else:
            lines.append(f"| {a} | {x:.2f}x | [{lo:.2f}, {hi:.2f}] | {n}/{len(v.workloads)} |")
    return lines + [
        "",
        "Per workload the median over paired runs (same seed, study k beside study k) of AdamW's steps "
        "over the algorithm's, where both reached the target; then the geometric mean over workloads; "
        "the interval is a percentile bootstrap over the pairs (not coverage-checked).",
    ]


def ladder_lines(v: Verdicts) -> list[str]:
    lines = []
    for w, levels in v.ladder.items():
        head = " | ".join(f"{x:.4g}" for x in levels)
        lines += [
            f"**{w}** (rungs: AdamW's metric at 25/50/75 % of its steps to the target, then the target)",
            "",
            f"| algorithm | {head} |",
            "|---|" + "---:|" * len(levels),
        ]
        present = sorted(
            (a for a in v.algorithms if (a, w) in v.rung_steps), key=lambda a: (v.rung_steps[(a, w)][::-1], a)
        )
        for a in present:
            lines.append(f"| {a} | " + " | ".join(fmt_steps(s) for s in v.rung_steps[(a, w)]) + " |")
        taus = ", ".join(f"{t:.2f}" for t in v.taus.get(w, []))
        lines += ["", f"Kendall's tau-b of each rung's order against the target's: {taus or 'n/a'}.", ""]
    return lines


def which_when(v: Verdicts, state: dict[str, float], wall: dict[str, float], untuned: dict[str, float]) -> list[str]:
    """Per constraint, the best algorithm and those not separable from it (steps: per workload by
    the paired tests; the other rows rank a single column, so only ties are inseparable)."""
    lines = ["| constraint | best | not separable from the best |", "|---|---|---|"]
    for w in v.workloads:
        best = v.best.get(w)
        if best is None:
            continue
        close = [b for (ww, a, b), ok in v.rejected.items() if ww == w and a == best and not ok]
        lines.append(f"| fewest steps on {w} | {best} | {', '.join(sorted(close)) or 'none'} |")
    fast = {
        a for a, (x, _, _, n) in v.speedups.items() if math.isfinite(x) and n == len(v.workloads) and x >= 1 / WITHIN
    }
    light = sorted((a for a in fast if a in state), key=lambda a: (state[a], a))
    if light:
        lines.append(
            f"| least optimizer state within 10 % of AdamW's steps | {light[0]} | "
            f"{', '.join(a for a in light[1:] if state[a] == state[light[0]]) or 'none'} |"
        )
    for label, scores in (
        ("fastest wall clock on this CPU (time score)", wall),
        ("no tuning budget (untuned score)", untuned),
    ):
        if scores:
            top = max(scores.values())
            winners = sorted(a for a, s in scores.items() if s == top)
            lines.append(f"| {label} | {winners[0]} | {', '.join(winners[1:]) or 'none'} |")
    return lines


def notes(v: Verdicts) -> list[str]:
    """The README's verdict sentences: only what a Holm-corrected paired test supports."""
    out = []
    for w in v.workloads:
        faster = sorted(
            a
            for (ww, a, b), ok in v.rejected.items()
            if ww == w and b == BASELINE and ok and v.tests[(ww, a, b)].wins > v.tests[(ww, a, b)].losses
        )
        slower = sorted(
            a
            for (ww, a, b), ok in v.rejected.items()
            if ww == w and b == BASELINE and ok and v.tests[(ww, a, b)].wins < v.tests[(ww, a, b)].losses
        )
        tested = sum(1 for (ww, _, b) in v.tests if ww == w and b == BASELINE)
        out.append(
            f"- **{w}**: fewer steps than AdamW: {', '.join(faster) or 'none'}; more: {', '.join(slower) or 'none'}; "
            f"not separable from AdamW: {tested - len(faster) - len(slower)} of {tested}."
        )
    return out
