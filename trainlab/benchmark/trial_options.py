"""`TrialOptions`: every option of a trial besides its workload, algorithm and seed, in one record.

Built and validated once where it enters (the command line, a stored tuning plan, a data-parallel
job file, Python), then passed whole to the runner, so that a new option is one field here instead
of a parameter threaded by hand through race, tune, worker, refine, set-targets and the launcher.
Frozen, so a trial cannot change what its caller asked for. What each option does to training is
documented in `trainlab.benchmark.runner`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any, Literal

import torch

from trainlab.errors import UsageError
from trainlab.memory import ACTIVATION_BITS, PRECISIONS, bf16_supported, saver_labels
from trainlab.memory import freeze as freeze_modules

# the memory savers and precision: what a tuning plan stores as its `trial` (and tunes like an algorithm)
SAVERS = ("compress_activations", "precision", "freeze", "freeze_change")
STRATEGIES = ("ddp", "fsdp2")


@dataclass(frozen=True)
class TrialOptions:
    # memory savers and precision (all off: the timed loop is exactly the plain one)
    compress_activations: int | Literal["adaptive"] | None = None  # 2, 4, 8, "adaptive" (GACT) or None
    precision: str = "fp32"  # one of PRECISIONS
    freeze: tuple[str, ...] = ()  # module-name rules, or first:K
    freeze_change: float | None = None  # FAR-style freezing threshold, or None (off)
    # what the trial checks, records and stops on
    stop_at_target: bool = False  # end at the first evaluation meeting the target
    grad_norm_kind: str | None = None  # record each step's gradient norm: "l1", "l2" or None
    eval_split: str = "validation"  # the split scored against the target: validation or test (held out)
    continual: tuple[int, int] | None = None  # continual evaluation: (every E steps, on the first N examples)
    predict: tuple[float, float] | None = None  # curve predictions: (prediction level, convergence threshold)
    # data-parallel trials (`trainlab.benchmark.data_parallel`)
    nproc: int = 1  # processes per trial
    strategy: str = "ddp"  # ddp or fsdp2
    trial_timeout: float = 3600.0  # seconds after which a launched trial is killed and failed
    # checkpoints inside the trial (`trainlab.benchmark.checkpoint`): at an evaluation once this many
    # steps have passed since the last one, into this folder; None = off
    checkpoint_every: int | None = None
    checkpoint_dir: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "freeze", _rules(self.freeze))
        for name in ("continual", "predict"):  # JSON gives lists
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(getattr(self, name)))
        _check_savers(self)
        _check_run(self)

    @property
    def plain(self) -> bool:
        """No memory saver, fp32: the timed loop is exactly the plain one."""
        return all(getattr(self, k) == getattr(DEFAULT, k) for k in SAVERS)

    def to_dict(self, keys: Iterable[str] | None = None) -> dict[str, Any]:
        """JSON-ready; only the options (of `keys`, default all) that differ from the default."""
        chosen = [f.name for f in fields(self)] if keys is None else list(keys)
        out: dict[str, Any] = {}
        for key in chosen:
            value = getattr(self, key)
            if value != getattr(DEFAULT, key):
                out[key] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrialOptions:
        """The inverse of `to_dict` (a stored plan's `trial`, a job file); any subset of the fields."""
        data = dict(data or {})
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise UsageError(f"trial options: unknown key {unknown[0]!r}; valid: {', '.join(valid)}")
        return cls(**data)

    def describe(self) -> str:
        """The memory savers and precision, in one line for logs and reports."""
        return "; ".join(saver_labels({k: getattr(self, k) for k in SAVERS})) or "fp32, no memory savers"

    def check(self, device: torch.device | None = None, workloads: Iterable[Any] = ()) -> None:
        """What the values alone cannot tell: bf16 on `device`, and each freeze rule on a fresh model
        of every workload (cheap: no data, no training), so a typo fails before any trial."""
        if self.precision != "fp32" and device is not None and not bf16_supported(device):
            raise UsageError(
                f"precision {self.precision!r} needs bf16, which device {str(device)!r} does "
                "not support: use fp32 (CUDA needs an Ampere or newer GPU)"
            )
        if self.freeze:
            for workload in workloads:
                with torch.random.fork_rng(devices=[]):
                    apply_freeze(workload.init_model(), self.freeze, workload.name)

    def check_algorithm(self, name: str, *, submission: bool = False, sso: bool = False) -> None:
        """What an AlgoPerf submission or an SSO algorithm cannot run with."""
        if (submission or sso) and not self.plain:
            raise UsageError(
                f"{name}: {'AlgoPerf submissions' if submission else 'SSO'} run without trainlab's memory "
                "savers (no --compress-activations, --precision, --freeze, --freeze-change)"
            )
        if (submission or sso) and self.checkpoint_every is not None:
            raise UsageError(f"{name}: checkpoints cover trainlab's own algorithms, not SSO or AlgoPerf submissions")
        if (submission or sso) and self.grad_norm_kind is not None:
            kind = "an AlgoPerf submission" if submission else "SSO"
            raise UsageError(f"{name}: {kind} cannot record gradient norms")
        if sso and self.nproc > 1:
            raise UsageError(f"--nproc: {name} runs in one process only (SSO)")
        if submission and self.nproc > 1 and self.strategy != "ddp":
            # AlgoPerf's PyTorch submissions are written for DistributedDataParallel
            raise UsageError(f"--nproc: {name} is an AlgoPerf submission, which trains under --strategy ddp only")


def _rules(rules: Any) -> tuple[str, ...]:
    if isinstance(rules, str) or not all(isinstance(r, str) and r for r in rules):
        raise UsageError(f"--freeze must be a list of module-name rules, got {rules!r}")
    return tuple(rules)


def _check_savers(o: TrialOptions) -> None:
    bits = o.compress_activations
    if bits is not None and (isinstance(bits, bool) or not isinstance(bits, (int, str)) or bits not in ACTIVATION_BITS):
        raise UsageError(f"--compress-activations must be one of 2, 4, 8, adaptive; got {bits!r}")
    if o.precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}; got {o.precision!r}")
    change = o.freeze_change
    if change is not None and (isinstance(change, bool) or not isinstance(change, (int, float)) or not change > 0):
        raise UsageError(f"--freeze-change must be a positive threshold, got {change!r}")


