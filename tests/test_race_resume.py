"""Resumable races: a race killed with SIGKILL at a random moment and rerun with the same command
keeps its finished trials (same ids, same start times), reruns the rest, and ends with the table an
uninterrupted race gives; changed arguments start a new race."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from trainlab.store import ResultsStore

TINY = str(ROOT / "tests" / "support_workloads.py")


def _command(store, seeds="0,1,2"):
    return [
        sys.executable, "-m", "trainlab", "race", "--workloads", TINY, "--algorithms", "sgd,adamw",
        "--seeds", seeds, "--workload-option", "tiny_regression.train_sleep=0.01", "--threads", "1",
        "--store", str(store), "--no-report", "--no-progress",
    ]  # fmt: skip


def _table(store) -> dict:
    s = ResultsStore(f"sqlite:///{store}", create=False)
    race = s.races()[-1]["id"]
    return {
        (t["workload"], t["algorithm"], t["seed"]): (t["status"], t["steps"], t["final_metric"], t["steps_to_target"])
        for t in s.trials(race)
    }


@pytest.mark.slow
def test_a_killed_race_resumes_keeping_its_finished_trials(tmp_path):
    store = tmp_path / "killed.db"
    proc = subprocess.Popen(_command(store), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    finished: list[dict] = []
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if store.exists():
            try:
                s = ResultsStore(f"sqlite:///{store}", create=False)
                races = s.races()
                finished = s.trials(races[-1]["id"], statuses=("completed",)) if races else []
            except Exception:  # the race is still creating the store
                continue
            if len(finished) >= 2:
                break
    assert proc.poll() is None, "the race ended before it could be killed: " + proc.stderr.read().decode()
    time.sleep(random.Random(os.getpid()).uniform(0.0, 0.8))  # a random moment mid-trial
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    s = ResultsStore(f"sqlite:///{store}", create=False)
    race = s.races()[-1]["id"]
    before = {t["id"]: t["started_at"] for t in s.trials(race, statuses=("completed",))}
    assert 2 <= len(before) < 6
    assert len(s.trials(race)) > len(before) or len(before) < 6  # something was left unfinished

    done = subprocess.run(_command(store), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"resuming race {race} (same arguments): {len(before)} finished trials kept" in done.stdout
    s = ResultsStore(f"sqlite:///{store}", create=False)
    assert [r["id"] for r in s.races()] == [race]  # no second race
    rows = s.trials(race)
    keys = [(t["workload"], t["algorithm"], t["seed"]) for t in rows]
    assert len(keys) == len(set(keys)) == 6 and all(t["status"] == "completed" for t in rows)
    assert {t["id"]: t["started_at"] for t in rows if t["id"] in before} == before  # untouched

    fresh = tmp_path / "fresh.db"
    assert subprocess.run(_command(fresh), cwd=ROOT, capture_output=True, timeout=300).returncode == 0
    assert _table(store) == _table(fresh)

    other = subprocess.run(_command(store, seeds="0,1"), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert other.returncode == 0 and "resuming" not in other.stdout
    assert len(ResultsStore(f"sqlite:///{store}", create=False).races()) == 2  # other arguments: a new race
    again = subprocess.run(_command(store) + ["--new-race"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "resuming" not in again.stdout
    assert len(ResultsStore(f"sqlite:///{store}", create=False).races()) == 3
