"""A workload whose rank 1 dies (os._exit, or SIGKILL) or hangs (sleeps) at its 5th loss call, to test that a
data-parallel trial fails cleanly; in one process it trains like the tiny regression."""

from __future__ import annotations

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the ranks load this file by path
from support_workloads import TinyRegression  # noqa: E402

from trainlab.workloads import Option  # noqa: E402


class DyingRank(TinyRegression):
    name = "dying_rank"
    options = {**TinyRegression.options, "mode": Option(str, "exit", "how rank 1 fails", ("exit", "kill", "hang"))}
    steps_taken = 0

    def loss(self, model, batch):
        self.steps_taken += 1
        if os.environ.get("RANK") == "1" and self.steps_taken == 5:
            if self.option_values["mode"] == "hang":
                time.sleep(3600)
            if self.option_values["mode"] == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(3)
        return super().loss(model, batch)


WORKLOAD = DyingRank
