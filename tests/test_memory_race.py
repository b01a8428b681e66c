"""Memory savers in races: runner options, measured saved activations, freezing, the store upgrade,
the CLI options and the report's memory columns and plot.

Numbers (tiny budgets, seed 0, one thread): mnist1d_cnn saves 2.32 MB of activations per step
uncompressed and 0.31 MB at 4 bits (7.5x smaller; BatchNorm statistics and the integer labels stay
exact, the loss's log-probabilities take 8 bits), so "at least 5x smaller" leaves a margin and still
fails if compression is not applied.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
import torch

from conftest import run_cli, run_main
from support_workloads import TinyRegression
from trainlab.algorithms import TrainingAlgorithm, make_algorithm
from trainlab.benchmark import trial_setup
from trainlab.benchmark.runner import run_trial
from trainlab.benchmark.trial_options import TrialOptions
from trainlab.errors import UsageError
from trainlab.reports import summarize, write_report
from trainlab.reports.plots import pareto_front
from trainlab.store import SCHEMA_VERSION, ResultsStore
from trainlab.workloads import create_workload

ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")
TINY = {"mnist1d_cnn": dict(step_budget=6, eval_every=3), "text_lm": dict(step_budget=4, eval_every=2, eval_windows=8)}


pytestmark = pytest.mark.usefixtures("one_thread")


def _curve(result):
    return [(e.train_loss, e.metric, e.validation_loss) for e in result.evals] + [result.test_metric]


# ---- runner ------------------------------------------------------------------------------------


def test_saved_activations_are_measured_and_4_bit_compression_shrinks_them():
    spec = make_algorithm("adamw")
    plain = run_trial(create_workload("mnist1d_cnn", **TINY["mnist1d_cnn"]), spec, 0, CPU)
    packed = run_trial(
        create_workload("mnist1d_cnn", **TINY["mnist1d_cnn"]), spec, 0, CPU, TrialOptions(compress_activations=4)
    )
    assert plain.saved_activation_bytes > 0 and packed.saved_activation_bytes > 0
    assert packed.saved_activation_bytes * 5 < plain.saved_activation_bytes
    # the CPU peak, counted independently: fp32 parameters and gradients of the model, AdamW's two
    # moments per entry and a 4-byte step per tensor, plus the activations (all that 4 bits change)
    params = list(create_workload("mnist1d_cnn").init_model().parameters())
    entries = sum(p.numel() for p in params)
    counted = 4 * entries + 4 * entries + (8 * entries + 4 * len(params))
    for r in (plain, packed):
        assert r.peak_memory_source == "params+grads+state+activations"
        assert r.peak_memory_bytes - r.saved_activation_bytes == counted
    assert plain.peak_memory_bytes - packed.peak_memory_bytes == (
        plain.saved_activation_bytes - packed.saved_activation_bytes
    )
    assert (plain.compress_activations, packed.compress_activations) == (None, 4)
    assert packed.status == "completed" and packed.steps == 6


def test_the_untimed_probe_leaves_training_bit_identical(monkeypatch):
    # mnist1d_cnn has BatchNorm: the probe's forward would move its running statistics if not restored
    spec = make_algorithm("adamw")
    probed = run_trial(create_workload("mnist1d_cnn", **TINY["mnist1d_cnn"]), spec, 0, CPU)
    monkeypatch.setattr(trial_setup, "probe_saved_bytes", lambda *args: 0)
    unprobed = run_trial(create_workload("mnist1d_cnn", **TINY["mnist1d_cnn"]), spec, 0, CPU)
    assert _curve(probed) == _curve(unprobed)


def test_with_every_saver_off_the_timed_step_is_the_plain_one(monkeypatch):
    seen = []

    class Spy(TrainingAlgorithm):
        def update(self, model, batch, loss_fn):
            seen.append(loss_fn)
            return super().update(model, batch, loss_fn)

    monkeypatch.setattr(trial_setup, "TrainingAlgorithm", Spy)
    workload = TinyRegression()
    run_trial(workload, make_algorithm("adamw"), 0, CPU)
    assert len(seen) == 60 and all(fn == workload.loss for fn in seen)  # no wrapper, no hooks
    seen.clear()
    run_trial(workload, make_algorithm("adamw"), 0, CPU, TrialOptions(precision="bf16-autocast"))
    assert seen and all(fn != workload.loss for fn in seen)


def test_bf16_parameters_halve_parameter_and_gradient_bytes():
    spec = make_algorithm("adamw")
    fp32 = run_trial(create_workload("text_lm", **TINY["text_lm"]), spec, 0, CPU)
    bf16 = run_trial(create_workload("text_lm", **TINY["text_lm"]), spec, 0, CPU, TrialOptions(precision="bf16"))
    assert bf16.param_bytes * 2 == fp32.param_bytes and bf16.grad_bytes * 2 == fp32.grad_bytes
    assert bf16.state_bytes < fp32.state_bytes  # AdamW keeps its state in the parameters' dtype
    assert bf16.saved_activation_bytes < fp32.saved_activation_bytes
    assert bf16.status == "completed" and bf16.precision == "bf16"


def test_frozen_modules_stay_bit_identical_and_get_no_optimizer_state():
    workload = create_workload("text_lm", **TINY["text_lm"])
    built, build = {}, workload.init_model

    def init_model():  # keep the trial's model and its initial values (the runner does not return it)
        model = build()
        built["model"] = model
        built["initial"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        return model

    workload.init_model = init_model
    spec = make_algorithm("adamw")
    result = run_trial(workload, spec, 0, CPU, TrialOptions(freeze=("embed", "blocks.0.attn")))
    model, initial = built["model"], built["initial"]
    frozen = [n for n in initial if n.startswith(("embed.", "blocks.0.attn."))]
    assert frozen and all(torch.equal(dict(model.named_parameters())[n], initial[n]) for n in frozen)
    moved = [n for n, p in model.named_parameters() if n not in frozen and not torch.equal(p, initial[n])]
    assert len(moved) == len(initial) - len(frozen)
    assert result.frozen_params == sum(initial[n].numel() for n in frozen)
    assert result.grad_bytes == result.param_bytes - 4 * result.frozen_params
    full = run_trial(create_workload("text_lm", **TINY["text_lm"]), spec, 0, CPU)
    # AdamW: exp_avg + exp_avg_sq (fp32) and a 4-byte step per trainable tensor; none for frozen ones
    assert full.state_bytes - result.state_bytes == 8 * result.frozen_params + 4 * len(frozen)


def test_bad_memory_options_fail_before_training():
    spec = make_algorithm("adamw")
    with pytest.raises(UsageError, match="2, 4, 8, adaptive"):
        run_trial(TinyRegression(), spec, 0, CPU, TrialOptions(compress_activations=3))
    with pytest.raises(UsageError, match="fp32, bf16-autocast, bf16"):
        run_trial(TinyRegression(), spec, 0, CPU, TrialOptions(precision="fp16"))
    with pytest.raises(
        UsageError,
        match="freeze rule 'nosuch' matches no parameter; module names look like: "
        r"\(root\)",
    ):
        run_trial(TinyRegression(), spec, 0, CPU, TrialOptions(freeze=("nosuch",)))
    with pytest.raises(UsageError, match="freezes every parameter"):
        run_trial(TinyRegression(), spec, 0, CPU, TrialOptions(freeze=("weight", "bias")))


# ---- store -------------------------------------------------------------------------------------

V1_TABLES = """
CREATE TABLE trainlab_meta ("key" VARCHAR(64) NOT NULL, value TEXT NOT NULL, PRIMARY KEY ("key"));
CREATE TABLE trainlab_races (id INTEGER NOT NULL, created_at VARCHAR(32) NOT NULL, label VARCHAR(200),
  config TEXT NOT NULL, environment TEXT NOT NULL, trainlab_version VARCHAR(32), torch_version VARCHAR(64),
  device VARCHAR(200), num_threads INTEGER, git_commit VARCHAR(64), PRIMARY KEY (id));
