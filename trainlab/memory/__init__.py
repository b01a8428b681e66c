"""Memory savers for training: compressed activations, frozen parameters, bf16.

quantize       per-group 2/4/8-bit quantization with stochastic rounding, packed into uint8
saved_tensors  saved-tensor hooks that measure what autograd keeps for backward (`SavedTensorMeter`)
activations    ... and compress it (`ActivationCompressor`)
op_rules       which op saves a tensor, and the bits an op rule gives it
recompute      saved outputs of cheap ops rebuilt in backward instead of stored twice
adaptive       GACT's per-tensor bit allocation (Liu et al., ICML 2022, arXiv 2206.11357)
freezing       freeze parameters by rule, or when they stop changing (`ChangeBasedFreezer`)
precision      bf16 autocast and bf16 parameters
names          the savers' option values and labels, defined once
"""

from trainlab.memory.activations import ActivationCompressor, compress_activations
from trainlab.memory.adaptive import BIT_LEVELS, allocate_bits, gact_sensitivity
from trainlab.memory.freezing import (
    ChangeBasedFreezer,
    drop_from_optimizer,
    freeze,
    parameter_units,
    trainable_parameters,
)
from trainlab.memory.names import ACTIVATION_BITS, PRECISIONS, saver_labels
from trainlab.memory.precision import bf16_autocast, bf16_supported, cast_model_bf16
from trainlab.memory.quantize import ALLOWED_BITS, PackedTensor, dequantize, packed_nbytes, quantize
from trainlab.memory.saved_tensors import SavedTensorMeter

__all__ = [
    "ACTIVATION_BITS",
    "PRECISIONS",
    "ALLOWED_BITS",
    "BIT_LEVELS",
    "ActivationCompressor",
    "ChangeBasedFreezer",
    "PackedTensor",
    "SavedTensorMeter",
    "allocate_bits",
    "bf16_autocast",
    "bf16_supported",
    "cast_model_bf16",
    "compress_activations",
    "dequantize",
    "drop_from_optimizer",
    "freeze",
    "gact_sensitivity",
    "packed_nbytes",
    "parameter_units",
    "quantize",
    "saver_labels",
    "trainable_parameters",
]
