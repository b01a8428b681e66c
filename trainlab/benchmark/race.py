"""A race: every (workload, algorithm, seed) trial, each committed to the store as it finishes.

Everything a user can get wrong (names, hyperparameters, data paths, the store) is checked before the
first trial starts, so a bad race fails in a second instead of after an hour. A trial that raises is
recorded as `failed` with its error and the race goes on.
"""

from __future__ import annotations

import dataclasses
import functools
import traceback
from dataclasses import dataclass, field
from typing import Any

import torch

from trainlab.algorithms import AlgorithmSpec, check_applies, make_algorithm, sso
from trainlab.algorithms.rules import default_rule
from trainlab.benchmark import data_parallel
from trainlab.benchmark import resume as resume_
from trainlab.benchmark.prediction import CurveWatch
from trainlab.benchmark.progress import RaceProgress
from trainlab.benchmark.runner import run_trial
from trainlab.benchmark.trial_options import DEFAULT, TrialOptions
from trainlab.errors import UsageError
from trainlab.schedules import scale_lr
from trainlab.store import ResultsStore
from trainlab.store.results import TrialResult
from trainlab.utils.environment import describe
from trainlab.workloads import Workload


@dataclass
class RacePlan:
    """What to run. Algorithms are names (+ overrides); each is specified per workload, because a
    baseline's learning rate may be tuned per workload (`trainlab.algorithms.registry.TUNED_PATH`).

    `options` apply to every trial of the race; each freeze rule must match a parameter of every
    workload."""

    workloads: list[Workload]
    algorithms: list[str]
    seeds: list[int]
    device: torch.device
    label: str | None = None
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (algorithm, workload name) -> hyperparameters for that pair only, e.g. a refined schedule's
    # gradient norms, which come from a first run on that workload.
    workload_overrides: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    options: TrialOptions = DEFAULT  # how every trial trains, checks and records (trainlab.benchmark.trial_options)
    untuned: bool = False  # workload-agnostic defaults even where a configuration was tuned
    search_spaces: dict[str, str] = field(default_factory=dict)  # AlgoPerf submission -> its space file
    # carry each lr from the workload's default batch size to the one it trains with
    # (`trainlab.schedules.scale_lr`): "linear", "sqrt", "auto" (the optimizer's registered rule) or None
    batch_scaling: str | None = None
    prepared: bool = field(default=False, init=False, repr=False)  # `prepare` has checked it

    def spec(self, algorithm: str, workload: Workload) -> AlgorithmSpec:
        hparams = {**self.overrides.get(algorithm, {}), **self.workload_overrides.get((algorithm, workload.name), {})}
        spec = make_algorithm(
            algorithm,
            hparams,
            workload=workload.name,
            untuned=self.untuned,
            search_space=self.search_spaces.get(algorithm),
        )
        base = type(workload).default_batch_size
        if self.batch_scaling is None or workload.batch_size == base or "lr" in hparams:
            return spec  # an lr set by hand is the user's lr at the batch size they chose
        if spec.submission:
            raise UsageError(f"--batch-scaling: {spec.name} is an AlgoPerf submission, which sets its own batch size")
        rule = default_rule(spec.optimizer) if self.batch_scaling == "auto" else self.batch_scaling
        lr = scale_lr(float(spec.hparams["lr"]), base, workload.batch_size, rule)
        return dataclasses.replace(
            spec,
            hparams={**spec.hparams, "lr": lr},
            source=f"{spec.source}; lr scaled {rule} from batch {base} to {workload.batch_size}",
        )

    def config(self) -> dict[str, Any]:
        """What the store keeps of the plan (reports read these keys)."""
        o = self.options
        return {
            "workloads": [w.describe() for w in self.workloads],
            "algorithms": [
                {
                    "name": a,
                    "workload": w.name,
                    "optimizer": spec.optimizer,
                    "schedule": spec.schedule,
                    "hparams": dict(spec.hparams),
                    "source": spec.source,
                }
                for w in self.workloads
                for a in self.algorithms
                for spec in [self.spec(a, w)]
            ],
            "seeds": list(self.seeds),
            "device": str(self.device),
            "stop_at_target": o.stop_at_target,
            "compress_activations": o.compress_activations,
            "precision": o.precision,
            "freeze": list(o.freeze) or None,
            "freeze_change": o.freeze_change,
            "predict": None if o.predict is None else {"level": o.predict[0], "threshold": o.predict[1]},
            "continual": None if o.continual is None else {"every": o.continual[0], "subset": o.continual[1]},
            "batch_scaling": self.batch_scaling,
            "nproc": o.nproc,
            "strategy": o.strategy if o.nproc > 1 else None,
        }


