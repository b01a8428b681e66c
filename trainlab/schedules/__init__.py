"""Learning-rate schedules: pure functions of the step, plus an adapter to torch's LRScheduler."""

from trainlab.schedules.adapter import as_lr_scheduler
from trainlab.schedules.core import Schedule, constant, cosine_decay, linear_decay, linear_warmup
from trainlab.schedules.registry import SCHEDULE_HPARAMS, SCHEDULES, build_schedule

__all__ = ["SCHEDULES", "SCHEDULE_HPARAMS", "Schedule", "as_lr_scheduler", "build_schedule",
           "constant", "cosine_decay", "linear_decay", "linear_warmup"]
