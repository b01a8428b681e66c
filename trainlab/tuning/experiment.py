"""Set up and advance an experiment's studies: queue the draws, pick each study's best, queue its
evaluation runs. Only the coordinator (`trainlab tune`) calls these; workers only run queued trials.

Every queued trial carries its identity in its user attributes (`kind`, `algorithm`, `workload`,
`study`, `draw` or `seed`, `config`), and queueing checks that identity first, so running the set-up
again after a crash queues exactly what is missing, never a duplicate. A queued trial is one row
written in one transaction (Optuna's `enqueue_trial`), so a crash cannot leave half of one.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from trainlab.algorithms import AlgorithmSpec, make_algorithm
from trainlab.algorithms.registry import parse_name, valid_hparams
from trainlab.algorithms.search_space import SearchSpace, parse_search_space, to_hparams
from trainlab.algorithms.submission import is_submission
from trainlab.errors import UsageError
from trainlab.tuning import search
from trainlab.tuning.plan import TuningPlan, tuning_seed

UNFINISHED = (TrialState.WAITING, TrialState.RUNNING)


def load(storage, name: str) -> optuna.Study:
    """An existing study; workers never sample through it, so the cheapest sampler will do."""
    return optuna.load_study(storage=storage, study_name=name, sampler=optuna.samplers.RandomSampler())


def draw_configs(space: SearchSpace, seed: int, count: int) -> list[dict[str, Any]]:
    """The first `count` points of the scrambled Halton sequence seeded by `seed`, from Optuna's
    `QMCSampler`, as search-space values (constants included). Drawn against a private in-memory
    study, so the sequence depends only on (space, seed), not on what the shared study holds, and
    the first point is quasi-random too (an Optuna study would draw its first trial at random)."""
    if space.points is not None:  # list form: every point once per pass, in this study's own order
        order = torch.randperm(len(space.points), generator=torch.Generator().manual_seed(seed)).tolist()
        return [dict(space.points[order[i % len(order)]]) for i in range(count)]
    # by name: Optuna gives the Halton coordinates in the order of the dict, and a stored plan's
    # space comes back from JSON sorted, so an experiment must draw the same resumed as created
    distributions = dict(sorted(space.distributions().items()))
    configs = []
    if distributions:
        with warnings.catch_warnings():  # "experimental" since Optuna 3.0; our tests pin its output
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.QMCSampler(qmc_type="halton", scramble=True, seed=seed)
        scratch = optuna.create_study(sampler=sampler)
        template = optuna.trial.create_trial(state=TrialState.WAITING)
        points = [sampler.sample_relative(scratch, template, distributions) for _ in range(count)]
    else:
        points = [{} for _ in range(count)]
    for point in points:
        configs.append({**space.constants(), **{k: _plain(v) for k, v in point.items()}})
    return configs


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def plan_space(plan: TuningPlan, algorithm: str) -> SearchSpace:
    return parse_search_space(plan.search_spaces[algorithm], f"of {algorithm} (stored)")


def create_or_resume(storage, plan: TuningPlan) -> tuple[TuningPlan, bool]:
    """Create the experiment's studies, or check that a stored experiment of the same name has the
    same plan. Returns (plan, resumed)."""
    manifest = optuna.create_study(storage=storage, study_name=plan.manifest_name(), load_if_exists=True)
    stored = manifest.user_attrs.get("plan")
    resumed = stored is not None
    if stored is not None:
        previous = TuningPlan.from_json(stored)
        # Asking for the robustness runs on variants later, or adding algorithms, only adds runs:
        # allowed on resume (the stored trials of the others are kept as they are).
        differing = [d for d in plan.differences(previous) if d != "variants"]
        if plan.extended_by(previous):
            plan.variants = plan.variants or previous.variants
            manifest.set_user_attr("plan", plan.to_json())
            differing = []
        if differing:
            raise UsageError(
                f"experiment {plan.name!r} already exists in this store with a different "
                f"{differing[0]}: rerun it with the same options to resume, or choose "
                "another --name"
            )
        if plan.variants and not previous.variants:
            manifest.set_user_attr("plan", plan.to_json())
        plan.variants = plan.variants or previous.variants
    else:
        manifest.set_user_attr("plan", plan.to_json())
    for name in plan.study_names():
        optuna.create_study(storage=storage, study_name=name, load_if_exists=True)
    return plan, resumed


def load_plan(storage, name: str) -> TuningPlan:
    summaries = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    manifest = summaries.get(f"trainlab:{name}")
    if manifest is None or "plan" not in manifest.user_attrs:
        known = sorted(n.split(":", 2)[1] for n in summaries if n.count(":") == 1 and n.startswith("trainlab:"))
        raise UsageError(
            f"no tuning experiment named {name!r} in this store"
            + (f"; stored: {', '.join(known)}" if known else "; run `trainlab tune` first")
        )
    return TuningPlan.from_json(manifest.user_attrs["plan"])


def list_experiments(storage) -> list[str]:
    return sorted(
        s.study_name.split(":", 1)[1]
        for s in optuna.get_all_study_summaries(storage)
        if s.study_name.startswith("trainlab:") and s.study_name.count(":") == 1
    )


def _identity(trial: FrozenTrial, keys: Iterable[str]) -> tuple:
    return tuple(json.dumps(trial.user_attrs.get(k), sort_keys=True) for k in keys)


def _enqueue_missing(
    study: optuna.Study, wanted: list[dict[str, Any]], keys: tuple[str, ...], space: SearchSpace
) -> int:
    have = {_identity(t, keys) for t in study.get_trials(deepcopy=False) if "kind" in t.user_attrs}
    added = 0
    for attrs in wanted:
        key = tuple(json.dumps(attrs.get(k), sort_keys=True) for k in keys)
        if key in have:
            continue
        params = {k: v for k, v in attrs["config"].items() if k in space.distributions()}
        study.enqueue_trial(params, user_attrs=attrs)
        have.add(key)
        added += 1
    return added


def tuning_attrs(algorithm: str, workload: str, study: int, draw: int, config: dict[str, Any]) -> dict[str, Any]:
    """A queued tuning trial's identity and configuration (its user attributes)."""
    return {
        "kind": "tune",
        "algorithm": algorithm,
        "workload": workload,
        "base_workload": workload,
        "study": study,
        "draw": draw,
        "seed": tuning_seed(study, draw),
        "split": "validation",
        "config": config,
    }


