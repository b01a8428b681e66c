"""`trainlab tune`: set up an experiment, run it with N local worker processes, advance its phases.

The coordinator is one process per experiment. It queues the tuning draws, runs trials itself like
any worker, starts `workers - 1` more `trainlab worker` processes, fails the trials of dead workers,
queues the evaluation runs of a (algorithm, workload) once all its studies are finished, and marks
the experiment finished. Workers on other machines join with `trainlab worker --name NAME --store
URL`. Restarting the same command after a crash resumes: set-up only queues what is missing.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import torch

from trainlab.errors import UsageError
from trainlab.tuning.experiment import (
    counts,
    create_or_resume,
    enqueue_evaluation,
    enqueue_search,
    enqueue_tuning,
    load,
)
from trainlab.tuning.plan import TuningPlan
from trainlab.tuning.worker import Worker, fail_stale

FINISHED_ATTR = "finished"
ADVANCE_EVERY = 30.0  # seconds between two looks for studies to extend or evaluate while busy
LEASE_ATTR = "coordinator"


class CoordinatorLease:
    """One coordinator per experiment: two would both queue evaluation runs. The lease (host, pid,
    time) lives in the manifest and is renewed from a thread; another coordinator may take it when
    it is older than the grace period, or at once when its holder is a dead process on this host
    (a restart after a crash). Best effort: two coordinators started in the same instant can both
    get it."""

    def __init__(self, storage, plan: TuningPlan, interval: float, grace: float) -> None:
        self.study = load(storage, plan.manifest_name())
        self.name, self.interval, self.grace = plan.name, interval, grace
        self.me = {"host": socket.gethostname(), "pid": os.getpid()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, daemon=True, name="coordinator-lease")

    def _held_by_other(self) -> dict | None:
        held = self.study.user_attrs.get(LEASE_ATTR)
        if not held or (held.get("host"), held.get("pid")) == (self.me["host"], self.me["pid"]):
            return None
        if time.time() - held.get("at", 0) >= self.grace:
            return None
        if held.get("host") == self.me["host"]:
            try:
                os.kill(int(held["pid"]), 0)
            except (ProcessLookupError, ValueError):
                return None  # its process is gone: a crashed coordinator, restarted here
            except PermissionError:
                pass  # alive, another user's
        return held

    def __enter__(self) -> CoordinatorLease:
        held = self._held_by_other()
        if held is not None:
            raise UsageError(
                f"experiment {self.name!r} is being run by process {held['pid']} on {held['host']} "
                f"(seen {time.time() - held['at']:.0f} s ago): add workers with `trainlab worker --name "
                f"{self.name}`, or if that process is dead, retry after {self.grace:.0f} s"
            )
        self.study.set_user_attr(LEASE_ATTR, {**self.me, "at": time.time()})
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.study.set_user_attr(LEASE_ATTR, {**self.me, "at": time.time()})
            except Exception:  # a missed renewal only shortens the lease
                pass

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.study.set_user_attr(LEASE_ATTR, None)


def is_marked_finished(storage, plan: TuningPlan) -> bool:
    return bool(load(storage, plan.manifest_name()).user_attrs.get(FINISHED_ATTR))


def spawn_worker(
    store_url: str,
    plan: TuningPlan,
    device: torch.device,
    threads: int | None,
    heartbeat_interval: int,
    grace_period: int,
) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "trainlab",
        "worker",
        "--name",
        plan.name,
        "--store",
        store_url,
        "--device",
        str(device),
        "--heartbeat-interval",
        str(heartbeat_interval),
        "--grace-period",
        str(grace_period),
        "--parent-pid",
        str(os.getpid()),
        "--no-progress",
    ]
    if threads is not None:
        command += ["--threads", str(threads)]
    return subprocess.Popen(command)


def run_experiment(
    storage,
    store_url: str,
    plan: TuningPlan,
    device: torch.device,
    *,
    workers: int = 1,
    threads: int | None = None,
    heartbeat_interval: int,
    grace_period: int,
    report: Callable[[str], None] = print,
    progress_factory=None,
    poll: float = 0.5,
    variants_of=None,
) -> None:
    plan, resumed = create_or_resume(storage, plan)
    with CoordinatorLease(storage, plan, heartbeat_interval, grace_period):
        _coordinate(
            storage,
            store_url,
            plan,
            device,
            resumed,
            workers=workers,
            threads=threads,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            report=report,
            progress_factory=progress_factory,
            poll=poll,
            variants_of=variants_of,
        )


def _coordinate(
    storage,
    store_url: str,
    plan: TuningPlan,
    device: torch.device,
    resumed: bool,
    *,
    workers: int,
    threads: int | None,
    heartbeat_interval: int,
    grace_period: int,
    report: Callable[[str], None],
    progress_factory,
    poll: float,
    variants_of,
) -> None:
    load(storage, plan.manifest_name()).set_user_attr(FINISHED_ATTR, False)  # a resume may add runs
    queued = enqueue_tuning(storage, plan)
    state = counts(storage, plan)
    report(
        f"experiment {plan.name!r}: {'resumed' if resumed else 'created'}; "
        f"{state['complete']} trials complete, {state['waiting'] + state['running']} to run"
        + (f" ({queued} newly queued)" if queued else "")
    )
    worker = Worker(storage, plan, device, report=report, progress_factory=progress_factory)
    helpers = [
        spawn_worker(store_url, plan, device, threads, heartbeat_interval, grace_period)
        for _ in range(max(0, workers - 1))
    ]
    last_stale_check = 0.0
    evaluated: set[tuple[str, str]] = set()  # (algorithm, workload) pairs whose runs are queued
    settled: set[tuple[str, str, int]] = set()  # studies whose bracketing search has ended
    last_advance, idle = -math.inf, True
    try:
        while True:
            if time.monotonic() - last_stale_check >= heartbeat_interval:
                fail_stale(storage, plan)
                last_stale_check = time.monotonic()
            # advancing reads every study (seconds on a big board): between trials only now and
            # then, at once when there is nothing queued to run
            if idle or time.monotonic() - last_advance >= ADVANCE_EVERY:
                enqueue_search(storage, plan, settled)
                enqueue_evaluation(storage, plan, variants_of, evaluated)
                last_advance = time.monotonic()
            idle = not worker.run_one()
            if not idle:
                continue
            if len(evaluated) == len(plan.algorithms) * len(plan.workloads):
                state = counts(storage, plan)  # every run is queued: done when none is left
                if not state["waiting"] and not state["running"]:
                    break
            time.sleep(poll)
        load(storage, plan.manifest_name()).set_user_attr(FINISHED_ATTR, True)
        for proc in helpers:
            proc.wait()
    finally:
        for proc in helpers:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()


def run_worker(
    storage,
    name: str,
    device: torch.device,
    *,
    parent_pid: int | None = None,
    exit_when_idle: bool = False,
    report: Callable[[str], None] = print,
    progress_factory=None,
    poll: float = 1.0,
) -> int:
    """Run queued trials of experiment `name` until it is finished (or idle, or the parent is gone);
    returns the number of trials this worker ran."""
    from trainlab.tuning.experiment import load_plan

    plan = load_plan(storage, name)
    worker = Worker(storage, plan, device, report=report, progress_factory=progress_factory)
    ran = 0
    last_stale_check = 0.0
    while True:
        if parent_pid is not None and os.getppid() != parent_pid:
            return ran  # the coordinator died: its restart starts fresh workers
        if time.monotonic() - last_stale_check >= storage.heartbeat_interval:
            fail_stale(storage, plan)
            last_stale_check = time.monotonic()
        if worker.run_one():
            ran += 1
            continue
        if is_marked_finished(storage, plan) or exit_when_idle:
            return ran
        time.sleep(poll)


__all__ = ["run_experiment", "run_worker"]
