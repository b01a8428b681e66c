"""Heavy-ball SGD whose update lives in a helper file it imports by the absolute module path of
its authors' repository (as the published Shampoo entry does): trainlab resolves it to helpers/."""

from submissions.team_x.external_tuning.authors_path.helpers.inner.rule import heavy_ball_step

import submissions.team_x.external_tuning.authors_path.helpers as helpers_package
from algorithmic_efficiency import spec


def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng):
    import torch

    return {"momentum": [torch.zeros_like(p) for p in model_params.parameters()], "tag": helpers_package.TAG}


def update_params(
    workload,
    current_param_container,
    current_params_types,
    model_state,
    hyperparameters,
    batch,
    loss_type,
    optimizer_state,
    eval_results,
    global_step,
    rng,
):
    from submissions.team_x.external_tuning.authors_path.helpers.late import LR  # resolved at call time too

    logits, _ = workload.model_fn(current_param_container, batch, model_state, spec.ForwardPassMode.TRAIN, rng, True)
    losses = workload.loss_fn(batch["targets"], logits)
    heavy_ball_step(current_param_container, losses["summed"] / losses["n_valid_examples"], optimizer_state, LR)
    return optimizer_state, current_param_container, model_state


def get_batch_size(workload_name):
    raise ValueError(f"Unsupported workload name: {workload_name}.")


def data_selection(
    workload, input_queue, optimizer_state, current_param_container, model_state, hyperparameters, global_step, rng
):
    return next(input_queue)