def enqueue_tuning(storage, plan: TuningPlan) -> int:
    """Queue every tuning draw not yet in its study; returns how many were queued."""
    added = 0
    for algorithm in plan.algorithms:
        space = plan_space(plan, algorithm)
        for k in range(plan.studies):
            configs = draw_configs(space, plan.draw_seed(algorithm, k), plan.trials)
            for workload in plan.workloads:
                if k >= plan.studies_for(workload):
                    continue
                study = load(storage, plan.tune_study_name(algorithm, workload, k))
                wanted = [
                    tuning_attrs(algorithm, workload, k, i, config)
                    for i, config in enumerate(configs[: plan.trials_for(workload)])
                ]
                added += _enqueue_missing(study, wanted, ("kind", "study", "draw"), space)
    return added


def spec_of(attrs: dict[str, Any]) -> AlgorithmSpec:
    """The algorithm a queued trial trains: its stored configuration as the algorithm's
    hyperparameters (an AlgoPerf submission's point is its own)."""
    if is_submission(attrs["algorithm"]):
        return make_algorithm(attrs["algorithm"], dict(attrs["config"]))
    optimizer_name, schedule = parse_name(attrs["algorithm"])
    return make_algorithm(attrs["algorithm"], to_hparams(attrs["config"], valid_hparams(optimizer_name, schedule)))


def result_of(trial: FrozenTrial) -> dict[str, Any]:
    return trial.user_attrs.get("result") or {}


