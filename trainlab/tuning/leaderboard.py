"""The leaderboard: every registered algorithm, judged by the held-out tuning protocol and untuned.

Two tuning experiments in one store (`docs/leaderboard/leaderboard.db` by default), each resumable:

- `leaderboard` (external tuning, as AlgoPerf's ruleset): per algorithm and default workload,
  studies of quasi-random trials from the algorithm's built-in search space; each study's best
  (by steps to target, which a busy machine cannot distort) re-run on held-out seeds and on the
  workload's variants. The MNIST-1D workloads get 3 studies x 5 trials; text_lm, whose trial costs
  50-100x more, 1 study x 2 trials, one held-out seed and no variant runs, so the whole board fits
  one working session on two CPU cores (the README gives the measured cost).
- `leaderboard-self` (AlgoPerf's self-tuning ruleset, here: no tuning at all): every algorithm at
  its registered workload-agnostic race defaults, on 3 seeds (1 on text_lm), scored the same way.
  A one-point search space makes each "study" a single trial, so selection and scoring cannot
  flatter it: the same-split protocol is exact here.

Both grow: a stored experiment accepts more algorithms (`TuningPlan.extended_by`), so adding one
runs only its studies and the board is rescored from every stored trial.
"""

from __future__ import annotations

from typing import Any

from trainlab.errors import UsageError
from trainlab.tuning.plan import TuningPlan

TUNED_NAME = "leaderboard"
SELF_TUNING_NAME = "leaderboard-self"
WORKLOADS = ("mnist1d_mlp", "mnist1d_cnn", "text_lm")
STUDIES, TRIALS = 3, 5
EVAL_SEEDS = [0, 1]
# text_lm trials take 100-300 s on one thread where an MNIST-1D trial takes 2-6 s
TUNED_PER_WORKLOAD = {"text_lm": {"studies": 1, "trials": 2, "variants": False, "eval_seeds": [0]}}
SELF_PER_WORKLOAD = {"text_lm": {"studies": 1}}


def tuned_plan(algorithms: list[str], spaces: dict[str, Any]) -> TuningPlan:
    return TuningPlan(
        name=TUNED_NAME,
        algorithms=list(algorithms),
        workloads=list(WORKLOADS),
        trials=TRIALS,
        studies=STUDIES,
        eval_seeds=list(EVAL_SEEDS),
        protocol="held-out",
        search_spaces=spaces,
        workload_options={w: {} for w in WORKLOADS},
        variants=True,
        workload_names={w: w for w in WORKLOADS},
        select_by="steps",
        per_workload={w: dict(b) for w, b in TUNED_PER_WORKLOAD.items()},
    )


def self_tuning_plan(algorithms: list[str], defaults: dict[str, dict[str, Any]]) -> TuningPlan:
    """`defaults`: algorithm -> its race defaults (the learning rate pins the one-point space)."""
    spaces = {a: {"lr": {"feasible_points": [float(defaults[a]["lr"])]}} for a in algorithms}
    return TuningPlan(
        name=SELF_TUNING_NAME,
        algorithms=list(algorithms),
        workloads=list(WORKLOADS),
        trials=1,
        studies=STUDIES,
        eval_seeds=[],
        protocol="same-split",
        search_spaces=spaces,
        workload_options={w: {} for w in WORKLOADS},
        variants=False,
        workload_names={w: w for w in WORKLOADS},
        select_by="steps",
        per_workload={w: dict(b) for w, b in SELF_PER_WORKLOAD.items()},
    )


def grown(plan: TuningPlan, stored: TuningPlan | None) -> TuningPlan:
    """`plan` with the stored experiment's algorithms kept (first, in their order) and their spaces
    as stored, so a run that names only new algorithms adds them to the board."""
    if stored is None:
        return plan
    algorithms = list(stored.algorithms) + [a for a in plan.algorithms if a not in stored.algorithms]
    spaces = {**plan.search_spaces, **stored.search_spaces}
    plan.algorithms, plan.search_spaces = algorithms, {a: spaces[a] for a in algorithms}
    return plan


