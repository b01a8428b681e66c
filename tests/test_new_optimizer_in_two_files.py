"""CONTRIBUTING's promise, checked: a new elementwise optimizer is two files (its module, with the
class and its `Registration`, and the line that registers it: here a package's entry point), and
with no other edit it races, tunes, and meets the registry-driven tests: the torch.optim contract
(tests/test_optim_contract.py), foreach = the per-tensor rule (tests/test_optim_elementwise.py) and
the fused kernel = foreach (tests/test_optim_fused.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = "tl_momsign"

MODULE = textwrap.dedent('''
    """Momentum sign descent with decoupled decay: a rule trainlab does not ship."""
    import torch

    from trainlab.optim import ElementwiseOptimizer, Registration


    def direction(p, g, states, s):
        (m,) = states
        new_m = torch.lerp(m, g, s[0])
        return torch.sign(new_m), new_m


    class MomentumSign(ElementwiseOptimizer):
        _state_keys = ("exp_avg",)

        def __init__(self, params, lr=1e-3, beta=0.9, weight_decay=0.0, foreach=True, fused=None):
            super().__init__(params, dict(lr=lr, beta=beta, weight_decay=weight_decay, foreach=foreach, fused=fused))

        def _init_state(self, group, p, state):
            state["exp_avg"] = torch.zeros_like(p)

        def _direction_scalars(self, group, step):
            return 1 - group["lr"] * group["weight_decay"], -group["lr"], 1 - group["beta"]

        def _direction(self, group):
            return direction


    REGISTRATION = Registration(
        "tl_momsign", MomentumSign, "momentum sign descent (a contributor's rule)", "tests of trainlab",
        race_defaults={"lr": 2e-3}, search_space={"lr": {"min": 1e-3, "max": 1e-2, "scaling": "log"}},
        state_bytes="4 B/param (exp_avg)",
    )
''')


def _run(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_an_elementwise_optimizer_in_two_files_races_tunes_and_is_tested(tmp_path):
    package = tmp_path / NAME
    package.mkdir()
    (package / "__init__.py").write_text(MODULE)  # file 1: the module
    info = tmp_path / f"{NAME}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {NAME}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[trainlab.optimizers]\nrule = {NAME}:REGISTRATION\n")  # file 2
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    tests = ["tests/test_optim_contract.py", "tests/test_optim_elementwise.py", "tests/test_optim_fused.py"]
    done = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests, "-k", NAME], env, ROOT)
    assert done.returncode == 0, done.stdout[-3000:]
    passed = int(re.search(r"(\d+) passed", done.stdout).group(1))
    assert passed >= 5 and "failed" not in done.stdout, done.stdout[-2000:]  # 2 contract, 1 foreach, 2+ fused

    tiny = ["--workloads", "mnist1d_mlp", "--workload-option", "mnist1d_mlp.step_budget=40"]
    tiny += ["--workload-option", "mnist1d_mlp.eval_every=20", "--threads", "1", "--no-progress"]
    trainlab = [sys.executable, "-m", "trainlab"]
    raced = _run([*trainlab, "race", *tiny, "--algorithms", NAME, "--store", "r.db", "--no-report"], env, tmp_path)
    assert raced.returncode == 0, raced.stderr
    tuned = _run(
        [*trainlab, "tune", "--name", "t", *tiny, "--algorithms", NAME, "--trials", "2", "--studies", "1"]
        + ["--eval-seeds", "0", "--workers", "1", "--store", "sqlite:///t.db", "--report-dir", "rep"],
        env,
        tmp_path,
    )
    assert tuned.returncode == 0, tuned.stderr
    assert NAME in (tmp_path / "rep" / "report.md").read_text()
