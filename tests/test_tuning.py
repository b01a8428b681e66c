"""The tuning protocol: search spaces, quasi-random draws, the tune/eval split, studies in a real
SQLite store shared by real worker processes, and one-line errors for bad input.

Experiments here run on the tiny synthetic regression (tests/support_workloads.py): its steps to
target are deterministic for a given seed and configuration, which lets the tests compare whole
experiments exactly."""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from pathlib import Path

import pytest
import torch

from conftest import ROOT, run_cli
from trainlab.errors import UsageError
from trainlab.tuning.experiment import draw_configs, experiment_trials, load_plan
from trainlab.tuning.plan import TUNING_SEED_BASE, TuningPlan
from trainlab.algorithms.search_space import builtin_space_names, load_search_space, parse_search_space, to_hparams
from trainlab.tuning.storage import open_storage

TINY = str(ROOT / "tests" / "support_workloads.py")
SPACE = {
    "lr": {"min": 1e-3, "max": 0.3, "scaling": "log"},
    "momentum": {"min": 0.5, "max": 0.95},
    "nesterov": {"feasible_points": [True]},
    "warmup_fraction": {"feasible_points": [0.0, 0.1]},
}


# ---- search spaces ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data, message",
    [
        ([], "non-empty JSON object"),
        ({}, "non-empty JSON object"),
        ({"lr": 0.1}, "must be an object"),
        ({"lr": {"min": 1e-3}}, "needs both min and max"),
        ({"lr": {"min": 1e-2, "max": 1e-3}}, "must be below max"),
        ({"lr": {"min": 0.0, "max": 1e-3, "scaling": "log"}}, "log scaling needs min > 0"),
        ({"lr": {"min": 1e-3, "max": 1e-2, "scaling": "cubic"}}, "scaling must be 'log' or 'linear'"),
        ({"lr": {"min": 1e-3, "max": 1e-2, "step": 2}}, "unknown key 'step'"),
        ({"lr": {"min": "a", "max": 1e-2}}, "must be finite numbers"),
        ({"lr": {"min": 1e-3, "max": float("inf")}}, "must be finite numbers"),
        ({"lr": {"feasible_points": []}}, "non-empty list"),
        ({"lr": {"feasible_points": [0.1, 0.1]}}, "duplicates"),
        ({"lr": {"feasible_points": [[0.9, 0.99]]}}, "is not a finite number"),
        ({"lr": {"feasible_points": [0.1], "min": 1}}, "mixes feasible_points"),
        ({"learning_rate": {"min": 1e-3, "max": 1e-2}}, "unknown hyperparameter 'learning_rate'"),
    ],
)
def test_malformed_search_spaces_name_the_problem(data, message):
    from trainlab.algorithms.registry import valid_hparams

    with pytest.raises(UsageError, match=message):
        parse_search_space(data, "test.json", valid_hparams("adamw", "cosine"))


def test_builtin_spaces_are_valid_for_their_optimizers():
    from trainlab.algorithms import make_algorithm
    from trainlab.algorithms.registry import parse_name, valid_hparams

    assert {"adamw", "nadamw", "sgd"} <= set(builtin_space_names())
    for name in builtin_space_names():
        optimizer, schedule = parse_name(name)
        valid = valid_hparams(optimizer, schedule)
        space = load_search_space(name, valid)
        for corner in space.corner_configs():
            make_algorithm(name, to_hparams(corner, valid))  # raises on an out-of-range value


def test_beta_aliases_set_betas():
    assert to_hparams({"one_minus_beta1": 0.1, "beta2": 0.95, "lr": 1.0}) == {"lr": 1.0, "betas": (0.9, 0.95)}
    assert to_hparams({"beta2": 0.98}, {"betas": (0.8, 0.999)})["betas"] == (0.8, 0.98)


def test_search_space_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        load_search_space(bad)
    with pytest.raises(UsageError, match="cannot read search space"):
        load_search_space(tmp_path / "missing.json")
    with pytest.raises(UsageError, match="no built-in search space"):
        load_search_space("no_such_optimizer")


