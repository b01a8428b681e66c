"""Per-group quantization of a float tensor to 8, 4 or 2 bits, packed into uint8.

The scheme of ActNN and GACT (Liu et al., ICML 2022, arXiv 2206.11357): flatten the tensor,
zero-pad it to a multiple of `group_size` (256 by default), and per group keep `offset = min` and
`scale = (max - min) / (2^b - 1)` (the width of one quantization step). Each entry becomes the
integer code `q = floor((x - offset) / scale + u)` with `u ~ U[0, 1)`: stochastic rounding, so
`E[q] = (x - offset) / scale` and the dequantized value `q * scale + offset` is an unbiased estimate
of `x` (the property the gradient-variance analysis of both papers rests on). With
`stochastic=False` it rounds to nearest instead (error <= scale / 2, but biased).

Error bound per entry (what the tests check): `|x_hat - x| < scale` of its group with stochastic
rounding, `<= scale / 2` with round-to-nearest, where `scale ~= (max - min) / (2^b - 1)`.

Codes are packed little-end first into bytes: 8 bits one code per byte, 4 bits two, 2 bits four.
`scale` and `offset` are stored in `meta_dtype`: fp32 by default (exact), or bf16 (ActNN's choice,
half the metadata). With bf16 the offset is rounded down and the scale up so that every code still
lies in [0, 2^b - 1]; the error bound then holds with the stored (slightly wider) bf16 scale.

ReLU outputs: ReLU's backward reads only `output > 0`, so an entry in (0, scale) rounded to 0 would
silently drop that entry's whole gradient (at 8 bits on a small MLP this alone made a 5 % gradient
error). With `keep_positive=True` (the default), in a group whose minimum is exactly 0, a positive
entry is never coded 0: it becomes at least one step. This biases entries smaller than one step
upward (the error bound above still holds) and keeps the ReLU mask exact.

Non-finite entries make their whole group non-finite after dequantization (they are not hidden).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.nn import functional as F

ALLOWED_BITS = (2, 4, 8)
_PACKABLE_BITS = (1, 2, 4, 8)  # 1 bit is used only internally, by GACT's sensitivity probes
_META_DTYPES = (torch.float32, torch.bfloat16)


@dataclass(frozen=True)
class PackedTensor:
    """A quantized tensor: packed codes, per-group scale/offset, and what is needed to restore it.

    `data`: uint8, `ceil(padded_numel * bits / 8)` bytes. `scale`, `offset`: one entry per group,
    dtype `meta_dtype` (fp32 or bf16). `shape`, `dtype`: the original tensor's, restored by
    `dequantize`. The device is that of `data`.
    """

    data: torch.Tensor
    scale: torch.Tensor
    offset: torch.Tensor
    bits: int
    group_size: int
    numel: int
    shape: torch.Size
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        return packed_nbytes(self)


def packed_nbytes(packed: PackedTensor) -> int:
    """Exact bytes of the tensors a `PackedTensor` holds: codes + scale + offset.

    The Python-side fields (shape, dtype, ints) are host objects of constant size, not counted.
    """
    return sum(t.numel() * t.element_size() for t in (packed.data, packed.scale, packed.offset))


def quantize(
    x: torch.Tensor,
    bits: int = 4,
    group_size: int | Literal["row"] = 256,
    *,
    stochastic: bool = True,
    generator: torch.Generator | None = None,
    meta_dtype: torch.dtype = torch.float32,
    keep_positive: bool = True,
) -> PackedTensor:
    """Quantize `x` (any float dtype, any shape) to `bits` in {2, 4, 8} per group of `group_size`.

    `group_size="row"`: one group per row of the last dimension (no padding needed). `generator`
    draws the rounding noise (on `x`'s device), so a seeded generator makes the codes reproducible.
    `stochastic=False`: round to nearest. `meta_dtype`: torch.float32 or torch.bfloat16 for the
    per-group scale and offset. `keep_positive`: see the module docstring (ReLU outputs).
    """
    if bits not in ALLOWED_BITS:
        raise ValueError(f"bits must be one of {', '.join(map(str, ALLOWED_BITS))}; got {bits!r}")
    return _quantize(
        x,
        bits,
        group_size,
        stochastic=stochastic,
        generator=generator,
        meta_dtype=meta_dtype,
        keep_positive=keep_positive,
    )


def _quantize(
    x: torch.Tensor,
    bits: int,
    group_size: int | Literal["row"],
    *,
    stochastic: bool = True,
    generator: torch.Generator | None = None,
    meta_dtype: torch.dtype = torch.float32,
    keep_positive: bool = True,
) -> PackedTensor:
    """`quantize` without the public bit-width check (also accepts 1 bit, for GACT's probes)."""
    if bits not in _PACKABLE_BITS:
        raise ValueError(f"bits must be one of {', '.join(map(str, _PACKABLE_BITS))}; got {bits!r}")
    if not torch.is_floating_point(x):
        raise TypeError(f"quantize needs a floating-point tensor, got {x.dtype}")
    if meta_dtype not in _META_DTYPES:
        raise ValueError(f"meta_dtype must be torch.float32 or torch.bfloat16, got {meta_dtype}")
    group = _group_length(x, group_size)
    with torch.no_grad():
        groups = _groups(x, group)
        lo = groups.amin(dim=1)
        hi = groups.amax(dim=1)
        levels = 2**bits - 1
        offset, scale = _metadata(lo, hi, levels, meta_dtype)
        off32 = offset.float().unsqueeze(1)
        scale32 = scale.float().unsqueeze(1)
        # Per-group reciprocal, so the full-size work is one subtract and one multiply. A constant
        # group (scale 0) gets 0 and codes to 0, which dequantizes to its value exactly; the clamp
        # keeps a subnormal scale from giving inf * 0 = NaN.
        inv = torch.where(scale32 > 0, 1.0 / scale32, 0.0).clamp_(max=torch.finfo(torch.float32).max)
        y = (groups - off32).mul_(inv)
        if stochastic:
            y.add_(torch.rand(y.shape, generator=generator, device=y.device, dtype=y.dtype))
        else:
            y.add_(0.5)
        codes = y.floor_().clamp_(0, levels)
        if keep_positive and bool((lo == 0).any()):  # only ReLU-like groups pay for the mask
            codes = torch.where((lo.unsqueeze(1) == 0) & (groups > 0), codes.clamp(min=1), codes)
        codes = codes.to(torch.uint8).reshape(-1)
        data = _pack(codes, bits)
    return PackedTensor(data, scale, offset, bits, group, x.numel(), x.shape, x.dtype)


def dequantize(packed: PackedTensor) -> torch.Tensor:
    """The tensor `packed` stands for, in its original shape and dtype (a new tensor)."""
    n_groups = packed.scale.numel()
    codes = _unpack(packed.data, packed.bits, n_groups * packed.group_size)
    groups = codes.view(n_groups, packed.group_size).float()
    x = torch.addcmul(packed.offset.float().unsqueeze(1), groups, packed.scale.float().unsqueeze(1))
    return x.reshape(-1)[: packed.numel].view(packed.shape).to(packed.dtype)


# ---- helpers -----------------------------------------------------------------------------------


def _group_length(x: torch.Tensor, group_size: int | Literal["row"]) -> int:
    if group_size == "row":
        return max(x.shape[-1], 1) if x.dim() > 0 else 1
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive int or 'row', got {group_size!r}")
    return group_size


def _groups(x: torch.Tensor, group: int) -> torch.Tensor:
    """`x` flattened to fp32, zero-padded to a multiple of `group`, as a (groups, group) matrix."""
    flat = x.detach().reshape(-1).float()
    pad = (-flat.numel()) % group
    if pad or flat.numel() == 0:
        flat = F.pad(flat, (0, pad if flat.numel() else group))
    return flat.view(-1, group)


def _metadata(
    lo: torch.Tensor, hi: torch.Tensor, levels: int, meta_dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """(offset, scale) in `meta_dtype`, rounded so that offset <= lo and offset + levels*scale >= hi."""
    if meta_dtype == torch.float32:
        return lo, (hi - lo) / levels
    offset = lo.to(meta_dtype)
    offset = torch.where(offset.float() > lo, torch.nextafter(offset, torch.full_like(offset, -float("inf"))), offset)
    needed = (hi - offset.float()) / levels
    scale = needed.to(meta_dtype)
    scale = torch.where(scale.float() < needed, torch.nextafter(scale, torch.full_like(scale, float("inf"))), scale)
    return offset, scale


def _pack(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """uint8 codes (each < 2^bits) -> bytes holding 8 // bits codes each, first code in the low bits."""
    per_byte = 8 // bits
    if per_byte == 1:
        return codes.contiguous()
    pad = (-codes.numel()) % per_byte
    if pad:
        codes = F.pad(codes, (0, pad))
    codes = codes.view(-1, per_byte)
    out = codes[:, 0].clone()
    for j in range(1, per_byte):
        out |= codes[:, j] << (bits * j)
    return out


def _unpack(data: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    per_byte = 8 // bits
    if per_byte == 1:
        return data[:count]
    shifts = torch.arange(0, 8, bits, dtype=torch.uint8, device=data.device)
    mask = 2**bits - 1
    return ((data.unsqueeze(1) >> shifts) & mask).reshape(-1)[:count]
