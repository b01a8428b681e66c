"""Adam-mini (Zhang et al. 2024, "Adam-mini: Use Fewer Learning Rates To Gain More", ICLR 2025,
arXiv 2406.16793): Adam with one second moment per block of parameters instead of one per entry.

Per block B of a parameter, t its 1-based step (the official package adam-mini 1.1.1, `Adam_mini`):

    x <- x * (1 - lr * weight_decay)                           # decoupled, before the update
    m <- lerp(m, g, 1 - beta1)                                 # per entry, as Adam
    v_B <- beta2 * v_B + (1 - beta2) * mean_{i in B}(g_i^2)   # one number per block
    x_i <- x_i - lr / (1 - beta1^t) * m_i / (sqrt(v_B) / sqrt(1 - beta2^t) + eps)

The blocks (the paper's partition by Hessian structure). The official package picks them from
parameter names; trainlab's models are built by many hands, so the partition here follows shape,
with group keys for the cases names decided there:

- a parameter with ndim >= 2, viewed as rows x (everything else): one block per row (output
  neuron). That is the package's rule for embeddings and output heads (one per token), values,
  attention output projections and MLPs, and its default for any matrix it does not recognise
  by name is one block per tensor, which the paper warns can be unstable: rows are the safe choice.
- `head_numel` (a group key, None by default): blocks of that many consecutive entries instead,
  the package's rule for queries and keys (one block per head, head_numel = dim * dim / n_heads).
  A fused query-key-value matrix (trainlab's text_lm) has no per-head rule in the package; here it
  gets rows unless its group says otherwise.
- a 1-D parameter: `vector_block="element"` (default), one block per entry (plain AdamW, the
  package's rule for biases), or `"tensor"`, one block for the whole tensor (its rule for
  LayerNorm gains and anything else unnamed).

The package also exempts names containing "norm", "ln" or "bias" from weight decay; here that is the
groups' business (trainlab's `decay_1d=False` gives 1-D parameters no decay).

State: m (numel) and v (one per block), in the parameter's dtype: for fp32, 4 * numel + 4 * rows
bytes per matrix (about half of AdamW's 8 * numel), 8 * numel per 1-D parameter under "element"
and 4 * numel + 4 under "tensor". Under FSDP2 (rows sharded on dim 0) a row block is whole on one
rank; "tensor" blocks sum their squares over the mesh and head blocks must not straddle a shard.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch

from trainlab.optim.closure import closure_loss
from trainlab.optim.distributed import is_sharded, local
from trainlab.optim.registration import Registration
from trainlab.optim.validation import check_adam_hparams, check_choice, check_dense_real, check_int

VECTOR_BLOCKS = ("element", "tensor")


def blocks_of(p: torch.Tensor, group: dict[str, Any]) -> tuple[int, int] | None:
    """(blocks, entries per block) of a parameter's local tensor, or None for per-entry (Adam)."""
    if p.ndim >= 2:
        if group.get("head_numel") is not None:
            size = group["head_numel"]
            if p.numel() % size:
                raise ValueError(f"head_numel {size} does not divide the {p.numel()} entries of {tuple(p.shape)}")
            return p.numel() // size, size
        return p.shape[0], math.prod(p.shape[1:])
    if group["vector_block"] == "tensor":
        return 1, p.numel()
    return None