# ---- quasi-random draws -----------------------------------------------------------------------
def test_qmc_draws_are_reproducible_from_the_study_seed_and_cover_the_space():
    space = parse_search_space(SPACE)
    first, again, other = draw_configs(space, 7, 16), draw_configs(space, 7, 16), draw_configs(space, 8, 16)
    assert first == again
    assert first != other
    for config in first:
        assert 1e-3 <= config["lr"] <= 0.3 and 0.5 <= config["momentum"] <= 0.95
        assert config["nesterov"] is True and config["warmup_fraction"] in (0.0, 0.1)
    # low discrepancy: 16 Halton points put exactly... at least 3 in each quarter of log(lr)
    quarters = Counter(min(3, int(4 * math.log(c["lr"] / 1e-3) / math.log(300))) for c in first)
    assert all(quarters[q] >= 3 for q in range(4)), quarters
    assert {c["warmup_fraction"] for c in first} == {0.0, 0.1}
    # the draws depend on the space, not on the order its keys were written in (a stored plan's
    # space comes back from JSON sorted: a resumed experiment must draw what the new one drew)
    reordered = parse_search_space(dict(reversed(list(SPACE.items()))))
    assert draw_configs(reordered, 7, 16) == first


# ---- plans ------------------------------------------------------------------------------------
def _plan(**kw) -> TuningPlan:
    base = dict(
        name="x",
        algorithms=["sgd"],
        workloads=[TINY],
        trials=2,
        studies=2,
        eval_seeds=[0, 1],
        search_spaces={"sgd": SPACE},
    )
    return TuningPlan(**{**base, **kw})


@pytest.mark.parametrize(
    "change, message",
    [
        ({"eval_seeds": [TUNING_SEED_BASE]}, "reserved for tuning"),
        ({"eval_seeds": [1, 1]}, "duplicates"),
        ({"eval_seeds": []}, "at least one evaluation seed"),
        ({"trials": 0}, "--trials"),
        ({"studies": 0}, "--studies"),
        ({"name": "a:b"}, "--name"),
        ({"protocol": "cv"}, "--protocol"),
    ],
)
def test_plan_checks(change, message):
    with pytest.raises(UsageError, match=message):
        _plan(**change).check()


def _tune(tmp_path: Path, name: str, *extra: str, store: str | None = None, timeout: float = 240):
    store = store or f"sqlite:///{tmp_path / 'studies.db'}"
    (tmp_path / "sgd.json").write_text(json.dumps(SPACE))
    return run_cli(
        "tune",
        "--name",
        name,
        "--algorithms",
        "sgd",
        "--workloads",
        TINY,
        "--search-space",
        str(tmp_path / "sgd.json"),
        "--trials",
        "3",
        "--studies",
        "2",
        "--eval-seeds",
        "0,1",
        "--store",
        store,
        "--threads",
        "1",
        "--no-progress",
        "--heartbeat-interval",
        "1",
        "--grace-period",
        "3",
        "--report-dir",
        str(tmp_path / f"report-{name}"),
        *extra,
        timeout=timeout,
    )


def _completed(store: str, name: str):
    storage = open_storage(store, 1, 3)
    plan = load_plan(storage, name)
    trials = [t for t in experiment_trials(storage, plan) if "kind" in t.user_attrs]
    return plan, [t for t in trials if t.state.name == "COMPLETE"], trials


def identity(t) -> tuple:
    a = t.user_attrs
    return (a["kind"], a["algorithm"], a["workload"], a["study"], a["draw"], a["seed"])


