"""LAWA's pattern: data_selection hands over the queue itself and each update_params call trains
on 3 batches drawn from it (SGD), so a call is 3 steps of trainlab's budget."""

import torch

from algoperf import spec

INNER = 3


def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng):
    return {"optimizer": torch.optim.SGD(model_params.parameters(), lr=0.05), "calls": []}


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
    optimizer_state["calls"].append(global_step)
    for _ in range(INNER):
        inputs = next(batch)
        optimizer_state["optimizer"].zero_grad()
        logits, _ = workload.model_fn(
            current_param_container, inputs, model_state, spec.ForwardPassMode.TRAIN, rng, True
        )
        losses = workload.loss_fn(inputs["targets"], logits)
        (losses["summed"] / losses["n_valid_examples"]).backward()
        optimizer_state["optimizer"].step()
    return optimizer_state, current_param_container, model_state


def get_batch_size(workload_name):
    raise ValueError(workload_name)


def data_selection(
    workload, input_queue, optimizer_state, current_param_container, model_state, hyperparameters, global_step, rng
):
    return input_queue
