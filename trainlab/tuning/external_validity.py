"""External validity: does trainlab rank the published AlgoPerf v0.5 submissions as AlgoPerf did?

The experiment (`trainlab external-validity`; issue 26): every published v0.5 PyTorch submission
that runs on this CPU, unmodified, tuned under AlgoPerf's external-tuning ruleset with *its own*
published search space, on trainlab's default MNIST-1D workloads, then scored with trainlab's
benchmark score and compared with the published AlgoPerf v0.5 scores.

- Search: every submission ships a list of exactly 5 points (`tuning_search_space.json`), so each
  gets the same budget: one study of those 5 points, in the published order (a list-form space is
  never sampled). AlgoPerf v0.5 ran 5 studies of 5 trials; the points are fixed, so further studies
  would differ only in their training seeds, and the CPU time here does not allow them.
- Selection: the study's best point by steps to the validation target (a busy machine cannot
  distort steps; time would), on the tuning seeds 1,000,000 + i.
- Scoring: the best point re-run on the held-out seeds 100-104 (paired: the same seeds for every
  submission), the target checked on the test split; per workload the median steps over those runs,
  then performance ratios and the benchmark score to r_max = 4 (`trainlab.scoring.profiles`), as the
  leaderboard scores. LAWA's inner loop draws several batches per call: each batch counts as a step.
- Workloads: mnist1d_mlp, then mnist1d_cnn (the store runs them in that order, so a stopped run has
  whole workloads); text_lm is left out: its trials take 20-50x an MNIST-1D trial on this CPU.

The store is a tuning experiment like any other (`trainlab score --name external-validity` reads
it); the comparison statistics live in `trainlab.scoring.rank_agreement`.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from trainlab.errors import UsageError
from trainlab.tuning.plan import TuningPlan

NAME = "external-validity"
WORKLOADS = ("mnist1d_mlp", "mnist1d_cnn")
TRIALS, STUDIES = 5, 1
EVAL_SEEDS = [100, 101, 102, 103, 104]
DEFAULT_SUBMISSIONS = "../shared/algoperf_v05"  # relative to the repository root, as tests find it

# AlgoPerf v0.5 external-tuning benchmark scores (8 workloads on 8xV100), as published in the AlgoPerf
# results paper and leaderboard, copied from algoperf_v05/README.md: folder -> (submission, score)
PUBLISHED: dict[str, tuple[str, float]] = {
    "shampoo_submission": ("Distributed Shampoo", 0.7784),
    "schedule_free_adamw": ("Schedule-Free AdamW", 0.7077),
    "cyclic_lr": ("Cyclic LR", 0.6301),
    "baseline_nadamw_pytorch": ("NAdamW baseline", 0.5707),
    "lawa_queue": ("LAWA Queue", 0.3699),
    "lawa_ema": ("LAWA EMA", 0.3384),
    "schedule_free_prodigy": ("Schedule-Free Prodigy", 0.0),
}

# What the published files themselves demand of the hardware, found by running them unmodified on
# this CPU (the innermost frame is the submission's own code, past every import and trainlab's
# adapter); `trainlab race --nproc 8 --strategy ddp` gets Shampoo's distributor initialised on gloo.
NOT_RUNNABLE: dict[str, str] = {
    "schedule_free_prodigy": "its optimizer's step allocates on device='cuda' (submission.py:60)",
    "shampoo_submission": "its DDP distributor allocates on cuda:RANK, 8 GPUs, even under an 8-process gloo launch",
}
# where each fails, innermost frame of its own code first (the report's "Not runnable here" section)
NOT_RUNNABLE_DETAIL: dict[str, str] = {
    "schedule_free_prodigy": "`trainlab race` (one process): `step` at submission.py:60, "
    "`d_numerator_acum = torch.tensor(0.0, device='cuda')`, raises AssertionError: Torch not compiled with "
    "CUDA enabled. It imports, builds its optimizer and fails at its first update.",
    "shampoo_submission": "in one process its DDPDistributor raises 'DDPDistributor needs torch.distributed "
    "to be initialized!' (num_trainers_per_group=8 in submission.py). Under `trainlab race --nproc 8 "
    "--strategy ddp` (torch.distributed.run, gloo) the distributor initialises, and init_optimizer_state "
    "fails on every rank in Shampoo's own code: a rank that owns parameter blocks in "
    "optimizers/distributed_shampoo/utils/shampoo_ddp_distributor.py:513, `_allocate_zeros_distributed_tensor`, "
    "where `torch.zeros(shape, dtype=dtype, device=torch.device('cuda', current_rank))` raises AssertionError: "
    "Torch not compiled with CUDA enabled; on mnist1d_mlp (6 parameter tensors over 8 ranks) ranks 6 and 7 own "
    "none and fail in optimizers/distributed_shampoo/distributed_shampoo.py:640, `_instantiate_device`, with "
    "IndexError: tuple index out of range. The device is hard-coded, one GPU per rank, so it needs 8 GPUs "
    "(and, as published, at least 8 parameter blocks); trainlab's adapter and launcher are not at fault.",
}


def submission_name(folder: str, root: str = DEFAULT_SUBMISSIONS) -> str:
    return f"algoperf:{root}/{folder}/submission.py"


def folder_of(algorithm: str) -> str:
    """`algoperf:ROOT/FOLDER/submission.py` -> FOLDER."""
    return Path(algorithm.split(":", 1)[1]).parent.name


def runnable(root: str = DEFAULT_SUBMISSIONS) -> list[str]:
    """The submissions trained here, in the published table's order, each checked present."""
    folders = [f for f in PUBLISHED if f not in NOT_RUNNABLE]
    for folder in folders:
        if not (Path(root) / folder / "submission.py").is_file():
            raise UsageError(
                f"--submissions {root}: no {folder}/submission.py there (the published v0.5 folder, "
                "e.g. ../shared/algoperf_v05)"
            )
    return folders


def experiment_name(workloads: list[str], factor: float = 1.0) -> str:
    """The headline experiment is NAME; a horizon check (step budgets times `factor`) or a subset of
    the workloads is an experiment of its own beside it in the store."""
    if factor <= 0 or not math.isfinite(factor):
        raise UsageError(f"--step-budget-factor must be a positive number, got {factor}")
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown or not workloads:
        raise UsageError(f"--workloads: {','.join(unknown) or '(none)'} not among {','.join(WORKLOADS)}")
    name = NAME if factor == 1 else f"{NAME}-x{factor:g}"
    return name if list(workloads) == list(WORKLOADS) else f"{name}-{'-'.join(workloads)}"


def experiment_plan(
    root: str = DEFAULT_SUBMISSIONS,
    device: torch.device | None = None,
    workloads: list[str] | None = None,
    factor: float = 1.0,
) -> TuningPlan:
    """The experiment's plan, checked (search spaces beside each submission, data present)."""
    from trainlab.benchmark.trial_options import TrialOptions
    from trainlab.tuning.build import build_plan
    from trainlab.workloads import create_workload

    workloads = list(workloads or WORKLOADS)
    name = experiment_name(workloads, factor)
    options = {w: {"step_budget": round(create_workload(w).step_budget * factor)} for w in workloads}
    algorithms = [submission_name(f, root) for f in runnable(root)]
    return build_plan(
        name,
        algorithms,
        workloads,
        options if factor != 1 else {},
        search_space_files={},
        trials=TRIALS,
        studies=STUDIES,
        eval_seeds=list(EVAL_SEEDS),
        protocol="held-out",
        select_by="steps",
        options=TrialOptions(stop_at_target=True),
        device=device,
    )
