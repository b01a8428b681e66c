"""Rebuilding saved outputs of cheap ops in backward instead of storing them twice.

A transformer block saves many tensors twice over: GELU saves its input h and the next linear layer
saves gelu(h); LayerNorm saves its input x and the next linear layer saves layer_norm(x). When the
output of an op in `RECOMPUTABLE` is saved again, the compressor keeps a `Recipe` instead of a second
pack: the op and references to the packs of its saved inputs (parameters by reference, checked for
in-place changes); backward applies the op to the dequantized inputs. It costs one elementwise or
normalization pass in backward and no bytes. ReLU, tanh and sigmoid save their output, which the
next layer's save already shares, so they need none. Measurements: docs/memory.md.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch

from trainlab.memory.op_rules import tensors_in
from trainlab.memory.saved_tensors import Recipe, Saved, SharedPack, identity_key, is_dense, storage_key

RECOMPUTABLE = frozenset({"gelu", "silu", "layer_norm"})


class StateInput(NamedTuple):
    """A model-state argument of a recipe (a parameter), with its version when the op ran."""

    tensor: torch.Tensor
    version: int


class SavedInput(NamedTuple):
    """A saved-activation argument of a noted op: the pack it shares and its layout when it ran."""

    shared: weakref.ref  # the `Saved` owning the pack
    is_view: bool
    shape: tuple
    stride: tuple
    version: int
    source: weakref.ref  # the argument itself


class NotedOutput(NamedTuple):
    """A RECOMPUTABLE op's output, noted when the op ran, in case it is saved later."""

    output: weakref.ref
    func: Callable
    template: object  # args/kwargs with tensors replaced by `_Slot`s
    inputs: tuple  # StateInput | SavedInput, in `tensors_in` order
    dtype: torch.dtype


def note_output(
    func, args, kwargs, result, shared: Mapping[tuple, SharedPack], classify: Callable[[torch.Tensor], str]
) -> tuple[tuple, NotedOutput] | None:
    """(key, note) for `result` if `func` is RECOMPUTABLE and each of its tensor arguments is model
    state or already saved (`shared`); None when it could not be rebuilt from what the hooks hold."""
    if (
        getattr(func, "__name__", None) not in RECOMPUTABLE
        or not isinstance(result, torch.Tensor)
        or not result.is_floating_point()
        or not result.is_contiguous()
        or result.numel() == 0
    ):
        return None
    key = identity_key(result, True)
    if key is None:
        return None
    inputs: list[StateInput | SavedInput] = []
    for arg in tensors_in((args, kwargs)):
        if storage_key(arg)[0] == key[0]:
            return None  # in place: the output overwrote an input
        if classify(arg) == "state":
            inputs.append(StateInput(arg, arg._version))
            continue
        hit = shared.get(identity_key(arg, is_dense(arg)) or ())
        if hit is None or not hit.alive():
            return None  # an input that is not saved: rebuilding would need more than the hooks hold
        inputs.append(
            SavedInput(hit.shared, hit.is_view, tuple(arg.shape), tuple(arg.stride()), arg._version, hit.tensor)
        )
    template = _slots((args, kwargs), iter(range(1 << 30)))
    return key, NotedOutput(weakref.ref(result), func, template, tuple(inputs), result.dtype)


def recipe_for(note: NotedOutput | None, t: torch.Tensor) -> Recipe | None:
    """A recipe for `t` if `note` is its op's and the saved inputs are still alive."""
    if note is None or note.output() is None or note.dtype != t.dtype:
        return None
    inputs: list[Saved | StateInput] = []
    for item in note.inputs:
        if isinstance(item, StateInput):
            inputs.append(item)
            continue
        shared = item.shared()
        if shared is None:
            return None
        inputs.append(
            Saved.view_of(shared, item.shape, item.stride, item.version, item.source) if item.is_view else shared
        )
    return Recipe(note.func, note.template, tuple(inputs), note.dtype)


def rebuild(recipe: Recipe, unpack: Callable[[Saved], torch.Tensor]) -> torch.Tensor:
    """The recipe's output, flat, in its original dtype."""
    values = []
    for item in recipe.inputs:
        if isinstance(item, Saved):
            values.append(unpack(item))
            continue
        if item.tensor._version != item.version:
            raise RuntimeError(
                "a parameter needed to recompute a saved activation was modified in place "
                f"between forward and backward ({list(item.tensor.shape)}, version "
                f"{item.tensor._version}, expected {item.version}); use recompute=False"
            )
        values.append(item.tensor.detach())
    args, kwargs = _fill(recipe.template, values)
    with torch.no_grad():
        out = recipe.func(*args, **kwargs)
    return out.to(recipe.dtype).contiguous().view(-1)


class _Slot(int):
    """Where the i-th tensor argument goes in a recipe's argument template."""


Template = _Slot | list | tuple | dict | object


def _slots(obj, counter) -> Template:
    """`obj` (nested args/kwargs) with every tensor replaced by a numbered `_Slot`, in `tensors_in`
    order; containers without tensors (a torch.Size) are kept as they are."""
    if isinstance(obj, torch.Tensor):
        return _Slot(next(counter))
    if isinstance(obj, (list, tuple, dict)) and next(tensors_in(obj), None) is None:
        return obj
    if isinstance(obj, (list, tuple)):
        return (
            [_slots(item, counter) for item in obj]
            if isinstance(obj, list)
            else tuple(_slots(item, counter) for item in obj)
        )
    if isinstance(obj, dict):
        return {k: _slots(v, counter) for k, v in obj.items()}
    return obj


def _fill(obj, values):
    """The inverse of `_slots`: put `values[i]` where `_Slot(i)` is."""
    if isinstance(obj, _Slot):
        return values[obj]
    if isinstance(obj, list):
        return [_fill(item, values) for item in obj]
    if isinstance(obj, tuple) and any(isinstance(item, (_Slot, list, tuple, dict)) for item in obj):
        return tuple(_fill(item, values) for item in obj)
    if isinstance(obj, dict):
        return {k: _fill(v, values) for k, v in obj.items()}
    return obj
