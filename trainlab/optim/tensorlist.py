"""Run a per-tensor rule on whole lists of tensors at once: the multi-tensor (foreach) path derived
from the same rule the per-tensor and fused paths run, so each update rule is written once.

`TensorList` holds one tensor per parameter of a bucket. Its arithmetic (`+ - * /`, unary minus,
`.sqrt()`) and the torch functions a rule may call (`torch.lerp`, `torch.sign`, `torch.abs`,
`torch.sigmoid`, `torch.sqrt`, `torch.maximum`, `torch.minimum`, `torch.clamp_min`, ...) map to
`torch._foreach_*` ops, one launch per op for the whole bucket. Two per-tensor reductions are
allowed (`trainlab.optim.modifiers` needs them): `torch.linalg.vector_norm(x)`
(`torch._foreach_norm`) and `x.mean()`, each one 0-d tensor per parameter, which then broadcast
against that parameter's tensors. A rule that calls anything else raises `TypeError` naming the
function, so a new rule cannot silently fall back to a slow path. Python numbers stay numbers: `s`,
the rule's scalars, broadcast as foreach scalars do.

Why a plan: run out of place, every op allocates a bucket-sized temporary (page faults on a CPU:
lion's step took 5x a hand-written chain's). The first run of a rule (per number of states and
dtypes) records its ops and which values each reads (`_Run`); `_plan` then marks the ops that may
overwrite an operand in place (the operand's last use, same shape kind and dtype, never a
gradient), including the parameter and state tensors themselves, so a value returned for a slot
that already lives in that slot's tensor is not copied. Later runs follow the plan. In-place and
out-of-place foreach ops compute the same elementwise values (a commutative op may swap its
operands: IEEE + * max min are commutative bit for bit), so the numbers do not change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

UNARY: dict[Callable, str] = {
    torch.sign: "sign",
    torch.abs: "abs",
    torch.sigmoid: "sigmoid",
    torch.sqrt: "sqrt",
    torch.neg: "neg",
    torch.exp: "exp",
    torch.reciprocal: "reciprocal",
    torch.Tensor.sqrt: "sqrt",
    torch.Tensor.abs: "abs",
    torch.Tensor.sign: "sign",
}
BINARY: dict[Callable, str] = {
    torch.maximum: "maximum",
    torch.minimum: "minimum",
    torch.mul: "mul",
    torch.add: "add",
    torch.sub: "sub",
    torch.div: "div",
}
COMMUTATIVE = frozenset({"maximum", "minimum", "mul", "add"})
# (tensors, number or tensors): the second argument may be a number
WITH_NUMBER: dict[Callable, str] = {torch.clamp_min: "clamp_min", torch.clamp_max: "clamp_max"}
REDUCTIONS = frozenset({"mean", "norm"})  # one 0-d tensor per parameter


def _reduce(name: str, items: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch._foreach_norm(items)) if name == "norm" else [t.mean() for t in items]


@dataclass
class _Op:
    name: str
    args: tuple[int | None, ...]  # node ids of the tensor operands, None for a number
    out: int


@dataclass
class _Plan:
    names: tuple[str, ...]  # the recorded op sequence, checked on every run
    inplace: tuple[int | None, ...]  # per op: which operand to overwrite, or None
    copy: tuple[bool, ...]  # per slot (param, *states): whether the result must be copied there


class _Run:
    """One evaluation of a rule: records its ops (no plan yet) or follows a plan."""

    def __init__(self, plan: _Plan | None) -> None:
        self.plan = plan
        self.ops: list[_Op] = []
        self.nodes = 0
        self.reduced: dict[int, bool] = {}
        self.dtype: dict[int, torch.dtype] = {}

    def leaf(self, items: list[torch.Tensor]) -> int:
        """A new input node (the parameters, gradients or one state column): its id."""
        node = self.nodes
        self.nodes += 1
        self.reduced[node] = False
        self.dtype[node] = items[0].dtype if items else torch.float32
        return node

    def op(self, name: str, *args: Any) -> TensorList:
        index = len(self.ops)
        nodes = tuple(a.node if isinstance(a, TensorList) else None for a in args)
        values = [a.items if isinstance(a, TensorList) else a for a in args]
        pos = None
        if self.plan is not None:
            if index >= len(self.plan.names) or self.plan.names[index] != name:
                raise RuntimeError(f"the rule's ops changed between calls at op {index} ({name})")
            pos = self.plan.inplace[index]
        if name in REDUCTIONS:
            items = _reduce(name, values[0])
        elif pos is None:
            items = getattr(torch, f"_foreach_{name}")(*values)
        else:
            if pos == 1:
                values[0], values[1] = values[1], values[0]
            getattr(torch, f"_foreach_{name}_")(*values)
            items = values[0]
        out = self.nodes
        self.nodes += 1
        self.ops.append(_Op(name, nodes, out))
        tensor_args = [n for n in nodes if n is not None]
        self.reduced[out] = name in REDUCTIONS or all(self.reduced[n] for n in tensor_args)
        self.dtype[out] = items[0].dtype if items else torch.float32
        return TensorList(items, self, out)


def _plan(run: _Run, returned: Sequence[int | None], slots: int) -> _Plan:
    """Which ops may overwrite an operand, given the recorded run. Node ids: 0 the parameter,
    1 the gradient, 2.. the state columns (slot i >= 1 is node i + 1); slot 0 is node 0."""
    slot_of = {0: 0, **{i + 1: i for i in range(1, slots)}}
    banned: set[int] = set()
    while True:
        last: dict[int, float] = {}
        for k, op in enumerate(run.ops):
            for n in op.args:
                if n is not None:
                    last[n] = k
        for n in returned:
            if n is not None:
                last[n] = float("inf")
        buffer: dict[int, Any] = {n: ("slot", s) for n, s in slot_of.items()}
        buffer[1] = ("grad",)
        inplace: list[int | None] = []
        for k, op in enumerate(run.ops):
            pos = None
            if op.name not in REDUCTIONS:
                choices = (0, 1) if op.name in COMMUTATIVE and len(op.args) == 2 else (0,)
                for c in choices:
                    n = op.args[c]
                    if n is None or last.get(n) != k or op.args.count(n) > 1:
                        continue
                    if run.reduced[n] != run.reduced[op.out] or run.dtype[n] != run.dtype[op.out]:
                        continue
                    if buffer[n] == ("grad",) or buffer[n] in {("slot", b) for b in banned}:
                        continue
                    pos = c
                    break
            buffer[op.out] = buffer[op.args[pos]] if pos is not None else ("temp", k)  # type: ignore[index]
            inplace.append(pos)
        conflicts = {
            buffer[n][1]
            for i, n in enumerate(returned)
            if n is not None and n not in slot_of and buffer[n][0] == "slot" and buffer[n][1] != i
        }
        if not conflicts - banned:
            copy = tuple(n is None or buffer.get(n) != ("slot", i) or n in slot_of for i, n in enumerate(returned))
            return _Plan(tuple(op.name for op in run.ops), tuple(inplace), copy)
        banned |= conflicts


class TensorList:
    """A bucket's tensors, one per parameter, behaving as one tensor inside a rule."""

    __slots__ = ("items", "run", "node")

    def __init__(self, items: Sequence[torch.Tensor], run: _Run | None = None, node: int | None = None) -> None:
        self.items = list(items)
        self.run = run if run is not None else _Run(None)
        self.node = node if node is not None else self.run.leaf(self.items)

    def _op(self, name: str, *args: Any) -> TensorList:
        return self.run.op(name, self, *args)

    def __add__(self, other: Any) -> TensorList:
        return self._op("add", other)

    __radd__ = __add__

    def __mul__(self, other: Any) -> TensorList:
        return self._op("mul", other)

    __rmul__ = __mul__

    def __sub__(self, other: Any) -> TensorList:
        return self._op("sub", other)

    def __rsub__(self, other: Any) -> TensorList:  # number - list
        return self._op("neg")._op("add", other)

    def __truediv__(self, other: Any) -> TensorList:
        return self._op("div", other)

    def __rtruediv__(self, other: Any) -> TensorList:  # number / list
        return self._op("reciprocal")._op("mul", other)

    def __neg__(self) -> TensorList:
        return self._op("neg")

    def sqrt(self) -> TensorList:
        return self._op("sqrt")

    def abs(self) -> TensorList:
        return self._op("abs")

    def sign(self) -> TensorList:
        return self._op("sign")

    def mean(self) -> TensorList:
        """Per-tensor reduction: each tensor's mean, a 0-d tensor (one reduction per tensor)."""
        return self._op("mean")

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if kwargs:
            raise TypeError(f"{getattr(func, '__name__', func)} with keyword arguments is not supported in a rule")
        if func in UNARY and len(args) == 1:
            return args[0]._op(UNARY[func])
        if func in BINARY and len(args) == 2:
            first, second = args
            if not isinstance(first, TensorList):  # number op list: only the commutative ones
                if BINARY[func] not in COMMUTATIVE:
                    raise TypeError(
                        f"{func.__name__}(number, tensors) has no multi-tensor form: write it with operators"
                    )
                first, second = second, first
            return first._op(BINARY[func], second)
        if func in WITH_NUMBER and len(args) == 2 and isinstance(args[0], TensorList):
            return args[0]._op(WITH_NUMBER[func], args[1])
        if func is torch.linalg.vector_norm and len(args) == 1:  # per tensor: one 0-d norm each
            return args[0]._op("norm")
        if func in (torch.mean, torch.Tensor.mean) and len(args) == 1:
            return args[0]._op("mean")
        if func is torch.lerp and len(args) == 3 and isinstance(args[0], TensorList):
            return args[0]._op("lerp", *args[1:])
        raise TypeError(
            f"{getattr(func, '__name__', func)} has no multi-tensor form: an elementwise rule may use "
            "+ - * /, sqrt, lerp, sign, abs, sigmoid, exp, reciprocal, maximum, minimum, clamp_min, "
            "clamp_max, and the per-tensor reductions mean and linalg.vector_norm"
        )


_PLANS: dict[tuple, _Plan] = {}


def apply(
    rule: Callable[..., tuple],
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    states: list[tuple[torch.Tensor, ...]],
    scalars: tuple[float, ...],
) -> None:
    """Update `params` and each parameter's rule states in place with `rule`, one bucket at once."""
    columns = [list(column) for column in zip(*states)] if states and states[0] else []
    targets = [params, *columns]
    kinds = tuple(frozenset((t.dtype, t.device) for t in column) for column in [params, grads, *columns])
    key = (rule, len(columns), kinds)
    plan = _PLANS.get(key) if all(len(kind) == 1 for kind in kinds) else None
    run = _Run(plan)
    p, g = TensorList(params, run), TensorList(grads, run)
    new = rule(p, g, tuple(TensorList(column, run) for column in columns), scalars)
    returned = [value.node if isinstance(value, TensorList) and value.run is run else None for value in new]
    copy = plan.copy if plan is not None else (True,) * len(targets)
    if plan is None and all(len(kind) == 1 for kind in kinds):
        _PLANS[key] = _plan(run, returned, len(targets))
    for destination, value, needed in zip(targets, new, copy):
        if needed:
            torch._foreach_copy_(destination, value.items if isinstance(value, TensorList) else value)
