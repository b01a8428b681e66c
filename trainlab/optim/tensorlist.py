"""Run a per-tensor rule on whole lists of tensors at once: the multi-tensor (foreach) path derived
from the same rule the per-tensor and fused paths run, so each update rule is written once.

`TensorList` holds one tensor per parameter of a bucket. Its arithmetic (`+ - * /`, unary minus,
`.sqrt()`) and the torch functions a rule may call (`torch.lerp`, `torch.sign`, `torch.abs`,
`torch.sigmoid`, `torch.sqrt`, `torch.maximum`, `torch.minimum`, `torch.clamp_min`, ...) map to
the out-of-place `torch._foreach_*` ops, one launch per op for the whole bucket. Two per-tensor
reductions are allowed (`trainlab.optim.modifiers` needs them): `torch.linalg.vector_norm(x)`
(`torch._foreach_norm`) and `x.mean()`, each one 0-d tensor per parameter, which then broadcast
against that parameter's tensors. A rule that calls anything else
raises `TypeError` naming the function, so a new rule cannot silently fall back to a slow path.
Python numbers stay numbers: `s`, the rule's scalars, broadcast as foreach scalars do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

UNARY: dict[Callable, Callable] = {
    torch.sign: torch._foreach_sign,
    torch.abs: torch._foreach_abs,
    torch.sigmoid: torch._foreach_sigmoid,
    torch.sqrt: torch._foreach_sqrt,
    torch.neg: torch._foreach_neg,
    torch.exp: torch._foreach_exp,
    torch.reciprocal: torch._foreach_reciprocal,
    torch.Tensor.sqrt: torch._foreach_sqrt,
    torch.Tensor.abs: torch._foreach_abs,
    torch.Tensor.sign: torch._foreach_sign,
}
BINARY: dict[Callable, Callable] = {
    torch.maximum: torch._foreach_maximum,
    torch.minimum: torch._foreach_minimum,
    torch.mul: torch._foreach_mul,
    torch.add: torch._foreach_add,
    torch.sub: torch._foreach_sub,
    torch.div: torch._foreach_div,
}

COMMUTATIVE = (torch.maximum, torch.minimum, torch.mul, torch.add)
# (tensors, number or tensors): the second argument may be a number
WITH_NUMBER: dict[Callable, Callable] = {
    torch.clamp_min: torch._foreach_clamp_min,
    torch.clamp_max: torch._foreach_clamp_max,
}


class TensorList:
    """A bucket's tensors, one per parameter, behaving as one tensor inside a rule."""

    __slots__ = ("items",)

    def __init__(self, items: Sequence[torch.Tensor]) -> None:
        self.items = list(items)

    @staticmethod
    def _other(value: Any) -> Any:
        return value.items if isinstance(value, TensorList) else value

    def __add__(self, other: Any) -> TensorList:
        return TensorList(torch._foreach_add(self.items, self._other(other)))

    __radd__ = __add__

    def __mul__(self, other: Any) -> TensorList:
        return TensorList(torch._foreach_mul(self.items, self._other(other)))

    __rmul__ = __mul__

    def __sub__(self, other: Any) -> TensorList:
        return TensorList(torch._foreach_sub(self.items, self._other(other)))

    def __rsub__(self, other: Any) -> TensorList:  # number - list
        return TensorList(torch._foreach_add(torch._foreach_neg(self.items), other))

    def __truediv__(self, other: Any) -> TensorList:
        return TensorList(torch._foreach_div(self.items, self._other(other)))

    def __rtruediv__(self, other: Any) -> TensorList:  # number / list
        return TensorList(torch._foreach_mul(torch._foreach_reciprocal(self.items), other))

    def __neg__(self) -> TensorList:
        return TensorList(torch._foreach_neg(self.items))

    def sqrt(self) -> TensorList:
        return TensorList(torch._foreach_sqrt(self.items))

    def abs(self) -> TensorList:
        return TensorList(torch._foreach_abs(self.items))

    def sign(self) -> TensorList:
        return TensorList(torch._foreach_sign(self.items))

    def mean(self) -> TensorList:
        """Per-tensor reduction: each tensor's mean, a 0-d tensor (one reduction per tensor)."""
        return TensorList([t.mean() for t in self.items])

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if kwargs:
            raise TypeError(f"{getattr(func, '__name__', func)} with keyword arguments is not supported in a rule")
        values = [cls._other(a) for a in args]
        if func in UNARY and len(values) == 1:
            return TensorList(UNARY[func](values[0]))
        if func in BINARY and len(values) == 2:
            first, second = values
            if not isinstance(args[0], TensorList):  # number op list: only the commutative ones
                if func not in COMMUTATIVE:
                    raise TypeError(
                        f"{func.__name__}(number, tensors) has no multi-tensor form: write it with operators"
                    )
                first, second = second, first
            return TensorList(BINARY[func](first, second))
        if func in WITH_NUMBER and len(values) == 2 and isinstance(args[0], TensorList):
            return TensorList(WITH_NUMBER[func](values[0], values[1]))
        if func is torch.linalg.vector_norm and len(values) == 1:  # per tensor: one 0-d norm each
            return TensorList(list(torch._foreach_norm(values[0])))
        if func in (torch.mean, torch.Tensor.mean) and len(values) == 1:
            return args[0].mean()
        if func is torch.lerp and len(values) == 3:
            return TensorList(torch._foreach_lerp(*values))
        raise TypeError(
            f"{getattr(func, '__name__', func)} has no multi-tensor form: an elementwise rule may use "
            "+ - * /, sqrt, lerp, sign, abs, sigmoid, exp, reciprocal, maximum, minimum, clamp_min, "
            "clamp_max, and the per-tensor reductions mean and linalg.vector_norm"
        )


def apply(
    rule: Callable[..., tuple],
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    states: list[tuple[torch.Tensor, ...]],
    scalars: tuple[float, ...],
) -> None:
    """Update `params` and each parameter's rule states in place with `rule`, one bucket at once."""
    columns = tuple(TensorList(list(column)) for column in zip(*states)) if states and states[0] else ()
    new = rule(TensorList(params), TensorList(grads), columns, scalars)
    targets = [params, *[column.items for column in columns]]
    for destination, value in zip(targets, new):
        source = value.items if isinstance(value, TensorList) else value
        torch._foreach_copy_(destination, source)
