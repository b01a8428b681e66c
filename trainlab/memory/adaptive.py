"""Adaptive per-tensor bit widths for activation compression: GACT's auto-precision.

GACT (Liu, Zheng, Chen, Jayasinghe, Zhu, Gonzalez, Stoica, Zhang: "GACT: Activation Compressed
Training for Generic Network Architectures", ICML 2022, arXiv 2206.11357) models the extra gradient
variance that compressing saved tensor l at b_l bits adds as `C_l / (2^b_l - 1)^2`, and picks the
bits that minimise the total under an average-bits budget:

    minimise  sum_l C_l / (2^b_l - 1)^2   subject to   sum_l b_l * d_l <= bbar * sum_l d_l

(d_l = numel of tensor l). `allocate_bits` is its greedy solver: every tensor starts at the top level,
and the tensor whose variance increase per saved bit is smallest is lowered one level at a time until
the budget holds.

Levels: (32, 8, 4, 2). 32 means "kept exact" (zero variance; it still costs 32 bits per entry in the
budget, as in GACT, whatever the tensor's dtype). GACT also allows 1 bit; trainlab stops at 2 because
the public quantizer supports {2, 4, 8} and 1-bit activations are rarely worth their variance.

Sensitivity estimate `C_l` (GACT's gradient-difference probes, as in its `autoprec.py`): for each
tensor l, with every other tensor at its current bits and noise seeds, re-run the user's
forward+backward closure three times: tensor l at 1 bit (g0), at 1 bit with the next seed (g1), at
8 bits (g2); `C_l = max(||g0-g1||^2, 2 max(||g0-g2||^2, ||g1-g2||^2))` over the full flattened
parameter gradient, set to 1e10 when NaN, inf or larger. During the probes the RNG is reset before
each run (dropout and augmentation match) and the model's buffers (BatchNorm running statistics) are
restored after each run. Cost: 1 + 3 L extra forward+backward passes at every adaptation (L =
compressed tensors per step), so keep `adapt_interval` long (GACT: 1000).

No cheaper estimator is offered: the two tried did no better than uniform bits (docs/memory.md).

Tensors fixed by an op rule (`ActivationCompressor(op_bits=...)` keeps attention's saves and the
loss's log-probabilities at 8 bits by default) are not allocated, but they count in the budget, as
every compressed tensor does in GACT: the allocation gets what they leave, `bbar * (D + D_fixed) -
sum(b_fixed * d_fixed)` bits for the D entries it allocates, so the average over everything
compressed is `bbar` and the memory saved follows from the budget. Saved outputs that the compressor
rebuilds in backward (`recompute=True`) count as fixed at 0 bits: the budget is bits held per saved
entry, so 4 bits on average saves about as much as uniform 4 bits, and what the rebuilt entries free
goes to the sensitive tensors. When the fixed tensors alone exceed the budget, every allocated tensor gets the
lowest level.

Tensors are identified by their order of saving within a step (their index among the tensors that
are eligible for compression and not fixed by an op rule). This assumes the autograd graph saves the
same sequence of tensors every step; when the sequence of sizes differs from the one the bits were allocated for,
the table is
dropped and every tensor uses the initial bits (which respect the budget) until the next adaptation.
"""

from __future__ import annotations

import heapq
import math
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple, Protocol

import torch

from trainlab.errors import UsageError


class Probed(Protocol):
    """What the probes need of `trainlab.memory.activations.ActivationCompressor` (a protocol, so that
    this module, which the compressor imports, does not import it back)."""

    model: torch.nn.Module | None
    policy: Any

    def probing(self) -> AbstractContextManager[None]: ...
    def probe(self, closure: Callable[[], object], override: ProbeOverride | None = None) -> list[int]: ...


BIT_LEVELS = (32, 8, 4, 2)


class ProbeOverride(NamedTuple):
    """During one probe run: adaptive tensor `index` is packed at `bits` with noise seed offset
    `seed_offset`; every other tensor keeps its bits and its noise."""

    index: int  # type: ignore[assignment]  # shadows tuple.index, which nothing here calls
    bits: int
    seed_offset: int


_CAP = 1e10  # GACT's ceiling on a sensitivity (also used for NaN / inf)


