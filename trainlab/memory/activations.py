"""Measure, and optionally compress, the tensors autograd saves for backward.

Activations saved for backward usually dominate training memory (they scale with batch x sequence
x depth), and optimizer-side savings are moot if they stay. Both classes here install
`torch.autograd.graph.saved_tensors_hooks`, so they work on any architecture without changing the
model (GACT's approach; ActNN instead swaps layers):

- `SavedTensorMeter` stores saved tensors as they are and counts the bytes they hold. Use it to
  measure the uncompressed baseline.
- `ActivationCompressor` (or `compress_activations(...)`) quantizes eligible saved tensors to
  2/4/8 bits (per-group min/scale, stochastic rounding: `trainlab.memory.quantize`), keeps the packed
  form, dequantizes in backward, and counts the bytes it holds in the same way. With
  `bits="adaptive"` the bits are chosen per tensor by GACT's algorithm (`trainlab.memory.adaptive`).

Usage (one `with` block per forward+backward, i.e. per step; the object is reused across steps):

    compressor = ActivationCompressor(bits=4, model=model)      # or SavedTensorMeter(model)
    closure = lambda: loss_fn(model, batch).backward()          # only for bits="adaptive"
    for batch in batches:
        compressor.reset_peak()
        with compressor:
            loss = loss_fn(model, batch)
            loss.backward()
        optimizer.step(); optimizer.zero_grad()
        compressor.iterate(closure)    # adaptive bits only (GACT's controller.iterate); else a no-op
        record(compressor.peak_bytes)

Backward may also run outside the block (the hooks travel with the graph); a block in which nothing
compressible is saved (backward alone, evaluation) does not count as a step.

What is counted (`current_bytes`, `peak_bytes`): bytes the saved-tensor hooks hold, from the pack
until autograd frees the saved variable (after backward, or when the graph is dropped); the peak is
over everything since `reset_peak()`. It is an exact count of what the hooks reference, not of the
allocator: a saved tensor that the caller also keeps alive is still counted.
- Tensors kept as they are count by storage: a storage saved several times (a tensor saved by two
  ops, q/k/v views of one qkv output) counts once, at its full size (a view keeps it all alive).
- Packed tensors count `packed_nbytes` each. A tensor saved twice unchanged (same bytes, same
  version) is packed once; so are views covering exactly the same bytes (SDPA's output and the
  reshaped projection input made from it), because dense tensors are packed in memory order. Views
  of different parts of one storage (q, k, v) are packed separately, each holding only its part.
- Model state is not counted: the model's parameters and buffers (matched by storage when `model`
  is given), any `nn.Parameter` or view of one, and any leaf tensor that requires grad (what the
  optimizer trains) -- they exist whether or not autograd saves them. Parameter copies made by
  autocast (bf16 weights) are counted, and kept exact.

What is compressed: floating-point activations with at least `min_numel` entries (smaller ones cost
more in metadata and Python overhead than they save) that either require grad (GACT's rule) or are
an argument of the op saving them (`compress_inputs=True`: the input batch the first layer saves).
Kept exact: what an op computes and saves without grad -- LayerNorm mean/rstd, BatchNorm statistics,
attention logsumexp: small, and they enter the gradient multiplicatively -- integer tensors, model
state, and (scope "model") what the loss saves after the model's forward, except by an op rule.
Why inputs too: GACT's rule kept the 20 KB input batch of mnist1d_mlp exact, a third of what 4-bit
compression left (61 KB of 289 KB, 4.70x); at 4 bits it becomes 2.7 KB, and accuracy was unchanged.

Op-aware bits: while compressing, a `TorchFunctionMode` records the torch function running (the
outermost one: `scaled_dot_product_attention`, `linear`, `layer_norm`, `cross_entropy`), so the pack
hook knows which op saves a tensor and at which argument position (`site`). `op_bits` maps an op
name to bits for everything it saves, or per position ({0: 8, 1: 8, "out": 4}); None or 32 keeps
exact. The first op to save a tensor picks its bits (later saves share the pack). Defaults
(`DEFAULT_OP_BITS`), from measurements on text_lm (relative error of the full gradient after 350
uncompressed steps, 3 batches x 2 draws):
- `scaled_dot_product_attention`: 8 bits. Its backward recomputes the attention probabilities as
  exp(q k^T / sqrt(d) - lse) from the saved q, k and the exact logsumexp, so 4-bit q, k give rows
  that no longer sum to 1 and inflate the gradient (norm ratio 1.086, error 0.36 with everything at
  4 bits; 0.20 with q, k at 8 bits, the same as with q, k exact; 0.13 with all it saves at 8 bits).
  At 4 bits text_lm's loss blew up near step 350 (validation 4.60 bits per byte at step 400 against
  3.01); with attention at 8 bits it tracked the uncompressed run (2.937 against 2.943 at step 500).
- `cross_entropy`: 8 bits for its log-probabilities, saved after the model's forward (kept exact by
  scope "model" otherwise; at 4 bits they wrecked MLP training). On text_lm they are 2 MiB of 39.7
  (vocabulary 256); at 8 bits the gradient error did not change (0.362 both ways).

Recomputation (`recompute=True`, the default when compressing): a transformer block saves many
tensors twice over. GELU saves its input h, and the next linear layer saves gelu(h); LayerNorm saves
its input x, and the next linear layer saves layer_norm(x). When the output of one of the cheap ops in
`RECOMPUTABLE` (gelu, silu, layer_norm) is saved again, the hooks keep a recipe instead of a second
pack: the op and references to the packs of its saved inputs (parameters by reference, checked for
in-place changes). Backward rebuilds it as the op applied to the dequantized inputs. This costs one
elementwise or normalization pass in backward and no bytes. On text_lm at 4 bits it removes 3.7 M of
10.4 M compressed entries: 8.0x instead of 5.8x (relative gradient error 0.134 against 0.128 after
350 steps). ReLU, tanh and sigmoid save their output, which the next layer's save already shares, so
they need no recipe.

Noise: the rounding noise of the i-th compressed tensor of step k comes from a generator seeded by
(seed, k, i), so runs are reproducible and GACT's probes can hold every other tensor's noise fixed.

Limits: dequantized tensors carry no autograd history, so higher-order gradients (create_graph=True)
see compressed saved tensors as constants; use no compression there. One compressor serves one
thread's forward passes at a time (the saving order is what identifies tensors).
"""

