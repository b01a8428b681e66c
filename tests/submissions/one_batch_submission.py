"""Adam on one batch, chosen once by its own data_selection, and done after 30 steps
(TrainingCompleteError): training loss must collapse while nothing else is learned."""

import torch

from algoperf import spec


def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng):
    return {"optimizer": torch.optim.Adam(model_params.parameters(), lr=1e-2), "batch": None}


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
    train_state=None,
):
    if global_step >= 30:
        raise spec.TrainingCompleteError
    optimizer_state["optimizer"].zero_grad()
    logits, _ = workload.model_fn(current_param_container, batch, model_state, spec.ForwardPassMode.TRAIN, rng, True)
    losses = workload.loss_fn(batch["targets"], logits)
    (losses["summed"] / losses["n_valid_examples"]).backward()
    optimizer_state["optimizer"].step()
    return optimizer_state, current_param_container, model_state


def get_batch_size(workload_name):
    raise ValueError(workload_name)


def data_selection(
    workload, input_queue, optimizer_state, current_param_container, model_state, hyperparameters, global_step, rng
):
    if optimizer_state["batch"] is None:
        optimizer_state["batch"] = next(input_queue)
    return optimizer_state["batch"]
