"""One rank of a data-parallel trial (`python -m trainlab.benchmark.data_parallel_rank JOB`, run by
`torch.distributed.run`): the workload, the algorithm and the whole `TrialOptions` rebuilt from the
job file that `trainlab.benchmark.data_parallel.run_parallel_trial` wrote, then the ordinary runner
with a `DataParallel`. Its own module so that the launcher and the runner import one way."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch

from trainlab.algorithms import AlgorithmSpec
from trainlab.benchmark.data_parallel import DataParallel
from trainlab.benchmark.runner import run_trial
from trainlab.benchmark.trial_options import TrialOptions
from trainlab.store.results import TrialResult
from trainlab.workloads import create_workload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one rank of a trainlab data-parallel trial")
    parser.add_argument("job", help="the job file written by run_parallel_trial")
    job = json.loads(Path(parser.parse_args(argv).job).read_text())
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if job["device"] == "cuda" else torch.device(job["device"])
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.set_num_threads(int(job["threads"]))
    torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        workload = create_workload(job["workload"], **job["workload_options"])
        raw = dict(job["spec"])
        raw["hparams"] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw["hparams"].items()}
        options = TrialOptions.from_dict(job["options"])
        parallel = DataParallel(options.strategy, rank, world, device)
        result = run_trial(workload, AlgorithmSpec(**raw), int(job["seed"]), device, options, distributed=parallel)
        # each rank's own optimizer state: with owner-rank matrix updates they differ, and the
        # memory a user must provision is the largest rank's, which the trial then records
        per_rank: list[Any] = [None] * world
        torch.distributed.all_gather_object(per_rank, result.state_bytes)
        if rank == 0:
            result.state_bytes = max(per_rank)
            result.hparams = {
                **result.hparams,
                "nproc": world,
                "strategy": options.strategy,
                "state_bytes_per_rank": per_rank,
            }
            Path(job["result"]).write_text(json.dumps(_dump(result), default=str))
    finally:
        torch.distributed.destroy_process_group()
    return 0


def _dump(result: TrialResult) -> dict[str, Any]:
    data = dataclasses.asdict(result)

    def finite(v: Any) -> Any:
        return None if isinstance(v, float) and not math.isfinite(v) else v

    data = {k: finite(v) for k, v in data.items()}
    data["evals"] = [{k: finite(v) for k, v in e.items()} for e in data["evals"]]
    return data


if __name__ == "__main__":
    code = main()
    # Past this point the trial is over and its result written. Leave without the interpreter's
    # teardown: under load, gloo's threads still joinable at static destruction abort the process
    # ("terminate called without an active exception", SIGABRT), which the launcher reports as a
    # failed trial although every collective and the result are complete.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
