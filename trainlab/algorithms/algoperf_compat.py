"""The few AlgoPerf modules a PyTorch submission imports, small enough to provide ourselves.

The real `algoperf.spec` imports JAX and TensorFlow at module top, so trainlab does not depend on it:
before loading a submission it installs these stand-ins as `algoperf`, `algoperf.spec`,
`algoperf.pytorch_utils` and the older names `algorithmic_efficiency...`, and an `absl.logging` that
forwards to Python's logging when absl is not installed. Only what submissions use is here: the
enums, `TrainingCompleteError`, the type names, and `pytorch_setup` for a single process.
"""

from __future__ import annotations

import enum
import logging as _logging
import sys
import types
from typing import Any, NamedTuple

import torch


class TrainingCompleteError(Exception):
    """Raised by a submission to end training early (AlgoPerf's `spec.TrainingCompleteError`)."""


class ForwardPassMode(enum.Enum):
    TRAIN = 0
    EVAL = 1


class LossType(enum.Enum):
    SOFTMAX_CROSS_ENTROPY = 0
    SIGMOID_CROSS_ENTROPY = 1
    MEAN_SQUARED_ERROR = 2
    CTC_LOSS = 3
    MEAN_ABSOLUTE_ERROR = 4


class ParameterType(enum.Enum):
    WEIGHT = 0
    BIAS = 1
    CONV_WEIGHT = 2
    BATCH_NORM_SCALE = 3
    BATCH_NORM_BIAS = 4
    LAYER_NORM_SCALE = 5
    LAYER_NORM_BIAS = 6
    EMBEDDING = 7
    ATTENTION_Q = 8
    ATTENTION_K = 9
    ATTENTION_V = 10
    ATTENTION_OUT = 11
    ATTENTION_QKV = 12
    ATTENTION_KV = 13
    ATTENTION_BIAS = 14


class ShapeTuple:
    def __init__(self, shape_tuple: tuple[int, ...]) -> None:
        self.shape_tuple = tuple(shape_tuple)

    def __repr__(self) -> str:
        return f"ShapeTuple({self.shape_tuple})"


class TrainState(NamedTuple):
    accumulated_submission_time: float
    global_step: int
    last_eval_time: float
    training_complete: bool


def pytorch_setup() -> tuple[bool, int, torch.device, int]:
    """(use_pytorch_ddp, rank, device, n_gpus) for this single process."""
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    return False, 0, device, torch.cuda.device_count()


def pytorch_init(use_pytorch_ddp: bool, rank: int, profiler: Any = None) -> None:
    """Nothing to initialise in one process (AlgoPerf's sets up DDP and seeds)."""


def _module(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


def install() -> None:
    """Make `import algoperf.spec` (and friends) resolve here, unless the real packages are loaded."""
    spec = _module(
        "spec",
        TrainingCompleteError=TrainingCompleteError,
        ForwardPassMode=ForwardPassMode,
        LossType=LossType,
        ParameterType=ParameterType,
        ShapeTuple=ShapeTuple,
        TrainState=TrainState,
        Workload=object,
        Dict=dict,
        Any=Any,
    )
    utils = _module("pytorch_utils", pytorch_setup=pytorch_setup, pytorch_init=pytorch_init)
    for root in ("algoperf", "algorithmic_efficiency"):
        if root in sys.modules and not getattr(sys.modules[root], "__trainlab_compat__", False):
            continue  # the real package is in use: leave it alone
        package = _module(root, spec=spec, pytorch_utils=utils, __trainlab_compat__=True, __path__=[])
        sys.modules[root] = package
        sys.modules[f"{root}.spec"] = spec
        sys.modules[f"{root}.pytorch_utils"] = utils
    try:
        import absl.logging  # noqa: F401  (the real one, when installed)
    except ImportError:
        log = _logging.getLogger("submission")
        shim = _module(
            "logging",
            info=log.info,
            warning=log.warning,
            error=log.error,
            debug=log.debug,
            log=log.log,
            vlog=lambda level, msg, *a: log.debug(msg, *a),
            set_verbosity=lambda *a, **k: None,
        )
        sys.modules["absl"] = _module("absl", logging=shim, __path__=[])
        sys.modules["absl.logging"] = shim
