"""One study shared by several worker processes through a real PostgreSQL server (started on
loopback by scripts/with-postgres, which `make test` wraps around pytest)."""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter

import pytest

from conftest import ROOT, run_cli
from trainlab.tuning.experiment import experiment_trials, load_plan
from trainlab.tuning.storage import open_storage

URL = os.environ.get("TRAINLAB_TEST_POSTGRES_URL")
if not URL and os.environ.get("TRAINLAB_REQUIRE_POSTGRES") == "1":
    raise RuntimeError(
        "TRAINLAB_REQUIRE_POSTGRES=1 but no TRAINLAB_TEST_POSTGRES_URL: run the tests "
        "through scripts/with-postgres (make test does)"
    )
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not URL, reason="no PostgreSQL server (run through scripts/with-postgres)"),
]
TINY = str(ROOT / "tests" / "support_workloads.py")


def test_two_worker_processes_share_one_study_on_postgresql(tmp_path):
    name = f"pg-{uuid.uuid4().hex[:8]}"
    space = tmp_path / "sgd.json"
    space.write_text(
        json.dumps({"lr": {"min": 1e-3, "max": 0.3, "scaling": "log"}, "momentum": {"feasible_points": [0.9]}})
    )
    done = run_cli(
        "tune",
        "--name",
        name,
        "--algorithms",
        "sgd",
        "--workloads",
        TINY,
        "--search-space",
        str(space),
        "--trials",
        "8",
        "--studies",
        "1",
        "--eval-seeds",
        "0,1",
        "--workers",
        "2",
        "--store",
        URL,
        "--threads",
        "1",
        "--no-progress",
        "--no-report",
        "--heartbeat-interval",
        "1",
        "--grace-period",
        "5",
        "--workload-option",
        "tiny_regression.train_sleep=0.04",
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    storage = open_storage(URL, 1, 5)
    trials = [t for t in experiment_trials(storage, load_plan(storage, name)) if "kind" in t.user_attrs]
    completed = [t for t in trials if t.state.name == "COMPLETE"]
    keys = Counter((t.user_attrs["kind"], t.user_attrs["draw"], t.user_attrs["seed"]) for t in completed)
    assert len(keys) == 8 + 2 and set(keys.values()) == {1}  # every trial exactly once
    assert len(trials) == len(completed)  # nothing failed, nothing left
    pids = Counter(t.user_attrs["result"]["pid"] for t in completed)
    assert len(pids) == 2, pids  # both processes ran trials