@pytest.mark.slow
def test_tune_with_two_workers_records_every_trial_once_and_splits_seeds(tmp_path):
    store = f"sqlite:///{tmp_path / 'studies.db'}"
    meet = tmp_path / "pids"  # the coordinator's first trial waits there for the helper's
    rendezvous = ("--workload-option", f"tiny_regression.rendezvous={meet}")
    done = _tune(tmp_path, "two", "--workers", "2", *rendezvous, store=store)
    assert done.returncode == 0, done.stderr
    assert "| sgd |" in done.stdout
    plan, completed, trials = _completed(store, "two")
    ids = [identity(t) for t in completed]
    assert len(ids) == len(set(ids)) == 2 * 3 + 2 * 2  # 6 tuning + 2 studies x 2 eval seeds
    tuning = [t for t in completed if t.user_attrs["kind"] == "tune"]
    evals = [t for t in completed if t.user_attrs["kind"] == "eval"]
    tuning_seeds = {t.user_attrs["seed"] for t in tuning}
    assert tuning_seeds <= plan.tuning_seeds() and len(tuning_seeds) == 6
    assert {t.user_attrs["seed"] for t in evals} == {0, 1}
    assert not tuning_seeds & {t.user_attrs["seed"] for t in evals}
    assert {t.user_attrs["split"] for t in tuning} == {"validation"}
    assert {t.user_attrs["split"] for t in evals} == {"test"}
    # each evaluation re-runs its study's best tuning configuration (fewest seconds to target)
    for k in range(2):
        mine = [t for t in tuning if t.user_attrs["study"] == k]
        best = min(mine, key=lambda t: (t.value, t.user_attrs["draw"]))
        assert {json.dumps(t.user_attrs["config"]) for t in evals if t.user_attrs["study"] == k} == {
            json.dumps(best.user_attrs["config"])
        }
    # the trials' Optuna parameters are the queued quasi-random draws
    space = parse_search_space(SPACE)
    for t in tuning:
        assert t.user_attrs["config"] == draw_configs(space, t.user_attrs["study"], 3)[t.user_attrs["draw"]]
        assert t.params["lr"] == pytest.approx(t.user_attrs["config"]["lr"])
    pids = {t.user_attrs["result"]["pid"] for t in completed}
    assert len(pids) == 2 and pids == {int(p.name) for p in meet.iterdir()}  # each worker ran trials
    report = (tmp_path / "report-two" / "report.md").read_text()
    assert "Performance profiles" in report and (tmp_path / "report-two" / "scores.json").exists()

    # same-split protocol on the same store: no re-runs, the best tuning trial is the score
    same = _tune(tmp_path, "same", "--protocol", "same-split", store=store)
    assert same.returncode == 0, same.stderr
    _, completed_same, _ = _completed(store, "same")
    assert {t.user_attrs["kind"] for t in completed_same} == {"tune"}

    # rerunning a finished experiment resumes it: nothing runs twice
    again = _tune(tmp_path, "two", *rendezvous, store=store)
    assert again.returncode == 0 and "resumed; 10 trials complete, 0 to run" in again.stdout
    assert len(_completed(store, "two")[1]) == 10
    score = run_cli("score", "--store", store, "--name", "two", "--out", str(tmp_path / "score"))
    assert score.returncode == 0 and "| sgd |" in score.stdout


def _main(capsys, *argv: str) -> tuple[int, list[str]]:
    """The CLI entry point in this process (fast), with its exit code and stderr lines."""
    from trainlab.cli.main import main

    code = main(list(argv))
    return code, capsys.readouterr().err.strip().splitlines()


