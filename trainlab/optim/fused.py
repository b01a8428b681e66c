"""The fused path of `ElementwiseOptimizer`: one compiled pass over memory per tensor, built once
per machine and loaded in milliseconds by every later process.

A `torch._foreach_*` chain makes one pass over memory per op (and allocates temporaries), so an
elementwise step costs several times its memory-bandwidth bound. Here an optimizer's pure
per-tensor rule (`ElementwiseOptimizer._rule`) is exported (`torch.export`) and compiled ahead of
time by AOTInductor into a shared library whose one loop reads every input once and writes the
new parameter and state in place.

Why ahead of time, not torch.compile: a torch.compile'd step recompiles in every new process
(dynamo traces again and inductor is imported, 2-3 s per optimizer on a 2-core CPU even when
inductor's on-disk cache holds the kernel), and it specializes on every tensor shape. An
AOTInductor package is loaded through torch's C++ runtime (`torch._C._aoti`), with no dynamo or
inductor import, in a few milliseconds; its one input dimension is dynamic, so one kernel serves
every tensor of every model (each tensor is passed as a flat view).

One kernel per (rule and its module's source, how it is built, number of state tensors and
scalars, dtype, device type, CPU thread count and vector ISA, torch version): the file name hashes
all of them, so a changed rule, a new torch or another machine never loads a stale kernel. Kernels live in `cache_dir()`
(`$TRAINLAB_KERNEL_CACHE`, else `~/.cache/trainlab/kernels`); a kernel is written to a temporary
name and renamed, so concurrent workers never load half a file. Building one takes 10-40 s (it
runs a C++ compiler, or Triton on CUDA); `stats()` counts builds and their seconds.

Why the scalars are one float32 tensor: every number the rule reads (lr, bias corrections, decay)
is data to the kernel, so one kernel serves every step, lr and group.

Tensors the kernel cannot take (not contiguous, or fewer than 2 entries) get the same rule eagerly
(`ElementwiseOptimizer._update_single`'s arithmetic): identical results, no kernel.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from trainlab.optim import modifiers

# rule(p, g, states, s) -> (new_p, *new_states); s is indexable: s[i] is a float or a 0-d tensor.
Rule = Callable[..., tuple]

_LOADED: dict[tuple, Any] = {}
_FAILED: dict[tuple, str] = {}  # kernels whose build failed in this process: not retried every step
_STATS = {"builds": 0, "build_seconds": 0.0, "loads": 0, "calls": 0}
EXAMPLE_LENGTH = 1 << 20
ENV_SWITCH = "TRAINLAB_FUSED"  # "0": the default path is foreach (the test suite sets it)


def cache_dir() -> Path:
    """Where built kernels are kept: $TRAINLAB_KERNEL_CACHE, else ~/.cache/trainlab/kernels."""
    if os.environ.get("TRAINLAB_KERNEL_CACHE"):
        return Path(os.environ["TRAINLAB_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "trainlab" / "kernels"


class KernelUnavailable(RuntimeError):
    """A fused kernel could not be built here (no working compiler, an unsupported dtype)."""


def switched_on() -> bool:
    """Whether fused kernels are the default at all: unless $TRAINLAB_FUSED is "0"."""
    return os.environ.get(ENV_SWITCH, "1") != "0"


def default_on(device: torch.device) -> bool:
    """Whether `fused=None` (the default) means trainlab's fused kernels on `device`: on CPUs with
    a C++ compiler and CUDA devices with Triton (what AOTInductor builds with), when
    `switched_on()`. Should a build still fail, the default path warns once and runs foreach."""
    if not switched_on():
        return False
    if device.type == "cpu":
        return _has_compiler()
    # AOTInductor's CUDA kernels are Triton's; its wrapper is C++ (untested here: no GPU in CI)
    return device.type == "cuda" and _has_compiler() and importlib.util.find_spec("triton") is not None


@functools.cache
def _has_compiler() -> bool:
    return any(shutil.which(c) for c in (os.environ.get("CXX", ""), "c++", "g++", "clang++") if c)


def _kernel_file(rule: Rule, states: int, scalars: int, dtype: torch.dtype, device: torch.device) -> Path:
    isa = torch.backends.cpu.get_cpu_capability() if device.type == "cpu" else torch.cuda.get_device_name(device)
    threads = torch.get_num_threads() if device.type == "cpu" else 0  # the CPU loop's OpenMP width is fixed
    module = inspect.getmodule(rule)
    source = inspect.getsource(module if module is not None else rule)  # the rule and its helpers
    if hasattr(rule, "__wrapped__"):  # a `modifiers.compose` rule: its last line and modifiers live there
        source += inspect.getsource(modifiers)
    build = inspect.getsource(_build) + inspect.getsource(_Kernel) + str(EXAMPLE_LENGTH)  # how it is built
    layout = f"{states}|{scalars}|{dtype}|{device.type}|{threads}|{isa}"
    key = f"{rule.__module__}.{rule.__qualname__}|{source}|{build}|{layout}"
    digest = hashlib.sha256(f"{key}|{torch.__version__}".encode()).hexdigest()[:16]
    name = f"{rule.__qualname__}-{str(dtype).removeprefix('torch.')}-{device.type}-t{threads}-{digest}.pt2"
    return cache_dir() / name


class _Kernel(torch.nn.Module):
    """What is exported: the rule with its results written back into its inputs."""

    def __init__(self, rule: Rule, states: int) -> None:
        super().__init__()
        self.rule, self.states = rule, states

    def forward(self, p, g, *rest):
        states, s = rest[: self.states], rest[self.states]
        new = self.rule(p, g, tuple(states), s)
        p.copy_(new[0])
        for dst, src in zip(states, new[1:]):
            dst.copy_(src)
        return ()


def _build(path: Path, rule: Rule, states: int, scalars: int, dtype: torch.dtype, device: torch.device) -> None:
    import torch._inductor  # only a build imports inductor

    n = torch.export.Dim("n", min=2)
    # inductor sizes its loops (vector width, OpenMP threads or not) for the example's length:
    # a parameter-sized one, or the CPU loop would run on one thread however many there are
    example = [torch.ones(EXAMPLE_LENGTH, dtype=dtype, device=device) for _ in range(2 + states)]
    args = (*example, torch.ones(scalars, dtype=torch.float32, device=device))
    dims = ({0: n}, {0: n}, (*[{0: n}] * states, None))  # forward(p, g, *rest)
    with warnings.catch_warnings():  # export's and inductor's deprecation chatter, not the user's
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.export.export(_Kernel(rule, states), args, dynamic_shapes=dims)
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(f".{os.getpid()}.{path.name}")  # renamed when whole
        try:
            torch._inductor.aoti_compile_and_package(program, package_path=str(scratch))
            os.replace(scratch, path)
        finally:
            scratch.unlink(missing_ok=True)


def kernel(rule: Rule, states: int, scalars: int, dtype: torch.dtype, device: torch.device) -> Any:
    """The loaded kernel for this rule and layout, built first if this machine has none."""
    key = (rule, states, scalars, dtype, device, torch.get_num_threads(), str(cache_dir()))
    loaded = _LOADED.get(key)  # the common case, every step: one dict lookup
    if loaded is not None:
        return loaded
    path = _kernel_file(rule, states, scalars, dtype, device)  # hashes source files: once
    if key in _FAILED:
        raise KernelUnavailable(_FAILED[key])
    if not path.exists():
        start = time.perf_counter()
        try:
            _build(path, rule, states, scalars, dtype, device)
        except Exception as exc:  # a compiler error, a dtype inductor cannot take, ...
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            _FAILED[key] = (
                f"could not build the fused {rule.__qualname__} kernel for {dtype} on {device.type} ({first}); "
                "pass fused=False (or set TRAINLAB_FUSED=0) for the foreach path"
            )
            raise KernelUnavailable(_FAILED[key]) from exc
        _STATS["builds"] += 1
        _STATS["build_seconds"] += time.perf_counter() - start
    index = device.index if device.type == "cuda" and device.index is not None else -1
    if device.type == "cuda" and index < 0:
        index = torch.cuda.current_device()
    loaded = _LOADED[key] = torch._C._aoti.AOTIModelPackageLoader(str(path), "model", False, 1, index)
    _STATS["loads"] += 1
    return loaded


def apply(
    rule: Rule,
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    states: list[tuple[torch.Tensor, ...]],
    scalars: Sequence[float],
) -> None:
    """Run `rule` over one bucket (same device and dtype): the kernel on every flat-viewable tensor,
    the rule eagerly on the others."""
    first = params[0]
    fn = kernel(rule, len(states[0]), len(scalars), first.dtype, first.device)
    s = torch.tensor(scalars, dtype=torch.float32)
    if first.device.type == "cuda":  # pinned + non_blocking: no host sync behind queued work
        s = s.pin_memory().to(first.device, non_blocking=True)
    for p, g, st in zip(params, grads, states):
        tensors = (p, g, *st)
        if p.numel() >= 2 and all(t.is_contiguous() and t.dtype == p.dtype for t in tensors):
            fn.run([t.view(-1) for t in tensors] + [s])
            _STATS["calls"] += 1
            continue
        new = rule(p, g, st, [float(x) for x in scalars])
        for dst, src in zip((p, *st), new):
            dst.copy_(src)


def stats() -> dict[str, float]:
    """Kernels built in this process (and the seconds they took), kernels loaded, kernel calls."""
    return dict(_STATS)
