"""Registry entries of the matrix-aware optimizers (SWAN, GaLore, Fira, FRUGAL).

Through `create(name, params, **hparams)` with a plain parameter list, GaLore and Fira project every
ndim >= 2 parameter whose min(m, n) exceeds the rank (`rank_fraction` 0.25 of min(m, n), or a fixed
`rank`) and give everything else AdamW; FRUGAL projects every ndim >= 2 parameter; SWAN whitens
every ndim >= 2 parameter. Races build the recipes' dict groups instead (only the hidden layers'
matrices; trainlab/optim/selection.py).

Race defaults: the official recipes' values where they exist (GaLore/Fira scripts: lr 0.01 with
scale/alpha 0.25, warm-up 10 % of the steps); AdamW's race defaults otherwise.
"""

from __future__ import annotations

from trainlab.optim.projection import FRUGAL, FiraAdamW, GaLoreAdamW, Projector, SubspaceAdam
from trainlab.optim.registry import register
from trainlab.optim.swan import SWAN

__all__ = ["FRUGAL", "FiraAdamW", "GaLoreAdamW", "Projector", "SWAN", "SubspaceAdam"]

register("galore", GaLoreAdamW,
         "GaLore-AdamW: Adam moments in a rank-r SVD subspace of each matrix gradient, refreshed "
         "every update_proj_gap steps (update rank <= r)",
         "Zhao et al., GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection, "
         "ICML 2024 (arXiv 2403.03507)",
         race_defaults={"lr": 0.01, "weight_decay": 0.0, "warmup_fraction": 0.1})
register("fira", FiraAdamW,
         "Fira: GaLore plus the norm-scaled full-rank residual with a norm-growth limiter",
         "Chen et al., Fira: Can We Achieve Full-rank Training of LLMs Under Low-rank Constraint? "
         "(arXiv 2410.01623)",
         race_defaults={"lr": 0.01, "weight_decay": 0.0, "warmup_fraction": 0.1})
register("frugal", FRUGAL,
         "FRUGAL: AdamW on a state-full subspace (blocks, SVD or random columns), signSGD on the "
         "rest",
         "Zmushko et al., FRUGAL: Memory-Efficient Optimization by Reducing State Overhead for "
         "Scalable Training, ICML 2025 (arXiv 2411.07837)",
         race_defaults={"lr": 4e-3, "weight_decay": 0.01, "warmup_fraction": 0.05})
register("swan", SWAN,
         "SWAN: stateless GradNorm + GradWhitening (Newton-Schulz) for matrices, AdamW for the rest",
         "Ma, Gong, Scetbon, Meeds, SWAN: SGD with Normalization and Whitening Enables Stateless "
         "LLM Training, ICML 2025 (arXiv 2412.13148)",
         # every whitened entry moves by about lr (RMS 1 after the rescale): the class's lr 1e-3
         race_defaults={"lr": 1e-3, "weight_decay": 0.0, "warmup_fraction": 0.05})
