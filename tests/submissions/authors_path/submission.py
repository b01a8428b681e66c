"""Heavy-ball SGD whose update lives in a helper file it imports by the absolute module path of
its authors' repository (as the published Shampoo entry does): trainlab resolves it to helpers/.
Otherwise written as the published v0.5 entries are: `algorithmic_efficiency`, absl logging, the
USE_PYTORCH_DDP convention."""

from typing import Dict

import torch
import torch.distributed.nn as dist_nn
from absl import logging

import submissions.team_x.external_tuning.authors_path.helpers as helpers_package
from algorithmic_efficiency import spec
from algorithmic_efficiency.pytorch_utils import pytorch_setup
from submissions.team_x.external_tuning.authors_path.helpers.inner.rule import heavy_ball_step

USE_PYTORCH_DDP = pytorch_setup()[0]


def init_optimizer_state(
    workload: spec.Workload,
    model_params: spec.ParameterContainer,
    model_state: spec.ModelAuxiliaryState,
    hyperparameters: spec.Hyperparameters,
    rng: spec.RandomState,
) -> spec.OptimizerState:
    logging.info("heavy ball on %d parameter tensors", len(workload.param_shapes))
    return {"momentum": [torch.zeros_like(p) for p in model_params.parameters()], "tag": helpers_package.TAG}


def update_params(
    workload: spec.Workload,
    current_param_container: spec.ParameterContainer,
    current_params_types: spec.ParameterTypeTree,
    model_state: spec.ModelAuxiliaryState,
    hyperparameters: spec.Hyperparameters,
    batch: Dict[str, spec.Tensor],
    loss_type: spec.LossType,
    optimizer_state: spec.OptimizerState,
    eval_results,
    global_step: int,
    rng: spec.RandomState,
) -> spec.UpdateReturn:
    from submissions.team_x.external_tuning.authors_path.helpers.late import LR  # resolved at call time too

    logits, _ = workload.model_fn(current_param_container, batch, model_state, spec.ForwardPassMode.TRAIN, rng, True)
    losses = workload.loss_fn(batch["targets"], logits)
    summed, count = losses["summed"], losses["n_valid_examples"]
    if USE_PYTORCH_DDP:  # the published convention: the global mean, whose gradient DDP then averages
        summed, count = dist_nn.all_reduce(summed), dist_nn.all_reduce(count)
    heavy_ball_step(current_param_container, summed / count, optimizer_state, LR)
    return optimizer_state, current_param_container, model_state


def get_batch_size(workload_name):
    raise ValueError(f"Unsupported workload name: {workload_name}.")


def data_selection(
    workload, input_queue, optimizer_state, current_param_container, model_state, hyperparameters, global_step, rng
):
    return next(input_queue)
