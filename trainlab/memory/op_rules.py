"""Which op saves a tensor, and the bits an op rule gives it.

Sensitivity to compression is a property of the op that saves a tensor, not of the tensor: attention
recomputes its probabilities from the saved q, k and an exact logsumexp, so 4-bit q, k give rows
that no longer sum to one; the loss exponentiates its saved log-probabilities. While compressing, a
`TorchFunctionMode` (`OpRecorder`) keeps the torch function now running on a stack, so the pack hook
can ask `site()` which op saves a tensor and at which argument position. `op_bits` maps an op name
to bits for everything it saves, or per position ({0: 8, 1: 8, "out": 4}); None or 32 keeps it
exact. The defaults and the measurements behind them: docs/memory.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import torch
from torch.overrides import TorchFunctionMode

from trainlab.errors import UsageError
from trainlab.memory.quantize import ALLOWED_BITS
from trainlab.memory.saved_tensors import storage_key

# bits for every tensor an op saves, or per position among its tensor arguments ("out": the rest)
OpRule = int | None | Mapping[int | str, int | None]
DEFAULT_OP_BITS: dict[str, OpRule] = {"scaled_dot_product_attention": 8, "cross_entropy": 8}
MISSING = object()  # `lookup`: no rule for this op and position (the general rules apply)


class OpRecorder(TorchFunctionMode):
    """Keeps the torch function now running on `stack`, as (func, args, kwargs).

    A mode is switched off while its handler runs, so only the outermost torch-level call is seen
    (`scaled_dot_product_attention`, `layer_norm`, `linear`, `cross_entropy`, not their kernels).
    `on_result(func, args, kwargs, result)` is called after each outermost call."""

    def __init__(self, stack: list, on_result: Callable | None = None) -> None:
        super().__init__()
        self.stack = stack
        self.on_result = on_result

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.stack.append((func, args, kwargs))
        try:
            result = func(*args, **kwargs)
        finally:
            self.stack.pop()
        if self.on_result is not None and not self.stack:
            self.on_result(func, args, kwargs, result)
        return result


def site(ops: list, t: torch.Tensor) -> tuple[str | None, int | None]:
    """(name of the torch function saving `t`, position of `t` among its tensor arguments), with `ops`
    an `OpRecorder`'s stack.

    The name is None when no torch function is running; the position is None when `t` is none of
    the arguments (an output, or a statistic the op computed: LayerNorm's mean/rstd, attention's
    logsumexp). An argument matches when it has `t`'s storage and storage offset, so the views an op
    makes of its inputs still match."""
    if not ops:
        return None, None
    func, args, kwargs = ops[-1]
    name = getattr(func, "__name__", None) or repr(func)
    key = storage_key(t)[0]
    if key is None:
        return name, None
    for position, arg in enumerate(tensors_in((args, kwargs))):
        if arg.storage_offset() == t.storage_offset() and storage_key(arg)[0] == key:
            return name, position
    return name, None


def lookup(op_bits: Mapping[str, OpRule], name: str | None, position: int | None):
    """The rule of op `name` for the tensor at `position` (bits or None), or `MISSING`."""
    if name is None or name not in op_bits:
        return MISSING
    rule = op_bits[name]
    if isinstance(rule, Mapping):
        return rule.get("out" if position is None else position, MISSING)  # unlisted: general rules
    return rule


def check_op_bits(op_bits: Mapping[str, OpRule]) -> dict[str, OpRule]:
    def ok(bits) -> bool:
        return bits is None or (not isinstance(bits, bool) and bits in (*ALLOWED_BITS, 32))

    for name, rule in op_bits.items():
        rules = rule.items() if isinstance(rule, Mapping) else [(None, rule)]
        for key, bits in rules:
            if not ok(bits) or not (key is None or key == "out" or (isinstance(key, int) and key >= 0)):
                raise UsageError(
                    f"op_bits[{name!r}]: bits must be 2, 4, 8, 32 or None (kept as is), keyed "
                    f"by argument position or 'out'; got {rule!r}"
                )
    return dict(op_bits)


def tensors_in(obj) -> Iterator[torch.Tensor]:
    """The tensors in nested args/kwargs, in order."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from tensors_in(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from tensors_in(item)
