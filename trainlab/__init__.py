"""trainlab: training algorithms you can trust and afford, and an honest benchmark to choose them.

The packages, from the command line down to torch (imports point one way; tests/test_architecture.py):
  trainlab.cli         the `trainlab` command
  trainlab.benchmark   the trial configuration, the runner that owns the clock, races, target setting
  trainlab.tuning      tuning experiments in Optuna storage, workers, the leaderboard's experiments
  trainlab.reports     Markdown + PNG reports of races, tuning experiments and the leaderboard
  trainlab.algorithms  optimizer + schedule + hyperparameters; user optimizers; AlgoPerf submissions
  trainlab.workloads   model + data + loss + metric + target + budget (the fixed side)
  trainlab.store       the results database (SQLite by default, any SQLAlchemy URL) and result types
  trainlab.optim       torch.optim optimizers, their registrations and state accounting
  trainlab.schedules   learning-rate multipliers as pure functions of the step
  trainlab.memory      saved-tensor accounting, activation compression, freezing, bf16
  trainlab.scoring     performance profiles, speedups, bootstrap intervals, stability after target
"""

__version__ = "0.1.0"  # the one place: pyproject.toml reads it (tool.setuptools.dynamic)
