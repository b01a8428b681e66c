"""What a tuning experiment is, and how it is laid out as Optuna studies in the store.

An experiment (`--name`) tunes each algorithm on each workload with `studies` independent studies
of `trials` quasi-random configurations each (AlgoPerf's external tuning), then, under the
`held-out` protocol, re-runs each study's best configuration on evaluation seeds that tuning never
saw, selecting by the workload's held-out (test) split instead of the validation split used for
tuning. Under `same-split` the best tuning trial's own result is the score (common practice,
optimistic: the maximum of noisy draws on the data it was chosen on).

Studies, all in one storage, named so that a listing reads as a table of contents:
- `trainlab:NAME`: the manifest; its user attributes hold the plan (JSON) and the `finished` flag.
- `trainlab:NAME:tune:ALGORITHM:WORKLOAD:K`: study K's tuning trials (queued draws of the QMC
  sequence seeded by `seed + K`).
- `trainlab:NAME:eval:ALGORITHM:WORKLOAD`: the evaluation runs of every study's best configuration,
  and its robustness runs on the workload's variants.

Seeds: tuning trial i of study K trains with seed `TUNING_SEED_BASE + 1000 * K + i`; evaluation seeds
must lie below `TUNING_SEED_BASE`, so the two sets never meet (checked here).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from trainlab.benchmark.trial_options import TrialOptions
from trainlab.errors import UsageError

TUNING_SEED_BASE = 1_000_000
MAX_TRIALS_PER_STUDY = 1000
PROTOCOLS = ("held-out", "same-split")
PREFIX = "trainlab"


def tuning_seed(study: int, draw: int) -> int:
    return TUNING_SEED_BASE + 1000 * study + draw


@dataclass
class TuningPlan:
    name: str
    algorithms: list[str]
    workloads: list[str]
    trials: int
    studies: int
    eval_seeds: list[int]
    protocol: str = "held-out"
    seed: int = 0  # QMC seed of study 0 (study K uses seed + K)
    search_spaces: dict[str, Any] = field(default_factory=dict)  # algorithm -> JSON space (dict or list)
    workload_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    stop_at_target: bool = True
    variants: bool = False
    workload_names: dict[str, str] = field(default_factory=dict)  # spec (name, file, module) -> name
    select_by: str = "time"  # a study's best trial: least time (AlgoPerf) or steps to target
    # workload spec -> {"studies": S, "trials": T, "variants": bool, "eval_seeds": [...]}: a costly
    # workload may get fewer studies, trials or evaluation seeds, or no variant runs (the
    # leaderboard's text_lm)
    per_workload: dict[str, dict[str, Any]] = field(default_factory=dict)
    # optimizer name -> where its code came from, for optimizers from a file or a package
    # (`trainlab.algorithms.external.origin`): every worker loads and checks the same code
    origins: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the memory savers and precision of every trial (`TrialOptions.to_dict(SAVERS)`; {} = none, fp32)
    trial: dict[str, Any] = field(default_factory=dict)
    # stop tuning trials whose curve prediction excludes the target (`trainlab.tuning.pruning`):
    # {} = never, else {"level": prediction level, "threshold": convergence threshold}
    prune: dict[str, float] = field(default_factory=dict)
    # data-parallel trials (`trainlab.benchmark.data_parallel`): processes per trial, ddp|fsdp2, and
    # the seconds after which a trial still running (a rank that hangs) is killed and failed
    nproc: int = 1
    strategy: str = "ddp"
    trial_timeout: float = 3600.0
    # after a study's draws, bracket its best learning rate (`trainlab.tuning.search.SearchRule`:
    # factor, max_extensions, refine); {} = the draws alone
    search: dict[str, Any] = field(default_factory=dict)
    # each algorithm draws its own quasi-random sequence (seeded by its name), so two algorithms
    # with spaces of the same shape do not try the same points (protocol v2); False: all share one
    independent_draws: bool = False

    def draw_seed(self, algorithm: str, study: int) -> int:
        """The quasi-random sequence's seed for `algorithm`'s study `study`."""
        if not self.independent_draws:
            return self.seed + study
        import zlib

        return (self.seed + study + 1009 * (zlib.crc32(algorithm.encode()) % 1_000_003)) % 2**31

    def register_optimizers(self) -> None:
        """Load the experiment's optimizers from files or packages, checking their stored origin."""
        from trainlab.algorithms.external import check_origin, ensure_registered

        for name, stored in self.origins.items():
            if stored.get("submission"):  # an AlgoPerf submission file: the same code, or one line
                check_origin(name, stored)
            else:
                ensure_registered(name, stored)

    def studies_for(self, workload: str) -> int:
        return int(self.per_workload.get(workload, {}).get("studies", self.studies))

    def trials_for(self, workload: str) -> int:
        return int(self.per_workload.get(workload, {}).get("trials", self.trials))

    def eval_seeds_for(self, workload: str) -> list[int]:
        return list(self.per_workload.get(workload, {}).get("eval_seeds", self.eval_seeds))

    def variants_for(self, workload: str) -> bool:
        return self.variants and bool(self.per_workload.get(workload, {}).get("variants", True))

    def tuning_trials(self) -> int:
        """How many tuning trials the plan runs in all."""
        return len(self.algorithms) * sum(self.studies_for(w) * self.trials_for(w) for w in self.workloads)

    def display(self, spec: str) -> str:
        return self.workload_names.get(spec, spec)

    def options(self, eval_split: str = "validation") -> TrialOptions:
        """The `TrialOptions` of a trial scored on `eval_split`, from the plan's fields (their JSON
        is unchanged, so stored plans load as they were written)."""
        run = {"stop_at_target": self.stop_at_target, "eval_split": eval_split}
        parallel = {"nproc": self.nproc, "strategy": self.strategy, "trial_timeout": self.trial_timeout}
        return TrialOptions.from_dict({**self.trial, **run, **parallel})

    def describe_parallel(self) -> str:
        return f", each trial on {self.nproc} processes ({self.strategy})" if self.nproc > 1 else ""

    def check(self) -> None:
        self.options()  # a stored plan's options are checked as the CLI's are
        if self.nproc > 1 and self.prune:
            raise UsageError("--prune-by-curve watches a trial in its own process: use it without --nproc")
        if self.search:
            from trainlab.tuning.search import SearchRule

            rule = SearchRule.from_dict(self.search)
            if rule is None or rule.factor <= 1 or rule.max_extensions < 0:
                raise UsageError(f"search rule needs factor > 1 and max_extensions >= 0, got {self.search}")
        if not self.name or ":" in self.name:
            raise UsageError(f"--name must be non-empty and contain no ':', got {self.name!r}")
        if not self.algorithms or not self.workloads:
            raise UsageError("tuning needs at least one algorithm and one workload")
        for what, values in (("algorithm", self.algorithms), ("workload", self.workloads)):
            if len(set(values)) != len(values):
                raise UsageError(f"a {what} is listed twice in {','.join(values)}")
        if not 1 <= self.trials <= MAX_TRIALS_PER_STUDY:
            raise UsageError(f"--trials must be between 1 and {MAX_TRIALS_PER_STUDY}, got {self.trials}")
        if not 1 <= self.studies <= 100:
            raise UsageError(f"--studies must be between 1 and 100, got {self.studies}")
        if self.protocol not in PROTOCOLS:
            raise UsageError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if self.protocol == "held-out" and not self.eval_seeds:
            raise UsageError("the held-out protocol needs at least one evaluation seed (--eval-seeds)")
        if len(set(self.eval_seeds)) != len(self.eval_seeds):
            raise UsageError(f"--eval-seeds has duplicates: {self.eval_seeds}")
        for s in self.eval_seeds:
            if not 0 <= s < TUNING_SEED_BASE:
                raise UsageError(
                    f"evaluation seed {s} is outside [0, {TUNING_SEED_BASE}): seeds from "
                    f"{TUNING_SEED_BASE} on are reserved for tuning trials"
                )
        if self.select_by not in ("time", "steps"):
            raise UsageError(f"--select-by must be time or steps, got {self.select_by!r}")
        if not 0 <= self.seed < 2**31:
            raise UsageError(f"--seed must be in [0, 2^31), got {self.seed}")
        for spec, budget in self.per_workload.items():
            if spec not in self.workloads:
                raise UsageError(
                    f"a per-workload budget names {spec!r}, which is not tuned here ({', '.join(self.workloads)})"
                )
            unknown = set(budget) - {"studies", "trials", "variants", "eval_seeds"}
            if unknown:
                raise UsageError(
                    f"per-workload budget of {spec}: unknown key {sorted(unknown)[0]!r}; "
                    "valid: studies, trials, variants, eval_seeds"
                )
            seeds = self.eval_seeds_for(spec)
            if not set(seeds) <= set(self.eval_seeds) or (self.protocol == "held-out" and not seeds):
                raise UsageError(
                    f"per-workload budget of {spec}: eval_seeds must be a non-empty subset "
                    f"of the evaluation seeds {self.eval_seeds}, got {seeds}"
                )
            if not 1 <= self.studies_for(spec) <= min(100, self.studies):
                raise UsageError(
                    f"per-workload budget of {spec}: studies must be between 1 and --studies "
                    f"({self.studies}), got {self.studies_for(spec)}"
                )
            if not 1 <= self.trials_for(spec) <= self.trials:
                raise UsageError(
                    f"per-workload budget of {spec}: trials must be between 1 and --trials "
                    f"({self.trials}), got {self.trials_for(spec)}"
                )

    def tuning_seeds(self) -> set[int]:
        return {tuning_seed(k, i) for k in range(self.studies) for i in range(self.trials)}

    def extended_by(self, other: TuningPlan) -> bool:
        """Whether this plan is `other` (a stored one) with algorithms added, and nothing else
        changed: the leaderboard grows that way, keeping every stored trial."""
        mine, theirs = asdict(self), asdict(other)
        same = all(mine[k] == theirs[k] for k in mine if k not in ("algorithms", "search_spaces", "variants"))
        kept = all(
            a in self.algorithms and self.search_spaces.get(a) == other.search_spaces.get(a) for a in other.algorithms
        )
        return same and kept and set(self.algorithms) > set(other.algorithms)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TuningPlan:
        return cls(**json.loads(text))

    def differences(self, other: TuningPlan) -> list[str]:
        mine, theirs = asdict(self), asdict(other)
        return [k for k in mine if mine[k] != theirs[k]]

    # ---- study names ----
    def manifest_name(self) -> str:
        return f"{PREFIX}:{self.name}"

    def tune_study_name(self, algorithm: str, workload: str, study: int) -> str:
        return f"{PREFIX}:{self.name}:tune:{algorithm}:{workload}:{study}"

    def eval_study_name(self, algorithm: str, workload: str) -> str:
        return f"{PREFIX}:{self.name}:eval:{algorithm}:{workload}"

    def study_names(self) -> list[str]:
        """Workload by workload, tuning before evaluation: the order workers claim trials in, so a
        stopped experiment has whole workloads finished rather than every workload half done."""
        return [name for w in self.workloads for name in self.study_names_of(w)]

    def study_names_of(self, workload: str) -> list[str]:
        """One workload's studies: tuning, then evaluation."""
        names = [
            self.tune_study_name(a, workload, k) for a in self.algorithms for k in range(self.studies_for(workload))
        ]
        return names + [self.eval_study_name(a, workload) for a in self.algorithms]