from __future__ import annotations

import threading
import weakref
from typing import Callable, Iterator, Literal, Mapping, NamedTuple, Union

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from trainlab.errors import UsageError
from trainlab.memory import adaptive as _adaptive
from trainlab.memory.quantize import ALLOWED_BITS, PackedTensor, _quantize, dequantize, packed_nbytes

_UNCOMPRESSED = (None, 32)
_MISSING = object()

# bits for every tensor an op saves, or per position among its tensor arguments ("out": the rest)
OpRule = Union[int, None, Mapping[Union[int, str], Union[int, None]]]
DEFAULT_OP_BITS: dict[str, OpRule] = {"scaled_dot_product_attention": 8, "cross_entropy": 8}  # see module doc
# Cheap ops whose saved output is rebuilt in backward from their saved input (`recompute=True`)
RECOMPUTABLE = frozenset({"gelu", "silu", "layer_norm"})


class SavedRecord(NamedTuple):
    """One saved tensor (`ActivationCompressor(trace=True).records`). `bits`: of the pack it refers
    to, None when kept as is; `nbytes`: bytes newly held (0 for model state and for shared packs)."""

    op: str | None
    position: int | None
    shape: tuple
    dtype: torch.dtype
    bits: int | None
    nbytes: int
    recomputed: bool = False   # held as a recipe over other saved tensors (`recompute=True`)


