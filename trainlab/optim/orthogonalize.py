"""Orthogonalising a matrix by odd quintic Newton-Schulz steps: the shared kernel of Muon and SWAN.

Both methods replace a gradient-like matrix G (m x n, m <= n after transposing) by its polar
factor U V^T (G = U S V^T), approximately: X_0 = G / ||G||_F puts every singular value in (0, 1],
and each step X <- a X + (b A + c A^2) X with A = X X^T maps every singular value s to the odd
quintic p(s) = a s + b s^3 + c s^5, leaving U and V alone. Three matmuls per step; no SVD, so it
runs fast on accelerators and in low precision.

Three coefficient schedules:
- Muon's fixed (3.4445, -4.7750, 2.0315) every step (the official code): steep near 0, and by
  design it leaves the singular values spread over about [0.7, 1.2].
- `minimax_coefficients(steps, smallest)`: one polynomial per step, each the minimax odd quintic
  approximation of 1 on the interval the previous steps left the singular values in (found by a
  four-point Remez exchange, in float64, once per (steps, smallest)), scaled so that its maximum
  on the interval is 1. Starting from [smallest, 1], the k-th step maps [l_k, 1] onto
  [l_{k+1}, 1] with l_{k+1} as large as a quintic allows; once the interval is near 1 the
  polynomials approach the classical (15/8, -5/4, 3/8). Each polynomial is fitted on [l_k, 1 +
  MARGIN] rather than [l_k, 1], so a singular value that rounding (bf16 above all) pushed a little
  past 1 is brought back instead of amplified by the steep early polynomials. With smallest 5e-4
  five steps leave every singular value of [5e-4, 1] in [0.52, 1] (`interval_after` computes
  this); Muon's fixed coefficients leave [5e-4, 1] spread over [0.24, 1.20]. This is the
  greedy construction of Amsel, Persson, Musco, Gower, "The Polar Express" (arXiv 2505.16932),
  derived here from that description.
- `polar_express_coefficients(steps)`: the paper's published polynomials (`POLAR_EXPRESS`, for
  smallest 1e-3, each divided by the paper's safety factor 1.01 except the last) with its input
  scaled by 1.01 ||G||_F (`POLAR_EXPRESS_SAFETY`): what `ns_coefficients="polar_express"` of Muon and
  NorMuon runs. Past the eighth step the last polynomial (the classical 15/8, -5/4, 3/8) repeats.

The matmul dtype follows the device (`matmul_dtype`): bf16 where matmuls run fast in it (CUDA
devices with bf16 tensor cores, compute capability 8.0 and up), fp32 elsewhere: on a CPU without
native bf16 a bf16 matmul is about 100x slower than an fp32 one.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

MUON_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
Coefficients = tuple[tuple[float, float, float], ...]
MARGIN = 0.01

# Amsel, Persson, Musco, Gower, "The Polar Express" (arXiv 2505.16932), Algorithm 1's `coeffs_list`:
# degree-5 steps for singular values in [1e-3, 1], as printed in the paper; the last is the
# converged Newton-Schulz quintic. The paper divides every polynomial but the last by 1.01 (a, b/1.01^3,
# c/1.01^5: p(x / 1.01) * 1.01) and normalises by 1.01 ||X||_F + 1e-7, so rounding cannot push a
# singular value past the interval the polynomials were fitted on.
POLAR_EXPRESS = (
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
    (1.875, -1.25, 0.375),
)
POLAR_EXPRESS_SAFETY = 1.01
COEFFICIENT_SETS = ("muon", "polar_express")


NS_DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}


def matmul_dtype(device: torch.device) -> torch.dtype:
    """The fastest adequate dtype for Newton-Schulz matmuls on `device`."""
    if device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0):
        return torch.bfloat16
    return torch.float32


def ns_dtype(name: str, device: torch.device) -> torch.dtype:
    """An optimizer's `ns_dtype` option ("auto" or a dtype name) as the dtype to iterate in."""
    return NS_DTYPES[name] or matmul_dtype(device)


