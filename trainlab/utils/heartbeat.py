"""A heartbeat: a daemon thread that calls `beat` every `interval` seconds while a block runs, so
that other processes can tell a live trial from a dead one (tuning studies, resumable races)."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Heartbeat:
    def __init__(self, beat: Callable[[], None], interval: float, name: str = "heartbeat") -> None:
        self._beat, self._interval = beat, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._beat()
            except Exception:  # a missed beat only shortens the grace; the next one retries
                pass

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
