"""Heavy-ball SGD written by hand: its optimizer state is a list of momentum buffers, no
torch.optim.Optimizer, as many JAX-first submissions keep theirs."""

import torch

from algoperf import spec


def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng):
    return {"momentum": [torch.zeros_like(p) for p in model_params.parameters()]}


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
    params = list(current_param_container.parameters())
    for p in params:
        p.grad = None
    logits, _ = workload.model_fn(current_param_container, batch, model_state, spec.ForwardPassMode.TRAIN, rng, True)
    losses = workload.loss_fn(batch["targets"], logits)
    (losses["summed"] / losses["n_valid_examples"]).backward()
    with torch.no_grad():
        for p, buf in zip(params, optimizer_state["momentum"]):
            buf.mul_(0.9).add_(p.grad)
            p.sub_(buf, alpha=0.05)
    return optimizer_state, current_param_container, model_state


def get_batch_size(workload_name):
    return 128


def data_selection(
    workload, input_queue, optimizer_state, current_param_container, model_state, hyperparameters, global_step, rng
):
    return next(input_queue)