class AdamMini(torch.optim.Optimizer):
    """Adam-mini (update rule and partition in the module docstring).

    Defaults (adam-mini 1.1.1's): lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0.
    State bytes (fp32): 4 * numel + 4 * blocks per blocked parameter; 8 * numel per 1-D parameter
    under vector_block "element".
    """

    distributed_note = (
        "Blockwise on dim 0: under DDP and FSDP2 each rank updates its own shards (FSDP2 shards rows, so a "
        "row's block is whole on one rank), state sharded with the parameters; a whole-vector block "
        "(vector_block tensor) all-reduces its sum of squares, and head blocks must not straddle shards."
    )

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        vector_block: str = "element",
        head_numel: int | None = None,
    ) -> None:
        check_adam_hparams(lr, betas, eps, weight_decay)
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            vector_block=vector_block,
            head_numel=head_numel,
        )
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        merged = {**self.defaults, **param_group}
        check_choice("vector_block", merged["vector_block"], VECTOR_BLOCKS)
        if merged["head_numel"] is not None:
            check_int("head_numel", merged["head_numel"], 1)
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                check_dense_real(type(self).__name__, p)
                state = self.state[p]
                if "step" not in state:
                    self._init_state(p, state, group)
                state["step"] += 1  # here: `local()` hands sharded states over as copies of the dicts
            grads = [p.grad for p in params]
            ps, gs, ss = local(params, grads, [self.state[p] for p in params])
            for whole, p, g, state in zip(params, ps, gs, ss):
                self._update(p, g, state, group, whole if is_sharded(whole) else None)
        return loss

    def _init_state(self, p: torch.Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        local_p = p.to_local() if is_sharded(p) else p
        found = blocks_of(local_p, group)
        if found is None:
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        elif p.ndim < 2:  # one block: a 0-d tensor, whole on every rank
            state["exp_avg_sq"] = torch.zeros((), dtype=p.dtype, device=local_p.device)
        else:  # one entry per block of the local rows, sharded with them under FSDP2
            v = torch.zeros(found[0], 1, dtype=p.dtype, device=local_p.device)
            state["exp_avg_sq"] = self._place(v, p, group)

    @staticmethod
    def _place(v: torch.Tensor, p: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
        """A per-row (per-head) state laid out like `p`'s rows: a DTensor sharded alike under FSDP2."""
        if not is_sharded(p):
            return v
        from torch.distributed.tensor import DTensor

        rows = cast(tuple[int, int], blocks_of(p, group))[0]  # of the whole (global) parameter
        return DTensor.from_local(v, p.device_mesh, p.placements, shape=torch.Size((rows, 1)), stride=(1, 1))

    def _update(self, p, g, state, group, sharded) -> None:
        """One parameter's step on its local tensors (`sharded`: its DTensor under FSDP2, over whose
        mesh a whole-tensor block sums its squares)."""
        beta1, beta2 = group["betas"]
        lr, wd = group["lr"], group["weight_decay"]
        step = state["step"]
        found = blocks_of(p, group)
        v = state["exp_avg_sq"]
        if found is None:
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        elif v.ndim == 0:
            squares = g.square().sum()
            if sharded is not None:
                torch.distributed.all_reduce(squares, group=sharded.device_mesh.get_group())
            v.mul_(beta2).add_(squares / (g.numel() if sharded is None else sharded.numel()), alpha=1 - beta2)
        else:
            v.mul_(beta2).add_(g.reshape(found).square().mean(dim=1, keepdim=True), alpha=1 - beta2)
        if wd:
            p.mul_(1 - lr * wd)
        state["exp_avg"].lerp_(g, 1 - beta1)
        denom = (v.sqrt() / math.sqrt(1 - beta2**step)).add_(group["eps"])
        step_size = lr / (1 - beta1**step)
        if found is not None and v.ndim == 2:  # (blocks, 1), broadcast over p as it is laid out
            if group.get("head_numel") is None:
                denom = denom.view(-1, *[1] * (p.ndim - 1))  # a row's entries share its number
            else:
                denom = denom.expand(found).reshape(p.shape)
        p.addcdiv_(state["exp_avg"], denom, value=-step_size)


REGISTRATION = Registration(
    "adam_mini",
    AdamMini,
    "Adam-mini: Adam with one second moment per block (a matrix's row, a head), about half AdamW's state",
    "Zhang et al., Adam-mini: Use Fewer Learning Rates To Gain More, ICLR 2025 (arXiv 2406.16793)",
    # AdamW's race defaults (docs/targets.md): the paper runs Adam-mini at AdamW's hyperparameters
    # ("the same as AdamW"), and the official README says to use AdamW's lr and betas
    race_defaults={"lr": 4e-3, "weight_decay": 0.01, "warmup_fraction": 0.05},
    # AdamW's space (docs/search_spaces.md), for the same reason
    search_space={
        "lr": {"min": 1e-3, "max": 3e-2, "scaling": "log"},
        "one_minus_beta1": {"min": 0.03, "max": 0.3, "scaling": "log"},
        "beta2": {"feasible_points": [0.999]},
        "weight_decay": {"min": 1e-3, "max": 0.1, "scaling": "log"},
        "warmup_fraction": {"feasible_points": [0.02, 0.05, 0.1]},
    },
    state_bytes="4 numel + 4 rows per matrix (fp32); 8 B/param per 1-D parameter (vector_block tensor: 4 numel + 4)",
    reference="adam-mini 1.1.1 side by side, and a float64 re-derivation (tests/test_optim_adam_mini.py)",
)
