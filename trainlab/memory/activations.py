"""`ActivationCompressor`: keep the tensors autograd saves for backward quantized to 2, 4 or 8 bits.

It extends `SavedTensorMeter` (`trainlab.memory.saved_tensors`, which says what is counted): eligible
saved tensors are quantized (per-group min/scale, stochastic rounding: `trainlab.memory.quantize`),
held packed, dequantized in backward, and counted the same way. With `bits="adaptive"` the bits are
chosen per tensor by GACT's algorithm (`trainlab.memory.adaptive`); op rules fix the bits of what
sensitive ops save (`trainlab.memory.op_rules`); saved outputs of cheap ops are rebuilt in backward
rather than packed twice (`trainlab.memory.recompute`). The measurements behind defaults: docs/memory.md.

Usage (one `with` block per forward+backward, i.e. per step; the object is reused across steps):

    compressor = ActivationCompressor(bits=4, model=model)      # or SavedTensorMeter(model)
    for batch in batches:
        compressor.reset_peak()
        with compressor:
            loss_fn(model, batch).backward()
        optimizer.step(); optimizer.zero_grad()
        compressor.iterate(lambda: loss_fn(model, batch).backward())   # adaptive bits only, else a no-op
        record(compressor.peak_bytes)

Backward may run outside the block (hooks travel with the graph); a block saving nothing
compressible (backward alone, evaluation) is not a step. Sharing: a tensor saved twice unchanged is
packed once, and so are views covering the same bytes (dense tensors are packed in memory order);
views of different parts of one storage (q, k, v) are packed separately, each holding only its part.

What is compressed: floating-point activations with at least `min_numel` entries (smaller ones cost
more in metadata and Python overhead than they save) that either require grad (GACT's rule) or are
an argument of the op saving them (`compress_inputs=True`: the input batch the first layer saves).
Kept exact: what an op computes and saves without grad (LayerNorm mean/rstd, BatchNorm statistics,
attention logsumexp: small, and they enter the gradient multiplicatively), integer tensors, model
state, and (scope "model") what the loss saves after the model's forward, except by an op rule.

Noise: tensor i of step k rounds with a generator seeded by (seed, k, i): runs are reproducible,
and GACT's probes can hold every other tensor's noise fixed. Limits: dequantized tensors carry no
autograd history (no create_graph=True through compressed tensors); one compressor serves one
thread at a time (saving order identifies tensors).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Literal

import torch
from torch import nn

from trainlab.errors import UsageError
from trainlab.memory import adaptive as _adaptive
from trainlab.memory.adaptive import ProbeOverride
from trainlab.memory.op_rules import DEFAULT_OP_BITS, MISSING, OpRecorder, OpRule, check_op_bits, lookup, site
from trainlab.memory.quantize import ALLOWED_BITS, _quantize, packed_nbytes
from trainlab.memory.recompute import NotedOutput, note_output, rebuild, recipe_for
from trainlab.memory.saved_tensors import Saved, SavedRecord, SavedTensorMeter, SharedPack, identity_key, is_dense

_UNCOMPRESSED = (None, 32)


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
    runs (forward hooks on `model`, installed while a block is open); what the loss saves after it
    (log-probabilities, which backward exponentiates) is kept exact and still measured; "all"
    compresses those too (docs/memory.md shows why that is not the default).
    `compress_inputs`: also compress float tensors without grad that are an argument of the op saving
    them (the input batch). `op_bits`: bits per op that saves (module doc); None means
    `DEFAULT_OP_BITS`, {} none. Op rules also hold outside the model scope and in adaptive mode, where
    the tensors they fix are not allocated but count in the budget (`trainlab.memory.adaptive`).
    `recompute`: rebuild saved outputs of GELU, SiLU and LayerNorm from their saved inputs in backward
    instead of storing them again (module doc).
    `trace`: keep a `SavedRecord` per saved tensor of the last `with` block in `records` (a per-tensor
    breakdown: which op saved what, at how many bits, for how many new bytes).
    """

    def __init__(
        self,
        bits: int | Literal["adaptive"] | None = 4,
        group_size: int | Literal["row"] = 256,
        min_numel: int = 1024,
        *,
        model: nn.Module | None = None,
        meta_dtype: torch.dtype = torch.float32,
        stochastic: bool = True,
        seed: int = 0,
        average_bits: float = 4.0,
        adapt_interval: int = 1000,
        scope: Literal["model", "all"] = "model",
        compress_inputs: bool = True,
        op_bits: Mapping[str, OpRule] | None = None,
        recompute: bool = True,
        trace: bool = False,
    ) -> None:
        super().__init__(model)
        self.compress_inputs = bool(compress_inputs)
        self.recompute = bool(recompute)
        self._outputs: dict[tuple, NotedOutput] = {}  # outputs of RECOMPUTABLE ops in this block
        self._rebuilding = False
        self.records: list[SavedRecord] | None = [] if trace else None  # the last block's saves
        self.op_bits = check_op_bits(DEFAULT_OP_BITS if op_bits is None else op_bits)
        self._ops: list[tuple] = []  # (func, args, kwargs) of the torch function running now
        self._recorder: OpRecorder | None = None
        if scope not in ("model", "all"):
            raise UsageError(f"scope must be 'model' or 'all', got {scope!r}")
        self.scope = scope
        self._model_depth = 0
        self._model_hooks: list = []  # forward hooks on `model` while a block is open (scope "model")
        if (
            isinstance(bits, bool)
            or bits not in (*ALLOWED_BITS, "adaptive", *_UNCOMPRESSED)
            or not (bits is None or isinstance(bits, (int, str)))
        ):
            raise UsageError(
                f"activation bits must be one of 2, 4, 8, 'adaptive', or None / 32 for no compression; got {bits!r}"
            )
        if group_size != "row" and (isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1):
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
            if model is None:
                raise UsageError(
                    "bits='adaptive' needs model=... (its gradients are what GACT's sensitivity probes compare)"
                )
            self.policy = _adaptive.AdaptivePrecision(average_bits, adapt_interval)
        self._step = 0  # noise step: completed `with` blocks outside probes
        self._index = 0  # compressible tensors seen in the current step
        self._adaptive_index = 0  # of those, the ones whose bits GACT's allocation picks
        self._override: ProbeOverride | None = None  # during a probe run
        self._probing = False  # inside `probing()`: blocks are not noise steps
        self._generators: dict[torch.device, torch.Generator] = {}
        self._dedupe: dict[tuple, SharedPack] = {}

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
        if outermost and self.model is not None and self.scope == "model":
            self._model_hooks = [
                self.model.register_forward_pre_hook(self._enter_model),
                self.model.register_forward_hook(self._leave_model),
            ]
        if outermost and self.compressing:
            self._recorder = OpRecorder(self._ops, self._note_output if self.recompute else None)
            self._recorder.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if len(self._hooks) == 1 and self._recorder is not None:
            recorder, self._recorder = self._recorder, None
            recorder.__exit__(*exc)
            self._ops.clear()
        if len(self._hooks) == 1:
            for handle in self._model_hooks:
                handle.remove()
            self._model_hooks = []
        super().__exit__(*exc)

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
                raise UsageError(
                    "bits='adaptive' needs iterate(closure): the closure runs forward and "
                    "backward for GACT's sensitivity probes"
                )
            sens, layout, fixed = _adaptive.probe_sensitivities(self, closure)
            if layout:
                adapted = policy.allocate(sens, layout, fixed)
        self.iteration += 1
        return adapted

    # ---- GACT's sensitivity probes (`trainlab.memory.adaptive.probe_sensitivities`) ------------

    @contextlib.contextmanager
    def probing(self) -> Iterator[None]:
        """Probe runs inside are not noise steps (every run draws the same noise as the step it
        probes) and their peak is forgotten on exit."""
        peak = self.peak_bytes
        self._probing = True
        try:
            yield
        finally:
            self._probing = False
            self.restore_peak(peak)

    def probe(self, closure: Callable[[], object], override: ProbeOverride | None = None) -> list[int]:
        """Run `closure` (forward + backward) once inside the hooks with `override`; returns the sizes
        of the adaptive tensors it saved, in saving order (the layout the bits are allocated over)."""
        if self.policy is None:
            raise UsageError("probe() is for bits='adaptive'")
        self._override = override
        try:
            with torch.enable_grad(), self:
                closure()
        finally:
            self._override = None
        return self.policy.seen_layout

    # ---- hooks -------------------------------------------------------------------------------

    def _pack(self, t: torch.Tensor) -> Saved:
        if self.records is None:
            return self._pack_as(t)[0]
        before = self._current
        saved, bits = self._pack_as(t)
        recomputed = (saved.base if saved.base is not None else saved).recipe is not None
        self.records.append(
            SavedRecord(*site(self._ops, t), tuple(t.shape), t.dtype, bits, self._current - before, recomputed)
        )
        return saved

    def _pack_as(self, t: torch.Tensor) -> tuple[Saved, int | None]:
        """(what the pack hook returns, bits of the pack it refers to, or None when kept as is)."""
        kind = self.classify(t)
        if kind == "state":
            return Saved(t, tensor=t), None
        if kind == "copy" or not self.compressing:
            return self._hold(t), None
        rule = self._rule(t)
        if rule is None:
            return self._hold(t), None
        dense = is_dense(t)
        key = identity_key(t, dense)
        if key is not None:
            hit = self._dedupe.get(key)
            if hit is not None and hit.alive():
                shared = hit.shared()
                assert shared is not None  # alive()
                bits = None if shared.packed is None else shared.packed.bits
                return (Saved.viewing(shared, t) if hit.is_view else shared), bits
        if self.recompute and dense:
            recipe = recipe_for(self._outputs.get(own) if (own := identity_key(t, True)) else None, t)
            if recipe is not None:
                if self.policy is not None:
                    self.policy.observe_fixed(t.numel(), 0)  # saved entries held at 0 bits
                base = Saved(t, recipe=recipe)
                if key is not None:
                    self._dedupe[key] = SharedPack(weakref.ref(t), weakref.ref(base), True)
                return Saved.viewing(base, t), None
        index = self._index
        self._index += 1
        bits, seed_offset = self._bits_for(t, rule)
        if bits >= 32:
            saved = self._hold(t)
        else:
            # A dense tensor is quantized in memory order, so every view covering the same bytes
            # (SDPA's output and the reshaped input of the projection after it) shares one pack.
            source = t.as_strided((t.numel(),), (1,)) if dense else t
            packed = _quantize(
                source,
                bits,
                self.group_size,
                stochastic=self.stochastic,
                generator=self._generator(t.device, index, seed_offset),
                meta_dtype=self.meta_dtype,
            )
            saved = Saved(t, packed=packed)
            nbytes = packed_nbytes(packed)
            self._add(nbytes)
            weakref.finalize(saved, self._release_bytes, nbytes)
            if dense:
                saved = Saved.viewing(saved, t)
        if key is not None:
            shared = saved.base if saved.base is not None else saved
            self._dedupe[key] = SharedPack(weakref.ref(t), weakref.ref(shared), saved.base is not None)
        return saved, (bits if bits < 32 else None)

    # ---- recomputation -----------------------------------------------------------------------

    def _note_output(self, func, args, kwargs, result) -> None:
        """After each outermost torch call: remember how to rebuild a RECOMPUTABLE op's output."""
        if self._rebuilding:
            return
        noted = note_output(func, args, kwargs, result, self._dedupe, self.classify)
        if noted is not None:
            self._outputs[noted[0]] = noted[1]

    def _materialize(self, base: Saved) -> torch.Tensor:
        if base.recipe is None:
            return super()._materialize(base)
        self._rebuilding = True
        try:
            return rebuild(base.recipe, self._unpack)
        finally:
            self._rebuilding = False

    def _enter_model(self, module, args) -> None:
        self._model_depth += 1

    def _leave_model(self, module, args, output) -> None:
        self._model_depth -= 1

    def _rule(self, t: torch.Tensor) -> int | str | None:
        """Bits for `t` by op rule, "auto" (the compressor's bits), or None (kept as is)."""
        if not t.is_floating_point() or t.numel() < max(self.min_numel, 1):
            return None
        name, position = site(self._ops, t)
        rule = lookup(self.op_bits, name, position)
        if rule is MISSING:
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
            assert isinstance(self.bits, int)  # fixed bits: "adaptive" has a policy
            return self.bits, 0
        index = self._adaptive_index
        self._adaptive_index += 1
        self.policy.observe(t.numel())
        if self._override is not None and self._override.index == index:
            return self._override.bits, self._override.seed_offset
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
        gen.manual_seed(seed % (2**63))
        return gen


def compress_activations(
    bits: int | Literal["adaptive"] | None = 4, group_size: int | Literal["row"] = 256, min_numel: int = 1024, **options
) -> ActivationCompressor:
    """`ActivationCompressor(bits, group_size, min_numel, **options)`, named for `with` statements."""
    return ActivationCompressor(bits, group_size, min_numel, **options)
