"""trainlab: training algorithms you can trust and afford, and an honest benchmark to choose them.

Layout (one concept per module):
  trainlab.workloads   model + data + loss + metric + target + budget (the fixed side)
  trainlab.algorithms  optimizer + schedule + hyperparameters (the submission side)
  trainlab.optim       torch.optim-compatible optimizers and their state accounting
  trainlab.schedules   learning-rate multipliers as pure functions of the step
  trainlab.benchmark   the runner that owns the clock, and races over workloads x algorithms
  trainlab.store       the results database (SQLite by default, any SQLAlchemy URL)
  trainlab.reports     Markdown + PNG reports from a store
  trainlab.cli         the `trainlab` command
"""

__version__ = "0.1.0"