def _variance_factor(bits: int) -> float:
    """1 / (2^b - 1)^2, with 32 bits treated as exact (zero variance), as GACT does."""
    return 0.0 if bits >= 32 else 1.0 / (2**bits - 1) ** 2


def allocate_bits(
    sensitivity: Sequence[float], numel: Sequence[int], average_bits: float, levels: Sequence[int] = BIT_LEVELS
) -> list[int]:
    """GACT's greedy bit allocation: bits per tensor with `sum b*d <= average_bits * sum d`.

    Start every tensor at `max(levels)`; repeatedly lower by one level the tensor with the smallest
    `C * (1/(2^b'-1)^2 - 1/(2^b-1)^2) / (d * (b - b'))` until the budget holds.
    """
    if len(sensitivity) != len(numel):
        raise ValueError(f"{len(sensitivity)} sensitivities for {len(numel)} tensors")
    order = sorted(set(int(b) for b in levels), reverse=True)
    if average_bits < order[-1]:
        raise ValueError(f"average_bits {average_bits} is below the lowest level {order[-1]}")
    bits = [order[0]] * len(numel)
    budget = average_bits * sum(numel)
    used = order[0] * sum(numel)
    level = [0] * len(numel)

    def cost(i: int) -> float:
        b, lower = order[level[i]], order[level[i] + 1]
        c = _clean(sensitivity[i])
        increase = c * (_variance_factor(lower) - _variance_factor(b))
        return increase / (max(numel[i], 1) * (b - lower))

    heap = [(cost(i), i) for i in range(len(numel)) if len(order) > 1]
    heapq.heapify(heap)
    while used > budget and heap:
        _, i = heapq.heappop(heap)
        used -= (order[level[i]] - order[level[i] + 1]) * numel[i]
        level[i] += 1
        bits[i] = order[level[i]]
        if level[i] + 1 < len(order):
            heapq.heappush(heap, (cost(i), i))
    return bits


def gact_sensitivity(g0: torch.Tensor, g1: torch.Tensor, g2: torch.Tensor) -> float:
    """GACT's C_l from three flattened gradients: 1 bit (g0), 1 bit next seed (g1), 8 bits (g2)."""
    d01 = torch.sum((g0 - g1) ** 2).item()
    d02 = torch.sum((g0 - g2) ** 2).item()
    d12 = torch.sum((g1 - g2) ** 2).item()
    return _clean(max(d01, 2.0 * max(d02, d12)))


def _clean(c: float) -> float:
    c = float(c)
    return _CAP if math.isnan(c) or math.isinf(c) or c > _CAP else c