def _minimax_quintic(low: float, high: float) -> tuple[tuple[float, float, float], float]:
    """The odd quintic closest to 1 in max norm on [low, high], scaled to peak at 1 there, and its
    minimum on [low, 1].

    Remez exchange on four points: the error 1 - p equioscillates at low, at p's two interior
    critical points (roots of p' = a + 3b s^2 + 5c s^4), and at high.
    """
    points = np.array([low, low + 0.2 * (high - low), low + 0.7 * (high - low), high])
    signs = np.array([1.0, -1.0, 1.0, -1.0])
    for _ in range(100):
        system = np.stack([points, points**3, points**5, signs], axis=1)
        a, b, c, _ = np.linalg.solve(system, np.ones(4))
        roots = np.roots([5 * c, 3 * b, a])
        crit = np.sort(np.sqrt(roots.real[(abs(roots.imag) < 1e-12) & (roots.real > 0)]))
        crit = crit[(crit > low) & (crit < high)]
        if len(crit) != 2:
            break
        new = np.array([low, crit[0], crit[1], high])
        if np.allclose(new, points, rtol=1e-13, atol=0):
            break
        points = new
    grid = np.concatenate([np.geomspace(low, high, 4096), points])
    values = a * grid + b * grid**3 + c * grid**5
    top = float(values.max())
    return (float(a / top), float(b / top), float(c / top)), float(values[grid <= 1].min() / top)


@functools.cache
def minimax_coefficients(steps: int, smallest: float = 1e-3, margin: float = MARGIN) -> Coefficients:
    """Per-step quintic coefficients that take singular values in [smallest, 1] closest to 1."""
    out = []
    low = smallest
    for _ in range(steps):
        coefficients, low = _minimax_quintic(min(low, 1 - 1e-6), 1 + margin)
        out.append(coefficients)
    return tuple(out)


def polar_express_coefficients(steps: int) -> Coefficients:
    """The paper's first `steps` polynomials with its safety factor (the last one repeats)."""
    f = POLAR_EXPRESS_SAFETY
    safe = [(a / f, b / f**3, c / f**5) for a, b, c in POLAR_EXPRESS[:-1]] + [POLAR_EXPRESS[-1]]
    return tuple(safe[min(k, len(safe) - 1)] for k in range(steps))


def newton_schulz(g: torch.Tensor, steps: int, dtype: torch.dtype, kind: str = "muon") -> torch.Tensor:
    """`steps` quintic steps of `kind` ("muon": the fixed official triple; "polar_express": the
    paper's schedule and input safety factor) on `g`, in `dtype`."""
    if kind == "polar_express":
        return orthogonalize(g, polar_express_coefficients(steps), dtype, POLAR_EXPRESS_SAFETY)
    return orthogonalize(g, (MUON_COEFFICIENTS,) * steps, dtype)


def interval_after(coefficients: Coefficients, smallest: float) -> tuple[float, float]:
    """Where singular values in [smallest, 1] end up after the steps (a dense float64 scan)."""
    s = np.geomspace(smallest, 1.0, 20001)
    for a, b, c in coefficients:
        s = a * s + b * s**3 + c * s**5
    return float(s.min()), float(s.max())


def orthogonalize(g: torch.Tensor, coefficients: Coefficients, dtype: torch.dtype, safety: float = 1.0) -> torch.Tensor:
    """Approximately U V^T of `g` (..., m, n) by quintic Newton-Schulz in `dtype`, returned in `dtype`.

    A 3-D `g` is a batch of equal shapes (one batched matmul per product). The input is divided by
    `safety` ||g||_F + 1e-7 (Polar Express uses 1.01, Muon and SWAN 1).
    """
    x = g.to(dtype)
    wide = x.shape[-2] <= x.shape[-1]
    if not wide:
        x = x.mT
    norm = torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True)
    x = x / (norm * safety + 1e-7)
    fma = torch.addmm if x.ndim == 2 else torch.baddbmm  # beta * input + alpha * (m1 @ m2), one call
    for a, b, c in coefficients:
        gram = x @ x.mT
        x = fma(x, fma(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x if wide else x.mT
