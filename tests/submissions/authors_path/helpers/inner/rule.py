"""No __init__.py in inner/: a namespace-style folder. Imports its sibling by the authors' path."""

import torch

from submissions.team_x.external_tuning.authors_path.helpers.inner.momentum import BETA


def heavy_ball_step(model, loss, state, lr):
    params = list(model.parameters())
    for p in params:
        p.grad = None
    loss.backward()
    with torch.no_grad():
        for p, buf in zip(params, state["momentum"]):
            buf.mul_(BETA).add_(p.grad)
            p.sub_(buf, alpha=lr)
