"""The command line, end to end as real processes: a small race, the report, and bad input."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import sqlalchemy as sa
import torch

from conftest import run_cli, run_main
from trainlab.cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "--workload-option",
    "mnist1d_mlp.step_budget=60",
    "--workload-option",
    "mnist1d_mlp.eval_every=20",
    "--workload-option",
    "mnist1d_cnn.step_budget=40",
    "--workload-option",
    "mnist1d_cnn.eval_every=20",
    "--workload-option",
    "text_lm.step_budget=20",
    "--workload-option",
    "text_lm.eval_every=10",
    "--workload-option",
    "text_lm.eval_windows=32",
]


def _trial_count(db: Path) -> int:
    with sa.create_engine(f"sqlite:///{db}").connect() as conn:
        return conn.execute(sa.text("select count(*) from trainlab_trials")).scalar()


@pytest.fixture(scope="module")
def small_race(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("race")
    done = run_cli(
        "race", *TINY, "--store", str(tmp / "results.db"), "--report-dir", str(tmp / "report"), "--no-progress", cwd=tmp
    )
    return tmp, done


def test_default_workloads_and_baselines_race_end_to_end(small_race):
    tmp, done = small_race
    assert done.returncode == 0, done.stderr
    for name in ("mnist1d_mlp", "mnist1d_cnn", "text_lm", "adamw", "nadamw", "sgd"):
        assert name in done.stdout
    assert _trial_count(tmp / "results.db") == 9


def test_report_has_every_algorithm_and_its_plots(small_race):
    tmp, _ = small_race
    report = (tmp / "report" / "report.md").read_text()
    for name in ("adamw", "nadamw", "sgd", "mnist1d_mlp", "mnist1d_cnn", "text_lm"):
        assert f"| {name} |" in report or f"### {name}" in report
    images = [line.split("(")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]
    # bars + memory vs time + one curve and one schedule plot per workload
    assert len(images) == 8 and sum(i.startswith("schedules_") for i in images) == 3
    for image in images:
        png = (tmp / "report" / image).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000


def test_report_command_rewrites_the_report_from_the_store(small_race, tmp_path):
    tmp, _ = small_race
    done = run_cli("report", "--store", str(tmp / "results.db"), "--out", str(tmp_path / "again"))
    assert done.returncode == 0, done.stderr
    assert "| text_lm | sgd |" in (tmp_path / "again" / "report.md").read_text()


BAD_INPUTS = [
    (["race", "--workloads", "mnist2d"], "unknown workload 'mnist2d'; built-in workloads: mnist1d_mlp"),
    (["race", "--algorithms", "adamx"], "unknown algorithm 'adamx'; available: "),
    (["race", "--algorithms", "adamw", "--hparams", "adamw.lrr=1"], "no hyperparameter 'lrr'; valid: "),
    (["race", "--algorithms", "adamw", "--hparams", "adamw.lr=-1"], "lr must be"),
    (["race", "--algorithms", "adamw", "--hparams", "adamw.betas=(1.0,0.9)"], "beta1"),
    (["race", "--algorithms", "adamw", "--hparams", "sgd.lr=1"], "not in this race"),
    (["race", "--workloads", "text_lm", "--workload-option", "text_lm.text_file=/no/such.txt"], "does not exist"),
    (["race", "--workloads", "text_lm", "--workload-option", "text_lm.txt=1"], "valid options"),
    (["race", "--workloads", "mnist_cnn"], "data_dir"),
    (["race", "--seeds", "one"], "not an integer"),
    (["race", "--device", "gpu0"], "unknown device 'gpu0': use auto, cpu, cuda or cuda:N"),
    (["report", "--race", "999"], "no race 999"),
    (["race", "--eval-every", "1"], "--eval-every sets the cadence of continual evaluation and needs --eval-subset N"),
    (["race", "--workloads", "mnist1d_mlp", "--eval-subset", "100000"], "--eval-subset 100000: workload"),
    (["race", "--predict", "--predict-level", "1.5"], "--predict-level must be in (0, 1)"),
    (["score", "--name", "none", "--replay-pruner"], "no tuning experiment"),
    (["race", "--workloads", "mnist1d_mlp", "--nproc", "3"], "does not split evenly over 3 processes"),
]
if not torch.cuda.is_available():  # where there is a GPU, cuda:0 is a good device, not a bad input
    BAD_INPUTS.append((["race", "--device", "cuda:0"], "CUDA is not available"))


@pytest.mark.parametrize("argv,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_nonzero_and_loses_nothing(small_race, argv, message):
    tmp, _ = small_race
    db = tmp / "results.db"
    before = _trial_count(db)
    done = run_main(*argv, "--store", str(db), cwd=tmp)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trainlab: error: "), done.stderr
    assert message in lines[0]
    assert "Traceback" not in done.stderr
    assert _trial_count(db) == before


def test_unreadable_store_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"garbage" * 1000)
    done = run_cli("race", "--workloads", "mnist1d_mlp", "--store", str(bad), cwd=tmp_path)
    assert done.returncode == 2 and "cannot use results store" in done.stderr
    assert bad.read_bytes() == b"garbage" * 1000
    missing = run_cli("report", "--store", str(tmp_path / "none.db"), cwd=tmp_path)
    assert missing.returncode == 2 and "no results store" in missing.stderr


def test_every_option_of_every_command_is_documented():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {
        "race",
        "list",
        "report",
        "fetch-data",
        "set-targets",
        "refine",
        "tune",
        "worker",
        "score",
        "leaderboard",
        "batch-sweep",
        "external-validity",
    }
    for name, command in sub.choices.items():
        assert command.description, name
        for action in command._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"


def test_list_names_workloads_algorithms_and_hyperparameters():
    done = run_cli("list")
    assert done.returncode == 0
    for text in ("mnist1d_mlp", "text_lm", "nadamw", "weight_decay=", "warmup_fraction=", "cosine"):
        assert text in done.stdout


def test_python_dash_m_and_version():
    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.startswith("trainlab ")


def test_set_targets_records_the_protocol_and_writes_defaults(tmp_path):
    import json

    done = run_cli(
        "set-targets",
        "--workloads",
        str(ROOT / "tests" / "support_workloads.py"),
        "--lrs",
        "0.01,0.1",
        "--seeds",
        "100,101,102",
        "--baselines",
        "adamw,sgd",
        "--multipliers",
        "0.5,1",
        "--out",
        str(tmp_path / "targets.md"),
        "--write-defaults",
        str(tmp_path / "tuned.json"),
        "--threads",
        "1",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    record = (tmp_path / "targets.md").read_text()
    data = json.loads((tmp_path / "tuned.json").read_text())
    target = data["targets"]["tiny_regression"]
    reruns = [
        float(line.split("|")[2]) for line in record.splitlines() if line.startswith("| 10") and line.count("|") == 4
    ]
    assert len(reruns) == 3 and abs(sorted(reruns)[1] - target) < 1e-4  # the median of the re-runs
    assert set(data["learning_rates"]["tiny_regression"]) == {"adamw", "sgd"}
    assert "**Target: mse <= " in record and "(chosen)" in record
    assert "45 steps (race budget 60)" in record  # the workload's own target-setting budget: 3/4


def test_refine_runs_both_passes_and_plots_the_refinement(tmp_path):
    done = run_cli(
        "refine",
        "--workloads",
        str(ROOT / "tests" / "support_workloads.py"),
        "--seeds",
        "0,1",
        "--store",
        str(tmp_path / "r.db"),
        "--report-dir",
        str(tmp_path / "rep"),
        "--no-progress",
        "--threads",
        "1",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "pass 1: tiny_regression / adamw+linear / seed 1000" in done.stdout
    report = (tmp_path / "rep" / "report.md").read_text()
    for name in ("adamw+cosine", "adamw+linear", "adamw+refined"):
        assert f"| tiny_regression | {name} |" in report
    assert "refinement_tiny_regression.png" in report and "grad_norms=<60 values>" in report
    assert _trial_count(tmp_path / "r.db") == 6


@pytest.mark.parametrize(
    "argv,message",
    [
        (["refine", "--pass1-seed", "0", "--seeds", "0,1"], "is also an evaluation seed"),
        (["refine", "--algorithm", "adamw+cosine"], "without a schedule"),
        (["refine", "--algorithm", "adamx"], "unknown algorithm"),
    ],
)
def test_refine_bad_input_is_one_line(tmp_path, argv, message):
    done = run_main(*argv, "--store", str(tmp_path / "r.db"), cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
