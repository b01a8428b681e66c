"""Device choice and the synchronisation the clock needs on asynchronous devices."""

from __future__ import annotations

import torch

from trainlab.errors import UsageError


def choose_device(requested: str | None = "auto") -> torch.device:
    """`auto` picks CUDA when present, else Apple MPS, else CPU; anything else is validated."""
    if requested in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise UsageError(f"unknown device {requested!r}: use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {requested!r} requested but CUDA is not available: use --device cpu")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels so that a wall-clock reading covers the work launched before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def peak_device_memory(device: torch.device) -> int | None:
    """Peak bytes allocated by tensors on the device since the last reset, where the device says."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return None


def reset_peak_device_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