class AdaptivePrecision:
    """The per-tensor bit table and its bookkeeping across steps (used by `ActivationCompressor`)."""

    def __init__(
        self, average_bits: float = 4.0, adapt_interval: int = 1000, levels: Sequence[int] = BIT_LEVELS
    ) -> None:
        if not 2 <= average_bits:
            raise UsageError(f"average_bits must be at least 2 (the lowest level), got {average_bits!r}")
        if isinstance(adapt_interval, bool) or not isinstance(adapt_interval, int) or adapt_interval < 1:
            raise UsageError(f"adapt_interval must be a positive int, got {adapt_interval!r}")
        self.average_bits = float(average_bits)
        self.adapt_interval = int(adapt_interval)
        self.levels = tuple(sorted(set(levels), reverse=True))
        # Before the first adaptation every tensor gets the largest level within the budget.
        self.initial_bits = max(b for b in self.levels if b <= self.average_bits)
        self.bits: list[int] | None = None  # per tensor index, after an adaptation
        self.numels: list[int] | None = None  # the layout `bits` was allocated for
        self.sensitivity: list[float] | None = None
        self.last_layout: list[int] = []  # sizes seen in the last complete step
        self.fixed: list[tuple[int, int]] = []  # (numel, bits) fixed by op rules, last allocation
        self._seen: list[int] = []
        self._fixed_seen: list[tuple[int, int]] = []
        self._warned = False

    @property
    def seen_layout(self) -> list[int]:
        """Sizes of the adaptive tensors saved so far in this step, in saving order."""
        return list(self._seen)

    @property
    def fixed_layout(self) -> list[tuple[int, int]]:
        """(numel, bits) of the op-fixed tensors saved so far in this step."""
        return list(self._fixed_seen)

    def bits_for(self, index: int, numel: int) -> int:
        if self.bits is not None and self.numels is not None and index < len(self.bits) and self.numels[index] == numel:
            return self.bits[index]
        return self.initial_bits

    def begin_step(self) -> None:
        self._seen = []
        self._fixed_seen = []

    def observe(self, numel: int) -> None:
        self._seen.append(numel)

    def observe_fixed(self, numel: int, bits: int) -> None:
        """A compressed tensor whose bits an op rule fixed: not allocated, but in the budget."""
        self._fixed_seen.append((numel, bits))

    def end_step(self) -> None:
        self.last_layout = self._seen
        if self.numels is not None and self._seen != self.numels:
            if not self._warned:
                warnings.warn(
                    "adaptive activation bits: the saved-tensor sequence changed since the "
                    "last adaptation; using the initial bits until the next one",
                    stacklevel=3,
                )
                self._warned = True
            self.bits = self.numels = None

    def allocate(
        self, sensitivity: Sequence[float], layout: Sequence[int], fixed: Sequence[tuple[int, int]] = ()
    ) -> list[int]:
        """Bits per allocated tensor; `fixed`: (numel, bits) of the op-fixed tensors, in the budget."""
        self.sensitivity = [float(c) for c in sensitivity]
        self.numels = list(layout)
        self.fixed = [(int(n), int(b)) for n, b in fixed]
        self.bits = allocate_bits(self.sensitivity, self.numels, self.allocatable_average(), self.levels)
        self._warned = False
        return self.bits

    def allocatable_average(self) -> float:
        """Average bits left for the allocated tensors once the op-fixed ones have taken theirs."""
        total = sum(self.numels or ())
        if not total:
            return self.average_bits
        fixed_numel = sum(n for n, _ in self.fixed)
        left = self.average_bits * (total + fixed_numel) - sum(n * b for n, b in self.fixed)
        return min(max(left / total, min(self.levels)), max(self.levels))


def probe_sensitivities(
    compressor: Probed, closure: Callable[[], object]
) -> tuple[list[float], list[int], list[tuple[int, int]]]:
    """GACT's gradient-difference probes: (C_l per tensor, the layout probed, (numel, bits) of the
    op-fixed tensors). See module docstring.

    `closure` runs forward and backward (it must not zero gradients or step the optimizer). The
    parameters' `.grad`, the model's buffers, the RNG state and the meter's peak are restored after.
    """
    model = compressor.model
    assert model is not None, "adaptive bits probe the model's parameters"
    params = [p for p in model.parameters() if p.requires_grad]
    saved_grads = [p.grad for p in params]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    cuda = sorted({p.device.index or 0 for p in params if p.device.type == "cuda"})

    def run(override: ProbeOverride | None):
        torch.set_rng_state(cpu_rng)
        if cuda:
            for dev, state in zip(cuda, cuda_rng):
                torch.cuda.set_rng_state(state, dev)
        for p in params:
            p.grad = None
        try:
            layout = compressor.probe(closure, override)
        finally:
            with torch.no_grad():
                for b, value in buffers:
                    b.copy_(value)
        flat = (
            torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in params])
            if params
            else torch.zeros(0)
        )
        return flat, layout

    try:
        with compressor.probing(), torch.random.fork_rng(devices=cuda):
            cpu_rng = torch.get_rng_state()
            cuda_rng = [torch.cuda.get_rng_state(d) for d in cuda]
            _, layout = run(None)
            fixed = compressor.policy.fixed_layout
            sens = []
            for index in range(len(layout)):
                g0, l0 = run(ProbeOverride(index, 1, 0))
                g1, l1 = run(ProbeOverride(index, 1, 1))
                g2, l2 = run(ProbeOverride(index, 8, 0))
                if not (l0 == l1 == l2 == layout):
                    raise RuntimeError(
                        "the saved-tensor sequence changed between probe runs; adaptive "
                        "bits need the closure to build the same graph every time"
                    )
                sens.append(gact_sensitivity(g0, g1, g2))
    finally:
        for p, g in zip(params, saved_grads):
            p.grad = g
    return sens, layout, fixed