class _Saved:
    """What a pack hook returns: the tensor itself, or its packed form. Freed with the saved variable.

    A packed dense tensor is held as a view: `base` is the `_Saved` owning the pack (in memory
    order), `view` the (shape, stride) to rebuild with `as_strided`. The pack lives while any view does.
    `version` is the saved tensor's version counter at pack time and `source` a weak reference to it:
    saved-tensor hooks switch off autograd's check that a saved tensor was not modified in place
    afterwards, so `_unpack` repeats it (for packed tensors, while the original is still alive).
    `recipe` (recompute=True): instead of a pack, the base holds how to rebuild the tensor in backward
    (`_Recipe.func` of other saved tensors, which it keeps alive); it holds no bytes of its own.
    """

    __slots__ = ("tensor", "packed", "base", "view", "version", "source", "recipe", "__weakref__")

    def __init__(self, t: torch.Tensor, tensor: torch.Tensor | None = None, packed: PackedTensor | None = None,
                 recipe: _Recipe | None = None) -> None:
        self.tensor = tensor
        self.packed = packed
        self.base = None      # views are made by `view_of`
        self.recipe = recipe
        self.view = None
        self.version = t._version
        self.source = None if tensor is not None else weakref.ref(t)

    @classmethod
    def view_of(cls, base: _Saved, shape: tuple, stride: tuple, version: int, source: weakref.ref) -> _Saved:
        """A view of `base`'s pack, from a saved tensor's recorded layout (it need not be alive)."""
        view = cls.__new__(cls)
        view.tensor = view.packed = view.recipe = None
        view.base, view.view, view.version, view.source = base, (shape, stride), version, source
        return view


class _Recipe(NamedTuple):
    """How to rebuild a saved tensor: `func(*args, **kwargs)` with the tensors of `template` (slots
    numbered in `_tensors_in` order) taken from `inputs`: `_Saved` objects (unpacked) or model state
    (`(tensor, version)`, checked for in-place changes). `dtype`: the original output's."""

    func: Callable
    template: tuple
    inputs: tuple
    dtype: torch.dtype


def _view_of(base: _Saved, t: torch.Tensor) -> _Saved:
    return _Saved.view_of(base, tuple(t.shape), tuple(t.stride()), t._version, weakref.ref(t))


class SavedTensorMeter:
    """Context manager that keeps saved tensors as they are and measures the bytes they hold.

    `model` (optional) lets parameters and buffers be recognised by storage; without it, only
    `nn.Parameter`s, their views and leaf tensors requiring grad are recognised as model state.
    """

    def __init__(self, model: nn.Module | None = None) -> None:
        self.model = model
        self._lock = threading.RLock()  # finalizers can run from the garbage collector mid-update
        self._current = 0
        self._peak = 0
        self._storages: dict[tuple, list[int]] = {}
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

    # ---- context manager ---------------------------------------------------------------------

    def __enter__(self):
        if not self._hooks:
            self._model_storages = set()
            if self.model is not None:
                for t in (*self.model.parameters(), *self.model.buffers()):
                    key = _storage_key(t)[0]
                    if key is not None:
                        self._model_storages.add(key)
            self._begin_step()
        hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        hooks.__enter__()
        self._hooks.append(hooks)
        return self

    def __exit__(self, *exc) -> bool:
        self._hooks.pop().__exit__(*exc)
        if not self._hooks:
            self._end_step()
        return False

    def _begin_step(self) -> None:
        pass

    def _end_step(self) -> None:
        pass

    # ---- hooks -------------------------------------------------------------------------------

    def _pack(self, t: torch.Tensor) -> _Saved:
        kind = self._classify(t)
        if kind == "state":
            return _Saved(t, tensor=t)
        return self._hold(t)

    def _unpack(self, saved: _Saved) -> torch.Tensor:
        original = saved.tensor if saved.tensor is not None else saved.source()
        if original is not None and original._version != saved.version:
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by an inplace "
                f"operation: [{original.type()} {list(original.shape)}] is at version {original._version}; "
                f"expected version {saved.version} instead (detected by trainlab.memory's saved-tensor hooks)")
        if saved.base is not None:
            shape, stride = saved.view
            base = saved.base
            flat = self._rebuild(base.recipe) if base.recipe is not None else dequantize(base.packed)
            return flat.as_strided(shape, stride)
        return saved.tensor if saved.packed is None else dequantize(saved.packed)

    def _classify(self, t: torch.Tensor) -> str:
        """"state" (model state: not counted, kept), "copy" (autocast copy of a parameter: counted,
        kept exact), or "activation"."""
        base = t._base if t._base is not None else t
        if isinstance(t, nn.Parameter) or isinstance(base, nn.Parameter):
            return "state"
        if base.is_leaf and base.requires_grad:
            return "state"
        if self._model_storages:
            key = _storage_key(t)[0]
            if key is not None and key in self._model_storages:
                return "state"
        fn = base.grad_fn
        if fn is not None and type(fn).__name__ == "ToCopyBackward0" and fn.next_functions:
            source = fn.next_functions[0][0]
            if source is not None and isinstance(getattr(source, "variable", None), nn.Parameter):
                return "copy"
        return "activation"

    def _hold(self, t: torch.Tensor) -> _Saved:
        """Keep `t` as is, counting its storage once however many saved tensors share it."""
        saved = _Saved(t, tensor=t)
        key, nbytes = _storage_key(t)
        if key is None:
            key = ("tensor", id(saved))
        with self._lock:
            entry = self._storages.get(key)
            if entry is None:
                self._storages[key] = [1, nbytes]
                self._add(nbytes)
            else:
                entry[0] += 1
        weakref.finalize(saved, self._release_storage, key)
        return saved

    def _release_storage(self, key: tuple) -> None:
        with self._lock:
            entry = self._storages[key]
            entry[0] -= 1
            if entry[0] == 0:
                del self._storages[key]
                self._current -= entry[1]

    def _add(self, nbytes: int) -> None:
        with self._lock:
            self._current += nbytes
            if self._current > self._peak:
                self._peak = self._current

    def _release_bytes(self, nbytes: int) -> None:
        with self._lock:
            self._current -= nbytes


