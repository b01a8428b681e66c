"""The memory savers' names and labels, defined once: the option values every layer accepts and the
words logs, stores and reports use for them (they drifted apart when each layer spelled its own)."""

from __future__ import annotations

from trainlab.memory.quantize import ALLOWED_BITS

PRECISIONS = ("fp32", "bf16-autocast", "bf16")
ACTIVATION_BITS: tuple[int | str, ...] = (*ALLOWED_BITS, "adaptive")
