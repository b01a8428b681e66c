"""Accounting of the tensors autograd saves for backward: `SavedTensorMeter` and the saved-tensor record.

Activations saved for backward usually dominate training memory (they scale with batch x sequence x
depth), and optimizer-side savings are moot if they stay. The meter installs
`torch.autograd.graph.saved_tensors_hooks`, so it works on any architecture without changing the
model, and counts exactly what the hooks reference (not the allocator): bytes from the pack until
autograd frees the saved variable (after backward, or when the graph is dropped), with the peak over
everything since `reset_peak()`. A saved tensor the caller also keeps alive is still counted.

- A storage saved several times (a tensor saved by two ops; q/k/v views of one qkv output) counts
  once, at its full size, since a view keeps it all alive.
- Model state is not counted: the model's parameters and buffers (matched by storage when `model` is
  given), any `nn.Parameter` or view of one, any leaf tensor requiring grad. They exist whether or not
  autograd saves them. Autocast's copies of parameters (bf16 weights) are counted.

`ActivationCompressor` (`trainlab.memory.activations`) extends the meter to hold packed tensors.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from trainlab.memory.quantize import PackedTensor, dequantize


class Recipe(NamedTuple):
    """How to rebuild a saved tensor: `func(*args, **kwargs)` with the tensors of `template` taken from
    `inputs` (`Saved` objects, unpacked, or `StateInput`s). `dtype`: the original output's.
    `trainlab.memory.recompute` makes them; defined beside `Saved`, which holds one, so that the two
    modules import one way."""

    func: Callable
    template: object
    inputs: tuple
    dtype: torch.dtype


class Saved:
    """What a pack hook returns: the tensor itself, its packed form, or a view of another `Saved`.
    Freed with the saved variable.

    A packed dense tensor is held as a view: `base` is the `Saved` owning the pack (in memory order),
    `view` the (shape, stride) to rebuild with `as_strided`; the pack lives while any view does.
    `version` is the saved tensor's version counter at pack time and `source` a weak reference to it:
    saved-tensor hooks switch off autograd's check that a saved tensor was not modified in place
    afterwards, so unpacking repeats it (for packed tensors, while the original is still alive).
    `recipe`: instead of a pack, how to rebuild the tensor in backward (`trainlab.memory.recompute`);
    it holds no bytes of its own.
    """

    __slots__ = ("tensor", "packed", "base", "view", "version", "source", "recipe", "__weakref__")

    def __init__(
        self,
        t: torch.Tensor,
        tensor: torch.Tensor | None = None,
        packed: PackedTensor | None = None,
        recipe: Recipe | None = None,
    ) -> None:
        self.tensor = tensor
        self.packed = packed
        self.base: Saved | None = None
        self.recipe = recipe
        self.view: tuple[tuple, tuple] | None = None
        self.version = t._version
        self.source: Callable[[], torch.Tensor | None] | None = None if tensor is not None else weakref.ref(t)

    @classmethod
    def view_of(cls, base: Saved, shape: tuple, stride: tuple, version: int, source: weakref.ref) -> Saved:
        """A view of `base`'s pack, from a saved tensor's recorded layout (it need not be alive)."""
        view = cls.__new__(cls)
        view.tensor = view.packed = view.recipe = None
        view.base, view.view, view.version, view.source = base, (shape, stride), version, source
        return view

    @classmethod
    def viewing(cls, base: Saved, t: torch.Tensor) -> Saved:
        """A view of `base`'s pack laid out as `t`."""
        return cls.view_of(base, tuple(t.shape), tuple(t.stride()), t._version, weakref.ref(t))


@dataclass
class _Held:
    """A storage held as is: how many saved tensors share it, and its bytes."""

    users: int
    nbytes: int


