"""Data-parallel trials (`race --nproc 2`): real launches with torch.distributed.run on gloo."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from trainlab.benchmark.race import RacePlan, run_race
from trainlab.store import ResultsStore
from trainlab.workloads import create_workload
from trainlab.benchmark.trial_options import TrialOptions

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
        plan = RacePlan([tiny], ["sgd"], [0], CPU, overrides=SGD, options=TrialOptions(nproc=2, strategy=strategy))
        race_id, (result,) = run_race(plan, store, progress=False)
        assert result.steps_to_target == alone.steps_to_target == 30, strategy
        assert result.final_metric == pytest.approx(alone.final_metric, rel=1e-5), strategy
        trial = store.trials(race_id)[0]
        assert trial["status"] == "completed" and trial["hparams"]["nproc"] == 2
        assert trial["hparams"]["strategy"] == strategy


@pytest.mark.parametrize(
    "mode, said", [("exit", "rank 1 failed first (exit code 3)"), ("kill", "rank 1 was killed by SIGKILL")]
)
def test_a_rank_that_dies_fails_its_trial_and_the_race_goes_on(tmp_path, mode, said):
    dying = create_workload(str(HERE / "support_dying.py"), mode=mode)
    tiny = create_workload(str(HERE / "support_workloads.py"))
    store = ResultsStore(f"sqlite:///{tmp_path / 'r.db'}")
    # with a timeout, a death the launcher missed would end as "still running after 120 s: killed"
    plan = RacePlan([dying, tiny], ["sgd"], [0], CPU, overrides=SGD, options=TrialOptions(nproc=2, trial_timeout=120))
    race_id, results = run_race(plan, store, progress=False)
    died, fine = store.trials(race_id)
    assert died["status"] == "failed" and said in died["error"], died["error"]
    assert "still running" not in died["error"]  # seen as it died, not at the timeout
    assert fine["status"] == "completed" and fine["steps_to_target"] == 30 and len(results) == 1


def test_a_rank_that_hangs_is_killed_at_the_timeout(tmp_path, monkeypatch):
    import tempfile

    from trainlab.algorithms import make_algorithm
    from trainlab.benchmark.data_parallel import TrialFailed, _pids_running, run_parallel_trial

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the job file: ours alone (tests run in parallel)
    hanging = create_workload(str(HERE / "support_dying.py"), mode="hang")
    with pytest.raises(TrialFailed, match="still running after 8 s: killed"):  # the timeout's path
        run_parallel_trial(hanging, make_algorithm("sgd", SGD["sgd"]), 0, CPU, TrialOptions(nproc=2, trial_timeout=8))
    assert not _pids_running(tmp_path)  # no rank left behind


def test_tune_trials_train_on_two_processes_with_the_one_process_result(tmp_path):
    """`tune --nproc 2`: every tuning and evaluation trial is a 2-process launch, stored once, and
    steps to target equal those of the same experiment on one process."""
    from trainlab.tuning.coordinator import run_experiment
    from trainlab.tuning.experiment import experiment_trials
    from trainlab.tuning.plan import TuningPlan
    from trainlab.tuning.storage import open_storage

    tiny = str(HERE / "support_workloads.py")
    space = {"lr": {"feasible_points": [0.1]}, "warmup_fraction": {"feasible_points": [0.0]}}
    outcomes = {}
    for nproc in (1, 2):
        plan = TuningPlan(
            name=f"dp{nproc}", algorithms=["sgd"], workloads=[tiny], trials=1, studies=1, eval_seeds=[0],
            search_spaces={"sgd": space}, nproc=nproc,
        )  # fmt: skip
        plan.check()
        storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", 1, 3)
        # a generous grace: beside the gloo-heavy tests of the other xdist worker a heartbeat can lag
        run_experiment(storage, "", plan, CPU, heartbeat_interval=1, grace_period=120, report=lambda line: None)
        trials = [t for t in experiment_trials(storage, plan) if "kind" in t.user_attrs]
        assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
        results = {t.user_attrs["kind"]: t.user_attrs["result"] for t in trials}
        outcomes[nproc] = {kind: (r["steps_to_target"], r["hparams"].get("nproc")) for kind, r in results.items()}
    assert outcomes[1] == {"tune": (30, None), "eval": (30, None)}
    assert outcomes[2] == {"tune": (30, 2), "eval": (30, 2)}


def test_tune_refuses_curve_pruning_and_batches_that_do_not_split(tmp_path):
    from conftest import run_main

    common = ["tune", "--name", "x", "--algorithms", "sgd", "--workloads", "mnist1d_mlp", "--dry-run"]
    common += ["--store", str(tmp_path / "s.db")]
    done = run_main(*common, "--nproc", "2", "--prune-by-curve")
    assert done.returncode == 2 and "--prune-by-curve" in done.stderr and "without --nproc" in done.stderr
    done = run_main(*common, "--nproc", "3")
    assert done.returncode == 2 and "does not split evenly over 3 processes" in done.stderr
    done = run_main(*common, "--nproc", "2")
    assert done.returncode == 0 and '"nproc": 2' in done.stdout


def test_a_native_abort_is_reported_with_its_last_error_line():
    from trainlab.benchmark.data_parallel import _failure

    output = (
        "terminate called after throwing an instance of 'gloo::IoException'\n"
        "  what():  [gloo/transport/tcp/pair.cc:534] Connection closed by peer\n"
        "E1201 12:00:00 torch.distributed.elastic.multiprocessing.api: failed (exitcode: -6)\n"
        "Root Cause (first observed failure):\n[0]:\n  rank      : 1 (local_rank: 1)\n  exitcode  : -6 (pid: 7)\n"
    )
    message = _failure(output, 1, 2)
    assert message.startswith("2-process trial failed: rank 1 failed first (exit code -6)")
    assert message.endswith("what():  [gloo/transport/tcp/pair.cc:534] Connection closed by peer")


def test_a_killed_tune_worker_takes_its_launch_with_it(tmp_path):
    """SIGKILL the process running a `tune --nproc 2` trial: its launcher gets SIGTERM from the
    kernel (bound to its parent) and stops the ranks, so none trains on beside the re-run."""
    import json
    import os
    import signal
    import subprocess
    import sys

    from trainlab.benchmark.data_parallel import _pids_running

    (tmp_path / "space.json").write_text(json.dumps({"lr": {"feasible_points": [0.1]}}))
    command = [sys.executable, "-m", "trainlab", "tune", "--name", "orphans", "--algorithms", "sgd"]
    command += ["--workloads", str(HERE / "support_workloads.py"), "--search-space", str(tmp_path / "space.json")]
    command += ["--trials", "1", "--studies", "1", "--eval-seeds", "0", "--nproc", "2", "--threads", "1"]
    command += ["--store", str(tmp_path / "s.db"), "--no-progress", "--no-report"]
    command += ["--workload-option", "tiny_regression.train_sleep=1.0"]  # 60 s of training: killed long before
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the job file, and so the ranks' command lines, under tmp_path
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(_pids_running(tmp_path)) < 3 and time.monotonic() < deadline:  # launcher + 2 ranks
            time.sleep(0.2)
        assert len(_pids_running(tmp_path)) >= 3, "the 2-process trial never started"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 30
    while _pids_running(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _pids_running(tmp_path)
    for pid in left:  # never leave them running, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left, f"{len(left)} launch processes outlived the killed worker"


def test_a_native_abort_is_named_not_the_launchers_own_traceback():
    """A C++ abort prints no Python error: the message names its line, not `raise ChildFailedError(`."""
    from trainlab.benchmark.data_parallel import _failure

    output = (
        "terminate called without an active exception\n"
        "Traceback (most recent call last):\n    raise ChildFailedError(\n"
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
        "Root Cause (first observed failure):\n[0]:\n  rank      : 0 (local_rank: 0)\n  exitcode  : -6 (pid: 1)\n"
    )
    said = _failure(output, 1, 2)
    assert said.endswith(
        "rank 0 failed first (exit code -6): no Python error; last native error line: "
        "terminate called without an active exception"
    ), said


def test_a_matrix_method_records_each_ranks_state_and_the_report_shows_it(tmp_path):
    """Muon under DDP keeps each matrix's state on its owner rank only: the ranks' states differ, the
    trial records the largest, and the race report lists every rank's."""
    from trainlab.reports.markdown import write_report

    mlp = create_workload("mnist1d_mlp", step_budget=10, eval_every=10)
    store = ResultsStore(f"sqlite:///{tmp_path / 'r.db'}")
    plan = RacePlan([mlp], ["muon"], [0], CPU, options=TrialOptions(nproc=2, strategy="ddp"))
    race_id, (result,) = run_race(plan, store, progress=False)
    trial = store.trials(race_id)[0]
    per_rank = trial["hparams"]["state_bytes_per_rank"]
    assert len(per_rank) == 2 and per_rank[0] != per_rank[1], per_rank
    assert trial["state_bytes"] == max(per_rank) == result.state_bytes
    report = write_report(store, tmp_path / "report", race_id).read_text()
    assert "## Optimizer state per rank" in report
    assert "| mnist1d_mlp | muon | 0 | ddp |" in report


def test_a_python_error_is_reported_with_the_failing_rank_s_innermost_frames():
    from trainlab.benchmark.data_parallel import _failure

    output = (
        '[rank0]:   File "/a/theirs.py", line 9, in other\n[rank0]: ValueError: not this one\n'
        '[rank1]: Traceback (most recent call last):\n[rank1]:   File "/a/ours.py", line 3, in run\n'
        '[rank1]:   File "/a/theirs.py", line 40, in step\n[rank1]:   File "/t/cuda.py", line 5, in init\n'
        "[rank1]: AssertionError: no CUDA\n"
        "Root Cause (first observed failure):\n[0]:\n  rank      : 1 (local_rank: 1)\n  exitcode  : 1 (pid: 7)\n"
    )
    assert _failure(output, 1, 2) == (
        "2-process trial failed: rank 1 failed first (exit code 1): AssertionError: no CUDA "
        "(raised at /a/theirs.py:40 in step -> /t/cuda.py:5 in init)"
    )
