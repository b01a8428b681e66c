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
6. call `_update(group, params, grads, states, step)` once per bucket with lists, so a subclass
   writes its rule with multi-tensor `torch._foreach_*` ops; with `foreach=False` in the group it
   calls `_update_single(group, p, grad, state, step)` per tensor instead.

A subclass supplies `_init_state`, `_update`, `_update_single` and optionally `_begin_group`
(once per group per step, before any bucket; Schedule-Free keeps its averaging weights there) and
`_check_can_step` (called first, before the closure runs or anything is touched).

Subclasses must not modify `p.grad`: gradient accumulation and logging code may still read it.
"""

from __future__ import annotations

from typing import Any

import torch

from trainlab.optim.validation import check_dense_real


class ElementwiseOptimizer(torch.optim.Optimizer):
    """Base class: lazy state, Python-int step counts, step bucketing, foreach dispatch."""

    # ---- hooks for subclasses ----------------------------------------------------------------

    def _init_state(self, group: dict[str, Any], p: torch.Tensor, state: dict[str, Any]) -> None:
        """Create `p`'s state tensors (called once, before its first update). Default: none."""

    def _begin_group(self, group: dict[str, Any]) -> None:
        """Called once per group per step, after state init and before the first bucket."""

    def _check_can_step(self) -> None:
        """Raise if `step()` may not run now (e.g. Schedule-Free in eval mode)."""

    def _update(self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor],
                states: list[dict[str, Any]], step: int) -> None:
        """Update `params` in place; all share `step`, device and dtype. Multi-tensor path."""
        raise NotImplementedError

    def _update_single(self, group: dict[str, Any], p: torch.Tensor, grad: torch.Tensor,
                       state: dict[str, Any], step: int) -> None:
        """Per-tensor path (`foreach=False`). Default: the multi-tensor path on one tensor."""
        self._update(group, [p], [grad], [state], step)

    # ---- the shared step ---------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure=None):
        self._check_can_step()
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
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
                if "step" not in state:
                    state["step"] = 0
                    self._init_state(group, p, state)
                state["step"] += 1
                buckets.setdefault((state["step"], p.device, p.dtype), []).append(p)
            self._begin_group(group)
            foreach = group.get("foreach", True) is not False  # None means "auto": foreach
            for (step, _, _), bucket in buckets.items():
                if foreach:
                    self._update(group, bucket, [p.grad for p in bucket],
                                 [self.state[p] for p in bucket], step)
                else:
                    for p in bucket:
                        self._update_single(group, p, p.grad, self.state[p], step)
        return loss
