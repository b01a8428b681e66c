"""Learning-rate schedules: pure functions of the step, plus an adapter to torch's LRScheduler.

Nothing here knows about optimizers (which rule an optimizer takes is `trainlab.algorithms.rules`)."""

from trainlab.schedules.adapter import as_lr_scheduler
from trainlab.schedules.batch_scaling import scale_lr
from trainlab.schedules.budget_aware import uba
from trainlab.schedules.core import (
    COOLDOWNS,
    Schedule,
    constant,
    cosine_decay,
    join,
    linear_decay,
    linear_warmup,
    piecewise_constant,
    scale,
    wsd,
)
from trainlab.schedules.refined import KIND_NORM, refine, refined_schedule
from trainlab.schedules.registry import SCHEDULE_HPARAMS, SCHEDULES, build_schedule

__all__ = [
    "COOLDOWNS",
    "KIND_NORM",
    "SCHEDULES",
    "SCHEDULE_HPARAMS",
    "Schedule",
    "as_lr_scheduler",
    "build_schedule",
    "constant",
    "cosine_decay",
    "join",
    "linear_decay",
    "linear_warmup",
    "piecewise_constant",
    "refine",
    "refined_schedule",
    "scale",
    "scale_lr",
    "uba",
    "wsd",
]
