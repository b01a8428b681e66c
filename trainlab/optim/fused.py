"""The `fused=True` path of `ElementwiseOptimizer`: one compiled pass over memory per tensor.

A `torch._foreach_*` chain makes one pass over memory per op (and allocates temporaries), so an
elementwise step costs several times its memory-bandwidth bound. Here an optimizer's pure
per-tensor rule (`ElementwiseOptimizer._rule`) is traced over a whole bucket by torch.compile
(inductor), which fuses each tensor's update, write-back into the parameter and its state
included, into one loop that reads and writes every byte once.

Why the scalars are one float32 tensor: dynamo specializes on Python numbers, so a new lr, step
or weight decay passed as a float would recompile (or, worse, reuse a stale constant). As entries
of one 1-D tensor on the parameters' device they are data: every step reuses the same kernel, and
on an accelerator they cost one host-to-device copy per bucket.

Why one compiled wrapper per (rule, bucket layout, thread count): dynamo caches compiled code per
code object and, after `recompile_limit` (8) entries, falls back to eager, or with
fullgraph=True raises. Many parameter groups, or a bucket split because a parameter missed
steps, would exhaust one shared cache; with `isolate_recompiles=True` each layout gets its own
region, compiled exactly once, and shared by every optimizer instance in the process. Dynamo's
global cap (`accumulated_recompile_limit`, 256 entries per code object) still bounds the number
of distinct layouts one process can compile.

`stats()` counts compilations (dynamo's graph counter, read around each call), so a test can
prove that a new lr does not recompile and a benchmark can report compile time on its own.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import torch

# rule(p, g, states, s) -> (new_p, *new_states); s is indexable: s[i] is a float or a 0-d tensor.
Rule = Callable[..., tuple]

_COMPILED: dict[tuple, Callable] = {}
_STATS = {"compiles": 0, "compile_seconds": 0.0}


def _bucket_update(rule: Rule) -> Callable:
    """A list-level function applying `rule` to every tensor of a bucket, written back in place."""

    def update(params, grads, states, scalars):
        for p, g, st in zip(params, grads, states):
            new = rule(p, g, st, scalars)
            p.copy_(new[0])
            for dst, src in zip(st, new[1:]):
                dst.copy_(src)

    return update


def apply(
    rule: Rule,
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    states: list[tuple[torch.Tensor, ...]],
    scalars: Sequence[float],
) -> None:
    """Run `rule` over one bucket (same device and dtype) with a compiled, cached kernel."""
    first = params[0]
    # Everything dynamo guards on that can differ between buckets (thread count included: it is
    # global state dynamo checks), so each key's kernel compiles once.
    # (Gradients and state have the parameter's shape; only their strides can differ.)
    key = (
        rule,
        first.device,
        first.dtype,
        torch.get_num_threads(),
        len(scalars),
        *[(p.shape, p.stride(), g.stride(), *[t.stride() for t in st]) for p, g, st in zip(params, grads, states)],
    )
    fn = _COMPILED.get(key)
    if fn is None:
        fn = _COMPILED[key] = torch.compile(  # type: ignore[call-overload]  # stubs lack isolate_recompiles
            _bucket_update(rule), fullgraph=True, dynamic=False, isolate_recompiles=True
        )
    s = torch.tensor(scalars, dtype=torch.float32)
    if first.device.type == "cuda":  # pinned + non_blocking: no host sync behind queued work
        s = s.pin_memory().to(first.device, non_blocking=True)
    elif first.device.type != "cpu":
        s = s.to(first.device)
    from torch._dynamo.utils import counters  # loaded by torch.compile above, never at import

    graphs = counters["stats"]["unique_graphs"]
    start = time.perf_counter()
    fn(params, grads, states, s)
    compiled = counters["stats"]["unique_graphs"] - graphs
    if compiled:
        _STATS["compiles"] += compiled
        _STATS["compile_seconds"] += time.perf_counter() - start


def stats() -> dict[str, float]:
    """Compilations so far in this process, the wall time of the calls that compiled them, and
    `layouts`, the number of (rule, bucket layout) kernels cached (each compiles exactly once)."""
    return {**_STATS, "layouts": len(_COMPILED)}
