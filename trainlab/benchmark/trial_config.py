"""`TrialConfig`: how every trial of a race or a tuning experiment trains, besides its algorithm.

One frozen record of the memory savers and the precision, validated once where it is built (from
the command line, a stored experiment's JSON, or Python), so that `race`, `tune`, `worker`, `refine` and
`set-targets` share one meaning of `--compress-activations`, `--precision`, `--freeze` and
`--freeze-change`, and a tuning experiment can tune and score a memory saver like any algorithm.
What each option does to training is documented in `trainlab.benchmark.runner`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Literal

import torch

from trainlab.errors import UsageError
from trainlab.memory import bf16_supported, freeze as freeze_modules

PRECISIONS = ("fp32", "bf16-autocast", "bf16")
ACTIVATION_BITS = (2, 4, 8, "adaptive")


@dataclass(frozen=True)
class TrialConfig:
    compress_activations: int | Literal["adaptive"] | None = None  # 2, 4, 8, "adaptive" (GACT) or None
    precision: str = "fp32"  # one of PRECISIONS
    freeze: tuple[str, ...] = ()  # module-name rules, or first:K
    freeze_change: float | None = None  # FAR-style freezing threshold, or None (off)

    def __post_init__(self) -> None:
        bits = self.compress_activations
        if bits is not None and (
            isinstance(bits, bool) or not isinstance(bits, (int, str)) or bits not in ACTIVATION_BITS
        ):
            raise UsageError(f"compress_activations must be one of 2, 4, 8, adaptive (or off), got {bits!r}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        rules = self.freeze
        if isinstance(rules, str) or not all(isinstance(r, str) and r for r in rules):
            raise UsageError(f"freeze must be a list of module-name rules, got {rules!r}")
        object.__setattr__(self, "freeze", tuple(rules))
        change = self.freeze_change
        if change is not None and (isinstance(change, bool) or not isinstance(change, (int, float)) or not change > 0):
            raise UsageError(f"freeze_change must be a positive threshold, got {change!r}")

    @property
    def plain(self) -> bool:
        """Nothing on: the timed loop is exactly the plain one."""
        return self == TrialConfig()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; only the options that are on (an all-off config is `{}`)."""
        out: dict[str, Any] = {}
        if self.compress_activations is not None:
            out["compress_activations"] = self.compress_activations
        if self.precision != "fp32":
            out["precision"] = self.precision
        if self.freeze:
            out["freeze"] = list(self.freeze)
        if self.freeze_change is not None:
            out["freeze_change"] = self.freeze_change
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "TrialConfig":
        data = dict(data or {})
        unknown = set(data) - {"compress_activations", "precision", "freeze", "freeze_change"}
        if unknown:
            raise UsageError(
                f"trial configuration: unknown key {sorted(unknown)[0]!r}; valid: "
                "compress_activations, precision, freeze, freeze_change"
            )
        return cls(
            data.get("compress_activations"),
            data.get("precision", "fp32"),
            tuple(data.get("freeze") or ()),
            data.get("freeze_change"),
        )

    def describe(self) -> str:
        """One line for logs and reports."""
        parts = [
            f"activations {self.compress_activations}-bit"
            if isinstance(self.compress_activations, int)
            else "activations adaptive (GACT)"
            if self.compress_activations
            else "",
            self.precision if self.precision != "fp32" else "",
            f"freeze {','.join(self.freeze)}" if self.freeze else "",
            f"freeze-change {self.freeze_change:g}" if self.freeze_change is not None else "",
        ]
        return "; ".join(p for p in parts if p) or "fp32, no memory savers"

    def check(self, device: torch.device | None = None, workloads: Iterable[Any] = ()) -> None:
        """What the values alone cannot tell: bf16 on `device`, and each freeze rule on a fresh model
        of every workload (cheap: no data, no training), so a typo fails before any trial."""
        if self.precision != "fp32" and device is not None and not bf16_supported(device):
            raise UsageError(
                f"precision {self.precision!r} needs bf16, which device {str(device)!r} does "
                "not support: use fp32 (CUDA needs an Ampere or newer GPU)"
            )
        if self.freeze:
            for workload in workloads:
                with torch.random.fork_rng(devices=[]):
                    apply_freeze(workload.init_model(), self.freeze, workload.name)


def apply_freeze(model: torch.nn.Module, rules: Iterable[str], workload: str) -> int:
    """Freeze `rules` on `model`; returns the number of parameter entries frozen. A rule matching no
    parameter, or rules that leave nothing to train, are a `UsageError` naming the workload.
    A rule `first:K` freezes the model's first K parameter-owning modules."""
    rules = list(rules)
    names = [r for r in rules if not r.startswith("first:")]
    try:
        for rule in rules:
            if rule.startswith("first:"):
                count = rule.partition(":")[2]
                if not count.isdigit():
                    raise UsageError(f"rule {rule!r}: write first:K with K a positive integer")
                freeze_modules(model, first_k=int(count))
        if names:
            freeze_modules(model, modules=names)
    except UsageError as exc:
        raise UsageError(f"--freeze on workload {workload!r}: {exc}") from None
    if not any(p.requires_grad for p in model.parameters()):
        raise UsageError(
            f"--freeze {','.join(rules)} freezes every parameter of workload {workload!r}; leave something to train"
        )
    return sum(p.numel() for p in model.parameters() if not p.requires_grad)
