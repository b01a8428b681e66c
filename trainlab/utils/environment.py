"""What produced a result: recorded with every race so numbers can be traced and compared."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

import trainlab


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the trainlab checkout (with '-dirty' when it has local changes), if any."""
    where = path or Path(trainlab.__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def describe(device: torch.device) -> dict:
    """A flat, JSON-friendly description of the software and hardware running a race."""
    name = str(device)
    if device.type == "cuda":
        name = f"{device} ({torch.cuda.get_device_name(device)})"
    return {
        "trainlab_version": trainlab.__version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "device": name,
        "num_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "git_commit": git_commit(),
    }
