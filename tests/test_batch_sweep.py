"""The batch sweep: the exponent fit, the stability rule, and a small sweep end to end (resumable)."""

from __future__ import annotations

import math

import pytest
import sqlalchemy as sa
import torch

from support_workloads import TinyRegression
from trainlab.benchmark.batch_sweep import BatchSweep, SweepPoint, fit_exponent, stable
from trainlab.errors import UsageError
from trainlab.reports.batch_sweep import exponents, write_report
from trainlab.store import ResultsStore
from trainlab.store.results import EvalRecord, TrialResult

CPU = torch.device("cpu")


@pytest.mark.parametrize("slope", [1.0, 0.5, 0.3])
def test_the_fit_recovers_a_known_exponent(slope):
    batches = [16, 32, 64, 128, 256, 512]
    assert fit_exponent(batches, [0.01 * b**slope for b in batches])[0] == pytest.approx(slope)
    # lrs quantised to a grid of factor 2 (what a sweep measures) keep the slope within 0.2
    quantised = [2.0 ** round(math.log2(0.01 * b**slope)) for b in batches]
    assert abs(fit_exponent(batches, quantised)[0] - slope) < 0.2


def test_exponents_skip_a_largest_lr_on_the_grid_top():
    points = [
        SweepPoint("w", "sgd", b, [], largest_stable=0.01 * b, best=0.005 * b**0.5, edge=(b == 64))
        for b in (16, 32, 64, 128)
    ]
    assert exponents(points, "largest_stable")[("w", "sgd")] == pytest.approx(1.0)
    assert exponents(points, "best")[("w", "sgd")] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="two or more"):
        fit_exponent([16], [0.1])


def _result(losses, status="completed"):
    r = TrialResult("w", "a", 0, {}, "mse", False, 0.1, 4, status=status)
    r.evals = [EvalRecord(i + 1, 0.0, v, 0.0, 0.0, 0.0) for i, v in enumerate(losses)]
    return r


def test_stable_means_finite_and_falling():
    assert stable(_result([3.0, 2.0, 1.0]))
    assert not stable(_result([1.0, 2.0, 3.0]))  # rising: oscillating out of the basin
    assert not stable(_result([3.0, math.nan]))
    assert not stable(_result([3.0, 1.0], status="diverged"))


def test_a_small_sweep_runs_reports_and_resumes(tmp_path):
    db = tmp_path / "s.db"

    def sweep():
        return BatchSweep(
            [TinyRegression()],
            ["sgd"],
            [16, 64],
            CPU,
            short_steps=20,
            span=2,
            lanczos_iterations=5,
            report=lambda _: None,
        )

    points = sweep().run(ResultsStore(f"sqlite:///{db}"))
    assert [p.batch_size for p in points] == [16, 64] and all(len(p.grid) == 5 for p in points)
    assert points[1].grid[2] == pytest.approx(4 * points[0].grid[2])  # centred by SGD's linear rule
    assert all(p.lambda_max and p.lambda_max > 0 for p in points)
    assert all(p.best is not None and len(p.steps_to_target) == 1 for p in points)
    count = "select count(*) from trainlab_trials"
    with sa.create_engine(f"sqlite:///{db}").connect() as conn:
        before = conn.execute(sa.text(count)).scalar()
    again = sweep().run(ResultsStore(f"sqlite:///{db}"))  # everything is stored: nothing runs
    with sa.create_engine(f"sqlite:///{db}").connect() as conn:
        assert conn.execute(sa.text(count)).scalar() == before == 2 * (5 + 1)
    assert [(p.largest_stable, p.best) for p in again] == [(p.largest_stable, p.best) for p in points]
    report = write_report(points, tmp_path / "out").read_text()
    assert "| tiny_regression | sgd |" in report and (tmp_path / "out" / "lr_vs_batch_tiny_regression.png").exists()
    with pytest.raises(UsageError, match="at least two batch sizes"):
        BatchSweep([TinyRegression()], ["sgd"], [16], CPU).check()
