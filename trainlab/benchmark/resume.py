"""Resumable races: rerunning a race with the same store and arguments keeps every finished trial
and reruns only what did not finish.

A race's identity is its fingerprint, the SHA-256 of its stored configuration (workloads with their
options, every algorithm's effective hyperparameters, seeds, device, trial options): any changed
argument is a new race. Each running trial carries an owner (host:pid) and a heartbeat renewed from a
thread; on a rerun a `running` trial is dead when its owner process is gone (same host) or its
heartbeat is older than the grace period (another host), and an `interrupted` one (Ctrl-C) is dead
too. Dead trials are deleted, with their evaluations, and run again; finished ones (completed,
diverged, pruned, or failed by an error in the algorithm, which a rerun would repeat) are kept,
ids and start times unchanged. Two processes running the same race at once split its trials: a trial
row is claimed by inserting it, and of two rows for one trial the older wins.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from typing import Any

from trainlab.store import ResultsStore
from trainlab.utils.heartbeat import Heartbeat

GRACE = 120.0  # seconds without a heartbeat after which another host's trial counts as dead
BEAT = 10.0  # seconds between heartbeats
OWNER = f"{socket.gethostname()}:{os.getpid()}"


def fingerprint(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def _alive(owner: str | None, heartbeat: float | None, grace: float) -> bool:
    host, _, pid = (owner or "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return heartbeat is not None and time.time() - heartbeat < grace


Key = tuple[str, str, int]  # (workload, algorithm, seed)


def take_stock(store: ResultsStore, race_id: int, grace: float = GRACE) -> tuple[set[Key], set[Key], int]:
    """(finished, running elsewhere, dead trials deleted) of a stored race."""
    finished: set[Key] = set()
    running: set[Key] = set()
    dead = []
    for t in store.trials(race_id):
        key = (t["workload"], t["algorithm"], int(t["seed"]))
        interrupted = t["status"] == "failed" and (t.get("error") or "").startswith("interrupted")
        if t["status"] == "running" and _alive(t.get("owner"), t.get("heartbeat_at"), grace):
            running.add(key)
        elif t["status"] == "running" or interrupted:
            dead.append(t["id"])
        else:
            finished.add(key)
    store.delete_trials(dead)
    return finished, running - finished, len(dead)


def claimed_by_another(store: ResultsStore, race_id: int, key: Key, mine: int, grace: float = GRACE) -> bool:
    """Whether an older row of the same trial is finished or alive (another process got there first)."""
    for t in store.trials(race_id):
        if (t["workload"], t["algorithm"], int(t["seed"])) != key or t["id"] >= mine:
            continue
        if t["status"] != "running" or _alive(t.get("owner"), t.get("heartbeat_at"), grace):
            return True
    return False


def heartbeat(store: ResultsStore, trial_id: int, interval: float = BEAT) -> Heartbeat:
    """Renews a race trial's heartbeat while it trains."""
    return Heartbeat(lambda: store.beat(trial_id), interval, f"race-heartbeat-{trial_id}")
