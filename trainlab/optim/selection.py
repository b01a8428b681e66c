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

A matrix method states its routing as two class attributes, read here and nowhere else:
`matrix_group` (the group keys of the hidden matrices, often none) and `fallback_group` (the keys
that send the rest to its fallback rule, AdamW in every method trainlab ships).

Weight decay on 1-D parameters: by default every parameter decays (what every stored number was
measured with). `decay_1d=False` (the `decay_1d` hyperparameter of every algorithm) gives the
parameters with fewer than two dimensions (biases, norm gains) weight decay 0, in groups of their
own beside the ones they came from, for every optimizer alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
    factory: Callable[..., torch.optim.Optimizer], model: nn.Module, decay_1d: bool = True
) -> list[dict[str, Any]] | list[nn.Parameter]:
    """The parameter groups `factory` should get for `model`: for a matrix method (its class has a
    `fallback_group`) the hidden matrices and the rest, each with its keys; else the plain list of
    trainable parameters. `decay_1d=False`: 1-D parameters without weight decay (module doc)."""
    fallback = getattr(factory, "fallback_group", None)
    if fallback is None:
        trainable = [p for p in _unique(model.parameters()) if p.requires_grad]
        return trainable if decay_1d else exempt_1d([{"params": trainable}])
    hidden, rest = split_hidden(model)
    matrix = getattr(factory, "matrix_group", {})
    groups = [g for g in ({"params": hidden, **matrix}, {"params": rest, **fallback}) if g["params"]]
    return groups if decay_1d else exempt_1d(groups)


def exempt_1d(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`groups` with their parameters of fewer than two dimensions moved to a copy of their group
    with weight_decay 0."""
    out = []
    for group in groups:
        matrices = [p for p in group["params"] if p.ndim >= 2]
        vectors = [p for p in group["params"] if p.ndim < 2]
        parts = ({**group, "params": matrices}, {**group, "params": vectors, "weight_decay": 0.0})
        out += [g for g in parts if g["params"]]
    return out


def coverage(optimizer: torch.optim.Optimizer) -> tuple[int, int] | None:
    """(entries the method's own rule updates, all entries) for a matrix method, else None."""
    measure = getattr(optimizer, "coverage", None)
    return measure() if callable(measure) else None
