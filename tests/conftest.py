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
# A fused kernel takes 10-40 s to build: the suite's default path is foreach (subprocesses inherit
# this), tests/test_optim_fused.py asks for the kernels by name, and they are built into the
# (git-ignored) pytest cache, never the user's.
os.environ.setdefault("TRAINLAB_FUSED", "0")
os.environ["TRAINLAB_KERNEL_CACHE"] = str(ROOT / ".pytest_cache" / "trainlab-kernels")


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m trainlab ARGS` as a real process and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "trainlab", *args], capture_output=True, text=True, cwd=cwd or ROOT, timeout=timeout
    )


def run_main(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`trainlab ARGS` through its entry point in this process (no interpreter and torch start-up:
    seconds faster than `run_cli`), with the same exit code and captured output. For the error
    paths, whose policy lives in `main()`; end-to-end runs use `run_cli`."""
    import contextlib
    import io

    from trainlab.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    before, threads = os.getcwd(), torch.get_num_threads()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's errors and --help/--version
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        os.chdir(before)
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess(["trainlab", *args], code, out.getvalue(), err.getvalue())


def compiler_unavailable(what: str, exc: BaseException):
    """The one policy for a compiler that fails on this machine (torch.compile's inductor, the fused
    kernels' C++ build): CI (the environment variable CI set) must have a working one, so the test
    fails there; elsewhere it is skipped, with the reason."""
    reason = f"{what} unavailable: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: a working compiler is required)", pytrace=False)
    pytest.skip(f"{reason} (skipped here; CI fails instead)")


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
