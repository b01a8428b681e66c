"""Low-precision optimizer state and bf16 weight updates, for every elementwise optimizer at once.

Two constructor options of each `ElementwiseOptimizer` (`options` checks them):

- `state_dtype`: how the state tensors the rule reads are stored.
  "param" (the default: the parameter's dtype, today's behaviour), "float32", "bfloat16" (round to
  nearest), or "int8": blockwise quantisation, one float32 absmax per block of `BLOCK` entries
  (of the flattened tensor) and one byte per entry. The byte is a log code of |x| / absmax: level
  j of L stands for absmax * RATIO^(j - L), nearest level in value, 0 for zero. Signed states (a
  first moment, a previous gradient) keep the sign: int8 codes -127..127, L = 127 levels over
  `SIGNED_RANGE` (1e-6 of the block's absmax, about 5.6 % worst relative error). Non-negative
  states (`ElementwiseOptimizer._nonnegative_states`, the second moments) use all 255 levels of a
  uint8 over `UNSIGNED_RANGE` (1e-12: sqrt(v) keeps a 1e-6 range, at 2.8 % worst error). The
  design follows the blockwise dynamic quantisation of bitsandbytes' and torchao's 8-bit
  optimizers (absmax per block, a non-linear code, separate signed and unsigned maps); the code
  here is a plain log map, decoded by a 256-entry table. Weight-like states (`_full_precision_states`:
  Schedule-Free's z) keep the parameter's dtype.
- `weight_update`, for bfloat16 parameters: "exact" (today's: the rule runs in the parameter's
  dtype), "stochastic" (the rule runs in float32 and the new value is rounded to bf16 at random,
  up or down with probabilities that make the rounding unbiased) or "kahan" (the rule runs in
  float32; a bf16 compensation buffer, `state["kahan_comp"]`, 2 B/param, carries what bf16 could
  not absorb into the next step). For parameters of other dtypes the option is a no-op (documented
  rather than refused: a race builds and steps its optimizer on float32 stand-ins before casting
  the model to bf16, and mixed models keep float32 norms beside bf16 matrices).

Every path (per-tensor, foreach, fused) runs the unchanged rule on float32 working tensors:
`Working` dequantises (or upcasts) before the bucket's update and stores the results after it,
the one place state storage is touched. With the defaults it is not entered at all.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch

STATE_DTYPES = ("param", "float32", "bfloat16", "int8")
WEIGHT_UPDATES = ("exact", "stochastic", "kahan")
BLOCK = 256
SIGNED_LEVELS, SIGNED_RANGE = 127, 1e-6
UNSIGNED_LEVELS, UNSIGNED_RANGE = 255, 1e-12
CODES, SCALES = ".q", ".absmax"  # suffixes of a quantised state's two tensors
KAHAN = "kahan_comp"


def options(state_dtype: str, weight_update: str) -> dict[str, Any]:
    """The param-group entries of the two options, checked."""
    if state_dtype not in STATE_DTYPES:
        raise ValueError(f"state_dtype must be one of {', '.join(STATE_DTYPES)}, got {state_dtype!r}")
    if weight_update not in WEIGHT_UPDATES:
        raise ValueError(f"weight_update must be one of {', '.join(WEIGHT_UPDATES)}, got {weight_update!r}")
    return dict(state_dtype=state_dtype, weight_update=weight_update)


def quantized(state_dict: dict[str, Any]) -> bool:
    """Whether a saved optimizer state holds int8 codes."""
    return any(k.endswith(CODES) for state in state_dict["state"].values() for k in state)


def active(group: dict[str, Any]) -> bool:
    return group.get("state_dtype", "param") != "param" or group.get("weight_update", "exact") != "exact"


# ---- the int8 codes ------------------------------------------------------------------------------


def _ratio(signed: bool) -> float:
    levels, span = (SIGNED_LEVELS, SIGNED_RANGE) if signed else (UNSIGNED_LEVELS, UNSIGNED_RANGE)
    return span ** (-1.0 / (levels - 1))  # level 1 is absmax * span, level `levels` is absmax


@functools.cache
def _table(signed: bool, device: torch.device) -> torch.Tensor:
    """Code -> value for absmax 1: index code + 128 (int8) or code (uint8)."""
    levels = SIGNED_LEVELS if signed else UNSIGNED_LEVELS
    codes = torch.arange(-128, 128) if signed else torch.arange(256)
    magnitude = codes.abs().clamp_max(levels).double()
    value = torch.where(magnitude > 0, _ratio(signed) ** (magnitude - levels), 0.0) * torch.sign(codes)
    return value.float().to(device)


def _blocks(flat: torch.Tensor) -> torch.Tensor:
    """`flat` as rows of BLOCK entries (zero-padded: a copy only when numel is not a multiple)."""
    pad = -flat.numel() % BLOCK
    return (torch.nn.functional.pad(flat, (0, pad)) if pad else flat).view(-1, BLOCK)


def quantize(x: torch.Tensor, signed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """float `x` -> (codes of x.numel() bytes, int8 or uint8; float32 absmax per block).

    With y = levels + log(|x| / absmax) / log(ratio) the position on the level scale (levels at
    absmax), the nearest level in value is floor(y + 1 - c), c = log((1 + ratio) / 2) / log(ratio)
    (the value midpoint of two neighbouring levels sits c above the lower one)."""
    n = x.numel()
    magnitude = _blocks(x.detach().reshape(-1).float().abs())
    absmax = magnitude.amax(dim=1)
    levels = SIGNED_LEVELS if signed else UNSIGNED_LEVELS
    ratio = _ratio(signed)
    position = torch.log(magnitude / torch.where(absmax > 0, absmax, 1.0)[:, None])
    position.mul_(1 / math.log(ratio)).add_(levels + 1 - math.log((1 + ratio) / 2) / math.log(ratio))
    level = position.floor_().clamp_(0, levels)
    if signed:
        level.mul_(_blocks(x.detach().reshape(-1).float()).sign())
    codes = level.reshape(-1)[:n].to(torch.int8 if signed else torch.uint8)
    return codes, absmax


def dequantize(codes: torch.Tensor, absmax: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The float32 tensor of `shape` that `quantize` encoded (signedness from the codes' dtype)."""
    signed = codes.dtype == torch.int8
    index = codes.int() + 128 if signed else codes.int()
    value = _table(signed, codes.device)[index]
    n = codes.numel()
    return (_blocks(value) * absmax[:, None]).reshape(-1)[:n].reshape(shape)


