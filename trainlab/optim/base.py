"""`ElementwiseOptimizer`: the bookkeeping every elementwise optimizer shares, written once.

An elementwise optimizer updates each parameter entry from that entry's gradient and state alone
(AdamW, NAdamW, Lion, diffGrad, signSGD/Signum, Schedule-Free AdamW). What differs between them is
a few lines of arithmetic; what they share is this class's `step()`:

1. run the optional closure with gradients enabled;
2. per param group, collect the parameters that have a gradient (`p.grad is None` means "skip this
   parameter this step": its state and step count are left untouched); sparse gradients and complex
   parameters are rejected with a RuntimeError naming the optimizer;
3. create a parameter's state lazily, on its first step with a gradient (`_init_state` hook), so a
   parameter that never receives a gradient costs no state memory;
4. increment the parameter's step count, a Python int in `state["step"]` (no tensor, no memory;
   it survives `state_dict()` / `load_state_dict()` unchanged);
5. bucket the group's parameters by (step, device, dtype): parameters of one group can have
   different step counts (one was frozen for a while), and bias corrections depend on the step, so
   each bucket shares its scalars; device/dtype buckets keep `torch._foreach_*` on its fast path;
6. update each bucket by one of three paths, chosen per group:
   - `fused=True`, and `fused=None` (the default, unless `foreach=False`) on CPUs and CUDA
     devices: `_rule` compiled ahead of time into one kernel per rule and dtype
     (`trainlab.optim.fused`): one pass over memory per tensor. The kernel is built once per
     machine (10-40 s, the first time the rule runs there) and loaded in milliseconds by every
     later process; `TRAINLAB_FUSED=0` in the environment makes the default foreach;
   - `fused=False`, `foreach=True`: `_update(group, params, grads, states, step)` once per bucket,
     the rule written with multi-tensor `torch._foreach_*` ops (one pass over memory per op);
   - `foreach=False` (and fused not True): `_rule` applied eagerly per tensor (`_update_single`),
     the plain reference.
   With `state_dtype` or `weight_update` set (`trainlab.optim.lowprec`), each path runs on float32
   working tensors (dequantised state, upcast bf16 weights) that are stored back after the bucket.

The arithmetic lives in one place per optimizer: the pure per-tensor `_rule(group)(p, g, states,
s)`, which returns the new parameter and the new values of the state tensors named by
`_state_keys`, and reads every number from `s = _scalars(group, step)` (Python floats in the
per-tensor and foreach paths, entries of one float32 tensor in the fused path, so one kernel serves
every lr and step). The foreach path runs that same rule on the bucket's lists of tensors
(`trainlab.optim.tensorlist`), one `torch._foreach_*` launch per op. Both paths use the same `_scalars`, and the
state layout is identical, so a state_dict moves freely between `fused`, `foreach` and per-tensor
optimizers; `load_state_dict` keeps the loading optimizer's `foreach`/`fused` switches, which
describe this process's implementation choice, not the training state.

A subclass supplies `_init_state`, `_scalars`, `_rule`, `_state_keys` (or `_rule_states`), or,
instead of `_rule` and `_scalars`, a `_direction` and its `_direction_scalars`, which gives it the
`cautious`, `mars` and `cautious_wd` modifiers (`trainlab.optim.modifiers`, written once for every
base; its constructor takes them and passes `modifiers.options(...)` into its defaults), and
optionally `_begin_group` (once per group per step, before any bucket;
Schedule-Free keeps its averaging weights there) and `_check_can_step` (called first, before the
closure runs or anything is touched).

Subclasses must not modify `p.grad`: gradient accumulation and logging code may still read it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, cast

import torch

from trainlab.optim import fused as fused_path
from trainlab.optim import lowprec, modifiers, tensorlist
from trainlab.optim.closure import closure_loss
from trainlab.optim.distributed import is_sharded, keep_new_state, local
from trainlab.optim.state import restore_saved_dtypes
from trainlab.optim.validation import check_dense_real

# implementation and storage choices: kept from the loader on load_state_dict (a state saved with
# int8 moments loads into a float32-state optimizer dequantised, and the other way round)
_SWITCHES = ("foreach", "fused", "state_dtype", "weight_update")
_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(f"{message}; using foreach meanwhile", RuntimeWarning, stacklevel=3)


class ElementwiseOptimizer(torch.optim.Optimizer):
    """Base: lazy state, Python-int step counts, step bucketing, foreach/single/fused dispatch."""

    # State tensors the per-tensor rule reads and returns new values for, in this order.
    _state_keys: tuple[str, ...] = ()
    # For `state_dtype` (trainlab.optim.lowprec): states that are never negative (an unsigned
    # int8 code), and states that are weights, not statistics (kept in the parameter's dtype).
    _nonnegative_states: tuple[str, ...] = ("exp_avg_sq",)
    _full_precision_states: tuple[str, ...] = ()

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        super().__init__(params, defaults)
        self._generators: dict[torch.device, torch.Generator] = {}  # stochastic rounding's, per device

    # ---- hooks for subclasses ----------------------------------------------------------------

    def _init_state(self, group: dict[str, Any], p: torch.Tensor, state: dict[str, Any]) -> None:
        """Create `p`'s state tensors (called once, before its first update). Default: none."""

    def _begin_group(self, group: dict[str, Any]) -> None:
        """Called once per group per step, after state init and before the first bucket."""

    def _check_can_step(self) -> None:
        """Raise if `step()` may not run now (e.g. Schedule-Free in eval mode)."""

    def _direction(self, group: dict[str, Any]) -> Callable[..., tuple] | None:
        """The optimizer's direction `(p, g, states, s) -> (u, *new_states)` (module-level, pure),
        or None. With one, the rule is `modifiers.compose(direction, cautious, mars, cautious_wd)`:
        the update `p * decay + u * neg_step`, with the group's modifiers (`trainlab.optim.modifiers`)."""
        return None

    def _direction_scalars(self, group: dict[str, Any], step: int) -> tuple[float, ...]:
        """`(decay, neg_step, *the direction's scalars)` for one bucket, as Python floats."""
        raise NotImplementedError

    def _scalars(self, group: dict[str, Any], step: int) -> tuple[float, ...]:
        """Every number the rule reads, for one bucket, as Python floats (computed in double)."""
        return modifiers.scalars(group, self._direction_scalars(group, step))

    def _rule(self, group: dict[str, Any]) -> Callable[..., tuple] | None:
        """The pure per-tensor rule `(p, g, states, s) -> (new_p, *new_states)`, or None.

        It must be a module-level function (its identity keys the compiled-kernel cache), use
        only out-of-place tensor ops (and the per-tensor reductions `x.mean()` and
        `torch.linalg.vector_norm(x)`), and read numbers only from `s` (so compiled code never
        bakes one in). Default: the direction composed with the group's modifiers.
        """
        direction = self._direction(group)
        if direction is None:
            return None
        flags = (bool(group.get(key)) for key in ("cautious", "mars", "cautious_wd"))
        return modifiers.compose(direction, *flags)

    def _rule_states(self, group: dict[str, Any], p: torch.Tensor, state: dict[str, Any]) -> tuple[torch.Tensor, ...]:
        """The state tensors passed to (and rewritten from) the rule. Default: `_state_keys`, then
        MARS's previous gradient when the group has `mars`."""
        states = tuple(state[key] for key in self._state_keys)
        return (*states, state["prev_grad"]) if group.get("mars") else states

    def _update(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        states: list[dict[str, Any]],
        step: int,
    ) -> None:
        """Update `params` in place; all share `step`, device and dtype. Multi-tensor path: by
        default the per-tensor rule itself, run on the whole bucket (`trainlab.optim.tensorlist`)."""
        rule = self._rule(group)
        if rule is None:
            raise NotImplementedError(f"{type(self).__name__} has neither a rule nor a multi-tensor update")
        rule_states = [self._rule_states(group, p, s) for p, s in zip(params, states)]
        tensorlist.apply(rule, params, grads, rule_states, self._scalars(group, step))

    def _update_single(
        self, group: dict[str, Any], p: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], step: int
    ) -> None:
        """Per-tensor path (`foreach=False`): the rule, eagerly (or `_update` on one tensor)."""
        rule = self._rule(group)
        if rule is None:
            self._update(group, [p], [grad], [state], step)
            return
        states = self._rule_states(group, p, state)
        new = rule(p, grad, states, self._scalars(group, step))
        for dst, src in zip((p, *states), new):
            dst.copy_(src)

    def _update_fused(self, group: dict[str, Any], params: list, grads: list, states: list[dict], step: int) -> None:
        rule = self._rule(group)
        if rule is None:
            raise RuntimeError(f"{type(self).__name__} has no per-tensor rule: no fused=True")
        rule_states = [self._rule_states(group, p, s) for p, s in zip(params, states)]
        fused_path.apply(rule, params, grads, rule_states, self._scalars(group, step))

    # ---- the shared step ---------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure=None):
        self._check_can_step()
        loss = closure_loss(closure)
        name = type(self).__name__
        for group in self.param_groups:
            params = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                check_dense_real(name, p)
                params.append(p)
            if not params:
                continue
            buckets: dict[tuple[int, torch.device, torch.dtype], list[torch.Tensor]] = {}
            for p in params:
                state = self.state[p]
                fresh = "step" not in state
                if fresh:
                    state["step"] = 0
                    self._init_state(group, p, state)
                if group.get("mars") and "prev_grad" not in lowprec.stored_keys(state):  # MARS's g_{t-1}
                    state["prev_grad"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    fresh = True
                if fresh and lowprec.active(group):
                    lowprec.convert(group, p, state, self._kinds())
                state["step"] += 1
                buckets.setdefault((state["step"], p.device, p.dtype), []).append(p)
            self._begin_group(group)
            foreach = group.get("foreach", True) is not False  # None means "auto": foreach
            auto = group.get("fused") is None  # the default: the fused kernel where one can be built
            can_fuse = auto and foreach and self._rule(group) is not None
            for (step, device, _), bucket in buckets.items():
                fused = fused_path.default_on(device) if can_fuse else bool(group.get("fused"))
                # FSDP2's DTensors: an elementwise rule runs on each rank's shards (optim/distributed.py)
                states = [self.state[p] for p in bucket]
                low = lowprec.active(group)
                if (group.get("cautious") or group.get("mars") or low) and any(is_sharded(p) for p in bucket):
                    raise NotImplementedError(
                        f"{name}: cautious and mars reduce over each whole tensor (the mask's mean, the "
                        "gradient's norm), and int8 blocks span it; on FSDP2 shards: use DDP"
                    )
                ps, gs, ss = local(bucket, [cast(torch.Tensor, p.grad) for p in bucket], states)
                generators = self.__dict__.setdefault("_generators", {})  # absent in an optimizer unpickled from before
                work = lowprec.Working(group, ps, gs, ss, self._kinds(), generators) if low else None
                if work is not None:  # float32 tensors for the rule; stored back by work.finish()
                    ps, gs, ss = work.work_params, work.work_grads, work.work_states
                if fused:
                    try:
                        self._update_fused(group, ps, gs, ss, step)
                    except fused_path.KernelUnavailable as exc:  # raised before anything was touched
                        if not auto:
                            raise
                        _warn_once(str(exc))
                        self._update(group, ps, gs, ss, step)
                elif foreach:
                    self._update(group, ps, gs, ss, step)
                else:
                    for p, g, s in zip(ps, gs, ss):
                        self._update_single(group, p, g, s, step)
                if work is not None:
                    work.finish()
                    ss = work.states
                keep_new_state(bucket, states, ss)
        return loss

    def _kinds(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return self._nonnegative_states, self._full_precision_states

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load as torch.optim does, but keep this optimizer's `_SWITCHES`, every
        state tensor's saved dtype (torch's loader would cast int8 codes to the parameter's dtype)
        on its parameter's device, then the loading optimizer's `state_dtype` storage (where either
        side uses `trainlab.optim.lowprec`)."""
        switches = [{k: group[k] for k in _SWITCHES if k in group} for group in self.param_groups]
        super().load_state_dict(state_dict)
        low = any(lowprec.active(g) for g in self.param_groups) or lowprec.quantized(state_dict)
        if low:
            restore_saved_dtypes(self, state_dict)
        for group, kept in zip(self.param_groups, switches):
            for key in _SWITCHES:
                group.pop(key, None)
            group.update(kept)
            for p in group["params"] if low else ():
                if self.state.get(p):
                    lowprec.convert(group, p, self.state[p], self._kinds())
