"""Fault injection for the crash tests (tests/test_tuning_crash.py), outside the product.

On this directory of `PYTHONPATH`, Python imports this module at start-up in every process the test
launches (the coordinator and the workers it spawns). With `TRAINLAB_FAULT_KILL_AT_COMMIT=N` set, the
process SIGKILLs itself just before its N-th database commit, i.e. in the middle of a write.
"""

import os

FAULT_ENV = "TRAINLAB_FAULT_KILL_AT_COMMIT"

if os.environ.get(FAULT_ENV):
    import signal

    import sqlalchemy as sa

    _remaining = [int(os.environ[FAULT_ENV])]

    def _maybe_die(_connection):
        _remaining[0] -= 1
        if _remaining[0] == 0:
            os.kill(os.getpid(), signal.SIGKILL)

    sa.event.listen(sa.engine.Engine, "commit", _maybe_die)
