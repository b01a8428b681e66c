"""Data-parallel trials (`race --nproc 2`): real launches with torch.distributed.run on gloo."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from trainlab.benchmark.race import RacePlan, run_race
from trainlab.store import ResultsStore
from trainlab.workloads import create_workload

HERE = Path(__file__).resolve().parent
CPU = torch.device("cpu")
SGD = {"sgd": {"lr": 0.1}}  # meets the tiny regression's target at step 30

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")


def test_two_processes_reach_the_target_at_the_one_process_step(tmp_path):
    """The same global batches, each rank on its half: only the all-reduce's rounding differs."""
    tiny = create_workload(str(HERE / "support_workloads.py"))
    store = ResultsStore(f"sqlite:///{tmp_path / 'r.db'}")
    _, (alone,) = run_race(RacePlan([tiny], ["sgd"], [0], CPU, overrides=SGD), store, progress=False)
    for strategy in ("ddp", "fsdp2"):
        plan = RacePlan([tiny], ["sgd"], [0], CPU, overrides=SGD, nproc=2, strategy=strategy)
        race_id, (result,) = run_race(plan, store, progress=False)
        assert result.steps_to_target == alone.steps_to_target == 30, strategy
        assert result.final_metric == pytest.approx(alone.final_metric, rel=1e-5), strategy
        trial = store.trials(race_id)[0]
        assert trial["status"] == "completed" and trial["hparams"]["nproc"] == 2
        assert trial["hparams"]["strategy"] == strategy


def test_a_rank_that_dies_fails_its_trial_and_the_race_goes_on(tmp_path):
    dying = create_workload(str(HERE / "support_dying.py"))
    tiny = create_workload(str(HERE / "support_workloads.py"))
    store = ResultsStore(f"sqlite:///{tmp_path / 'r.db'}")
    plan = RacePlan([dying, tiny], ["sgd"], [0], CPU, overrides=SGD, nproc=2)
    started = time.perf_counter()
    race_id, results = run_race(plan, store, progress=False)
    assert time.perf_counter() - started < 60
    died, fine = store.trials(race_id)
    assert died["status"] == "failed" and "rank 1 failed first (exit code 3)" in died["error"]
    assert fine["status"] == "completed" and fine["steps_to_target"] == 30 and len(results) == 1


def test_a_rank_that_hangs_is_killed_at_the_timeout():
    from trainlab.algorithms import make_algorithm
    from trainlab.benchmark.data_parallel import TrialFailed, _pids_running, run_parallel_trial

    hanging = create_workload(str(HERE / "support_dying.py"), mode="hang")
    started = time.perf_counter()
    with pytest.raises(TrialFailed, match="still running after 8 s: killed"):
        run_parallel_trial(hanging, make_algorithm("sgd", SGD["sgd"]), 0, CPU, 2, "ddp", timeout=8)
    assert time.perf_counter() - started < 30
    assert not _pids_running(Path("trainlab-dp-"))  # no rank left behind
