"""Schedule refinement (Defazio et al. 2023) as a race: pass 1 records an optimizer's per-step
gradient norms under linear decay, the refined schedule is derived per workload from them, and pass 2
races OPTIMIZER+refined against comparison schedules on evaluation seeds the first pass never used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from trainlab.algorithms import make_algorithm
from trainlab.algorithms.rules import kind_for
from trainlab.benchmark.race import RacePlan
from trainlab.benchmark.runner import run_trial
from trainlab.benchmark.trial_options import DEFAULT, TrialOptions
from trainlab.errors import UsageError
from trainlab.schedules.refined import KIND_NORM
from trainlab.workloads import Workload


def refinement_plan(
    optimizer: str,
    workloads: list[Workload],
    compare: list[str],
    seeds: list[int],
    pass1_seed: int,
    device: torch.device,
    overrides: dict[str, Any] | None = None,
    options: TrialOptions = DEFAULT,
    label: str | None = None,
    log: Callable[[str], None] = print,
) -> RacePlan:
    """Run pass 1 on every workload and return pass 2's race plan: `OPTIMIZER+S` for each schedule S
    of `compare`, then `OPTIMIZER+refined` with the schedule derived on that workload."""
    if "+" in optimizer:
        raise UsageError(
            f"--algorithm takes an optimizer name without a schedule (got {optimizer!r}); "
            "the schedules come from --compare and the refinement"
        )
    if pass1_seed in seeds:
        raise UsageError(
            f"--pass1-seed {pass1_seed} is also an evaluation seed: the refined "
            "schedule would be evaluated on the run it was derived from"
        )
    kind = kind_for(optimizer)
    overrides = dict(overrides or {})
    names = [f"{optimizer}+{s}" for s in compare] + [f"{optimizer}+refined"]
    first = f"{optimizer}+linear"
    for workload in workloads:  # every name and hyperparameter checked before anything runs
        for name in names[:-1] + [first]:
            make_algorithm(name, overrides, workload=workload.name)
    plan = RacePlan(
        workloads,
        names,
        seeds,
        device,
        label=label or f"refine {optimizer}",
        overrides={name: dict(overrides) for name in names},
        options=options,
    )
    options.check(device, workloads)
    for workload in workloads:
        spec = make_algorithm(first, overrides, workload=workload.name)
        log(
            f"pass 1: {workload.name} / {first} / seed {pass1_seed}, recording {KIND_NORM[kind].upper()} gradient norms"
        )
        pass1 = dataclasses.replace(options, grad_norm_kind=KIND_NORM[kind])
        result = run_trial(workload, spec, pass1_seed, device, pass1)
        reached = f"step {result.steps_to_target}" if result.reached else "missed"
        norms = result.grad_norms or []
        log(
            f"pass 1: {workload.name}: {result.metric_name} {result.final_metric:.4f}, target {reached}; "
            f"refined schedule derived from {len(norms)} norms"
        )
        plan.workload_overrides[(names[-1], workload.name)] = {"grad_norms": norms, "refine_kind": kind}
    return plan
