"""Optimizers from a file or a package race, tune and score like built-ins; bad ones fail in one line."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import sqlalchemy as sa

from conftest import run_cli

TINY = [
    "--workloads",
    "mnist1d_mlp",
    "--workload-option",
    "mnist1d_mlp.step_budget=40",
    "--workload-option",
    "mnist1d_mlp.eval_every=20",
]

SIGN_ADAM = (Path(__file__).resolve().parent.parent / "examples" / "sign_adam.py").read_text()


def _trials(db, column="algorithm"):
    with sa.create_engine(f"sqlite:///{db}").connect() as conn:
        return conn.execute(sa.text(f"select {column}, status, hparams from trainlab_trials")).all()


def test_a_file_optimizer_races_with_its_signature_hyperparameters(tmp_path):
    (tmp_path / "my_opt.py").write_text(SIGN_ADAM)
    db = tmp_path / "r.db"
    done = run_cli(
        "race",
        *TINY,
        "--algorithms",
        "my_opt.py:SignAdam",
        "--hparams",
        "my_opt.py:SignAdam.beta=0.8",
        "--store",
        str(db),
        "--no-report",
        "--no-progress",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    ((name, status, hparams),) = _trials(db)
    assert name == "my_opt.py:SignAdam" and status == "completed"
    assert json.loads(hparams)["beta"] == 0.8 and json.loads(hparams)["lr"] == 1e-3
    typo = run_cli(
        "race",
        *TINY,
        "--algorithms",
        "my_opt.py:SignAdam",
        "--hparams",
        "my_opt.py:SignAdam.betta=0.8",
        "--store",
        str(db),
        cwd=tmp_path,
    )
    assert typo.returncode == 2 and "betta" in typo.stderr and "beta" in typo.stderr
    assert len(_trials(db)) == 1


def test_a_package_optimizer_races_by_module_path(tmp_path):
    db = tmp_path / "r.db"
    done = run_cli(
        "race",
        *TINY,
        "--algorithms",
        "torch.optim:Adagrad",
        "--hparams",
        "torch.optim:Adagrad.lr=0.05",
        "--store",
        str(db),
        "--no-report",
        "--no-progress",
    )
    assert done.returncode == 0, done.stderr
    ((name, status, hparams),) = _trials(db)
    assert name == "torch.optim:Adagrad" and status == "completed" and json.loads(hparams)["lr"] == 0.05


def test_a_file_optimizer_tunes_with_two_workers_and_scores(tmp_path):
    (tmp_path / "my_opt.py").write_text(SIGN_ADAM)
    (tmp_path / "space.json").write_text(json.dumps({"lr": {"min": 1e-3, "max": 1e-2, "scaling": "log"}}))
    store = f"sqlite:///{tmp_path / 't.db'}"
    done = run_cli(
        "tune",
        "--name",
        "mine",
        *TINY,
        "--algorithms",
        "adamw,my_opt.py:SignAdam",
        "--search-space",
        "my_opt.py:SignAdam=space.json",
        "--trials",
        "2",
        "--studies",
        "1",
        "--eval-seeds",
        "0",
        "--workers",
        "2",
        "--threads",
        "1",
        "--store",
        store,
        "--report-dir",
        "rep",
        "--no-progress",
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "my_opt.py:SignAdam" in (tmp_path / "rep" / "report.md").read_text()
    scored = run_cli("score", "--name", "mine", "--store", store, "--out", "again", cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr
    # the experiment recorded where the optimizer came from; a changed file is refused in one line
    (tmp_path / "my_opt.py").write_text(SIGN_ADAM + "\n# edited\n")
    joined = run_cli("worker", "--name", "mine", "--store", store, "--exit-when-idle", cwd=tmp_path)
    assert joined.returncode == 2 and "changed since the experiment was created" in joined.stderr
    assert joined.stderr.count("\n") == 1


def test_bad_optimizer_files_and_classes_fail_in_one_line(tmp_path):
    (tmp_path / "broken.py").write_text("def oops(:\n")
    (tmp_path / "plain.py").write_text("class NotAnOptimizer:\n    pass\n")
    db = tmp_path / "r.db"
    cases = {
        "broken.py:Opt": "cannot import optimizer file",
        "plain.py:NotAnOptimizer": "not a torch.optim",
        "missing.py:Opt": "does not exist",
        "plain.py:Other": "has no class",
        "no_such_package_xyz.mod:Opt": "cannot import module",
    }
    for name, message in cases.items():
        done = run_cli("race", *TINY, "--algorithms", name, "--store", str(db), cwd=tmp_path)
        assert done.returncode == 2, (name, done.stderr)
        assert message in done.stderr and done.stderr.count("\n") == 1, (name, done.stderr)
    assert not db.exists() or _trials(db) == []
    done = run_cli(
        "tune",
        "--name",
        "x",
        *TINY,
        "--algorithms",
        "torch.optim:Adagrad",
        "--dry-run",
        "--store",
        f"sqlite:///{tmp_path / 't.db'}",
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "--search-space torch.optim:Adagrad=FILE.json" in done.stderr


def test_an_installed_package_registers_optimizers_through_its_entry_point(tmp_path):
    """What `pip install their-package` leaves on the path: the module and its dist-info with an
    entry point in the `trainlab.optimizers` group. Its optimizer then races by its plain name."""
    import os
    import subprocess
    import sys

    package = tmp_path / "tl_plugin"
    package.mkdir()
    (package / "__init__.py").write_text(
        SIGN_ADAM
        + textwrap.dedent("""
        from trainlab.optim import Registration

        REGISTRATIONS = [Registration("plugin_signadam", SignAdam, "SignAdam from a plugin package",
                                      "tests of trainlab", race_defaults={"lr": 2e-3},
                                      search_space={"lr": {"min": 1e-3, "max": 1e-2, "scaling": "log"}},
                                      state_bytes="4 B/param")]
        """)
    )
    info = tmp_path / "tl_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tl-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[trainlab.optimizers]\nsignadam = tl_plugin:REGISTRATIONS\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    db = tmp_path / "r.db"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainlab",
            "race",
            *TINY,
            "--algorithms",
            "plugin_signadam",
            "--store",
            str(db),
            "--no-report",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    ((name, status, hparams),) = _trials(db)
    assert name == "plugin_signadam" and status == "completed" and json.loads(hparams)["lr"] == 2e-3
    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainlab",
            "tune",
            "--name",
            "p",
            *TINY,
            "--algorithms",
            "plugin_signadam",
            "--dry-run",
            "--store",
            f"sqlite:///{tmp_path / 't.db'}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stderr  # its registered search space is found
