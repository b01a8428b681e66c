"""The AlgoPerf modules a PyTorch submission imports, provided by trainlab under both package names.

The real `algoperf` (and the v0.5-era `algorithmic_efficiency`) imports JAX and TensorFlow at module
top, so trainlab does not depend on it: before loading a submission, `install()` registers
`spec` (`algoperf_spec`), `pytorch_utils` and `random_utils` under `algoperf.` and
`algorithmic_efficiency.`, unless the real package is already imported. `absl` is the real absl-py
(the `algoperf` extra): submissions use more of it than a stand-in would reliably cover.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainlab.algorithms import algoperf_spec as spec
from trainlab.algorithms.algoperf_spec import (
    ForwardPassMode,
    LossType,
    ParameterType,
    ShapeTuple,
    TrainingCompleteError,
)

ROOTS = ("algoperf", "algorithmic_efficiency")
PROVIDED = ("spec", "pytorch_utils", "random_utils")
__all__ = ["ForwardPassMode", "LossType", "ParameterType", "ShapeTuple", "TrainingCompleteError", "install"]


# ---- pytorch_utils ----
def pytorch_setup() -> tuple[bool, int, torch.device, int]:
    """(use_pytorch_ddp, rank, device, n_gpus), by AlgoPerf's rule: data-parallel when launched by
    torch.distributed.run (LOCAL_RANK set: `trainlab race --nproc N`), so a submission's
    `USE_PYTORCH_DDP = pytorch_setup()[0]` turns on its `dist_nn.all_reduce` of the loss exactly
    when trainlab wraps the model in DistributedDataParallel."""
    ddp = "LOCAL_RANK" in os.environ
    rank = int(os.environ["LOCAL_RANK"]) if ddp else 0
    device = torch.device(f"cuda:{rank}" if torch.cuda.is_available() else "cpu")
    return ddp, rank, device, torch.cuda.device_count()


def pytorch_init(use_pytorch_ddp: bool, rank: int, profiler: Any = None) -> None:
    """Nothing to set up: trainlab's launcher starts the process group (AlgoPerf's also configures JAX)."""


def sync_ddp_time(time: float, device: torch.device) -> float:
    """The slowest rank's time."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return float(time)
    value = torch.tensor(time, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return float(value.item())


def update_batch_norm_fn(module: nn.Module, update_batch_norm: bool) -> None:
    """Freeze (or restore) a batch-norm layer's running statistics, as AlgoPerf's helper does:
    momentum 0 keeps them, the backed-up momentum restores updating."""
    if not isinstance(module, nn.modules.batchnorm._BatchNorm):
        return
    if not update_batch_norm:
        if not hasattr(module, "momentum_backup"):
            setattr(module, "momentum_backup", module.momentum)  # noqa: B010 (a dynamic attribute)
        module.momentum = 0.0
    elif hasattr(module, "momentum_backup"):
        module.momentum = getattr(module, "momentum_backup")  # noqa: B009


class CustomDropout(nn.Module):
    """Dropout whose rate is a forward argument (AlgoPerf's models take `dropout_rate` per call)."""

    def __init__(self) -> None:
        super().__init__()
        self._supports_custom_dropout = True

    def forward(self, x: torch.Tensor, p: float) -> torch.Tensor:
        return F.dropout(x, p, training=self.training)


class CustomDropout2d(CustomDropout):
    def forward(self, x: torch.Tensor, p: float) -> torch.Tensor:
        return F.dropout2d(x, p, training=self.training)


class SequentialWithDropout(nn.Sequential):
    """A Sequential that hands the dropout rate to the modules that take it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._supports_custom_dropout = True

    def forward(self, x: torch.Tensor, p: float) -> torch.Tensor:  # type: ignore[override]
        for module in self:
            x = module(x, p) if getattr(module, "_supports_custom_dropout", False) else module(x)
        return x


# ---- random_utils (the NumPy flavour AlgoPerf uses for PyTorch) ----
_MAX = 2**31 - 1


def _seed(seed: Any) -> Any:
    if isinstance(seed, np.ndarray):
        return [int(s) % _MAX for s in seed.ravel().tolist()]
    if isinstance(seed, (list, tuple)):
        return [int(s) % _MAX for s in seed]
    return int(seed) % _MAX


def split(seed: Any, num: int = 2) -> np.ndarray:
    """`num` new seeds (each a pair of uint32) drawn deterministically from `seed`."""
    return np.random.RandomState(_seed(seed)).randint(0, _MAX, size=[num, 2], dtype=np.uint32)


def fold_in(seed: Any, data: Any) -> list[Any]:
    """A seed derived from `seed`, paired with `data`."""
    return [np.random.RandomState(_seed(seed)).randint(0, _MAX, dtype=np.uint32), data]


def PRNGKey(seed: Any) -> np.ndarray:  # noqa: N802  (AlgoPerf's name)
    return split(seed, 2)[0]


def _module(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


def install() -> None:
    """Make `from algoperf import spec` (and friends, under both names) resolve here, unless the
    real package is already imported; idempotent."""
    for root in ROOTS:
        if root in sys.modules and not getattr(sys.modules[root], "__trainlab_compat__", False):
            continue  # the real package is in use: leave it alone
        utils = _module(
            f"{root}.pytorch_utils",
            pytorch_setup=pytorch_setup,
            pytorch_init=pytorch_init,
            sync_ddp_time=sync_ddp_time,
            update_batch_norm_fn=update_batch_norm_fn,
            CustomDropout=CustomDropout,
            CustomDropout2d=CustomDropout2d,
            SequentialWithDropout=SequentialWithDropout,
        )
        rand = _module(f"{root}.random_utils", split=split, fold_in=fold_in, PRNGKey=PRNGKey)
        package = _module(root, spec=spec, pytorch_utils=utils, random_utils=rand, __path__=[])
        setattr(package, "__trainlab_compat__", True)  # noqa: B010 (marks our stand-in)
        sys.modules[root] = package
        sys.modules[f"{root}.spec"] = spec
        sys.modules[f"{root}.pytorch_utils"] = utils
        sys.modules[f"{root}.random_utils"] = rand
