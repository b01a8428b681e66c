"""An AdamW submission written against the AlgoPerf API (algorithms/template/submission.py): linear
warm-up then cosine decay over step_hint, as the published PyTorch baselines build it. It imports
only what published submissions import; trainlab provides those modules. Race it with

    trainlab race --workloads mnist1d_mlp --algorithms algoperf:examples/algoperf_adamw/submission.py,adamw

(its hyperparameters: the first point of tuning_search_space.json, beside this file)."""

import math

import torch
import torch.distributed.nn as dist_nn  # noqa: F401  (published baselines import it)
from absl import logging
from algoperf import spec
from algoperf.pytorch_utils import pytorch_setup

USE_PYTORCH_DDP, RANK, DEVICE, N_GPUS = pytorch_setup()


def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng):
    del model_state, rng
    optimizer = torch.optim.AdamW(
        model_params.parameters(),
        lr=hyperparameters.learning_rate,
        betas=(1.0 - hyperparameters.one_minus_beta1, hyperparameters.beta2),
        eps=1e-8,
        weight_decay=hyperparameters.weight_decay,
    )
    total = workload.step_hint
    warmup = int(hyperparameters.warmup_factor * total)

    def multiplier(step):
        if step < warmup:
            return min(1.0, (step + 1) / warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / (total - warmup))))

    logging.info("AdamW submission: %d warm-up steps of %d", warmup, total)
    return {"optimizer": optimizer, "scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)}


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
    del current_params_types, loss_type, eval_results, rng, train_state
    current_param_container.train()
    optimizer_state["optimizer"].zero_grad(set_to_none=True)
    logits, new_model_state = workload.model_fn(
        params=current_param_container,
        augmented_and_preprocessed_input_batch=batch,
        model_state=model_state,
        mode=spec.ForwardPassMode.TRAIN,
        rng=None,
        update_batch_norm=True,
        dropout_rate=None,
    )
    label_smoothing = hyperparameters.label_smoothing if hasattr(hyperparameters, "label_smoothing") else 0.0
    losses = workload.loss_fn(
        label_batch=batch["targets"],
        logits_batch=logits,
        mask_batch=batch.get("weights"),
        label_smoothing=label_smoothing,
    )
    loss = losses["summed"] / losses["n_valid_examples"]
    loss.backward()
    if hasattr(hyperparameters, "grad_clip"):
        torch.nn.utils.clip_grad_norm_(current_param_container.parameters(), max_norm=hyperparameters.grad_clip)
    optimizer_state["optimizer"].step()
    optimizer_state["scheduler"].step()
    return optimizer_state, current_param_container, new_model_state


def get_batch_size(workload_name):
    if workload_name == "mnist":
        return 1024
    raise ValueError(f"Unsupported workload name: {workload_name}.")


def data_selection(
    workload, input_queue, optimizer_state, current_param_container, model_state, hyperparameters, global_step, rng
):
    del workload, optimizer_state, current_param_container, model_state, hyperparameters, global_step, rng
    return next(input_queue)
