"""SGD whose prepare_for_eval swaps in an all-zero model for evaluation and whose update_params swaps
the training weights back: the evaluations must see chance accuracy while training goes on."""

import torch

from algorithmic_efficiency import spec


def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng):
    return {"optimizer": torch.optim.SGD(model_params.parameters(), lr=hyperparameters.learning_rate), "saved": None}


def _restore(model, optimizer_state):
    if optimizer_state["saved"] is not None:
        with torch.no_grad():
            for p, saved in zip(model.parameters(), optimizer_state["saved"]):
                p.copy_(saved)
        optimizer_state["saved"] = None


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
    _restore(current_param_container, optimizer_state)
    optimizer_state["optimizer"].zero_grad()
    logits, _ = workload.model_fn(current_param_container, batch, model_state, spec.ForwardPassMode.TRAIN, rng, True)
    losses = workload.loss_fn(batch["targets"], logits)
    (losses["summed"] / losses["n_valid_examples"]).backward()
    optimizer_state["optimizer"].step()
    return optimizer_state, current_param_container, model_state


def prepare_for_eval(
    workload,
    current_param_container,
    current_params_types,
    model_state,
    hyperparameters,
    loss_type,
    optimizer_state,
    eval_results,
    global_step,
    rng,
):
    optimizer_state["saved"] = [p.detach().clone() for p in current_param_container.parameters()]
    with torch.no_grad():
        for p in current_param_container.parameters():
            p.zero_()
    return optimizer_state, current_param_container, model_state


def get_batch_size(workload_name):
    return 64


def data_selection(
    workload, input_queue, optimizer_state, current_param_container, model_state, hyperparameters, global_step, rng
):
    return next(input_queue)