class ActivationCompressor(SavedTensorMeter):
    """Context manager that stores eligible saved tensors quantized, and measures what it holds.

    bits: 2, 4 or 8 (fixed), "adaptive" (GACT: per-tensor bits under `average_bits`), or None / 32
    (no compression: behaves as `SavedTensorMeter`). `group_size`: entries per quantization group
    (256, as ActNN and GACT), or "row". `min_numel`: smaller tensors are kept as is. `meta_dtype`:
    dtype of the per-group scale and offset (fp32, or bf16 for half the metadata). `model`: needed for
    adaptive bits; recommended always (see `SavedTensorMeter`). `seed`: of the rounding noise.
    Adaptive options: `average_bits` (the budget b-bar, >= 2), `adapt_interval` (steps between
    adaptations; GACT uses 1000). See `trainlab.memory.adaptive`.
    `scope`: with a `model`, "model" (default) compresses only tensors saved while the model's forward
    runs; what the loss saves after it (cross-entropy's log-probabilities, which backward
    exponentiates, so a 4-bit error of range/15 becomes a gradient error of several-fold) is kept
    exact and still measured. Measured on mnist1d_mlp: compressing the loss's tensors at 4 bits sent
    the training loss from 1.7 to over 700 within 100 steps; "all" restores that behaviour.
    `compress_inputs`: also compress float tensors without grad that are an argument of the op saving
    them (the input batch). `op_bits`: bits per op that saves (module doc); None means
    `DEFAULT_OP_BITS`, {} none. Op rules also hold outside the model scope and in adaptive mode, where
    the tensors they fix are not allocated but count in the budget (`trainlab.memory.adaptive`).
    `recompute`: rebuild saved outputs of GELU, SiLU and LayerNorm from their saved inputs in backward
    instead of storing them again (module doc).
    `trace`: keep a `SavedRecord` per saved tensor of the last `with` block in `records` (a per-tensor
    breakdown: which op saved what, at how many bits, for how many new bytes).
    """

    def __init__(self, bits: int | Literal["adaptive"] | None = 4, group_size: int | Literal["row"] = 256,
                 min_numel: int = 1024, *, model: nn.Module | None = None,
                 meta_dtype: torch.dtype = torch.float32, stochastic: bool = True, seed: int = 0,
                 average_bits: float = 4.0, adapt_interval: int = 1000,
                 scope: Literal["model", "all"] = "model", compress_inputs: bool = True,
                 op_bits: Mapping[str, OpRule] | None = None, recompute: bool = True,
                 trace: bool = False) -> None:
        super().__init__(model)
        self.compress_inputs = bool(compress_inputs)
        self.recompute = bool(recompute)
        self._outputs: dict[tuple, tuple] = {}  # outputs of RECOMPUTABLE ops in this block (weak)
        self._rebuilding = False
        self.records: list[SavedRecord] | None = [] if trace else None  # the last block's saves
        self.op_bits = _check_op_bits(DEFAULT_OP_BITS if op_bits is None else op_bits)
        self._ops: list[tuple] = []    # (func, args, kwargs) of the torch function running now
        self._recorder: _OpRecorder | None = None
        if scope not in ("model", "all"):
            raise UsageError(f"scope must be 'model' or 'all', got {scope!r}")
        self.scope = scope
        self._model_depth = 0
        if model is not None and scope == "model":
            model.register_forward_pre_hook(self._enter_model)
            model.register_forward_hook(self._leave_model)
        if isinstance(bits, bool) or bits not in (*ALLOWED_BITS, "adaptive", *_UNCOMPRESSED) or not (
                bits is None or isinstance(bits, (int, str))):
            raise UsageError(f"activation bits must be one of 2, 4, 8, 'adaptive', or None / 32 for no "
                             f"compression; got {bits!r}")
        if group_size != "row" and (isinstance(group_size, bool) or not isinstance(group_size, int)
                                    or group_size < 1):
            raise UsageError(f"group_size must be a positive int or 'row', got {group_size!r}")
        if isinstance(min_numel, bool) or not isinstance(min_numel, int) or min_numel < 0:
            raise UsageError(f"min_numel must be a non-negative int, got {min_numel!r}")
        if meta_dtype not in (torch.float32, torch.bfloat16):
            raise UsageError(f"meta_dtype must be torch.float32 or torch.bfloat16, got {meta_dtype}")
        self.bits = bits
        self.group_size = group_size
        self.min_numel = min_numel
        self.meta_dtype = meta_dtype
        self.stochastic = stochastic
        self.seed = int(seed)
        self.iteration = 0  # calls to iterate()
        self.policy: _adaptive.AdaptivePrecision | None = None
        if bits == "adaptive":
            if not 2 <= average_bits:
                raise UsageError(f"average_bits must be at least 2 (the lowest level), got {average_bits!r}")
            if isinstance(adapt_interval, bool) or not isinstance(adapt_interval, int) or adapt_interval < 1:
                raise UsageError(f"adapt_interval must be a positive int, got {adapt_interval!r}")
            if model is None:
                raise UsageError("bits='adaptive' needs model=... (its gradients are what GACT's "
                                 "sensitivity probes compare)")
            self.policy = _adaptive.AdaptivePrecision(average_bits, adapt_interval)
        self._step = 0                 # noise step: completed `with` blocks outside probes
        self._index = 0                # compressible tensors seen in the current step
        self._adaptive_index = 0       # of those, the ones whose bits GACT's allocation picks
        self._override: tuple[int, int, int] | None = None  # (index, bits, seed offset) during probes
        self._probing = False
        self._generators: dict[torch.device, torch.Generator] = {}
        self._dedupe: dict[tuple, tuple[weakref.ref, weakref.ref, bool]] = {}

    @property
    def compressing(self) -> bool:
        return self.bits not in _UNCOMPRESSED

    @property
    def bits_per_tensor(self) -> list[int] | None:
        """Adaptive mode: bits per compressible tensor (in saving order) since the last adaptation."""
        return None if self.policy is None or self.policy.bits is None else list(self.policy.bits)

    # ---- step boundaries -----------------------------------------------------------------------

    def __enter__(self):
        outermost = not self._hooks
        super().__enter__()
        if outermost and self.compressing:
            self._recorder = _OpRecorder(self._ops, self._note_output if self.recompute else None)
            self._recorder.__enter__()
        return self

    def __exit__(self, *exc) -> bool:
        if len(self._hooks) == 1 and self._recorder is not None:
            recorder, self._recorder = self._recorder, None
            recorder.__exit__(*exc)
            self._ops.clear()
        return super().__exit__(*exc)

    def _begin_step(self) -> None:
        if self.records is not None:
            self.records = []
        self._index = 0
        self._adaptive_index = 0
        self._dedupe.clear()
        self._outputs.clear()
        if self.policy is not None:
            self.policy.begin_step()

    def _end_step(self) -> None:
        self._dedupe.clear()
        self._outputs.clear()
        if self._probing or self._index == 0:
            return  # a block that saved nothing compressible (e.g. backward only) is not a step
        self._step += 1
        if self.policy is not None:
            self.policy.end_step()

    def iterate(self, closure: Callable[[], object] | None = None) -> list[int] | None:
        """Call once per training step, after `optimizer.step()` (GACT's `controller.iterate`).

        In adaptive mode, every `adapt_interval` calls (including the first) it re-estimates the
        sensitivities by running `closure` (forward + backward on the current batch; no zeroing, no
        optimizer step) 1 + 3 times per compressed tensor, and re-allocates the bits. Returns the
        new bits when it adapted, else None. A no-op for fixed bits.
        """
        if self._hooks:
            raise RuntimeError("call iterate() outside the compressor's `with` block")
        adapted = None
        policy = self.policy
        if policy is not None and self.iteration % policy.adapt_interval == 0:
            if closure is None:
                raise UsageError("bits='adaptive' needs iterate(closure): the closure runs forward and "
                                 "backward for GACT's sensitivity probes")
            sens, layout, fixed = _adaptive.probe_sensitivities(self, closure)
            if layout:
                adapted = policy.allocate(sens, layout, fixed)
        self.iteration += 1
        return adapted

    # ---- hooks -------------------------------------------------------------------------------

    def _pack(self, t: torch.Tensor) -> _Saved:
        if self.records is None:
            return self._pack_as(t)[0]
        before = self._current
        saved, bits = self._pack_as(t)
        recomputed = (saved.base if saved.base is not None else saved).recipe is not None
        self.records.append(SavedRecord(*self.site(t), tuple(t.shape), t.dtype, bits, self._current - before,
                                        recomputed))
        return saved

    def _pack_as(self, t: torch.Tensor) -> tuple[_Saved, int | None]:
        """(what the pack hook returns, bits of the pack it refers to, or None when kept as is)."""
        kind = self._classify(t)
        if kind == "state":
            return _Saved(t, tensor=t), None
        if kind == "copy" or not self.compressing:
            return self._hold(t), None
        rule = self._rule(t)
        if rule is None:
            return self._hold(t), None
        dense = _is_dense(t)
        key = _identity_key(t, dense)
        if key is not None:
            hit = self._dedupe.get(key)
            if hit is not None and hit[0]() is not None and hit[1]() is not None:
                shared = hit[1]()
                bits = None if shared.packed is None else shared.packed.bits
                return (_view_of(shared, t) if hit[2] else shared), bits
        if self.recompute and dense:
            recipe = self._recipe_for(t)
            if recipe is not None:
                if self.policy is not None:
                    self.policy.observe_fixed(t.numel(), 0)  # saved entries held at 0 bits
                base = _Saved(t, recipe=recipe)
                if key is not None:
                    self._dedupe[key] = (weakref.ref(t), weakref.ref(base), True)
                return _view_of(base, t), None
        index = self._index
        self._index += 1
        bits, seed_offset = self._bits_for(t, rule)
        if bits >= 32:
            saved = self._hold(t)
        else:
            # A dense tensor is quantized in memory order, so every view covering the same bytes
            # (SDPA's output and the reshaped input of the projection after it) shares one pack.
            source = t.as_strided((t.numel(),), (1,)) if dense else t
            packed = _quantize(source, bits, self.group_size, stochastic=self.stochastic,
                               generator=self._generator(t.device, index, seed_offset),
                               meta_dtype=self.meta_dtype)
            saved = _Saved(t, packed=packed)
            nbytes = packed_nbytes(packed)
            self._add(nbytes)
            weakref.finalize(saved, self._release_bytes, nbytes)
            if dense:
                saved = _view_of(saved, t)
        if key is not None:
            shared = saved.base if saved.base is not None else saved
            self._dedupe[key] = (weakref.ref(t), weakref.ref(shared), saved.base is not None)
        return saved, (bits if bits < 32 else None)

    # ---- recomputation -----------------------------------------------------------------------

    def _note_output(self, func, args, kwargs, result) -> None:
        """After a RECOMPUTABLE op: remember how to rebuild its output from what is saved so far."""
        if (self._rebuilding or getattr(func, "__name__", None) not in RECOMPUTABLE
                or not isinstance(result, torch.Tensor) or not result.is_floating_point()
                or not result.is_contiguous() or result.numel() == 0):
            return
        key = _identity_key(result, True)
        if key is None:
            return
        inputs = []
        for arg in _tensors_in((args, kwargs)):
            if _storage_key(arg)[0] == key[0]:
                return  # in place: the output overwrote an input
            if self._classify(arg) == "state":
                inputs.append((arg, arg._version))
                continue
            hit = self._dedupe.get(_identity_key(arg, _is_dense(arg)) or ())
            if hit is None or hit[0]() is None or hit[1]() is None:
                return  # an input that is not saved: rebuilding would need more than the hooks hold
            inputs.append((hit[1], hit[2], tuple(arg.shape), tuple(arg.stride()), arg._version, hit[0]))
        template = _slots((args, kwargs), iter(range(1 << 30)))
        self._outputs[key] = (weakref.ref(result), func, template, tuple(inputs), result.dtype)

    def _recipe_for(self, t: torch.Tensor) -> _Recipe | None:
        """A recipe for `t` if it is the output of a noted op whose saved inputs are still alive."""
        entry = self._outputs.get(_identity_key(t, True))
        if entry is None or entry[0]() is None or entry[4] != t.dtype:
            return None
        _, func, template, noted, dtype = entry
        inputs = []
        for item in noted:
            if len(item) == 2:               # model state: (tensor, version)
                inputs.append(item)
                continue
            shared_ref, is_view, shape, stride, version, source = item
            shared = shared_ref()
            if shared is None:
                return None
            inputs.append(_Saved.view_of(shared, shape, stride, version, source) if is_view else shared)
        return _Recipe(func, template, tuple(inputs), dtype)

    def _rebuild(self, recipe: _Recipe) -> torch.Tensor:
        values = []
        for item in recipe.inputs:
            if isinstance(item, _Saved):
                values.append(self._unpack(item))
                continue
            tensor, version = item
            if tensor._version != version:
                raise RuntimeError("a parameter needed to recompute a saved activation was modified in place "
                                   f"between forward and backward ({list(tensor.shape)}, version "
                                   f"{tensor._version}, expected {version}); use recompute=False")
            values.append(tensor.detach())
        args, kwargs = _fill(recipe.template, values)
        self._rebuilding = True
        try:
            with torch.no_grad():
                out = recipe.func(*args, **kwargs)
        finally:
            self._rebuilding = False
        return out.to(recipe.dtype).contiguous().view(-1)

    def _enter_model(self, module, args) -> None:
        self._model_depth += 1

    def _leave_model(self, module, args, output) -> None:
        self._model_depth -= 1

    def site(self, t: torch.Tensor) -> tuple[str | None, int | None]:
        """(name of the torch function saving `t`, position of `t` among its tensor arguments).

        The name is None when no torch function is running (or the compressor is not compressing);
        the position is None when `t` is none of the arguments (an output, or a statistic the op
        computed: LayerNorm's mean/rstd, attention's logsumexp). An argument matches when it has
        `t`'s storage and storage offset, so the views an op makes of its inputs still match."""
        if not self._ops:
            return None, None
        func, args, kwargs = self._ops[-1]
        name = getattr(func, "__name__", None) or repr(func)
        key = _storage_key(t)[0]
        if key is None:
            return name, None
        for position, arg in enumerate(_tensors_in((args, kwargs))):
            if arg.storage_offset() == t.storage_offset() and _storage_key(arg)[0] == key:
                return name, position
        return name, None

    def _rule(self, t: torch.Tensor) -> int | str | None:
        """Bits for `t` by op rule, "auto" (the compressor's bits), or None (kept as is)."""
        if not t.is_floating_point() or t.numel() < max(self.min_numel, 1):
            return None
        name, position = self.site(t)
        rule = _lookup(self.op_bits, name, position)
        if rule is _MISSING:
            if self.model is not None and self.scope == "model" and self._model_depth <= 0:
                return None  # saved by the loss, outside the model's forward: kept exact
            rule = "auto"
        if rule is None or (rule != "auto" and rule >= 32):
            return None
        if t.requires_grad or (self.compress_inputs and position is not None):
            return rule
        return None  # a statistic the op computed and saved (no grad): small, kept exact

    def _bits_for(self, t: torch.Tensor, rule: int | str) -> tuple[int, int]:
        """(bits, seed offset) for the next compressible tensor, `rule` from `_rule`."""
        if rule != "auto":
            if self.policy is not None and int(rule) < 32:
                self.policy.observe_fixed(t.numel(), int(rule))  # not allocated, but in the budget
            return int(rule), 0
        if self.policy is None:
            return self.bits, 0
        index = self._adaptive_index
        self._adaptive_index += 1
        self.policy.observe(t.numel())
        if self._override is not None and self._override[0] == index:
            return self._override[1], self._override[2]
        return self.policy.bits_for(index, t.numel()), 0

    def _generator(self, device: torch.device, index: int, seed_offset: int) -> torch.Generator | None:
        gen = self._generators.get(device)
        if gen is None:
            try:
                gen = torch.Generator(device=device)
            except RuntimeError:  # a backend without generator objects: unseeded global RNG
                return None
            self._generators[device] = gen
        seed = (self.seed * 1_000_003 + self._step) * 65_537 + index + seed_offset
        gen.manual_seed(seed % (2 ** 63))
        return gen


