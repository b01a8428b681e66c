"""AlgoPerf submissions, unmodified, as trainlab algorithms: `--algorithms algoperf:path/to/submission.py`.

A PyTorch submission module (the AlgoPerf API: `get_batch_size`, `init_optimizer_state`,
`update_params`, optional `prepare_for_eval`, `data_selection`) trains on any trainlab workload
that states its outputs and their loss (`Workload.output_loss`), under trainlab's clock:

- `update_params` runs once per timed step, with `train_state` when its signature asks for it; one
  that draws several batches from the queue (LAWA's inner loop) counts as that many steps, so
  budgets and step counts stay in batches (`batches_drawn` is recorded too);
  `prepare_for_eval` (optional) runs before each evaluation, on the clock (AlgoPerf v0.6);
  `data_selection` draws each batch from a queue of `{"inputs", "targets"}` dicts;
- the workload object it sees (`SubmissionWorkload`) has what submissions use: `model_fn`,
  `loss_fn`, `step_hint` (the step budget), `param_shapes`, `model_params_types`,
  `target_metric_name`, `eval_results` keyed `validation/METRIC`, ...;
- `get_batch_size` is asked with the trainlab workload's name; published submissions answer only
  AlgoPerf's names and raise ValueError, and then the workload's own batch size is used (recorded
  as `batch_size_source` in the trial's hyperparameters);
- hyperparameters arrive as a namedtuple (attribute access, `hasattr` for optional keys);
- `TrainingCompleteError` ends the trial (completed); any other exception fails the trial with its
  message, and the race goes on.
The AlgoPerf modules such files import resolve to `trainlab.algorithms.algoperf_compat` (both
package names), their imports of their own helper files to those files (`submission_imports`), and
a missing package is reported in one line with what to install.
"""

from __future__ import annotations

import collections
import inspect
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainlab.algorithms import algoperf_compat as compat
from trainlab.algorithms.submission_imports import diagnose, finder_for
from trainlab.algorithms.submission_workload import SubmissionWorkload
from trainlab.errors import UsageError
from trainlab.utils.user_files import import_file

PREFIX = "algoperf:"
REQUIRED = ("get_batch_size", "init_optimizer_state", "update_params", "data_selection")


def is_submission(name: str) -> bool:
    return name.strip().startswith(PREFIX)


def load_submission(name: str):
    """The submission module of `algoperf:PATH` (one-line `UsageError` when it cannot be used)."""
    source = name.strip()[len(PREFIX) :]
    path = Path(source).expanduser().resolve()
    compat.install()
    if path.is_file():
        finder_for(path)  # its imports of its own folder's files, by the authors' module paths

    def explain(exc: Exception) -> str | None:
        return diagnose(exc, path, source) if isinstance(exc, ModuleNotFoundError) else None

    module = import_file(path, source, "AlgoPerf submission", "trainlab_submission", explain)
    missing = [f for f in REQUIRED if not callable(getattr(module, f, None))]
    if missing:
        raise UsageError(
            f"AlgoPerf submission {source!r} defines no {missing[0]}(): a submission needs "
            f"{', '.join(REQUIRED)} (and optionally prepare_for_eval)"
        )
    return module


def hyperparameters_tuple(values: Mapping[str, Any]):
    """AlgoPerf's hyperparameters object: a namedtuple of the point's values."""
    fields = sorted(values)
    return collections.namedtuple("Hyperparameters", fields)(**{k: values[k] for k in fields})


def submission_batch_size(module, workload) -> tuple[int, str]:
    """(batch size, where it came from): the submission's answer for this workload's name, or the
    workload's own when the submission only knows AlgoPerf's workloads (ValueError)."""
    try:
        size = module.get_batch_size(workload.name)
    except (ValueError, KeyError, NotImplementedError):
        return workload.batch_size, "workload default (get_batch_size does not know this workload)"
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise UsageError(
            f"AlgoPerf submission: get_batch_size({workload.name!r}) returned {size!r}, not a positive integer"
        )
    return size, "submission (get_batch_size)"


