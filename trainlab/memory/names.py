"""The memory savers' names and labels, defined once: the option values every layer accepts and the
words logs, stores and reports use for them (they drifted apart when each layer spelled its own).

Two styles: `long` for sentences (a report's preamble, a tuning report, a log line) and `short` for
a table cell beside the algorithm's name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trainlab.memory.quantize import ALLOWED_BITS

PRECISIONS = ("fp32", "bf16-autocast", "bf16")
ACTIVATION_BITS: tuple[int | str, ...] = (*ALLOWED_BITS, "adaptive")


def saver_labels(options: Mapping[str, Any], short: bool = False) -> list[str]:
    """One label per memory saver that is on in `options`: a `TrialOptions`' fields, a stored race's
    config or a stored trial (`compress_activations`, `precision`, `freeze`, `freeze_change`, and a
    trial's `frozen_params`, which the short style counts instead of naming the rules)."""
    labels = []
    bits = options.get("compress_activations")
    if bits not in (None, "", "none"):
        adaptive = str(bits) == "adaptive"
        if short:
            labels.append("acts adaptive" if adaptive else f"acts {bits}-bit")
        else:
            labels.append(
                "saved activations compressed " + ("with adaptive (GACT) bits" if adaptive else f"to {bits} bits")
            )
    precision = options.get("precision")
    if precision not in (None, "", "fp32"):
        labels.append(str(precision) if short else f"precision {precision}")
    if short:
        if options.get("frozen_params"):
            labels.append(f"{_count(options['frozen_params'])} frozen")
        return labels
    if options.get("freeze"):
        labels.append("frozen: " + ", ".join(f"`{rule}`" for rule in options["freeze"]))
    if options.get("freeze_change") is not None:
        labels.append(f"frozen as they stop changing (threshold {options['freeze_change']:g})")
    return labels


def _count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)