def compress_activations(bits: int | Literal["adaptive"] | None = 4, group_size: int | Literal["row"] = 256,
                         min_numel: int = 1024, **options) -> ActivationCompressor:
    """`ActivationCompressor(bits, group_size, min_numel, **options)`, named for `with` statements."""
    return ActivationCompressor(bits, group_size, min_numel, **options)


def _storage_key(t: torch.Tensor) -> tuple[tuple | None, int]:
    """((device, storage address), storage bytes), or (None, tensor bytes) for storage-less tensors."""
    try:
        storage = t.untyped_storage()
        return (t.device.type, t.device.index, storage.data_ptr()), storage.nbytes()
    except (RuntimeError, NotImplementedError, TypeError):
        return None, t.numel() * t.element_size()


def _identity_key(t: torch.Tensor, dense: bool) -> tuple | None:
    """Equal keys mean equal values: same bytes (unmodified: same version) read the same way.

    A dense tensor is keyed by the memory range it covers (any view of that range can share its
    pack); any other by its exact view (offset, shape, strides)."""
    key, _ = _storage_key(t)
    if key is None:
        return None
    if dense:
        return (key, t.storage_offset(), t.numel(), t.dtype, t._version)
    return (key, t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype, t._version)


def _is_dense(t: torch.Tensor) -> bool:
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