def _check_run(o: TrialOptions) -> None:
    if o.grad_norm_kind not in (None, "l1", "l2"):
        raise UsageError(f"--record-grad-norms must be l1 or l2, got {o.grad_norm_kind!r}")
    if o.eval_split not in ("validation", "test"):
        raise UsageError(f"eval_split must be 'validation' or 'test', got {o.eval_split!r}")
    if o.continual is not None and not (len(o.continual) == 2 and all(int(v) == v >= 1 for v in o.continual)):
        raise UsageError(f"--eval-subset and --eval-every must be positive, got {o.continual}")
    if o.predict is not None and not (len(o.predict) == 2 and all(0.0 < v < 1.0 for v in o.predict)):
        level, threshold = (tuple(o.predict) + (math.nan, math.nan))[:2]
        what = "--predict-level" if not 0.0 < level < 1.0 else "--convergence-threshold"
        raise UsageError(f"{what} must be in (0, 1), got {level if what == '--predict-level' else threshold}")
    if isinstance(o.nproc, bool) or not isinstance(o.nproc, int) or o.nproc < 1 or not o.trial_timeout > 0:
        raise UsageError(f"--nproc must be at least 1 and --trial-timeout positive, got {o.nproc}, {o.trial_timeout:g}")
    if o.strategy not in STRATEGIES:
        raise UsageError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {o.strategy!r}")
    if o.nproc > 1 and (o.predict is not None or o.continual is not None or o.grad_norm_kind):
        raise UsageError("--nproc trials run without --predict, --eval-subset and --record-grad-norms")
    if o.checkpoint_every is not None:
        if isinstance(o.checkpoint_every, bool) or not isinstance(o.checkpoint_every, int) or o.checkpoint_every < 1:
            raise UsageError(f"--checkpoint-every must be a positive number of steps, got {o.checkpoint_every!r}")
        if not o.checkpoint_dir:
            raise UsageError("--checkpoint-every needs a folder for the checkpoints (--checkpoint-dir)")
        if o.nproc > 1 or o.freeze_change is not None or o.compress_activations == "adaptive":
            raise UsageError(
                "--checkpoint-every does not cover --nproc, --freeze-change or adaptive compression yet "
                "(their state is not in the checkpoint): drop one of them"
            )


def apply_freeze(model: torch.nn.Module, rules: Iterable[str], workload: str) -> int:
    """Freeze `rules` on `model`; returns the number of parameter entries frozen. A rule matching no
    parameter, or rules that leave nothing to train, are a `UsageError` naming the workload.
    A rule `first:K` freezes the model's first K parameter-owning modules."""
    rules = list(rules)
    names = [r for r in rules if not r.startswith("first:")]
    try:
        for rule in rules:
            if rule.startswith("first:"):
                count = rule.partition(":")[2]
                if not count.isdigit():
                    raise UsageError(f"rule {rule!r}: write first:K with K a positive integer")
                freeze_modules(model, first_k=int(count))
        if names:
            freeze_modules(model, modules=names)
    except UsageError as exc:
        raise UsageError(f"--freeze on workload {workload!r}: {exc}") from None
    if not any(p.requires_grad for p in model.parameters()):
        raise UsageError(
            f"--freeze {','.join(rules)} freezes every parameter of workload {workload!r}; leave something to train"
        )
    return sum(p.numel() for p in model.parameters() if not p.requires_grad)


DEFAULT = TrialOptions()  # nothing on: fp32, no memory saver, the full budget, one process
