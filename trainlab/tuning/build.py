"""`build_plan`: a tuning experiment's plan from its options, checked before any trial runs.

Names, search spaces (built-in, from a file, or an AlgoPerf submission's own), the origin of every
optimizer from a file or a package, seeds, the trial configuration on every workload's model, and
every workload's data: an experiment that would fail in its workers fails here, in a second.
"""

from __future__ import annotations

from typing import Any

import torch

from trainlab.algorithms.external import is_external, origin
from trainlab.algorithms.registry import check_search_space, parse_name
from trainlab.algorithms.search_space import load_search_space
from trainlab.algorithms.submission import is_submission, submission_origin
from trainlab.benchmark.data_parallel import check_split
from trainlab.benchmark.trial_options import SAVERS, TrialOptions
from trainlab.errors import UsageError
from trainlab.tuning.plan import TuningPlan
from trainlab.workloads import workload_class
from trainlab.workloads.variants import variants_of

TUNING_DEFAULT = TrialOptions(stop_at_target=True)  # tuning trials end at the target


def build_plan(
    name: str,
    algorithms: list[str],
    workloads: list[str],
    workload_options: dict[str, dict[str, Any]],
    *,
    search_space_files: dict[str, str],
    trials: int,
    studies: int,
    eval_seeds: list[int],
    protocol: str = "held-out",
    seed: int = 0,
    variants: bool = False,
    select_by: str = "time",
    options: TrialOptions = TUNING_DEFAULT,
    device: torch.device | None = None,
    prune: dict[str, float] | None = None,
) -> TuningPlan:
    """`workloads` are specs (names, files, modules); `workload_options` is keyed by workload name.
    `options`: how every trial of the experiment trains (memory savers, precision, stop at the
    target, data-parallel launch); the plan stores them in its own fields, unchanged since the
    first stored plans, so that those still load and resume."""
    classes = [workload_class(spec) for spec in workloads]
    files = dict(search_space_files)
    spaces, origins = {}, {}
    for algorithm in algorithms:
        if is_submission(algorithm):
            options.check_algorithm(algorithm, submission=True)
            origins[algorithm], files[algorithm] = submission_origin(algorithm, files.get(algorithm))
            spaces[algorithm] = check_search_space(load_search_space, algorithm, files[algorithm]).to_json()
            continue
        optimizer_name = parse_name(algorithm)[0]
        if is_external(optimizer_name):
            origins[optimizer_name] = origin(optimizer_name)
            if algorithm not in files:
                raise UsageError(
                    f"{algorithm!r} has no built-in search space: give one with "
                    f"--search-space {algorithm}=FILE.json (AlgoPerf format)"
                )
        source = files.get(algorithm, optimizer_name)
        spaces[algorithm] = check_search_space(load_search_space, algorithm, source).to_json()
    plan = TuningPlan(
        name=name,
        algorithms=algorithms,
        workloads=workloads,
        trials=trials,
        studies=studies,
        eval_seeds=eval_seeds,
        protocol=protocol,
        seed=seed,
        search_spaces=spaces,
        workload_options={spec: workload_options.get(cls.name, {}) for spec, cls in zip(workloads, classes)},
        stop_at_target=options.stop_at_target,
        variants=variants,
        workload_names={spec: cls.name for spec, cls in zip(workloads, classes)},
        select_by=select_by,
        origins=origins,
        trial=options.to_dict(SAVERS),
        prune=dict(prune or {}),
        nproc=options.nproc,
        strategy=options.strategy,
        trial_timeout=options.trial_timeout,
    )
    plan.check()
    built = [cls(**plan.workload_options[spec]) for spec, cls in zip(workloads, classes)]
    options.check(device, built)
    for workload in built:
        workload.splits()  # a missing corpus or a bad data path fails now, not in a worker
        if plan.nproc > 1:
            check_split(workload, plan.nproc)
        if variants:
            for variant in variants_of(workload.name):
                cls = workload_class(variant)
                if plan.nproc > 1:
                    check_split(cls(), plan.nproc)
    return plan