class _OpRecorder(TorchFunctionMode):
    """Keeps the torch function now running on a stack, so the pack hook knows which op saves.

    A mode is switched off while its handler runs, so only the outermost torch-level call is seen
    (`scaled_dot_product_attention`, `layer_norm`, `linear`, `cross_entropy`, not their kernels)."""

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


class _Slot(int):
    """Where the i-th tensor argument goes in a recipe's argument template."""


def _slots(obj, counter):
    """`obj` (nested args/kwargs) with every tensor replaced by a numbered `_Slot`, in `_tensors_in`
    order; containers without tensors (a torch.Size) are kept as they are."""
    if isinstance(obj, torch.Tensor):
        return _Slot(next(counter))
    if isinstance(obj, (list, tuple, dict)) and next(_tensors_in(obj), None) is None:
        return obj
    if isinstance(obj, (list, tuple)):
        return [_slots(item, counter) for item in obj] if isinstance(obj, list) else \
            tuple(_slots(item, counter) for item in obj)
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


def _tensors_in(obj) -> Iterator[torch.Tensor]:
    """The tensors in nested args/kwargs, in order."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors_in(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors_in(item)


def _lookup(op_bits: Mapping[str, OpRule], name: str | None, position: int | None):
    if name is None or name not in op_bits:
        return _MISSING
    rule = op_bits[name]
    if isinstance(rule, Mapping):
        return rule.get("out" if position is None else position, _MISSING)  # unlisted: general rules
    return rule


def _check_op_bits(op_bits: Mapping[str, OpRule]) -> dict[str, OpRule]:
    def ok(bits) -> bool:
        return bits is None or (not isinstance(bits, bool) and bits in (*ALLOWED_BITS, 32))

    for name, rule in op_bits.items():
        rules = rule.items() if isinstance(rule, Mapping) else [(None, rule)]
        for key, bits in rules:
            if not ok(bits) or not (key is None or key == "out" or (isinstance(key, int) and key >= 0)):
                raise UsageError(f"op_bits[{name!r}]: bits must be 2, 4, 8, 32 or None (kept as is), keyed "
                                 f"by argument position or 'out'; got {rule!r}")
    return dict(op_bits)
