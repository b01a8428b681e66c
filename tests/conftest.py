"""Shared fixtures. Tests use the real datasets (generated or fetched by `make setup`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("MPLBACKEND", "Agg")


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m trainlab ARGS` as a real process and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "trainlab", *args], capture_output=True, text=True, cwd=cwd or ROOT, timeout=timeout
    )


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'results.db'}"


@pytest.fixture
def one_thread():
    """Tiny tensors: on a busy 2-core machine OpenMP's thread hand-offs make small ops up to ~1000x
    slower, so modules of small-tensor tests run single-threaded (`pytestmark` below)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
