"""The papers' optimizer claims, each tested at the size the paper claims, from the leaderboard's
stored trials (judging protocol v2).

"A needs k times fewer steps than B" is tested per workload on the paired held-out runs (same seed,
study k beside study k): A's steps are multiplied by k, and an exact sign test asks whether A at k
times its steps still beats B more often than not (`trainlab.scoring.verdicts.paired_test`). The
p-values of every claim on every workload form one family, corrected with Holm's method. A claim
"holds at k" on a workload when the test is significant in its favour, "fails at k" when significant
against it, and is "not separable at k" otherwise; a k of 1 is the claim's sign alone. Learning-rate
and decay ratios come from each study's chosen configuration (the studies search independently,
from their own quasi-random draws and with the learning rate bracketed, so a space cannot decide
them); memory from the runs themselves (bytes are deterministic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from trainlab.scoring.verdicts import Paired, holm, paired_test

COMMAND = "make leaderboard"


@dataclass(frozen=True)
class Claim:
    text: str
    a: str
    b: str
    size: float  # "k times fewer steps"; 1 = fewer; `match` claims pass unless significantly worse
    match: bool = False


CLAIMS = (
    Claim("SWAN: reaches Adam's loss in half the tokens", "swan", "adamw", 2.0),
    Claim("Fira beats GaLore at equal rank (fewer steps)", "fira", "galore", 1.0),
    Claim("Lion: faster than AdamW (fewer steps)", "lion", "adamw", 1.0),
    Claim("diffGrad beats Adam (fewer steps)", "diffgrad", "adamw", 1.0),
    Claim("Signum matches SGD with momentum (no more steps)", "signum", "sgd", 1.0, match=True),
    Claim("Schedule-Free AdamW beats AdamW with cosine decay (fewer steps)", "sfadamw", "adamw", 1.0),
    Claim("Muon: about 2x AdamW's compute efficiency (Liu et al. 2025)", "muon", "adamw", 2.0),
    Claim("SOAP: over 40 % fewer iterations than AdamW (Vyas et al. 2024)", "soap", "adamw", 1 / 0.6),
    Claim("AdEMAMix: AdamW's loss with about half the tokens (Pagliardini et al. 2024)", "ademamix", "adamw", 2.0),
    # the 2024-25 methods and modifiers (issue 28): each row appears once both sides are on the board
    Claim("Adam-mini: AdamW's results with 45-50 % less state (no more steps)", "adam_mini", "adamw", 1.0, match=True),
    Claim("Cautious updates: a free speedup for AdamW (fewer steps)", "adamw[cautious=true]", "adamw", 1.0),
    Claim("Cautious updates: a free speedup for Lion (fewer steps)", "lion[cautious=true]", "lion", 1.0),
    Claim("MARS: variance reduction speeds up AdamW (fewer steps)", "adamw[mars=true]", "adamw", 1.0),
    Claim(
        "8-bit optimizer states: AdamW's results at a quarter of the state (no more steps)",
        "adamw[state_dtype=int8]",
        "adamw",
        1.0,
        match=True,
    ),
)


def _scaled(studies: list[list[dict[str, Any]]], size: float) -> list[list[tuple]]:
    """Rank keys with a reached run's steps multiplied by `size` (a miss stays a miss)."""
    return [[(0, r["steps"] * size) if r["rank"][0] == 0 else tuple(r["rank"]) for r in runs] for runs in studies]


def _steps(value: float) -> str:
    return f"{value:.0f}" if math.isfinite(value) else "miss"


def claim_tests(verdicts) -> dict[tuple[str, str], Paired]:
    """(claim text, workload) -> its size-scaled paired test, for every claim whose methods are on the board."""
    out = {}
    for claim in CLAIMS:
        for w in verdicts.workloads:
            a, b = verdicts.cells.get((claim.a, w)), verdicts.cells.get((claim.b, w))
            if a and b:
                base = [[tuple(r["rank"]) for r in runs] for runs in b]
                out[(claim.text, w)] = paired_test(_scaled(a, claim.size), base)
    return out


