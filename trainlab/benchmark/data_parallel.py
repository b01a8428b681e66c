"""Data-parallel trials (`trainlab race --nproc N --strategy ddp|fsdp2`).

Each trial is launched with PyTorch's elastic launcher (`python -m torch.distributed.run
--standalone --nproc-per-node N`); every rank runs `trainlab.benchmark.data_parallel_rank`, which rebuilds the workload
and the algorithm from a job file (`trainlab.benchmark.data_parallel_rank`: the trial's
`TrialOptions`, serialised whole) and calls the ordinary runner with a `DataParallel`:
- the model is wrapped before the optimizer is built: DistributedDataParallel, or FSDP2
  (`fully_shard` on every parameter-owning leaf module, then on the root), gloo on CPU, NCCL on CUDA;
- every rank draws the same global batch (same seed) and trains on its contiguous 1/N of it, so the
  averaged gradient is the one-process gradient of the same batch, up to the rounding of the
  all-reduce: the data order is identical, and only that rounding separates the runs;
- the training loss is averaged over ranks each step (one all-reduce, on the clock like the rest of
  the step), so every rank takes the same divergence and evaluation decisions;
- every rank evaluates (FSDP2's forward needs all of them; DDP's repeats the same numbers), and rank
  0 writes the result, which the launching process stores: the clock is rank 0's.
A rank that raises or dies ends the launcher (it stops the other ranks) and fails the trial with the
rank's last error line; a trial still running after `timeout` seconds is killed and failed. Either
way the race goes on and nothing stored is touched.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainlab.algorithms import AlgorithmSpec
from trainlab.benchmark.trial_options import TrialOptions
from trainlab.errors import UsageError
from trainlab.store.results import EvalRecord, TrialResult
from trainlab.workloads import Workload, rebuild_args


class TrialFailed(RuntimeError):
    """A data-parallel trial that did not finish: a rank failed, or it ran past its timeout."""


@dataclasses.dataclass
class DataParallel:
    strategy: str
    rank: int
    world: int
    device: torch.device

    def wrap(self, model: nn.Module) -> nn.Module:
        if self.strategy == "ddp":
            ids = [self.device.index] if self.device.type == "cuda" else None
            return nn.parallel.DistributedDataParallel(model, device_ids=ids)
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(self.device.type, (self.world,))
        for module in model.modules():
            if module is not model and any(True for _ in module.parameters(recurse=False)):
                fully_shard(module, mesh=mesh)
        fully_shard(model, mesh=mesh)  # in place: the model is now also an FSDPModule
        return model

    def shard(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        size = batch[0].shape[0]
        if size % self.world:
            raise UsageError(f"a global batch of {size} does not split evenly over {self.world} processes")
        part = size // self.world
        return tuple(t[self.rank * part : (self.rank + 1) * part] for t in batch)

    def mean(self, loss: torch.Tensor) -> torch.Tensor:
        out = loss.detach().clone()
        torch.distributed.all_reduce(out)
        return out / self.world


def check(workload: Workload, spec: AlgorithmSpec, options: TrialOptions) -> None:
    """What fails before any launch: a batch that does not split, SSO, a submission under FSDP2."""
    check_split(workload, options.nproc)
    options.check_algorithm(spec.name, submission=spec.submission, sso=spec.method != "plain")


def check_split(workload: Workload, nproc: int) -> None:
    """A global batch that splits evenly over the processes."""
    if nproc < 2:
        raise UsageError(f"--nproc must be at least 2 for a data-parallel trial, got {nproc}")
    if workload.batch_size % nproc:
        raise UsageError(
            f"--nproc {nproc}: workload {workload.name!r} trains with batch {workload.batch_size}, which does not "
            f"split evenly over {nproc} processes; choose a divisor or set --workload-option "
            f"{workload.name}.batch_size=..."
        )


def run_parallel_trial(
    workload: Workload,
    spec: AlgorithmSpec,
    seed: int,
    device: torch.device,
    options: TrialOptions,
    threads: int | None = None,
) -> TrialResult:
    """Launch one trial on `options.nproc` processes and return rank 0's result (see module doc)."""
    nproc, timeout = options.nproc, options.trial_timeout
    check(workload, spec, options)
    spec_name, workload_options = rebuild_args(workload)
    with tempfile.TemporaryDirectory(prefix="trainlab-dp-") as tmp:
        job, out = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job.write_text(
            json.dumps(
                {
                    "workload": spec_name,
                    "workload_options": workload_options,
                    "spec": {**dataclasses.asdict(spec), "hparams": dict(spec.hparams)},
                    "seed": seed,
                    "device": device.type,
                    "options": options.to_dict(),
                    "threads": threads or max(1, torch.get_num_threads() // nproc),
                    "result": str(out),
                },
                default=str,
            )
        )
        command = [sys.executable, "-c", _BOUND_TO_PARENT, str(os.getpid()), sys.executable]
        command += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
        command += ["--max-restarts=0", "-m", "trainlab.benchmark.data_parallel_rank", str(job)]
        log = Path(tmp) / "output.log"
        with log.open("w") as sink:  # a file, not a pipe: a stray rank must not keep us waiting
            proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _stop(proc, job)
                raise TrialFailed(f"{nproc}-process trial still running after {timeout:g} s: killed") from None
        output = log.read_text(errors="replace")
        if proc.returncode != 0 or not out.exists():
            raise TrialFailed(_failure(output, proc.returncode, nproc))
        return _load(json.loads(out.read_text()))


# The launcher is started through this: on Linux it asks for SIGTERM when the process that started
# it dies (prctl PR_SET_PDEATHSIG, kept across exec), then becomes torch.distributed.run. A tune
# worker that is killed thus takes its launch with it (the launcher's agent stops the ranks), instead
# of leaving ranks that train on, competing with the trial's re-run for the cores and its clock.
_BOUND_TO_PARENT = (
    "import ctypes, os, signal, sys\n"
    "if sys.platform.startswith('linux'):\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))\n"
    "    if os.getppid() != int(sys.argv[1]):\n"
    "        sys.exit('the process that started this launch is gone')\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def _stop(proc: subprocess.Popen, job: Path) -> None:
    """End a launch that ran past its timeout: SIGTERM to the launcher (its agent stops the ranks),
    then SIGKILL to it and to every process still running this job (the ranks have sessions of
    their own, so killing the launcher's group does not reach them)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    for pid in [proc.pid, *_pids_running(job)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _pids_running(job: Path) -> list[int]:
    """Processes whose command line names this job file (Linux's /proc; elsewhere none are found)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if str(job).encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


def _failure(output: str, code: int, nproc: int) -> str:
    """One line from the launcher's output: which rank failed first, how, and its last error."""
    root = output.rpartition("Root Cause")[2]
    rank = re.search(r"rank\s*:\s*(\d+)", root)
    exit_code = re.search(r"exitcode\s*:\s*(-?\d+)", root)
    errors: dict[str, str] = {}
    for found in re.finditer(r"^\[rank(\d+)\]:\s*([\w.]*(?:Error|Exception)\b.*)$", output, re.MULTILINE):
        errors[found.group(1)] = found.group(2).strip()
    if rank is None:
        tail = [line for line in output.splitlines() if line.strip()]
        return f"{nproc}-process trial failed (launcher exit {code}): {tail[-1] if tail else 'no output'}"
    first = rank.group(1)
    how = f"exit code {exit_code.group(1)}" if exit_code else f"launcher exit {code}"
    if exit_code and int(exit_code.group(1)) == -signal.SIGKILL:  # killed from outside: no error of its own
        return f"{nproc}-process trial failed: rank {first} was killed by SIGKILL (exit code -9)"
    native = [  # a C++ abort (gloo, an uncaught c10::Error) prints no Python traceback
        line.strip()
        for line in output.rpartition("Root Cause")[0].splitlines()
        if re.search(r"what\(\):|terminate called|\] \[?E|Error|error:", line)
        and "torch.distributed" not in line
        and "ChildFailedError" not in line  # the launcher's own report, not the rank's
    ]
    detail = errors.get(first) or (
        f"no Python error; last native error line: {native[-1][:300]}"
        if native
        else "no Python error (the process was killed or exited)"
    )
    return f"{nproc}-process trial failed: rank {first} failed first ({how}): {detail}{_frames(output, first)}"


def _frames(output: str, rank: str, keep: int = 2) -> str:
    """Where rank `rank` raised, from its traceback: its innermost frames (outermost first), so the
    stored one-line error says whose code failed (a submission's own file, torch's, trainlab's)."""
    frames = re.findall(rf'^\[rank{rank}\]:\s+File "([^"]+)", line (\d+), in (\S+)', output, re.MULTILINE)
    if not frames:
        return ""
    return " (raised at " + " -> ".join(f"{path}:{line} in {func}" for path, line, func in frames[-keep:]) + ")"


def _load(data: dict[str, Any]) -> TrialResult:
    evals = []
    for e in data.pop("evals"):
        values: dict[str, Any] = {k: math.nan if v is None else v for k, v in e.items()}
        evals.append(EvalRecord(**values))
    for key in ("time_to_target",):
        data[key] = math.inf if data[key] is None else data[key]
    for key in ("final_metric", "best_metric", "test_metric"):
        data[key] = math.nan if data[key] is None else data[key]
    result = TrialResult(**data)
    result.evals = evals
    return result