CREATE TABLE trainlab_trials (id INTEGER NOT NULL, race_id INTEGER NOT NULL, workload VARCHAR(200) NOT NULL,
  algorithm VARCHAR(200) NOT NULL, seed INTEGER NOT NULL, hparams TEXT NOT NULL, status VARCHAR(16) NOT NULL,
  metric_name VARCHAR(64), higher_is_better BOOLEAN, target FLOAT, step_budget INTEGER, reached BOOLEAN,
  time_to_target FLOAT, steps_to_target INTEGER, final_metric FLOAT, best_metric FLOAT, test_metric FLOAT,
  steps INTEGER, train_seconds FLOAT, eval_seconds FLOAT, param_bytes INTEGER, grad_bytes INTEGER,
  state_bytes INTEGER, peak_memory_bytes INTEGER, peak_memory_source VARCHAR(32), grad_norms TEXT,
  error TEXT, started_at VARCHAR(32) NOT NULL, finished_at VARCHAR(32), PRIMARY KEY (id),
  FOREIGN KEY(race_id) REFERENCES trainlab_races (id));
CREATE TABLE trainlab_evals (id INTEGER NOT NULL, trial_id INTEGER NOT NULL, step INTEGER NOT NULL,
  train_seconds FLOAT NOT NULL, train_loss FLOAT, metric FLOAT, validation_loss FLOAT, eval_seconds FLOAT,
  PRIMARY KEY (id), FOREIGN KEY(trial_id) REFERENCES trainlab_trials (id));