def cost_of(trial: FrozenTrial | None, by: str = "time") -> float:
    """Training seconds (`time`) or steps (`steps`) to the target; +inf for a miss, a divergence, a
    failure or a trial that has not finished."""
    if trial is None or trial.state != TrialState.COMPLETE:
        return math.inf
    r = result_of(trial)
    if not r.get("reached"):
        return math.inf
    value = r.get("time_to_target") if by == "time" else r.get("steps_to_target")
    return float(value) if value is not None else math.inf


def best_trial(trials: list[FrozenTrial], by: str = "time") -> FrozenTrial | None:
    """The completed trial with the least cost to the target (`by` time, as AlgoPerf, or steps,
    which is reproducible on a noisy machine); if none reached it, the one with the best validation
    metric (so its evaluation runs show how far off it is); ties go to the earlier draw."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and "kind" in t.user_attrs]
    if not done:
        return None
    reached = [t for t in done if math.isfinite(cost_of(t, by))]
    if reached:
        return min(reached, key=lambda t: (cost_of(t, by), t.user_attrs.get("draw", 0)))

    def badness(t: FrozenTrial) -> tuple:
        r = result_of(t)
        metric = r.get("best_metric")
        if metric is None or not math.isfinite(metric):
            return (1, 0.0, t.user_attrs.get("draw", 0))
        return (0, -metric if r.get("higher_is_better") else metric, t.user_attrs.get("draw", 0))

    return min(done, key=badness)


def within_budget(trials: list[FrozenTrial], plan: TuningPlan, workload: str) -> list[FrozenTrial]:
    """The trials of the plan's draws and of its bracketing search (`trainlab.tuning.search`): a
    quasi-random draw past `trials_for(workload)` (queued before the plan's budget was lowered)
    never counts, so every algorithm starts from the same number of draws."""
    return [
        t
        for t in trials
        if t.user_attrs.get("draw", 0) < plan.trials_for(workload) or t.user_attrs.get("phase") in search.PHASES
    ]


def search_points(trials: list[FrozenTrial]) -> list[search.Point]:
    """A study's finished trials as the search sees them: one per draw (a retried draw's completed
    copy), only those whose configuration has a learning rate."""
    per_draw: dict[int, FrozenTrial] = {}
    for t in trials:
        if t.state in UNFINISHED or "kind" not in t.user_attrs or search.LR not in t.user_attrs["config"]:
            continue
        d = t.user_attrs["draw"]
        if d not in per_draw or t.state == TrialState.COMPLETE:
            per_draw[d] = t
    points = []
    for d, t in sorted(per_draw.items()):
        r = result_of(t) if t.state == TrialState.COMPLETE else {}
        rank = search.rank_of(
            bool(r.get("reached")),
            cost_of(t, "steps"),
            r.get("best_metric"),
            r.get("target"),
            bool(r.get("higher_is_better")),
        )
        points.append(
            search.Point(
                d, float(t.user_attrs["config"][search.LR]), rank, t.user_attrs["config"], t.user_attrs.get("phase")
            )
        )
    return points


def study_search(
    plan: TuningPlan, trials: list[FrozenTrial], workload: str, algorithm: str
) -> list[tuple[str, dict[str, Any]]] | None:
    """The bracketing trials a study needs next; None while its queued trials are still running or
    its draws are not all queued, [] once it is settled (or the plan searches no further). An
    AlgoPerf submission is never searched: its published points are its whole space (AlgoPerf's
    external-tuning rule), so moving its learning rate off them would not be the submission."""
    if any(t.state in UNFINISHED for t in trials):
        return None
    draws = {t.user_attrs.get("draw") for t in trials if "kind" in t.user_attrs}
    if len(draws) < plan.trials_for(workload):
        return None
    rule = search.SearchRule.from_dict(plan.search)
    if rule is None or is_submission(algorithm):
        return []
    return search.next_trials(search_points(trials), rule)


def tuning_finished(storage, plan: TuningPlan, algorithm: str, workload: str) -> bool:
    for k in range(plan.studies_for(workload)):
        study = load(storage, plan.tune_study_name(algorithm, workload, k))
        if (
            study_search(plan, within_budget(study.get_trials(deepcopy=False), plan, workload), workload, algorithm)
            != []
        ):
            return False
    return True


def enqueue_search(storage, plan: TuningPlan, settled: set[tuple[str, str, int]] | None = None) -> int:
    """Queue the next bracketing trials of every study whose queued trials have all finished;
    returns how many were queued. `settled` (the caller's, kept across calls) skips studies whose
    search has ended."""
    if not plan.search:
        return 0
    settled = set() if settled is None else settled
    added = 0
    for algorithm in plan.algorithms:
        space = plan_space(plan, algorithm)
        for workload in plan.workloads:
            for k in range(plan.studies_for(workload)):
                if (algorithm, workload, k) in settled:
                    continue
                study = load(storage, plan.tune_study_name(algorithm, workload, k))
                trials = within_budget(study.get_trials(deepcopy=False), plan, workload)
                proposals = study_search(plan, trials, workload, algorithm)
                if proposals is None:
                    continue
                if not proposals:
                    settled.add((algorithm, workload, k))
                    continue
                first = 1 + max(t.user_attrs.get("draw", -1) for t in trials if "kind" in t.user_attrs)
                wanted = [
                    tuning_attrs(algorithm, workload, k, first + i, config) | {"phase": phase}
                    for i, (phase, config) in enumerate(proposals)
                ]
                added += _enqueue_missing(study, wanted, ("kind", "study", "draw"), space)
    return added


def enqueue_evaluation(storage, plan: TuningPlan, variants_of=None, done: set[tuple[str, str]] | None = None) -> int:
    """For each (algorithm, workload) whose tuning is finished, queue its evaluation runs (held-out
    protocol) and robustness runs on variants (if the plan asks); returns how many were queued.
    `done` (the caller's, kept across calls) collects the pairs already queued: a finished tuning
    stays finished, so they need no second look at the store."""
    added = 0
    done = set() if done is None else done
    for algorithm in plan.algorithms:
        space = plan_space(plan, algorithm)
        for workload in plan.workloads:
            if (algorithm, workload) in done or not tuning_finished(storage, plan, algorithm, workload):
                continue
            done.add((algorithm, workload))
            wanted = []
            for k in range(plan.studies_for(workload)):
                study = load(storage, plan.tune_study_name(algorithm, workload, k))
                best = best_trial(within_budget(study.get_trials(deepcopy=False), plan, workload), plan.select_by)
                if best is None:
                    continue
                common = {
                    "algorithm": algorithm,
                    "base_workload": workload,
                    "study": k,
                    "draw": best.user_attrs["draw"],
                    "config": best.user_attrs["config"],
                }
                split = "test" if plan.protocol == "held-out" else "validation"
                if plan.protocol == "held-out":
                    wanted += [
                        {**common, "kind": "eval", "workload": workload, "seed": s, "split": split}
                        for s in plan.eval_seeds_for(workload)
                    ]
                if plan.variants_for(workload) and variants_of is not None:
                    seed = plan.eval_seeds_for(workload)[0] if plan.eval_seeds_for(workload) else 0
                    wanted += [
                        {**common, "kind": "variant", "workload": v, "seed": seed, "split": split}
                        for v in variants_of(workload)
                    ]
            if wanted:
                study = load(storage, plan.eval_study_name(algorithm, workload))
                added += _enqueue_missing(study, wanted, ("kind", "study", "workload", "seed"), space)
    return added


def experiment_trials(storage, plan: TuningPlan) -> list[FrozenTrial]:
    out = []
    for name in plan.study_names():
        out += load(storage, name).get_trials(deepcopy=False)
    return out


def counts(storage, plan: TuningPlan) -> dict[str, int]:
    trials = [t for t in experiment_trials(storage, plan) if "kind" in t.user_attrs]
    return {
        state: sum(t.state.name.lower() == state for t in trials)
        for state in ("waiting", "running", "complete", "fail")
    }
