"""The results store: round trips, schema version, bad stores, and durability under SIGKILL."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from trainlab.store.results import EvalRecord, TrialResult
from trainlab.errors import UsageError
from trainlab.store import SCHEMA_VERSION, ResultsStore

ROOT = Path(__file__).resolve().parent.parent


def _result(reached: bool) -> TrialResult:
    result = TrialResult(
        workload="w",
        algorithm="adamw",
        seed=0,
        hparams={"lr": 1e-3},
        metric_name="accuracy",
        higher_is_better=True,
        target=0.5,
        step_budget=20,
    )
    result.evals = [EvalRecord(10, 1.0, 0.7, 0.4, 0.9, 0.1), EvalRecord(20, 2.0, 0.5, 0.6, 0.8, 0.1)]
    result.reached, result.final_metric, result.test_metric = reached, 0.6, math.nan
    if reached:
        result.time_to_target, result.steps_to_target = 2.0, 20
    return result


def test_trials_and_evaluations_round_trip(store_url):
    store = ResultsStore(store_url)
    race = store.start_race({"seeds": [0]}, {"device": "cpu", "torch_version": "x"}, label="t")
    hit = store.start_trial(race, "w", "adamw", 0, {"lr": 1e-3})
    store.finish_trial(hit, _result(True))
    miss = store.start_trial(race, "w", "adamw", 1, {"lr": 1e-3})
    store.finish_trial(miss, _result(False))
    trials = store.trials(race)
    assert [t["time_to_target"] for t in trials] == [2.0, math.inf]
    assert trials[0]["hparams"] == {"lr": 1e-3} and trials[0]["test_metric"] is None
    assert [e["step"] for e in store.evals(hit)] == [10, 20]
    assert store.race()["environment"]["device"] == "cpu"


def test_schema_version_is_stored_and_checked(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = ResultsStore(url)
    with store.engine.begin() as conn:
        assert conn.execute(sa.text("select value from trainlab_meta")).scalar() == str(SCHEMA_VERSION)
        conn.execute(sa.text("update trainlab_meta set value = '999'"))
    with pytest.raises(UsageError, match="schema version 999"):
        ResultsStore(url)


def test_sqlite_store_runs_in_wal_mode(store_url):
    store = ResultsStore(store_url)
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"


def test_a_file_that_is_not_a_database_is_a_usage_error(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(UsageError, match="cannot use results store"):
        ResultsStore(str(bad))


def test_an_unknown_database_driver_is_a_usage_error():
    with pytest.raises(UsageError, match="cannot open results store"):
        ResultsStore("nosuchdb://user@localhost/x")


def _count(db: Path, status: str) -> int:
    if not db.exists():
        return 0
    try:
        with sa.create_engine(f"sqlite:///{db}").connect() as conn:
            query = sa.text("select count(*) from trainlab_trials where status = :s")
            return conn.execute(query, {"s": status}).scalar()
    except sa.exc.OperationalError:
        return 0


def test_a_race_killed_between_trials_keeps_every_finished_trial(tmp_path):
    db = tmp_path / "results.db"
    cmd = [
        sys.executable,
        "-m",
        "trainlab",
        "race",
        "--workloads",
        str(ROOT / "tests" / "support_workloads.py"),
        "--workload-option",
        "tiny_regression.train_sleep=0.01",
        "--algorithms",
        "adamw,nadamw,sgd",
        "--seeds",
        "0,1,2",
        "--store",
        str(db),
        "--no-report",
        "--no-progress",
        "--threads",
        "1",
    ]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _count(db, "completed") < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    completed = _count(db, "completed")
    assert 2 <= completed < 9, "the race should have been killed part-way"
    store = ResultsStore(str(db))
    race = store.race()
    assert race["environment"]["torch_version"] and race["config"]["seeds"] == [0, 1, 2]
    trials = store.trials(race["id"])
    assert sum(t["status"] == "running" for t in trials) <= 1  # at most the one being trained
    for trial in trials:
        if trial["status"] == "completed":
            assert [e["step"] for e in store.evals(trial["id"])] == [10, 20, 30, 40, 50, 60]
            assert trial["state_bytes"] > 0 and trial["final_metric"] is not None
    # the store stays usable: a report can be written from what survived
    out = subprocess.run(
        [sys.executable, "-m", "trainlab", "report", "--store", str(db), "--out", str(tmp_path / "rep")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    # a trial killed while running is named; one killed between trials left no row to name
    unfinished = any(t["status"] not in ("completed", "diverged") for t in trials)
    assert ("did not finish" in (tmp_path / "rep" / "report.md").read_text()) == unfinished


def test_every_table_is_prefixed_so_optuna_can_share_the_database(store_url):
    store = ResultsStore(store_url)
    names = sa.inspect(store.engine).get_table_names()
    assert names and all(name.startswith("trainlab_") for name in names)
    assert "trials" not in names  # Optuna's RDB storage owns that name


def test_a_long_error_keeps_its_summary_and_the_innermost_frames():
    """A traceback is read from its end: clipping must drop its middle, never the frame that raised."""
    from trainlab.store.database import clip_error

    frames = "".join(f'  File "/a/very/long/path/to/module_{i}.py", line {i}, in f{i}\n' for i in range(200))
    error = "RuntimeError: the summary\nTraceback (most recent call last):\n" + frames + "RuntimeError: the summary"
    clipped = clip_error(error, limit=1000)
    assert len(clipped) <= 1000
    assert clipped.startswith("RuntimeError: the summary\n")
    assert clipped.endswith('module_199.py", line 199, in f199\nRuntimeError: the summary')
    assert "characters of the traceback left out" in clipped
    assert clip_error("short") == "short"