def claim_rows(verdicts, memory: dict, best: list[dict[str, Any]]) -> list[str]:
    """Markdown rows: claim | measured here | command | verdict."""
    tests = claim_tests(verdicts)
    significant = holm({key: t.p for key, t in tests.items()})
    rows = [
        "| paper's claim | measured here (held-out steps, medians; paired wins-losses at the claimed size) "
        "| command | verdict at the claimed size (Holm over every claim and workload) |",
        "|---|---|---|---|",
    ]
    for claim in CLAIMS:
        keys = [(claim.text, w) for w in verdicts.workloads if (claim.text, w) in tests]
        if not keys:
            continue
        cells, outcomes = [], []
        for key in keys:
            w, t = key[1], tests[key]
            a, b = verdicts.medians.get((claim.a, w), math.inf), verdicts.medians.get((claim.b, w), math.inf)
            cells.append(f"{w}: {_steps(a)} vs {_steps(b)} ({t.wins}-{t.losses})")
            if significant[key]:
                outcomes.append("holds" if t.wins > t.losses else "fails")
            else:
                outcomes.append("not separable")
        size = "" if claim.size == 1 else f" at {claim.size:.2g}x"
        counts = {o: outcomes.count(o) for o in ("holds", "fails", "not separable")}
        if claim.match:  # "matches": only a significant loss refutes it
            verdict = "holds (not worse)" if not counts["fails"] else f"fails on {counts['fails']}/{len(keys)}"
        else:
            verdict = ", ".join(f"{o}{size} on {n}/{len(keys)}" for o, n in counts.items() if n)
        rows.append(f"| {claim.text} | {'; '.join(cells)} | `{COMMAND}` | {verdict} |")
    rows.append(_lion_row(verdicts, best))
    rows.append(_swan_memory_row(verdicts.workloads, memory))
    return rows


def _chosen(best: list[dict[str, Any]], algorithm: str, workload: str, key: str) -> list[float]:
    values = [b["config"].get(key) for b in best if b["algorithm"] == algorithm and b["workload"] == workload]
    return [float(v) for v in values if isinstance(v, (int, float)) and v > 0]


def _lion_row(verdicts, best: list[dict[str, Any]]) -> str:
    """Every (AdamW study, Lion study) pair's ratio: the claim holds where all lie in 3-10x."""
    parts, inside, total = [], 0, 0
    for w in verdicts.workloads:
        lr = [x / y for x in _chosen(best, "adamw", w, "lr") for y in _chosen(best, "lion", w, "lr")]
        wd = [
            y / x for x in _chosen(best, "adamw", w, "weight_decay") for y in _chosen(best, "lion", w, "weight_decay")
        ]
        if lr and wd:
            parts.append(f"{w}: lr {min(lr):.2g}-{max(lr):.2g}x, wd {min(wd):.2g}-{max(wd):.2g}x")
            inside += sum(3 <= r <= 10 for r in lr + wd)
            total += len(lr) + len(wd)
    if not total:
        return "| Lion: 3-10x smaller lr and 3-10x larger weight decay than AdamW | n/a | `make leaderboard` | n/a |"
    verdict = (
        "holds" if inside == total else "fails" if inside == 0 else f"partly: {inside}/{total} study pairs in 3-10x"
    )
    return (
        "| Lion: 3-10x smaller lr and 3-10x larger weight decay than AdamW | AdamW lr / Lion lr and Lion wd / "
        f"AdamW wd over every pair of independently tuned studies: {'; '.join(parts)} | `{COMMAND}` | {verdict} |"
    )


def _swan_memory_row(workloads: list[str], memory: dict) -> str:
    peaks = []
    for w in workloads:
        x, y = memory.get(("swan", w), {}).get("peak"), memory.get(("adamw", w), {}).get("peak")
        if x is not None and y:
            peaks.append((w, x / y))
    text = ", ".join(f"{w} {p:.2f}x" for w, p in peaks) or "n/a"
    if not peaks:
        verdict = "n/a"
    elif max(p for _, p in peaks) <= 0.55:
        verdict = "holds"
    else:
        low, high = min(p for _, p in peaks), max(p for _, p in peaks)
        verdict = (
            f"fails here: {100 * (1 - high):.0f}-{100 * (1 - low):.0f} % less (the paper's 50 % counts bf16 "
            "weights and LLM-sized state)"
        )
    return (
        "| SWAN: about 50 % less end-to-end memory than Adam | peak memory (params + grads + state + saved "
        f"activations, counted) vs adamw: {text} | `{COMMAND}` | {verdict} |"
    )
