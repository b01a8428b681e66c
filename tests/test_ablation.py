"""The modifier ablation table: each variant paired with its base, Holm over the rows."""

from __future__ import annotations

from types import SimpleNamespace

from trainlab.reports.ablation import ablation_section, variants


def _runs(steps: list[list[int]]) -> list[list[dict]]:
    return [[{"steps": s, "rank": (0, s)} for s in study] for study in steps]


def test_variants_are_bracketed_names_whose_base_is_on_the_board():
    board = ["adamw", "lion[cautious=true]", "adamw[cautious=true,mars=true]", "sgd"]
    assert variants(board) == [("adamw[cautious=true,mars=true]", "adamw", {"cautious": True, "mars": True})]


def test_a_variant_that_wins_every_pair_is_fewer_steps_and_a_tie_is_not_separable():
    base = _runs([[400, 420, 410, 430, 440]] * 3)
    faster = _runs([[300, 310, 305, 320, 330]] * 3)  # wins all 15 pairs
    mixed = _runs([[390, 430, 400, 440, 430]] * 3)  # wins 9, loses 6: p = 0.6
    verdicts = SimpleNamespace(
        algorithms=["adamw", "adamw[cautious=true]", "adamw[mars=true]"],
        workloads=["w"],
        cells={("adamw", "w"): base, ("adamw[cautious=true]", "w"): faster, ("adamw[mars=true]", "w"): mixed},
        medians={("adamw", "w"): 420.0, ("adamw[cautious=true]", "w"): 310.0, ("adamw[mars=true]", "w"): 430.0},
    )
    memory = {("adamw", "w"): {"state": 800}, ("adamw[cautious=true]", "w"): {"state": 800}}
    rows = {line.split(" | ")[0].strip("| "): line for line in ablation_section(verdicts, memory) if "| w |" in line}
    assert rows["adamw[cautious=true]"].endswith("| 310 vs 420 | 15-0 | fewer steps | 1.00x |")
    assert "| 9-6 | not separable | n/a |" in rows["adamw[mars=true]"]
    assert ablation_section(SimpleNamespace(algorithms=["adamw"], workloads=["w"], cells={}, medians={}), {}) == []
