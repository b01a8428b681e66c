"""bf16 training helpers: autocast for the forward pass, or bf16 parameters throughout.

Two different savings:
- `bf16_autocast(device)`: parameters stay fp32; matmuls and convolutions run in bf16 and save bf16
  activations for backward (half their bytes); ops autocast keeps in fp32 (softmax, layer norm, loss)
  stay fp32. Wrap the forward pass and the loss; backward may run outside it (PyTorch recommends
  that), since each backward op runs in the dtype its forward op used. CPU autocast supports bf16.
- `cast_model_bf16(model)`: parameters and buffers themselves become bf16 (half the parameter,
  gradient and -- for elementwise optimizers -- state memory). Inputs must then be bf16 too, or the
  forward wrapped in `bf16_autocast`.

Optimizer state with bf16 parameters: trainlab's elementwise optimizers (and torch.optim's AdamW)
keep their state in the parameter's dtype, so bf16; the projection optimizers (GaLore, Fira, FRUGAL,
SWAN) keep fp32 state and do their arithmetic in fp32, casting the update once. No trainlab optimizer
uses stochastic rounding or Kahan summation for bf16 parameters: an update smaller than half a bf16
spacing of the weight (about 2^-9 of its magnitude) is rounded away, so long low-LR phases can stall.
"""

from __future__ import annotations

import torch
from torch import nn

from trainlab.errors import UsageError

_AUTOCAST_DEVICES = ("cpu", "cuda", "mps", "xpu")


def bf16_supported(device: torch.device | str) -> bool:
    """Whether bf16 autocast is available on `device` (CUDA needs compute capability >= 8.0)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type in _AUTOCAST_DEVICES


def bf16_autocast(device: torch.device | str, enabled: bool = True) -> torch.autocast:
    """`torch.autocast` to bf16 for `device`'s type; `enabled=False` gives a no-op context."""
    device = torch.device(device)
    if enabled and not bf16_supported(device):
        raise UsageError(
            f"bf16 autocast is not supported on device {str(device)!r}; use fp32 (CUDA needs an Ampere or newer GPU)"
        )
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def cast_model_bf16(model: nn.Module) -> nn.Module:
    """Cast `model`'s floating-point parameters and buffers to bf16 in place; returns `model`.

    Build the optimizer afterwards (its state then follows the rules in the module docstring).
    BatchNorm running statistics become bf16 too, which makes them coarser.
    """
    return model.to(dtype=torch.bfloat16)