class SubmissionAlgorithm:
    """A submission as the runner's algorithm: `next_batch`, `update`, the eval hooks."""

    def __init__(self, spec, model: nn.Module, workload, seed: int) -> None:
        self.spec = spec
        self.module = load_submission(spec.name)
        self.view = SubmissionWorkload(workload, model)
        self.model = model
        point = spec.submission_hparams()
        self.hyperparameters = hyperparameters_tuple(point) if point else None  # None: self-tuning
        self.rng = torch.Generator().manual_seed(seed)
        self.optimizer = None
        self.model_state = None
        self.step = 0
        self.batches_drawn = 0  # a step (update_params call) may draw several (LAWA's inner loop)
        self.optimizer_state = self.module.init_optimizer_state(
            workload=self.view, model_params=model, model_state=None, hyperparameters=self.hyperparameters, rng=self.rng
        )
        if isinstance(self.optimizer_state, Mapping):
            self.optimizer = self.optimizer_state.get("optimizer")
        self._with_train_state = "train_state" in inspect.signature(self.module.update_params).parameters

    def coverage(self) -> None:
        return None

    def state_bytes(self) -> int:
        """Its torch optimizer's state, or else the tensors its optimizer_state holds that are not the
        model's parameters (a hand-written optimizer keeps its buffers there)."""
        from trainlab.optim import state_bytes

        if self.optimizer is not None:
            return state_bytes(self.optimizer)
        return state_bytes(self.optimizer_state, exclude=self.model.parameters())

    def _queue(self, batches: Iterator) -> Iterator[dict[str, torch.Tensor]]:
        workload = self.view._workload
        while True:
            x, y = workload.inputs_and_targets(next(batches))
            self.batches_drawn += 1
            yield {"inputs": x, "targets": y}

    def next_batch(self, batches: Iterator, model: nn.Module) -> dict[str, torch.Tensor]:
        if not hasattr(self, "_input_queue"):
            self._input_queue = self._queue(batches)
        return self.module.data_selection(
            workload=self.view,
            input_queue=self._input_queue,
            optimizer_state=self.optimizer_state,
            current_param_container=model,
            model_state=self.model_state,
            hyperparameters=self.hyperparameters,
            global_step=self.step,
            rng=self.rng,
        )

    def update(self, model: nn.Module, batch, loss_fn=None) -> torch.Tensor:
        kwargs = dict(
            workload=self.view,
            current_param_container=model,
            current_params_types=self.view.model_params_types,
            model_state=self.model_state,
            hyperparameters=self.hyperparameters,
            batch=batch,
            loss_type=self.view.loss_type,
            optimizer_state=self.optimizer_state,
            eval_results=self.view.eval_results,
            global_step=self.step,
            rng=self.rng,
        )
        if self._with_train_state:
            kwargs["train_state"] = {"global_step": self.step, "training_complete": False}
        self.optimizer_state, _, self.model_state = self.module.update_params(**kwargs)
        self.step += 1
        loss = self.view.last_loss
        return loss if loss is not None else torch.zeros(())

    def prepare_for_eval(self, model: nn.Module) -> None:
        prepare = getattr(self.module, "prepare_for_eval", None)
        if callable(prepare):
            self.optimizer_state, _, self.model_state = prepare(
                workload=self.view,
                current_param_container=model,
                current_params_types=self.view.model_params_types,
                model_state=self.model_state,
                hyperparameters=self.hyperparameters,
                loss_type=self.view.loss_type,
                optimizer_state=self.optimizer_state,
                eval_results=self.view.eval_results,
                global_step=self.step,
                rng=self.rng,
            )

    def prepare_for_train(self, model: nn.Module) -> None:
        """AlgoPerf has no such hook: a submission restores its training weights in update_params."""

    def record_eval(self, step: int, metric_name: str, metric: float, loss: float) -> None:
        self.view.eval_results.append((step, {f"validation/{metric_name}": metric, "validation/loss": loss}))

    def grad_norms(self) -> list[float]:
        return []


def race_point(name: str, search_space: str | None) -> tuple[dict[str, Any] | None, str]:
    """The hyperparameters a race gives submission `name`, and where they came from: the first point
    of a list-form space, or the centre of a dict-form one (geometric for log scaling, the first
    feasible point); the space is `search_space`, else `tuning_search_space.json` beside the
    submission; with neither, None (a self-tuning submission)."""
    from trainlab.algorithms.search_space import load_search_space
    from trainlab.algorithms.search_space import race_point as centre

    if search_space is None:
        sibling = Path(name.strip()[len(PREFIX) :]).expanduser().resolve().with_name("tuning_search_space.json")
        if not sibling.is_file():
            return None, "none (self-tuning submission: hyperparameters=None)"
        search_space = str(sibling)
    space = load_search_space(search_space)
    return centre(space), ("first point" if space.points is not None else "centre") + f" of {search_space}"


def submission_origin(name: str, search_space: str | None) -> tuple[dict[str, Any], str]:
    """(the submission file's origin, its search-space file) for a tuning experiment: the space
    is `search_space` or the `tuning_search_space.json` beside the submission (tuning needs one)."""
    from trainlab.algorithms.external import _sha256

    load_submission(name)
    path = Path(name.strip()[len(PREFIX) :]).expanduser().resolve()
    if search_space is None:
        sibling = path.with_name("tuning_search_space.json")
        if not sibling.is_file():
            raise UsageError(
                f"{name}: tuning needs its search space: --search-space {name.strip()}=FILE.json "
                "(AlgoPerf format), or a tuning_search_space.json beside the submission"
            )
        search_space = str(sibling)
    return {"kind": "file", "path": str(path), "sha256": _sha256(path), "submission": True}, search_space