def test_bad_tuning_input_is_one_line_and_keeps_stored_results(tmp_path, capsys):
    import optuna

    store = tmp_path / "studies.db"
    kept = optuna.create_study(storage=open_storage(str(store), 1, 3), study_name="kept")
    kept.add_trial(optuna.trial.create_trial(value=1.5))
    (tmp_path / "bad.json").write_text('{"lr": {"min": 1, "max": 0.1}}')
    (tmp_path / "negative.json").write_text('{"lr": {"min": -1, "max": 0.1}}')
    cases = [
        (["--algorithms", "nosuch"], "unknown algorithm 'nosuch'"),
        (["--algorithms", "sgd", "--search-space", str(tmp_path / "bad.json")], "must be below max"),
        (["--algorithms", "sgd", "--search-space", str(tmp_path / "negative.json")], "lr"),
        (["--algorithms", "sgd", "--store", "postgresql://nobody@127.0.0.1:1/none"], "cannot use store"),
        (["--algorithms", "sgd", "--eval-seeds", "1000000"], "reserved for tuning"),
        (["--algorithms", "sgd", "--workers", "0"], "--workers"),
        (["--algorithms", "sgd", "--baseline", "adamw"], "--baseline"),
        (["--algorithms", "sgd", "--compress-activations", "3"], "--compress-activations must be one of"),
        (["--algorithms", "sgd", "--freeze", "nosuch"], "freeze rule 'nosuch' matches no parameter"),
    ]
    for args, message in cases:
        argv = ["tune", "--name", "bad", "--workloads", TINY, "--store", str(store), *args]
        code, lines = _main(capsys, *argv)
        assert code == 2, (args, lines)
        assert len(lines) == 1 and lines[0].startswith("trainlab: error:") and message in lines[0], lines
    again = optuna.load_study(storage=open_storage(str(store), 1, 3), study_name="kept")
    assert [t.value for t in again.get_trials()] == [1.5]  # what was stored is still there
    code, lines = _main(capsys, "score", "--store", f"sqlite:///{tmp_path / 'none.db'}", "--name", "x")
    assert code == 2 and "no store at" in lines[-1]
    code, lines = _main(capsys, "score", "--store", str(store), "--name", "x")
    assert code == 2 and "no tuning experiment named 'x'" in lines[-1]


def test_a_diverging_configuration_completes_as_diverged_and_the_study_goes_on(tmp_path):
    """In-process: a study whose draws include a learning rate that blows up within steps."""
    import torch

    from trainlab.tuning.coordinator import run_experiment
    from trainlab.tuning.outcomes import collect

    space = {"lr": {"feasible_points": [1e6, 0.05]}, "warmup_fraction": {"feasible_points": [0.0]}}
    plan = TuningPlan(
        name="nan",
        algorithms=["sgd"],
        workloads=[TINY],
        trials=4,
        studies=1,
        eval_seeds=[0],
        search_spaces={"sgd": space},
    )
    plan.check()
    store = f"sqlite:///{tmp_path / 's.db'}"
    storage = open_storage(store, 1, 3)
    lines = []
    run_experiment(storage, store, plan, torch.device("cpu"), heartbeat_interval=1, grace_period=3, report=lines.append)
    trials = [t for t in experiment_trials(storage, plan) if "kind" in t.user_attrs]
    assert all(t.state.name == "COMPLETE" for t in trials) and len(trials) == 4 + 1
    diverged = [t for t in trials if t.user_attrs["result"]["status"] == "diverged"]
    assert diverged and all(t.user_attrs["config"]["lr"] == 1e6 for t in diverged)
    assert all(t.value == math.inf and t.user_attrs["result"]["steps"] < 10 for t in diverged)
    evaluated = [t for t in trials if t.user_attrs["kind"] == "eval"]
    assert [t.user_attrs["config"]["lr"] for t in evaluated] == [0.05]  # the best did not diverge
    assert math.isfinite(collect(storage, plan).costs["steps"]["sgd"][TINY][0][0])


def test_resuming_checks_the_plan_but_may_add_variant_runs(tmp_path):
    from trainlab.tuning.experiment import create_or_resume, enqueue_tuning

    storage = open_storage(str(tmp_path / "s.db"), 1, 3)
    plan = _plan(name="resume")
    plan.check()
    assert create_or_resume(storage, plan)[1] is False
    assert enqueue_tuning(storage, plan) == 2 * 2
    assert enqueue_tuning(storage, plan) == 0  # queued once, however often asked
    with pytest.raises(UsageError, match="different trials"):
        create_or_resume(storage, _plan(name="resume", trials=3))
    resumed, was = create_or_resume(storage, _plan(name="resume", variants=True))
    assert was and resumed.variants and load_plan(storage, "resume").variants
    assert create_or_resume(storage, _plan(name="resume"))[0].variants  # never switched back off