class SavedTensorMeter:
    """Context manager that keeps saved tensors as they are and measures the bytes they hold.

    `model` (optional) lets parameters and buffers be recognised by storage; without it, only
    `nn.Parameter`s, their views and leaf tensors requiring grad are recognised as model state.
    One `with` block per forward+backward (a step); the object is reused across steps.
    """

    def __init__(self, model: nn.Module | None = None) -> None:
        self.model = model
        self._lock = threading.RLock()  # finalizers can run from the garbage collector mid-update
        self._current = 0
        self._peak = 0
        self._storages: dict[tuple, _Held] = {}
        self._model_storages: set[tuple] = set()
        self._hooks: list = []

    # ---- measurements ------------------------------------------------------------------------

    @property
    def current_bytes(self) -> int:
        """Bytes held by saved tensors now."""
        return self._current

    @property
    def peak_bytes(self) -> int:
        """Largest `current_bytes` since construction or the last `reset_peak()`."""
        return self._peak

    def reset_peak(self) -> None:
        """Start a new peak window (at the current holding, normally 0 between steps)."""
        with self._lock:
            self._peak = self._current

    def restore_peak(self, peak: int) -> None:
        """Put back a peak read earlier: work that must not count (GACT's probes) is forgotten."""
        with self._lock:
            self._peak = peak

    # ---- context manager ---------------------------------------------------------------------

    def __enter__(self):
        if not self._hooks:
            self._model_storages = set()
            if self.model is not None:
                for t in (*self.model.parameters(), *self.model.buffers()):
                    key = storage_key(t)[0]
                    if key is not None:
                        self._model_storages.add(key)
            self._begin_step()
        hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        hooks.__enter__()
        self._hooks.append(hooks)
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.pop().__exit__(*exc)
        if not self._hooks:
            self._end_step()

    def _begin_step(self) -> None:
        pass

    def _end_step(self) -> None:
        pass

    # ---- hooks -------------------------------------------------------------------------------

    def _pack(self, t: torch.Tensor) -> Saved:
        if self.classify(t) == "state":
            return Saved(t, tensor=t)
        return self._hold(t)

    def _unpack(self, saved: Saved) -> torch.Tensor:
        original = saved.tensor if saved.tensor is not None or saved.source is None else saved.source()
        if original is not None and original._version != saved.version:
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by an inplace "
                f"operation: [{original.type()} {list(original.shape)}] is at version {original._version}; "
                f"expected version {saved.version} instead (detected by trainlab.memory's saved-tensor hooks)"
            )
        if saved.base is not None:
            assert saved.view is not None  # a view's (shape, stride)
            shape, stride = saved.view
            return self._materialize(saved.base).as_strided(shape, stride)
        if saved.packed is not None:
            return dequantize(saved.packed)
        assert saved.tensor is not None  # neither packed nor a view: held as is
        return saved.tensor

    def _materialize(self, base: Saved) -> torch.Tensor:
        """The flat values of a pack that views refer to."""
        assert base.packed is not None
        return dequantize(base.packed)

    def classify(self, t: torch.Tensor) -> str:
        """ "state" (model state: not counted, kept), "copy" (autocast copy of a parameter: counted,
        kept exact), or "activation"."""
        base = t._base if t._base is not None else t
        if isinstance(t, nn.Parameter) or isinstance(base, nn.Parameter):
            return "state"
        if base.is_leaf and base.requires_grad:
            return "state"
        if self._model_storages:
            key = storage_key(t)[0]
            if key is not None and key in self._model_storages:
                return "state"
        fn = base.grad_fn
        if fn is not None and type(fn).__name__ == "ToCopyBackward0" and fn.next_functions:
            source = fn.next_functions[0][0]
            if source is not None and isinstance(getattr(source, "variable", None), nn.Parameter):
                return "copy"
        return "activation"

    def _hold(self, t: torch.Tensor) -> Saved:
        """Keep `t` as is, counting its storage once however many saved tensors share it."""
        saved = Saved(t, tensor=t)
        key, nbytes = storage_key(t)
        if key is None:
            key = ("tensor", id(saved))
        with self._lock:
            held = self._storages.get(key)
            if held is None:
                self._storages[key] = _Held(1, nbytes)
                self._add(nbytes)
            else:
                held.users += 1
        weakref.finalize(saved, self._release_storage, key)
        return saved

    def _release_storage(self, key: tuple) -> None:
        with self._lock:
            held = self._storages[key]
            held.users -= 1
            if held.users == 0:
                del self._storages[key]
                self._current -= held.nbytes

    def _add(self, nbytes: int) -> None:
        with self._lock:
            self._current += nbytes
            if self._current > self._peak:
                self._peak = self._current

    def _release_bytes(self, nbytes: int) -> None:
        with self._lock:
            self._current -= nbytes


def storage_key(t: torch.Tensor) -> tuple[tuple | None, int]:
    """((device, storage address), storage bytes), or (None, tensor bytes) for storage-less tensors."""
    try:
        storage = t.untyped_storage()
        return (t.device.type, t.device.index, storage.data_ptr()), storage.nbytes()
    except (RuntimeError, NotImplementedError, TypeError):
        return None, t.numel() * t.element_size()


def identity_key(t: torch.Tensor, dense: bool) -> tuple | None:
    """Equal keys mean equal values: same bytes (unmodified: same version) read the same way.

    A dense tensor is keyed by the memory range it covers (any view of that range can share its
    pack); any other by its exact view (offset, shape, strides)."""
    key, _ = storage_key(t)
    if key is None:
        return None
    if dense:
        return (key, t.storage_offset(), t.numel(), t.dtype, t._version)
    return (key, t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype, t._version)


def is_dense(t: torch.Tensor) -> bool:
    """Whether `t`'s entries occupy exactly `numel` consecutive elements of its storage (any order)."""
    if t.numel() == 0:
        return False
    dims = sorted((st, size) for st, size in zip(t.stride(), t.shape) if size != 1)
    expected = 1
    for st, size in dims:
        if st != expected:
            return False
        expected *= size
    return True


class SharedPack(NamedTuple):
    """A pack every later save of the same bytes reuses (keyed by `identity_key`): weak references to
    the tensor first saved and to the `Saved` owning the pack, and whether saves take a view of it."""

    tensor: weakref.ref
    shared: weakref.ref
    is_view: bool

    def alive(self) -> bool:
        return self.tensor() is not None and self.shared() is not None


class SavedRecord(NamedTuple):
    """One saved tensor (`ActivationCompressor(trace=True).records`). `bits`: of the pack it refers
    to, None when kept as is; `nbytes`: bytes newly held (0 for model state and for shared packs)."""

    op: str | None
    position: int | None
    shape: tuple
    dtype: torch.dtype
    bits: int | None
    nbytes: int
    recomputed: bool = False  # held as a recipe over other saved tensors (`recompute=True`)
