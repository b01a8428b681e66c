"""Subspace-projected Adam: one mechanism shared by GaLore, Fira and FRUGAL.

The three methods are one wrapper (optax's `scale_by_galore` shape: a projection around a base rule)
with three different policies for the part of the gradient the projection throws away:

    G            the gradient of a matrix parameter, as an m x n matrix (see "Shapes" below)
    R  = P(G)    its projection onto a subspace chosen by a `Projector` (refreshed every
                 `update_proj_gap` steps, the first step included)
    psi, c       an inner, stateful Adam rule run on R (moments live in the projected shape)
    U  = scale * P^-1(psi) * c  +  complement(G, R, psi)
    W <- W - lr * U

    complement   GaLore: nothing                      (the update has rank <= r)
                 Fira:   norm-scaled residual S_t with the norm-growth limiter
                 FRUGAL: a state-free rule on G - P^-1(P(G)) (signSGD by default, SGD, or nothing)

Everything here was written from the papers and from reading (not copying) their official code
(official code of GaLore, jiaweizzhao/GaLore `galore_torch/adamw.py` + `galore_projector.py`; Fira,
xichen-fy/Fira `optimizer_torch/fira_adamw.py`; FRUGAL, `frugal/proj_optimizer_templates.py`).

Projectors (`trainlab.optim.projector`): one per matrix parameter, kept in optimizer state.

Shapes: a parameter with ndim >= 2 is viewed as (shape[0], prod(shape[1:])): a conv kernel
(out, in, kh, kw) becomes (out, in*kh*kw). Parameters with ndim < 2 (biases, norm scales) and
parameters a group does not project get plain AdamW *in the same optimizer*, in the same form as
the method's own Adam (GaLore/Fira: the HF/`transformers` form with eps 1e-6 and decay after the
update; FRUGAL: the torch form with decay before the update), as the official code does.

Which parameters are projected (the group's "projection" entry, set when the group is added):

    "auto"  the constructor got a plain iterable of tensors (what `create(name, params)` does):
            every parameter with ndim >= 2 is projected when the method can save memory on it
            (GaLore/Fira: the rank r < min(m, n), so a 1 x n matrix gets AdamW; FRUGAL: every
            ndim >= 2 parameter).
    "all"   a dict group that names the method's key (GaLore/Fira: `rank` or `rank_fraction`;
            FRUGAL: `density`): every ndim >= 2 parameter of the group is projected, and a rank
            outside [1, min(m, n)] is a ValueError (this is the official usage:
            `[{"params": regular}, {"params": matrices, "rank": 128, ...}]`).
    "none"  a dict group without that key, when another group names it: plain AdamW for all its
            parameters (as in the official code, where groups without `rank` are plain Adam). When
            no group names the key (dict groups only varying lr, say), every group is "auto".
    A group may also set "projection" itself to one of these three values.
    Embeddings and LM heads are 2-D, so "auto" projects them; the official recipes project only the
    attention/MLP Linear weights -- `recipe_groups` (what races use, see trainlab/optim/selection.py)
    builds those dict groups from a model.

State is kept in fp32 whatever the parameter dtype (bf16 parameters get fp32 moments, an fp32
projector and fp32 arithmetic; the update is cast to the parameter dtype once, when applied). This
differs from torch.optim.AdamW, whose state follows the parameter dtype; `load_state_dict` is
overridden so the saved dtypes (fp32 moments, int64 column indices) survive the round trip, which
torch's default loader would cast to the parameter dtype.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, NamedTuple

import torch

from trainlab.optim.closure import closure_loss
from trainlab.optim.distributed import local
from trainlab.optim.owners import OwnerUpdates
from trainlab.optim.projector import FULL, RIGHT, Projector, matrix_shape
from trainlab.optim.state import KeepsSavedStateDtypes
from trainlab.optim.validation import check_betas, check_dense_real, check_non_negative

_PROJECTION_MODES = ("auto", "all", "none")


# ---- the inner Adam rule ------------------------------------------------------------------------


def adam_moments_(exp_avg, exp_avg_sq, g, beta1: float, beta2: float) -> None:
    exp_avg.lerp_(g, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)


def adam_direction(
    exp_avg, exp_avg_sq, step: int, beta1: float, beta2: float, eps: float, form: str
) -> tuple[torch.Tensor, float]:
    """(psi, c) with the Adam update = c * psi.

    form "hf" (GaLore/Fira official, from `transformers.AdamW`): psi = m / (sqrt(v) + eps),
        c = sqrt(1 - beta2^t) / (1 - beta1^t)
    form "torch" (torch.optim.AdamW, FRUGAL): psi = m / (sqrt(v) / sqrt(1 - beta2^t) + eps),
        c = 1 / (1 - beta1^t)
    """
    bc1 = 1 - beta1**step
    bc2 = 1 - beta2**step
    if form == "hf":
        return exp_avg / (exp_avg_sq.sqrt().add_(eps)), math.sqrt(bc2) / bc1
    return exp_avg / (exp_avg_sq.sqrt().div_(math.sqrt(bc2)).add_(eps)), 1 / bc1


# ---- complement policies ------------------------------------------------------------------------


class Complement(NamedTuple):
    """What a policy adds to the subspace update, U = P^-1(scale * c * (psi + coef)) + factor * dense:
    `coef` in the projected shape, `dense` m x n, `factor` (broadcast over `dense`) or None for 1."""

    coef: torch.Tensor | None = None
    dense: torch.Tensor | None = None
    factor: torch.Tensor | None = None


class NoComplement:
    """GaLore: the out-of-subspace part of the gradient is dropped."""

    def __call__(self, g, r, psi, projector, state, group, c) -> Complement | None:
        return None


class FiraResidual:
    """Fira: the residual, rescaled per row/column by Adam's gain, under the norm-growth limiter.

        S_t = (G - alpha * P^-1(R)) * phi,   phi = ||psi||_d / (||R||_d + 1e-8)
              (norms over the rank axis d of R: one factor per row of G on the RIGHT side,
               per column on the LEFT side; alpha inside: residual keeps (1 - alpha) of P^-1(R))
        t > 1: zeta = max(||S_t|| / (s_{t-1} + 1e-8), gamma) / gamma;  S_t <- S_t / zeta
        s_t = ||S_t||  (after limiting; the first step stores it unlimited)
    and adds c * S_t (the same bias-corrected step size as the subspace part).

    S_t is never formed: phi scales the rows (columns) that P^-1 leaves alone, so
    phi * P^-1(R) = P^-1(phi * R), and with an orthonormal basis <phi G, P^-1(phi R)> =
    ||phi R||^2 = ||P^-1(phi R)||^2, so ||S_t||^2 = ||phi G||^2 - (2 alpha - alpha^2) ||phi R||^2 and
        c * S_t / zeta = P^-1(scale * c * coef) + (c * phi / zeta) * G,  coef = -(phi R) / zeta
    (scale = alpha, the subspace part's). The step then costs GaLore's two matmuls plus one pass
    over G, instead of a third matmul and three m x n temporaries.
    """

    def __call__(self, g, r, psi, projector, state, group, c) -> Complement:
        dim = 1 if projector.kind == RIGHT else 0
        phi = torch.linalg.vector_norm(psi, dim=dim) / (torch.linalg.vector_norm(r, dim=dim) + 1e-8)
        g_norms = torch.linalg.vector_norm(g, dim=dim)  # of G's rows (RIGHT) or columns (LEFT)
        phi = phi.unsqueeze(1) if dim == 1 else phi.unsqueeze(0)
        phi_r = r * phi
        alpha = group["alpha"]
        squared = (phi.flatten().square() * g_norms.square()).sum() - (2 * alpha - alpha**2) * phi_r.square().sum()
        norm = squared.clamp_min(0).sqrt()
        if "limiter_norm" in state:
            gamma = group["gamma"]
            zeta = torch.clamp(norm / (state["limiter_norm"] + 1e-8), min=gamma) / gamma
            state["limiter_norm"] = norm / zeta
            phi_r = phi_r.div_(zeta)
            phi = phi / zeta
        else:
            state["limiter_norm"] = norm.clone()
        return Complement(coef=phi_r.neg_(), dense=g, factor=phi.mul_(c))


class StateFreeResidual:
    """FRUGAL: a state-free rule on the residual G - P^-1(P(G)), scaled by `inactive_lr_scale`.

    sign_sgd -> inactive_lr_scale * sign(residual); sgd -> inactive_lr_scale * residual; no -> nothing.
    (Returned in units of lr: the caller applies W <- W - lr * term.)
    """

    def __call__(self, g, r, psi, projector, state, group, c) -> Complement | None:
        rule = group["inactive_update_rule"]
        if rule == "no" or projector.kind == FULL:
            return None
        m, n = g.shape
        residual = g if r is None else g - projector.project_back(r, m, n)
        if rule == "sign_sgd":
            residual = residual.sign()
        return Complement(dense=residual * group["inactive_lr_scale"])  # residual may be G itself


# ---- the shared optimizer engine ---------------------------------------------------------------


class SubspaceAdam(OwnerUpdates, KeepsSavedStateDtypes):
    """Engine shared by GaLoreAdamW, FiraAdamW and FRUGAL (not meant to be built directly).

    A subclass sets `_group_keys` (dict-group keys that switch projection on), `_adam_form`,
    `_decay_first` (decoupled decay before the update, else after it), `_complement`, and
    implements `_auto_projects`, `_refit` and `_validate_method`.
    """

    _group_keys: tuple[str, ...] = ()
    _adam_form = "hf"
    _decay_first = False
    _complement: Any = NoComplement()

    def __init__(self, params, defaults: dict[str, Any], distributed: str = "auto", process_group=None) -> None:
        if isinstance(params, torch.Tensor):
            params = [params]
        params = list(params)
        self._plain_params = not (params and isinstance(params[0], dict))
        # Official layout: some dict group names the method's key; then groups without it are plain
        # AdamW. If no group names it, every group is "auto" (as a plain list would be).
        self._official_layout = not self._plain_params and any(k in group for group in params for k in self._group_keys)
        try:
            super().__init__(params, defaults, distributed, process_group)
        finally:
            self._plain_params = False

    # ---- hooks ---------------------------------------------------------------------------------

    def _auto_projects(self, group: dict[str, Any], m: int, n: int) -> bool:
        raise NotImplementedError

    def _refit(self, group, g: torch.Tensor, state, index: int, step: int) -> Projector | None:
        """A new projector if one is due at this 1-based step, else None."""
        raise NotImplementedError

    def _reset_on_refresh(self, group) -> bool:
        return False

    def _validate_method(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        raise NotImplementedError

    def _begin_group(self, group: dict[str, Any], gi: int) -> None:
        """Called once per group per step before any parameter is updated."""

    def _scale(self, group) -> float:
        return 1.0

    # ---- groups --------------------------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        params = param_group["params"]
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        param_group["params"] = params
        if "projection" not in param_group:
            official = getattr(self, "_official_layout", False) or any(
                g["projection"] == "all" for g in getattr(self, "param_groups", [])
            )
            if any(k in param_group for k in self._group_keys):
                param_group["projection"] = "all"
            elif getattr(self, "_plain_params", False) or not official:
                param_group["projection"] = "auto"
            else:
                param_group["projection"] = "none"
        merged = {**self.defaults, **param_group}
        tensors = [p[1] if isinstance(p, tuple) else p for p in params]
        _validate_common(merged)
        self._validate_method(merged, tensors)
        super().add_param_group(param_group)

    # the official recipes' layout (`trainlab.optim.selection.recipe_groups`): the hidden matrices
    # projected, everything else AdamW
    matrix_group: ClassVar[dict[str, Any]] = {"projection": "auto"}
    fallback_group: ClassVar[dict[str, Any]] = {"projection": "none"}

    def coverage(self) -> tuple[int, int]:
        """(entries the method's own rule updates, all entries): what it treats unlike AdamW."""
        groups = [(p, g) for g in self.param_groups for p in g["params"]]
        return (sum(p.numel() for p, g in groups if self.is_projected(p, g)), sum(p.numel() for p, _ in groups))

    def is_projected(self, p: torch.Tensor, group: dict[str, Any]) -> bool:
        """Whether `p` (a parameter of `group`) gets the projected rule (else plain AdamW)."""
        mode = group["projection"]
        if p.ndim < 2 or mode == "none":
            return False
        if mode == "all":
            return True
        return self._auto_projects(group, *matrix_shape(p))

    # ---- step ----------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        name = type(self).__name__
        index = -1
        matrices = []
        for gi, group in enumerate(self.param_groups):
            self._begin_group(group, gi)
            dense = []
            for p in group["params"]:
                index += 1
                if p.grad is None:
                    continue
                check_dense_real(name, p)
                if self.is_projected(p, group):  # whole matrices, by their owners (owners.py)
                    matrices.append((p, lambda matrix, g=group, i=index: self._projected_update(matrix, g, i)))
                else:
                    dense.append(p)
            self._dense_updates(dense, group)
        self.update_matrices(matrices)
        return loss

    def is_matrix(self, p: torch.Tensor, group: dict[str, Any]) -> bool:
        return self.is_projected(p, group)

    def _decay(self, p, group, before: bool) -> None:
        wd = group["weight_decay"]
        if wd and before == self._decay_first:
            p.mul_(1 - group["lr"] * wd)

    def _dense_updates(self, params: list[torch.Tensor], group: dict[str, Any]) -> None:
        """Plain Adam of the method's form on a group's non-projected parameters, as one foreach
        bucket (biases and norms are many small tensors: per-tensor ops would cost more in dispatch
        than in arithmetic). On FSDP2 shards it runs on the local shards (the rule is elementwise)."""
        if not params:
            return
        states = [self.state[p] for p in params]
        for p, state in zip(params, states):
            if "step" not in state:
                state["step"] = 0
                fp32: dict[str, Any] = dict(dtype=torch.float32, memory_format=torch.preserve_format)
                state["exp_avg"] = torch.zeros_like(p, **fp32)
                state["exp_avg_sq"] = torch.zeros_like(p, **fp32)
            state["step"] += 1
        grads: list[torch.Tensor] = [p.grad for p in params if p.grad is not None]  # the caller kept those
        params, grads, states = local(params, grads, states)
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        if wd and self._decay_first:
            torch._foreach_mul_(params, 1 - lr * wd)
        grads = [g.float() for g in grads]
        exp_avgs, exp_avg_sqs = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        bc1 = [1 - beta1 ** s["step"] for s in states]
        bc2 = [math.sqrt(1 - beta2 ** s["step"]) for s in states]
        denom = torch._foreach_sqrt(exp_avg_sqs)
        if self._adam_form == "hf":  # m / (sqrt(v) + eps) * sqrt(bc2) / bc1
            sizes = [-lr * b2 / b1 for b1, b2 in zip(bc1, bc2)]
        else:  # torch: m / (sqrt(v) / sqrt(bc2) + eps) / bc1
            torch._foreach_div_(denom, bc2)
            sizes = [-lr / b1 for b1 in bc1]
        torch._foreach_add_(denom, eps)
        if all(p.dtype == torch.float32 for p in params):
            torch._foreach_addcdiv_(params, exp_avgs, denom, sizes)
        else:
            for p, m, d, size in zip(params, exp_avgs, denom, sizes):
                p.add_((m / d).mul_(size).to(p.dtype))
        if wd and not self._decay_first:
            torch._foreach_mul_(params, 1 - lr * wd)

    def _projected_update(self, p: torch.Tensor, group: dict[str, Any], index: int) -> None:
        state = self.state[p]
        m, n = matrix_shape(p)
        assert p.grad is not None
        g = p.grad.reshape(m, n).float()
        self._decay(p, group, before=True)
        if "step" not in state:
            state["step"] = 0
        state["step"] += 1
        fresh = self._refit(group, g, state, index, state["step"])
        if fresh is not None:
            fresh.to_state(state)
        projector = Projector.from_state(state)
        beta1, beta2 = group["betas"]
        r = psi = None
        c = 1.0
        if projector.has_subspace:
            if "exp_avg" not in state or (fresh is not None and self._reset_on_refresh(group)):
                shape = projector.projected_shape(m, n)
                state["exp_avg"] = torch.zeros(shape, dtype=torch.float32, device=p.device)
                state["exp_avg_sq"] = torch.zeros(shape, dtype=torch.float32, device=p.device)
                state["adam_step"] = 0
            state["adam_step"] += 1
            r = projector.project(g)
            adam_moments_(state["exp_avg"], state["exp_avg_sq"], r, beta1, beta2)
            psi, c = adam_direction(
                state["exp_avg"], state["exp_avg_sq"], state["adam_step"], beta1, beta2, group["eps"], self._adam_form
            )
        extra = self._complement(g, r, psi, projector, state, group, c) or Complement()
        if psi is not None and extra.coef is not None:
            psi = psi.add_(extra.coef)
        lr, step_size = group["lr"], self._scale(group) * c
        if step_size == 0:  # no subspace part (APOLLO's update is the rescaled gradient): no matmul
            psi = None
        if p.dtype == torch.float32 and p.is_contiguous():
            # in place: p += -lr * step_size * P^-1(psi) as one matmul-accumulate, no m x n temporary
            target = p.view(m, n)
            if psi is not None:
                projector.add_back_(target, psi, -lr * step_size)
            if extra.dense is not None:
                if extra.factor is None:
                    target.add_(extra.dense, alpha=-lr)
                else:
                    target.addcmul_(extra.factor, extra.dense, value=-lr)
        else:
            update = None if psi is None else projector.project_back(psi, m, n).mul_(step_size)
            if extra.dense is not None:
                dense = extra.dense if extra.factor is None else extra.dense * extra.factor
                update = dense if update is None else update.add_(dense)
            if update is not None:
                p.add_(update.reshape(p.shape).to(p.dtype), alpha=-lr)
        self._decay(p, group, before=False)


def _validate_common(group: dict[str, Any]) -> None:
    check_non_negative("lr", group["lr"])
    check_betas(group["betas"])
    check_non_negative("eps", group["eps"])
    check_non_negative("weight_decay", group["weight_decay"])
    if group["projection"] not in _PROJECTION_MODES:
        raise ValueError(f"projection must be one of {', '.join(_PROJECTION_MODES)}, got {group['projection']!r}")