# ---- bf16 weight updates ---------------------------------------------------------------------------


def round_stochastic(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """float32 `x` rounded to bfloat16 at random, unbiased: uniform random bits below bf16's last
    mantissa bit are added to x's bit pattern, then those 16 bits are cut (toward zero). Non-finite
    entries round to nearest."""
    bits = x.contiguous().view(torch.int32)
    noise = torch.randint(0, 1 << 16, x.shape, dtype=torch.int32, device=x.device, generator=generator)
    rounded = ((bits + noise) & -65536).view(torch.float32)
    return torch.where(torch.isfinite(x), rounded, x).to(torch.bfloat16)


def _generator(device: torch.device, kept: dict[torch.device, torch.Generator]) -> torch.Generator:
    """One generator per device and optimizer, seeded 0: the training's own random stream is untouched."""
    if device not in kept:
        kept[device] = torch.Generator(device=device).manual_seed(0)
    return kept[device]


# ---- storage ------------------------------------------------------------------------------------


def stored_keys(state: dict[str, Any]) -> list[str]:
    """The state's tensor keys as the rule sees them (a quantised pair counts as its one key)."""
    keys = [k.removesuffix(CODES) for k in state if k.endswith(CODES)]
    return keys + [k for k, v in state.items() if torch.is_tensor(v) and not k.endswith((CODES, SCALES))]


def read(p: torch.Tensor, state: dict[str, Any], key: str, float32: bool) -> torch.Tensor:
    """State `key` as a tensor of p's shape: dequantised if quantised, float32 if `float32`."""
    if key + CODES in state:
        return dequantize(state[key + CODES], state[key + SCALES], p.shape)
    value = state[key]
    return value.float() if float32 and value.is_floating_point() else value


def store(group: dict[str, Any], p: torch.Tensor, state: dict[str, Any], key: str, value: torch.Tensor, kinds) -> None:
    """Write `value` as state `key` in the group's `state_dtype` (`kinds`: the optimizer's
    (non-negative keys, full-precision keys)). Only state tensors of p's shape are converted."""
    nonnegative, full = kinds
    old = state.get(key)
    convertible = key not in full and key != KAHAN and value.shape == p.shape and value.is_floating_point()
    mode = group.get("state_dtype", "param") if convertible else "keep"
    if mode == "int8":
        state.pop(key, None)
        state[key + CODES], state[key + SCALES] = quantize(value, signed=key not in nonnegative)
        return
    state.pop(key + CODES, None)
    state.pop(key + SCALES, None)
    dtypes = {"param": p.dtype, "float32": torch.float32, "bfloat16": torch.bfloat16}
    dtype = dtypes.get(mode, old.dtype if torch.is_tensor(old) else value.dtype)
    if torch.is_tensor(old) and old is not value and old.dtype == dtype and old.shape == value.shape:
        old.copy_(value)
    else:
        state[key] = value.to(dtype)


def convert(group: dict[str, Any], p: torch.Tensor, state: dict[str, Any], kinds) -> None:
    """Put p's state in the group's storage (after creation, after loading a state dict)."""
    if group.get("weight_update") == "kahan" and p.dtype == torch.bfloat16 and KAHAN not in state:
        state[KAHAN] = torch.zeros_like(p)
    for key in stored_keys(state):
        if key != KAHAN:
            store(group, p, state, key, read(p, state, key, float32=False), kinds)


class Working:
    """The float32 tensors one bucket's rule runs on, and the storing of its results."""

    def __init__(self, group, params, grads, states, kinds, generators) -> None:
        self.group, self.kinds, self.generators = group, kinds, generators
        self.params, self.states = params, states
        self.upcast = [p.dtype in (torch.bfloat16, torch.float16) for p in params]
        self.work_params = [p.float() if up else p for p, up in zip(params, self.upcast)]
        self.work_grads = [g.float() if up else g for g, up in zip(grads, self.upcast)]
        self.work_states = []
        for p, state in zip(params, states):
            working = {k: v for k, v in state.items() if not k.endswith((CODES, SCALES))}
            for key in stored_keys(state):
                if key != KAHAN:
                    working[key] = read(p, state, key, float32=True)
            self.work_states.append(working)

    def finish(self) -> None:
        """Store every state the rule (or `_rule_states`, lazily) wrote, and the bf16 weights."""
        mode = self.group.get("weight_update", "exact")
        for p, new, up, state, working in zip(
            self.params, self.work_params, self.upcast, self.states, self.work_states
        ):
            for key, value in working.items():
                if torch.is_tensor(value) and (state.get(key) is not value or key + CODES in state):
                    store(self.group, p, state, key, value, self.kinds)
            if not up:
                continue
            if mode == "stochastic" and p.dtype == torch.bfloat16:
                p.copy_(round_stochastic(new, _generator(p.device, self.generators)))
            elif mode == "kahan" and KAHAN in state:
                old = p.float()
                total = state[KAHAN].float() + (new - old)
                p.copy_(old + total)
                state[KAHAN].copy_(total - (p.float() - old))
            else:
                p.copy_(new)