def race_configs(storage, plan: TuningPlan) -> dict[str, Any]:
    """Per (algorithm, workload) whose held-out runs are all in: the configuration of the study
    whose runs reached the target in the fewest steps (median over seeds; ties to the lower study),
    as hyperparameters, for races to use (`trainlab.algorithms.registry.LEADERBOARD_PATH`)."""
    import math
    import statistics

    from trainlab.algorithms.registry import parse_name, valid_hparams
    from trainlab.tuning.outcomes import collect
    from trainlab.algorithms.search_space import to_hparams

    outcomes = collect(storage, plan)
    configs: dict[str, dict[str, Any]] = {}
    for algorithm in plan.algorithms:
        for workload in plan.workloads:
            name = plan.display(workload)
            if (algorithm, name) in outcomes.incomplete:
                continue
            studies = outcomes.costs["steps"][algorithm][workload]
            best = [b for b in outcomes.best if b["algorithm"] == algorithm and b["workload"] == name]
            if not best or len(best) != len(studies):
                continue
            medians = [statistics.median(seeds) if seeds else math.inf for seeds in studies]
            k = min(range(len(medians)), key=lambda i: (medians[i], i))
            chosen = next(b for b in best if b["study"] == k)
            hparams = to_hparams(chosen["config"], valid_hparams(*parse_name(algorithm)))
            configs.setdefault(algorithm, {})[name] = {
                "study": k,
                "draw": chosen["draw"],
                "hparams": hparams,
                "median_steps_to_target": medians[k] if math.isfinite(medians[k]) else None,
            }
    return {"experiment": plan.name, "selected_by": "median held-out steps to target over seeds", "configs": configs}


def stored_plan(storage, name: str) -> TuningPlan | None:
    """The plan of experiment `name` in `storage`, or None when it has not begun."""
    from trainlab.tuning.experiment import load_plan

    try:
        return load_plan(storage, name)
    except UsageError:
        return None


def leaderboard_plans(storage, algorithms: list[str]) -> tuple[TuningPlan, TuningPlan]:
    """The two plans for `algorithms`, grown from what the store holds, each checked."""
    from trainlab.algorithms.registry import parse_name, valid_hparams
    from trainlab.algorithms.registry import check_search_space
    from trainlab.algorithms.search_space import load_search_space

    spaces = {a: check_search_space(load_search_space, a, parse_name(a)[0]).to_json() for a in algorithms}
    defaults = {a: valid_hparams(*parse_name(a)) for a in algorithms}
    tuned = grown(tuned_plan(algorithms, spaces), stored_plan(storage, TUNED_NAME))
    self_ = grown(self_tuning_plan(algorithms, defaults), stored_plan(storage, SELF_TUNING_NAME))
    for plan in (tuned, self_):
        plan.check()
    return tuned, self_


def forget(storage, plan: TuningPlan, algorithms: list[str]) -> int:
    """Delete the tuning and evaluation studies of `algorithms` (stored in `plan`'s experiment) and
    return how many trials they held; the next run recreates and reruns them."""
    import optuna

    unknown = [a for a in algorithms if a not in plan.algorithms]
    if unknown:
        raise UsageError(
            f"--rerun: {', '.join(unknown)} not on the stored {plan.name!r} board "
            f"(stored: {', '.join(plan.algorithms)}); add it with --algorithms instead"
        )
    doomed = {plan.eval_study_name(a, w) for a in algorithms for w in plan.workloads}
    doomed |= {
        plan.tune_study_name(a, w, k) for a in algorithms for w in plan.workloads for k in range(plan.studies_for(w))
    }
    deleted = 0
    for summary in optuna.get_all_study_summaries(storage):
        if summary.study_name in doomed:
            deleted += summary.n_trials
            optuna.delete_study(study_name=summary.study_name, storage=storage)
    return deleted


def check_workloads(algorithms: list[str]) -> None:
    """Data present, and no matrix method that would act as AdamW on a workload."""
    import torch

    from trainlab.algorithms import check_applies, make_algorithm
    from trainlab.workloads import create_workload

    for name in WORKLOADS:
        workload = create_workload(name)
        workload.splits()
        with torch.random.fork_rng(devices=[]):
            model = workload.init_model()
        for algorithm in algorithms:
            check_applies(make_algorithm(algorithm), model, name, workload.step_budget)
