"""Which parameters a matrix method treats: the hidden layers' weight matrices, as the recipes do.

GaLore's, Fira's and FRUGAL's training scripts project only the Linear weights inside the
transformer blocks (`target_modules_list = ["attn", "mlp"]`), and SWAN's reimplementations whiten
the same set; embeddings, the output layer and every 1-D parameter get AdamW. Module names differ
between models, so trainlab states the rule by module type and position instead of by name:

    hidden = the weight (ndim >= 2) of every nn.Linear and convolution, except the model's output
             layer (the last Linear or convolution in `model.modules()` order)
    rest   = everything else that trains: embeddings, positional tables, the output layer, biases,
             norm scales

A weight tied to an excluded one (an LM head sharing the embedding) is excluded with it.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

LAYER_TYPES = (nn.Linear, nn.modules.conv._ConvNd)


def split_hidden(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(hidden matrices, the rest) among `model`'s trainable parameters, each in model order."""
    layers = [m for m in model.modules() if isinstance(m, LAYER_TYPES) and m.weight.requires_grad]
    excluded = {id(layers[-1].weight)} if layers else set()
    for m in model.modules():
        if isinstance(m, nn.Embedding):
            excluded.add(id(m.weight))
    hidden_ids = {id(m.weight) for m in layers if m.weight.ndim >= 2} - excluded
    trainable = [p for p in _unique(model.parameters()) if p.requires_grad]
    return ([p for p in trainable if id(p) in hidden_ids], [p for p in trainable if id(p) not in hidden_ids])


def _unique(params) -> list[nn.Parameter]:
    seen: set[int] = set()
    out = []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def recipe_groups(
    factory: Callable[..., torch.optim.Optimizer], model: nn.Module
) -> list[dict[str, Any]] | list[nn.Parameter]:
    """The parameter groups `factory` should get for `model`: its class's `recipe_groups(hidden,
    rest)` when it declares one (the matrix methods), else the plain list of trainable parameters."""
    layout = getattr(factory, "recipe_groups", None)
    if layout is None:
        return [p for p in _unique(model.parameters()) if p.requires_grad]
    return layout(*split_hidden(model))


def coverage(optimizer: torch.optim.Optimizer) -> tuple[int, int] | None:
    """(entries the method's own rule updates, all entries) for a matrix method, else None."""
    measure = getattr(optimizer, "coverage", None)
    return measure() if callable(measure) else None
