"""Crash safety of tuning experiments, with real SIGKILLs: the coordinator and its worker processes
are killed at several moments (by the clock, and from inside a database commit through the
TRAINLAB_FAULT_KILL_AT_COMMIT hook of tests/faults/sitecustomize.py), the same command is
restarted, and the finished experiment must equal an uninterrupted one: every trial completed
exactly once, the same configurations, the same steps to target and the same scores. Best
configurations are selected by steps (deterministic on this workload) so that the comparison is
exact."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import ROOT
from trainlab.reports.tuning_report import score_experiment
from trainlab.tuning.experiment import experiment_trials, load_plan
from trainlab.tuning.outcomes import collect
from trainlab.tuning.storage import open_storage

FAULT_ENV = "TRAINLAB_FAULT_KILL_AT_COMMIT"  # read by tests/faults/sitecustomize.py

TINY = str(ROOT / "tests" / "support_workloads.py")
SPACE = {
    "lr": {"min": 1e-3, "max": 0.3, "scaling": "log"},
    "momentum": {"min": 0.5, "max": 0.95},
    "nesterov": {"feasible_points": [True]},
}

pytestmark = pytest.mark.slow


def _command(tmp_path: Path, store: str) -> list[str]:
    space = tmp_path / "sgd.json"
    space.write_text(json.dumps(SPACE))
    return [
        sys.executable,
        "-m",
        "trainlab",
        "tune",
        "--name",
        "crash",
        "--algorithms",
        "sgd",
        "--workloads",
        TINY,
        "--search-space",
        str(space),
        "--trials",
        "4",
        "--studies",
        "2",
        "--eval-seeds",
        "0,1",
        "--select-by",
        "steps",
        "--workers",
        "2",
        "--store",
        store,
        "--threads",
        "1",
        "--no-progress",
        "--no-report",
        "--heartbeat-interval",
        "1",
        "--grace-period",
        "3",
        "--workload-option",
        "tiny_regression.train_sleep=0.004",
    ]


def _start(command: list[str], fault_at: int | None = None) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop(FAULT_ENV, None)
    if fault_at is not None:
        env[FAULT_ENV] = str(fault_at)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "tests" / "faults"), env.get("PYTHONPATH")]))
    # a session of its own: killing the group is a machine crash (coordinator and workers at once)
    return subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def _finish(proc: subprocess.Popen, timeout: float = 180) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


def _state(store: str):
    storage = open_storage(store, 1, 3)
    plan = load_plan(storage, "crash")
    trials = [t for t in experiment_trials(storage, plan) if "kind" in t.user_attrs]
    outcomes = collect(storage, plan)
    return trials, outcomes


def _running(path: Path) -> bool:
    """Whether a trial is running now (read straight from Optuna's table, as an observer would)."""
    try:
        with sqlite3.connect(path, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM trials WHERE state = 'RUNNING'").fetchone()[0] > 0
    except sqlite3.Error:
        return False


def _identity(t) -> tuple:
    a = t.user_attrs
    return (a["kind"], a["study"], a["draw"], a["seed"])


def _summary(trials) -> dict[tuple, tuple]:
    done = [t for t in trials if t.state.name == "COMPLETE"]
    return {
        _identity(t): (json.dumps(t.user_attrs["config"], sort_keys=True), t.user_attrs["result"]["steps_to_target"])
        for t in done
    }


def test_sigkill_at_any_moment_then_restart_equals_an_uninterrupted_experiment(tmp_path):
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    proc = _start(_command(tmp_path, reference))
    out = _finish(proc)
    assert proc.returncode == 0, out
    ref_trials, ref_outcomes = _state(reference)

    crashed = f"sqlite:///{tmp_path / 'crashed.db'}"
    command = _command(tmp_path, crashed)
    kills = 0
    # inside a commit: while creating the studies, while queueing draws, in the middle of the trials
    for fault_at in (3, 25, 60):
        proc = _start(command, fault_at=fault_at)
        out = _finish(proc)
        if proc.returncode == -signal.SIGKILL:
            kills += 1
        # a worker that killed itself leaves the coordinator to finish; kill the rest of the group too
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # coordinator and workers together, while a trial is running
    rng = random.Random(0)
    for _ in range(1):
        proc = _start(command)
        deadline = time.monotonic() + 60
        while not _running(tmp_path / "crashed.db") and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.2))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        _finish(proc)
    assert kills >= 2, "the faults should have killed most runs"
    proc = _start(command)
    out = _finish(proc)
    assert proc.returncode == 0, out

    trials, outcomes = _state(crashed)
    completed = [t for t in trials if t.state.name == "COMPLETE"]
    counts = Counter(_identity(t) for t in completed)
    assert counts and max(counts.values()) == 1, "a completed trial was recorded twice"
    assert _summary(trials) == _summary(ref_trials)  # same trials, configurations, steps
    assert len(completed) == 2 * 4 + 2 * 2
    assert not [t for t in trials if t.state.name in ("WAITING", "RUNNING")]
    # trials that were running when killed were failed and re-run (a copy that completed)
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert failed and all(_identity(t) in counts for t in failed)
    ref_score, score = score_experiment(ref_outcomes, "steps"), score_experiment(outcomes, "steps")
    assert score.costs == ref_score.costs and score.scores == ref_score.scores
    assert not outcomes.missing