def test_one_coordinator_per_experiment(tmp_path):
    """A live coordinator's lease refuses a second one; a dead one's (same host) is taken over."""
    import os
    import socket
    import subprocess
    import time

    from trainlab.tuning.coordinator import LEASE_ATTR, CoordinatorLease
    from trainlab.tuning.experiment import create_or_resume, load

    storage = open_storage(str(tmp_path / "s.db"), 1, 30)
    plan = _plan(name="lease")
    create_or_resume(storage, plan)
    manifest = load(storage, plan.manifest_name())
    alive = subprocess.Popen(["sleep", "60"])
    try:
        manifest.set_user_attr(LEASE_ATTR, {"host": socket.gethostname(), "pid": alive.pid, "at": time.time()})
        with pytest.raises(UsageError, match=f"being run by process {alive.pid}.*trainlab worker"):
            CoordinatorLease(storage, plan, 1, 30).__enter__()
    finally:
        alive.kill()
        alive.wait()
    # the same lease, its process now dead: a restart after a crash takes it over at once
    with CoordinatorLease(storage, plan, 1, 30):
        held = load(storage, plan.manifest_name()).user_attrs[LEASE_ATTR]
        assert held["pid"] == os.getpid()
    assert load(storage, plan.manifest_name()).user_attrs[LEASE_ATTR] is None
    # another host's fresh lease is respected; an expired one is not
    manifest.set_user_attr(LEASE_ATTR, {"host": "elsewhere", "pid": 1, "at": time.time()})
    with pytest.raises(UsageError, match="on elsewhere"):
        CoordinatorLease(storage, plan, 1, 30).__enter__()
    manifest.set_user_attr(LEASE_ATTR, {"host": "elsewhere", "pid": 1, "at": time.time() - 31})
    with CoordinatorLease(storage, plan, 1, 30):
        pass


def test_tune_trains_every_trial_with_the_trial_configuration_and_reports_its_memory(tmp_path, capsys):
    """`trainlab tune --compress-activations 4`: the plan stores the configuration, every trial
    trains with it (its saved activations are the compressed ones), and the report shows them."""
    from trainlab.benchmark.runner import run_trial
    from trainlab.algorithms import make_algorithm
    from trainlab.workloads import create_workload

    store = f"sqlite:///{tmp_path / 'studies.db'}"
    (tmp_path / "sgd.json").write_text(json.dumps({"lr": {"feasible_points": [0.1]}}))
    tiny = ["--workload-option", "mnist1d_mlp.step_budget=6", "--workload-option", "mnist1d_mlp.eval_every=3"]
    code, lines = _main(
        capsys,
        "tune",
        "--name",
        "packed",
        "--algorithms",
        "sgd",
        "--workloads",
        "mnist1d_mlp",
        *tiny,
        "--search-space",
        str(tmp_path / "sgd.json"),
        "--trials",
        "1",
        "--studies",
        "1",
        "--eval-seeds",
        "0",
        "--store",
        store,
        "--threads",
        "1",
        "--no-progress",
        "--compress-activations",
        "4",
        "--report-dir",
        str(tmp_path / "report"),
    )
    assert code == 0, lines
    plan, done, _ = _completed(store, "packed")
    assert plan.trial == {"compress_activations": 4} and len(done) == 2
    plain = run_trial(
        create_workload("mnist1d_mlp", step_budget=6, eval_every=3),
        make_algorithm("sgd", {"lr": 0.1}),
        0,
        torch.device("cpu"),
    )
    for t in done:
        result = t.user_attrs["result"]
        assert result["compress_activations"] == 4
        assert 0 < result["saved_activation_bytes"] < plain.saved_activation_bytes / 4
    report = (tmp_path / "report" / "report.md").read_text()
    assert "Every trial trains with: saved activations compressed to 4 bits." in report
    memory = report[report.index("## Memory") :]
    row = next(line for line in memory.splitlines() if line.startswith("| sgd | mnist1d_mlp |"))
    assert f"{statistics.median(t.user_attrs['result']['saved_activation_bytes'] for t in done) / 1024:.1f} KiB" in row
