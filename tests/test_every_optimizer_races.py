"""Every registered optimizer runs as a race algorithm on every default workload, and reports."""

from __future__ import annotations

import math

import pytest
import torch

from trainlab import optim
from trainlab.benchmark.race import RacePlan, run_race
from trainlab.reports import write_report
from trainlab.store import ResultsStore
from trainlab.workloads import DEFAULT_WORKLOADS, create_workload

TINY = {
    "mnist1d_mlp": dict(step_budget=12, eval_every=6),
    "mnist1d_cnn": dict(step_budget=6, eval_every=3),
    "text_lm": dict(step_budget=4, eval_every=2, eval_windows=8),
}

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (conftest.one_thread)


def test_every_optimizer_races_on_every_default_workload(tmp_path):
    names = optim.available()
    workloads = [create_workload(name, **TINY[name]) for name in DEFAULT_WORKLOADS]
    plan = RacePlan(workloads, names, [0], torch.device("cpu"))
    store = ResultsStore(f"sqlite:///{tmp_path / 'r.db'}")
    race_id, results = run_race(plan, store, progress=False)
    assert len(results) == len(names) * len(workloads)  # no trial failed
    trials = store.trials(race_id)
    # at the registered defaults no optimizer diverges on these short runs: every trial trains to a
    # finite validation metric (a NaN update anywhere makes the trial "diverged" and fails here)
    diverged = sorted((t["algorithm"], t["workload"]) for t in trials if t["status"] != "completed")
    assert diverged == [], diverged
    assert all(t["final_metric"] is not None and math.isfinite(t["final_metric"]) for t in trials)
    for t in trials:
        if t["algorithm"] != "signsgd":  # the only stateless rule
            assert t["state_bytes"] > 0, t["algorithm"]
    report = write_report(store, tmp_path / "report", race_id).read_text()
    for name in names:
        assert f"| {name} |" in report