INSERT INTO trainlab_meta VALUES ('schema_version', '1');
INSERT INTO trainlab_races VALUES (1, '2025-01-01T00:00:00+00:00', 'old', '{"seeds": [0], "algorithms": []}',
  '{"device": "cpu", "num_threads": 2}', '0.1', '2.5', 'cpu', 2, 'abc');
INSERT INTO trainlab_trials VALUES (1, 1, 'mnist1d_mlp', 'adamw', 0, '{"lr": 0.001}', 'completed', 'accuracy',
  1, 0.5, 20, 1, 2.0, 20, 0.6, 0.6, 0.55, 20, 2.5, 0.3, 400, 400, 808, 1608, 'params+grads+state', NULL,
  NULL, '2025-01-01T00:00:00+00:00', '2025-01-01T00:00:03+00:00');
INSERT INTO trainlab_evals VALUES (1, 1, 10, 1.0, 0.7, 0.4, 0.9, 0.1);
INSERT INTO trainlab_evals VALUES (2, 1, 20, 2.0, 0.5, 0.6, 0.8, 0.1);
"""


def test_a_version_1_store_is_upgraded_in_place_and_keeps_its_rows(tmp_path):
    db = tmp_path / "old.db"
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        for statement in V1_TABLES.split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)
    with engine.connect() as conn:
        before = conn.execute(sa.text("select * from trainlab_trials")).mappings().one()
    engine.dispose()

    store = ResultsStore(str(db))
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("select value from trainlab_meta")).scalar() == str(SCHEMA_VERSION) == "6"
        after = conn.execute(sa.text("select * from trainlab_trials")).mappings().one()
    assert {k: after[k] for k in before} == dict(before)  # every stored value kept
    assert {k: after[k] for k in set(after) - set(before)} == {
        "saved_activation_bytes": None,
        "compress_activations": None,
        "precision": None,
        "frozen_params": None,
        "covered_params": None,
        "coverage": None,
        "worst_after_target": None,
        "stability_gap": None,
        "continual_every": None,
        "continual_subset": None,
        "continual_worst_after_target": None,
        "continual_stability_gap": None,
        "outer_gradients": None,
        "inner_steps": None,
        "owner": None,
        "heartbeat_at": None,
    }
    with store.engine.connect() as conn:  # the race table's fingerprint column too (schema 6)
        assert conn.execute(sa.text("select fingerprint from trainlab_races")).scalar() is None
    trial = store.trials(1)[0]
    assert trial["time_to_target"] == 2.0 and [e["step"] for e in store.evals(1)] == [10, 20]
    row = summarize([trial])[0]
    assert row.label == "adamw" and row.saved_activation_bytes is None and row.peak_memory_bytes == 1608
    report = write_report(store, tmp_path / "report", 1).read_text()
    assert "| mnist1d_mlp | adamw | 1/1 |" in report and "| 1.6 KiB |" in report
    # the upgraded store takes new trials with the new columns, and reopening it changes nothing
    race = store.start_race({"seeds": [0]}, {"device": "cpu"})
    result = run_trial(
        TinyRegression(step_budget=10, eval_every=5),
        make_algorithm("adamw"),
        0,
        CPU,
        TrialOptions(compress_activations=8, freeze=("bias",)),
    )
    store.finish_trial(store.start_trial(race, "tiny_regression", "adamw", 0, {}), result)
    again = ResultsStore(str(db)).trials(race)[0]
    assert again["compress_activations"] == "8" and again["precision"] == "fp32"
    assert again["frozen_params"] == 1 and again["saved_activation_bytes"] == result.saved_activation_bytes > 0
    assert summarize([again])[0].label == "adamw [acts 8-bit, 1 frozen]"
    assert len(ResultsStore(str(db)).trials(1)) == 1


# ---- CLI and report ----------------------------------------------------------------------------


def test_race_with_compression_and_bf16_autocast_end_to_end(tmp_path):
    options = [f"mnist1d_cnn.{k}={v}" for k, v in TINY["mnist1d_cnn"].items()]
    options += [f"text_lm.{k}={v}" for k, v in TINY["text_lm"].items()]
    options += ["tiny_regression.step_budget=20"]
    done = run_cli(
        "race",
        "--workloads",
        f"{ROOT / 'tests' / 'support_workloads.py'},mnist1d_cnn,text_lm",
        "--algorithms",
        "adamw",
        *[a for o in options for a in ("--workload-option", o)],
        "--compress-activations",
        "4",
        "--precision",
        "bf16-autocast",
        "--threads",
        "1",
        "--store",
        str(tmp_path / "r.db"),
        "--report-dir",
        str(tmp_path / "report"),
        "--no-progress",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "| saved activations | peak memory |" in done.stdout
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| saved activations | peak memory |" in report
    for workload in ("tiny_regression", "mnist1d_cnn", "text_lm"):
        assert f"| {workload} | adamw [acts 4-bit, bf16-autocast] | " in report
    assert "![memory vs time to target](memory_vs_time.png)" in report
    assert (tmp_path / "report" / "memory_vs_time.png").read_bytes()[:4] == b"\x89PNG"
    assert "Memory savers in this race: saved activations compressed to 4 bits; precision bf16-autocast" in report
    store = ResultsStore(str(tmp_path / "r.db"))
    race = store.race()
    assert (race["config"]["compress_activations"], race["config"]["precision"]) == (4, "bf16-autocast")
    trials = store.trials(race["id"])
    assert len(trials) == 3 and {t["status"] for t in trials} == {"completed"}
    for t in trials:
        assert t["compress_activations"] == "4" and t["precision"] == "bf16-autocast"
        assert t["saved_activation_bytes"] > 0 and t["peak_memory_bytes"] > t["saved_activation_bytes"]


BAD = [
    (
        ["--freeze", "nosuchmodule"],
        "--freeze on workload 'mnist1d_cnn': freeze rule 'nosuchmodule' matches no parameter; module names "
        "look like: features.0.0, features.0.1",
    ),
    (["--precision", "fp16"], "--precision must be one of fp32, bf16-autocast, bf16; got 'fp16'"),
    (["--compress-activations", "3"], "--compress-activations must be one of 2, 4, 8, adaptive; got '3'"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[a[0] for a, _ in BAD])
def test_bad_memory_options_are_one_line_errors_before_any_training(tmp_path, argv, message):
    db = tmp_path / "r.db"
    done = run_main("race", "--workloads", "mnist1d_cnn", *argv, "--store", str(db), cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trainlab: error: "), done.stderr
    assert message in lines[0]
    assert not db.exists()  # checked before the store is even opened


def test_pareto_front_keeps_what_nothing_beats_on_memory_and_time():
    points = [(10.0, 5.0), (20.0, 3.0), (15.0, 6.0), (30.0, 3.0), (5.0, float("inf")), (40.0, 1.0), (20.0, 4.0)]
    assert pareto_front(points) == [(10.0, 5.0), (20.0, 3.0), (40.0, 1.0)]
    assert pareto_front([(1.0, float("inf"))]) == []


def test_first_k_and_change_based_freezing_in_a_race(tmp_path):
    from trainlab.algorithms import make_algorithm
    from trainlab.benchmark.runner import run_trial
    from trainlab.workloads import create_workload

    cpu = torch.device("cpu")
    workload = create_workload("mnist1d_mlp", step_budget=200, eval_every=20)
    spec = make_algorithm("adamw", workload="mnist1d_mlp")
    first = run_trial(workload, spec, 0, cpu, TrialOptions(freeze=("first:1",)))
    assert first.frozen_params == 40 * 256 + 256  # the first Linear layer
    assert first.state_bytes == 8 * (78858 - 10496) + 4 * 4  # no state for it (+4 B step per tensor)
    # a huge threshold freezes as much as allowed (at most 90 % of entries) after 10 % of the budget
    changed = run_trial(workload, spec, 0, cpu, TrialOptions(freeze_change=1e9))
    assert 0 < changed.frozen_params <= 0.9 * 78858
    unfrozen = run_trial(workload, spec, 0, cpu)
    assert unfrozen.state_bytes - changed.state_bytes >= 8 * changed.frozen_params  # their state is gone
    done = run_cli(
        "race",
        "--workloads",
        "mnist1d_mlp",
        "--algorithms",
        "adamw",
        "--freeze-change",
        "-1",
        "--store",
        str(tmp_path / "r.db"),
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "--freeze-change must be a positive threshold" in done.stderr
    bad = run_cli(
        "race", "--workloads", "mnist1d_mlp", "--freeze", "first:x", "--store", str(tmp_path / "r.db"), cwd=tmp_path
    )
    assert bad.returncode == 2 and "first:K" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