def prepare(plan: RacePlan) -> None:
    """Build every spec, check the trial options on every workload (each freeze rule on a fresh
    model) and load every workload's data up front: a bad hyperparameter, a freeze typo, a missing
    corpus or a bad path fails before any training. Once per plan (the CLI calls it before it opens
    the store; `run_race` then finds it done)."""
    if plan.prepared:
        return
    if not plan.workloads or not plan.algorithms or not plan.seeds:
        raise UsageError("a race needs at least one workload, one algorithm and one seed")
    options = plan.options
    for workload in plan.workloads:
        with torch.random.fork_rng(devices=[]):
            model = workload.init_model()
        for algorithm in plan.algorithms:
            spec = plan.spec(algorithm, workload)
            check_applies(spec, model, workload.name, workload.step_budget)
            if spec.method == "sso":
                sso.check_workload(spec, workload)
            options.check_algorithm(spec.name, submission=spec.submission, sso=spec.method == "sso")
            if options.nproc > 1:
                data_parallel.check(workload, spec, options)
    options.check(plan.device, plan.workloads)
    for workload in plan.workloads:
        splits = workload.splits()
        if options.continual is not None:
            workload.subset(splits.validation, options.continual[1])  # a subset too large fails now
    plan.prepared = True


def run_race(
    plan: RacePlan, store: ResultsStore, progress: bool | None = None, resume: bool = True, report=print
) -> tuple[int, list[TrialResult]]:
    """Run the race's trials; with `resume`, a stored race with the same arguments is continued:
    its finished trials are kept, its dead ones rerun (`trainlab.benchmark.resume`). Returns the
    race's id and the results of the trials run now."""
    prepare(plan)
    config = plan.config()
    key = resume_.fingerprint(config)
    race_id = store.race_by_fingerprint(key) if resume else None
    trials = [(w, a, s) for w in plan.workloads for a in plan.algorithms for s in plan.seeds]
    if race_id is None:
        race_id = store.start_race(config, describe(plan.device), plan.label, fingerprint=key)
        skip: set[tuple[str, str, int]] = set()
    else:
        finished, elsewhere, dead = resume_.take_stock(store, race_id)
        skip = finished | elsewhere
        report(
            f"resuming race {race_id} (same arguments): {len(finished)} finished trials kept, "
            f"{dead} unfinished rerun, {len(elsewhere)} running in another process; --new-race starts afresh"
        )
    names = {(w.name, a): plan.spec(a, w).name for w in plan.workloads for a in plan.algorithms}
    trials = [(w, a, s) for w, a, s in trials if (w.name, names[(w.name, a)], s) not in skip]
    display = RaceProgress(len(trials), enabled=progress)
    results: list[TrialResult] = []
    try:
        for workload, name, seed in trials:
            algorithm = plan.spec(name, workload)
            label = f"{workload.name} / {algorithm.name} / seed {seed}"
            trial_id = store.start_trial(
                race_id, workload.name, algorithm.name, seed, dict(algorithm.hparams), owner=resume_.OWNER
            )
            if resume_.claimed_by_another(store, race_id, (workload.name, algorithm.name, seed), trial_id):
                store.delete_trials([trial_id])  # another process runs (or ran) it
                continue
            try:
                with resume_.heartbeat(store, trial_id):
                    result = _run(plan, workload, algorithm, seed, display, label)
            except (KeyboardInterrupt, SystemExit):
                store.fail_trial(trial_id, "interrupted")
                raise
            except Exception as exc:  # a bug in one algorithm must not lose the rest of the race
                store.fail_trial(
                    trial_id, "".join(traceback.format_exception_only(exc)).strip() + "\n" + traceback.format_exc()
                )
                display.end_trial(None, label, error=f"{type(exc).__name__}: {exc}")
                continue
            store.finish_trial(trial_id, result)
            results.append(result)
            display.end_trial(result, label)
    finally:
        display.close()
    return race_id, results


def _run(plan: RacePlan, workload: Workload, algorithm: AlgorithmSpec, seed: int, display: RaceProgress, label: str):
    """One trial of the race, with its progress bar and, under --predict, its curve watch."""
    watch = None
    if plan.options.predict is not None:
        level, threshold = plan.options.predict
        report = functools.partial(display.note, label)
        watch = CurveWatch(workload, algorithm, report=report, level=level, threshold=threshold)
    bar = display.start_trial(label, workload.step_budget)
    return run_trial(workload, algorithm, seed, plan.device, plan.options, progress=bar, monitor=watch)
