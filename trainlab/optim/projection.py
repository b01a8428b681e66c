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

Projectors (`Projector`, one per matrix parameter, kept as plain tensors/ints in optimizer state so
`state_dict()` round-trips it and `state_bytes()` counts it):

    RIGHT    m >= n ('std' side of GaLore/Fira/FRUGAL-SVD): Q = Vh[:r] (r x n) of svd(G);
             P(G) = G Q^T (m x r),  P^-1(R) = R Q (m x n)
    LEFT     m <  n: P = U[:, :r] (m x r);  P(G) = P^T G (r x n),  P^-1(R) = P R
    COLUMNS  FRUGAL's random coordinate choice ("columns", its default coordinate mode): k = max(1,
             int(n * density)) distinct columns drawn uniformly, sorted; P(G) = G[:, idx] (m x k),
             P^-1(R) scatters R back into those columns (zeros elsewhere)
    FULL     FRUGAL's block choice, active tensor: P = identity
    EMPTY    FRUGAL's block choice, inactive tensor: nothing is projected (no Adam state at all)

The SVD is `torch.linalg.svd(G.float(), full_matrices=False)` (fp32 whatever the parameter dtype,
as GaLore does), refreshed when `(step - 1) % update_proj_gap == 0` with `step` 1-based (GaLore's
`step % gap == 0` before its increment). The factor is copied into its own storage (a slice of
Vh would keep the whole n x n factor alive and be counted by `state_bytes`).

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
from typing import Any

import torch

from trainlab.optim.state import KeepsSavedStateDtypes
from trainlab.optim.validation import check_betas, check_dense_real, check_non_negative, check_range
from trainlab.optim.registration import Registration

# Projector kinds; stored as Python ints (a str in optimizer state is mangled by torch's loader).
RIGHT, LEFT, COLUMNS, FULL, EMPTY = 0, 1, 2, 3, 4
_KIND_NAMES = {RIGHT: "right", LEFT: "left", COLUMNS: "columns", FULL: "full", EMPTY: "empty"}

_PROJECTION_MODES = ("auto", "all", "none")


def matrix_shape(p: torch.Tensor) -> tuple[int, int]:
    """The m x n view of a parameter with ndim >= 2: (shape[0], prod(shape[1:]))."""
    return p.shape[0], math.prod(p.shape[1:])


class Projector:
    """The subspace of one matrix parameter: `project(G)` and `project_back(R)`.

    A projector is rebuilt from optimizer state on every step (`from_state`) and written back with
    `to_state`, so the only persistent data are `state["proj_kind"]` (int) and `state["proj"]`
    (the basis tensor, or the int64 column indices; absent for FULL/EMPTY).
    """

    def __init__(self, kind: int, basis: torch.Tensor | None = None) -> None:
        self.kind = kind
        self.basis = basis

    # ---- construction --------------------------------------------------------------------

    @classmethod
    def svd(cls, grad: torch.Tensor, rank: int) -> "Projector":
        """GaLore's 'std' side choice from the SVD of the current m x n gradient (computed in fp32)."""
        m, n = grad.shape
        u, _, vh = torch.linalg.svd(grad.float(), full_matrices=False)
        if m >= n:
            return cls(RIGHT, vh[:rank].clone(memory_format=torch.contiguous_format))
        return cls(LEFT, u[:, :rank].clone(memory_format=torch.contiguous_format))

    @classmethod
    def columns(cls, n: int, count: int, generator: torch.Generator, device) -> "Projector":
        """`count` distinct columns of n, uniformly at random from `generator`, sorted."""
        idx = torch.randperm(n, generator=generator)[:count].sort().values
        return cls(COLUMNS, idx.to(device))

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Projector":
        return cls(state["proj_kind"], state.get("proj"))

    def to_state(self, state: dict[str, Any]) -> None:
        state["proj_kind"] = self.kind
        if self.basis is None:
            state.pop("proj", None)
        else:
            state["proj"] = self.basis

    # ---- the maps --------------------------------------------------------------------------

    @property
    def has_subspace(self) -> bool:
        return self.kind != EMPTY

    def projected_shape(self, m: int, n: int) -> tuple[int, int]:
        if self.kind == RIGHT:
            return m, self.basis.shape[0]
        if self.kind == LEFT:
            return self.basis.shape[1], n
        if self.kind == COLUMNS:
            return m, self.basis.numel()
        if self.kind == FULL:
            return m, n
        return 0, 0

    def project(self, g: torch.Tensor) -> torch.Tensor:
        if self.kind == RIGHT:
            return g @ self.basis.T
        if self.kind == LEFT:
            return self.basis.T @ g
        if self.kind == COLUMNS:
            return g.index_select(1, self.basis)
        if self.kind == FULL:
            return g
        raise RuntimeError("an EMPTY projector has no subspace to project onto")

    def project_back(self, r: torch.Tensor, m: int, n: int) -> torch.Tensor:
        if self.kind == RIGHT:
            return r @ self.basis
        if self.kind == LEFT:
            return self.basis @ r
        if self.kind == COLUMNS:
            return r.new_zeros(m, n).index_copy_(1, self.basis, r)
        if self.kind == FULL:
            return r
        return r.new_zeros(m, n)

    def __repr__(self) -> str:
        shape = None if self.basis is None else tuple(self.basis.shape)
        return f"Projector({_KIND_NAMES[self.kind]}, basis={shape})"


# ---- the inner Adam rule ------------------------------------------------------------------------

def adam_moments_(exp_avg, exp_avg_sq, g, beta1: float, beta2: float) -> None:
    exp_avg.lerp_(g, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)


def adam_direction(exp_avg, exp_avg_sq, step: int, beta1: float, beta2: float, eps: float,
                   form: str) -> tuple[torch.Tensor, float]:
    """(psi, c) with the Adam update = c * psi.

    form "hf" (GaLore/Fira official, from `transformers.AdamW`): psi = m / (sqrt(v) + eps),
        c = sqrt(1 - beta2^t) / (1 - beta1^t)
    form "torch" (torch.optim.AdamW, FRUGAL): psi = m / (sqrt(v) / sqrt(1 - beta2^t) + eps),
        c = 1 / (1 - beta1^t)
    """
    bc1 = 1 - beta1 ** step
    bc2 = 1 - beta2 ** step
    if form == "hf":
        return exp_avg / (exp_avg_sq.sqrt().add_(eps)), math.sqrt(bc2) / bc1
    return exp_avg / (exp_avg_sq.sqrt().div_(math.sqrt(bc2)).add_(eps)), 1 / bc1


# ---- complement policies ------------------------------------------------------------------------

class NoComplement:
    """GaLore: the out-of-subspace part of the gradient is dropped."""

    def __call__(self, g, r, psi, projector, state, group, c):
        return None


class FiraResidual:
    """Fira: the residual, rescaled per row/column by Adam's gain, under the norm-growth limiter.

        S_t = (G - alpha * P^-1(R)) * phi,   phi = ||psi||_d / (||R||_d + 1e-8)
              (norms over the rank axis d of R: one factor per row of G on the RIGHT side,
               per column on the LEFT side; alpha inside: residual keeps (1 - alpha) of P^-1(R))
        t > 1: zeta = max(||S_t|| / (s_{t-1} + 1e-8), gamma) / gamma;  S_t <- S_t / zeta
        s_t = ||S_t||  (after limiting; the first step stores it unlimited)
    and returns c * S_t (the same bias-corrected step size as the subspace part).
    """

    def __call__(self, g, r, psi, projector, state, group, c):
        m, n = g.shape
        dim = 1 if projector.kind == RIGHT else 0
        phi = torch.linalg.vector_norm(psi, dim=dim) / (torch.linalg.vector_norm(r, dim=dim) + 1e-8)
        phi = phi.unsqueeze(1) if dim == 1 else phi.unsqueeze(0)
        s = (g - group["alpha"] * projector.project_back(r, m, n)) * phi
        norm = torch.linalg.vector_norm(s)
        if "limiter_norm" in state:
            gamma = group["gamma"]
            zeta = torch.clamp(norm / (state["limiter_norm"] + 1e-8), min=gamma) / gamma
            s = s / zeta
            state["limiter_norm"] = norm / zeta
        else:
            state["limiter_norm"] = norm.clone()
        return s.mul_(c)


class StateFreeResidual:
    """FRUGAL: a state-free rule on the residual G - P^-1(P(G)), scaled by `inactive_lr_scale`.

    sign_sgd -> inactive_lr_scale * sign(residual); sgd -> inactive_lr_scale * residual; no -> nothing.
    (Returned in units of lr: the caller applies W <- W - lr * term.)
    """

    def __call__(self, g, r, psi, projector, state, group, c):
        rule = group["inactive_update_rule"]
        if rule == "no" or projector.kind == FULL:
            return None
        m, n = g.shape
        residual = g if r is None else g - projector.project_back(r, m, n)
        if rule == "sign_sgd":
            residual = residual.sign()
        return residual * group["inactive_lr_scale"]


# ---- the shared optimizer engine ---------------------------------------------------------------

class SubspaceAdam(KeepsSavedStateDtypes):
    """Engine shared by GaLoreAdamW, FiraAdamW and FRUGAL (not meant to be built directly).

    A subclass sets `_group_keys` (dict-group keys that switch projection on), `_adam_form`,
    `_decay_first` (decoupled decay before the update, else after it), `_complement`, and
    implements `_auto_projects`, `_refit` and `_validate_method`.
    """

    _group_keys: tuple[str, ...] = ()
    _adam_form = "hf"
    _decay_first = False
    _complement: Any = NoComplement()

    def __init__(self, params, defaults: dict[str, Any]) -> None:
        if isinstance(params, torch.Tensor):
            params = [params]
        params = list(params)
        self._plain_params = not (params and isinstance(params[0], dict))
        # Official layout: some dict group names the method's key; then groups without it are plain
        # AdamW. If no group names it, every group is "auto" (as a plain list would be).
        self._official_layout = not self._plain_params and any(
            k in group for group in params for k in self._group_keys)
        try:
            super().__init__(params, defaults)
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
                g["projection"] == "all" for g in getattr(self, "param_groups", []))
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

    @staticmethod
    def recipe_groups(hidden: list, rest: list) -> list[dict[str, Any]]:
        """The official recipes' layout: the hidden matrices projected, everything else AdamW."""
        return [g for g in ({"params": hidden, "projection": "auto"},
                            {"params": rest, "projection": "none"}) if g["params"]]

    def coverage(self) -> tuple[int, int]:
        """(entries the method's own rule updates, all entries): what it treats unlike AdamW."""
        groups = [(p, g) for g in self.param_groups for p in g["params"]]
        return (sum(p.numel() for p, g in groups if self.is_projected(p, g)),
                sum(p.numel() for p, _ in groups))

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
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        name = type(self).__name__
        index = -1
        for gi, group in enumerate(self.param_groups):
            self._begin_group(group, gi)
            for p in group["params"]:
                index += 1
                if p.grad is None:
                    continue
                check_dense_real(name, p)
                if self.is_projected(p, group):
                    self._projected_update(p, group, index)
                else:
                    self._dense_update(p, group)
        return loss

    def _decay(self, p, group, before: bool) -> None:
        wd = group["weight_decay"]
        if wd and before == self._decay_first:
            p.mul_(1 - group["lr"] * wd)

    def _dense_update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        state = self.state[p]
        if "step" not in state:
            state["step"] = 0
            fp32 = dict(dtype=torch.float32, memory_format=torch.preserve_format)
            state["exp_avg"] = torch.zeros_like(p, **fp32)
            state["exp_avg_sq"] = torch.zeros_like(p, **fp32)
        self._decay(p, group, before=True)
        state["step"] += 1
        beta1, beta2 = group["betas"]
        g = p.grad.float()
        adam_moments_(state["exp_avg"], state["exp_avg_sq"], g, beta1, beta2)
        psi, c = adam_direction(state["exp_avg"], state["exp_avg_sq"], state["step"], beta1, beta2,
                                group["eps"], self._adam_form)
        p.add_(psi.mul_(c).to(p.dtype), alpha=-group["lr"])
        self._decay(p, group, before=False)

    def _projected_update(self, p: torch.Tensor, group: dict[str, Any], index: int) -> None:
        state = self.state[p]
        m, n = matrix_shape(p)
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
        update = None
        if projector.has_subspace:
            if "exp_avg" not in state or (fresh is not None and self._reset_on_refresh(group)):
                shape = projector.projected_shape(m, n)
                state["exp_avg"] = torch.zeros(shape, dtype=torch.float32, device=p.device)
                state["exp_avg_sq"] = torch.zeros(shape, dtype=torch.float32, device=p.device)
                state["adam_step"] = 0
            state["adam_step"] += 1
            r = projector.project(g)
            adam_moments_(state["exp_avg"], state["exp_avg_sq"], r, beta1, beta2)
            psi, c = adam_direction(state["exp_avg"], state["exp_avg_sq"], state["adam_step"], beta1,
                                    beta2, group["eps"], self._adam_form)
            update = projector.project_back(psi, m, n) * (self._scale(group) * c)
        extra = self._complement(g, r, psi, projector, state, group, c)
        if extra is not None:
            update = extra if update is None else update.add_(extra)
        if update is not None:
            p.add_(update.reshape(p.shape).to(p.dtype), alpha=-group["lr"])
        self._decay(p, group, before=False)


def _validate_common(group: dict[str, Any]) -> None:
    check_non_negative("lr", group["lr"])
    check_betas(group["betas"])
    check_non_negative("eps", group["eps"])
    check_non_negative("weight_decay", group["weight_decay"])
    if group["projection"] not in _PROJECTION_MODES:
        raise ValueError(f"projection must be one of {', '.join(_PROJECTION_MODES)}, "
                         f"got {group['projection']!r}")


def _check_int(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


# ---- GaLore and Fira ---------------------------------------------------------------------------

DEFAULT_RANK_FRACTION = 0.25


def resolve_rank(group: dict[str, Any], m: int, n: int) -> int:
    """The rank used for an m x n matrix: `rank` when given, else max(1, round(rank_fraction *
    min(m, n))). A fixed rank (the paper's 128-512) suits LLM widths only; the fraction is the papers'
    own ratio (rank 128 of width 512, 256 of 1024, 512 of 2048: 1/4) and applies to any width."""
    if group.get("rank") is not None:
        return group["rank"]
    fraction = group.get("rank_fraction")
    return max(1, round((DEFAULT_RANK_FRACTION if fraction is None else fraction) * min(m, n)))


class _LowRankAdam(SubspaceAdam):
    """GaLore/Fira shared part: SVD projector, HF-form Adam, moments kept across refreshes."""

    _group_keys = ("rank", "rank_fraction")
    coverage_setting = "rank_fraction"   # what to lower when no matrix would be projected
    _adam_form = "hf"
    _decay_first = False

    def _auto_projects(self, group, m, n):
        return resolve_rank(group, m, n) < min(m, n)

    def _refit(self, group, g, state, index, step):
        if (step - 1) % group["update_proj_gap"] != 0:
            return None
        return Projector.svd(g, resolve_rank(group, *g.shape))

    def _validate_method(self, group, params):
        _check_int("update_proj_gap", group["update_proj_gap"], 1)
        if group.get("rank") is None:
            if group.get("rank_fraction") is not None:
                check_range("rank_fraction", group["rank_fraction"], 0.0, 1.0, low_open=True)
            return
        _check_int("rank", group["rank"], 1)
        if group["projection"] != "all":
            return
        for p in params:
            if p.ndim < 2:
                continue
            m, n = matrix_shape(p)
            if group["rank"] > min(m, n):
                raise ValueError(
                    f"rank must be in [1, {min(m, n)}] (1 <= rank <= min(m, n)) for the {m}x{n} matrix "
                    f"of a parameter of shape {tuple(p.shape)}, got {group['rank']}")


class GaLoreAdamW(_LowRankAdam):
    """GaLore-AdamW (Zhao et al., ICML 2024, arXiv 2403.03507): Adam in a low-rank gradient subspace.

    Per projected m x n matrix, t the 1-based step:
        every update_proj_gap steps (t = 1, gap + 1, ...): Q/P <- SVD side choice of G (module doc)
        R = P(G);  m <- b1 m + (1-b1) R;  v <- b2 v + (1-b2) R^2          (moments NOT reset)
        W <- W - lr * sqrt(1-b2^t)/(1-b1^t) * scale * P^-1(m / (sqrt(v) + eps))
        W <- W * (1 - lr * weight_decay)                                (decoupled, after)
    Non-projected parameters: the same Adam (eps inside, HF form) without projection.

    Defaults: lr 1e-3 and weight_decay 0 (official class defaults; the C4 recipes use lr 0.01, wd 0),
    eps 1e-6 (the official `transformers`-style AdamW), update_proj_gap 200 (README), scale 0.25 --
    the README / script recipe (`galore_scale 0.25`), not the class default 1.0. Rank: `rank_fraction`
    0.25 of each matrix's short side (the README's rank 128 at width 512, 256 at 1024, 512 at 2048;
    a fixed 128 would project nothing narrower than 129), or a fixed `rank` when given.

    State bytes (fp32 state, whatever the parameter dtype), per projected m x n matrix with rank r:
        4 * r * (min(m, n) + 2 * max(m, n))
        (projector r x min(m, n) -- Vh[:r] (r x n) for m >= n, U[:, :r] (m x r) for m < n -- plus
        two moments of the projected shape r x max(m, n)); for m < n that is the issue's
        4 * (m*r + 2*r*n). Every other parameter: 8 * numel (AdamW).
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.0, rank: int | None = None,
                 rank_fraction: float = DEFAULT_RANK_FRACTION, update_proj_gap: int = 200,
                 scale: float = 0.25) -> None:
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, rank=rank,
                        rank_fraction=rank_fraction, update_proj_gap=update_proj_gap, scale=scale)
        super().__init__(params, defaults)

    def _validate_method(self, group, params):
        check_non_negative("scale", group["scale"])
        super()._validate_method(group, params)

    def _scale(self, group):
        return group["scale"]


class FiraAdamW(_LowRankAdam):
    """Fira (Chen et al., arXiv 2410.01623): GaLore plus a norm-scaled full-rank residual.

    Per projected m x n matrix, t the 1-based step (Fira paper; official fira_adamw.py):
        R = P(G) (GaLore's SVD projector, refreshed every update_proj_gap steps incl. the first)
        m, v: Adam moments of R (never reset);  psi = m / (sqrt(v) + eps);  c = sqrt(1-b2^t)/(1-b1^t)
        phi = ||psi||_d / (||R||_d + 1e-8)      per row (m >= n) or per column (m < n) of G
        S_t = (G - alpha * P^-1(R)) * phi       (alpha inside project_back, as coded officially)
        t > 1: zeta = max(||S_t|| / (s_{t-1} + 1e-8), gamma) / gamma;  S_t <- S_t / zeta
        s_t = ||S_t|| (stored, after limiting; unlimited on the first step)
        W <- W - lr * c * (alpha * P^-1(psi) + S_t)
        W <- W * (1 - lr * weight_decay)        (decoupled, after)
    Non-projected parameters: plain Adam of the same form.

    Defaults: eps 1e-6, gamma 1.01, rank as GaLore's (rank_fraction 0.25 of the short side, or a
    fixed `rank`), update_proj_gap 200 and alpha 0.25 (README and the
    60M-350M scripts; the argparse default is 1.0 and the 1B/7B scripts use 0.0625), lr 1e-3 and
    weight_decay 0 (official default; the scripts use lr 0.01).

    State bytes per projected m x n matrix with rank r: GaLore's 4 * r * (min(m, n) + 2 * max(m, n))
    plus 4 for the stored limiter norm s_t (an fp32 scalar tensor); other parameters 8 * numel.
    """

    _complement = FiraResidual()

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.0, rank: int | None = None,
                 rank_fraction: float = DEFAULT_RANK_FRACTION, update_proj_gap: int = 200,
                 alpha: float = 0.25, gamma: float = 1.01) -> None:
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, rank=rank,
                        rank_fraction=rank_fraction, update_proj_gap=update_proj_gap, alpha=alpha,
                        gamma=gamma)
        super().__init__(params, defaults)

    def _validate_method(self, group, params):
        check_non_negative("alpha", group["alpha"])
        ok = isinstance(group["gamma"], (int, float)) and not isinstance(group["gamma"], bool)
        if not ok or not math.isfinite(group["gamma"]) or group["gamma"] < 1.0:
            raise ValueError(f"gamma must be a finite number >= 1, got {group['gamma']!r}")
        super()._validate_method(group, params)

    def _scale(self, group):
        return group["alpha"]


# ---- FRUGAL ------------------------------------------------------------------------------------

_FRUGAL_PROJ_TYPES = ("svd", "random_columns", "block")
_FRUGAL_RULES = ("sign_sgd", "sgd", "no")
_BLOCK_ORDERS = ("descending", "ascending", "random")


def _mix_seed(*values: int) -> int:
    """A deterministic 63-bit seed from integers (so random choices replay after a reload)."""
    h = 0x243F6A8885A308D3
    for v in values:
        h = ((h ^ (v & 0xFFFFFFFFFFFFFFFF)) * 0x100000001B3 + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


def frugal_rank(density: float, m: int, n: int) -> int:
    """FRUGAL-SVD rank: max(1, round(density * min(m, n)))."""
    return max(1, round(density * min(m, n)))


def frugal_columns(density: float, n: int) -> int:
    """FRUGAL random-columns count: max(1, int(density * n))."""
    return max(1, int(density * n))


class FRUGAL(SubspaceAdam):
    """FRUGAL (Zmushko et al., ICML 2025, arXiv 2411.07837): Adam on a subspace, signSGD off it.

    Per parameter with a gradient, t the 1-based step (FRUGAL paper; official
    `proj_optimizer_templates.py`):
        W <- W * (1 - lr * weight_decay)                                (decoupled, BEFORE)
        svd / random_columns: every update_gap steps (t = 1, gap + 1, ...) choose P; with
            reset_statistics the moments are zeroed and Adam's step count restarts at 0
            R = P(G);  U = P^-1(AdamW(R))   torch form: (m/(1-b1^k)) / (sqrt(v)/sqrt(1-b2^k) + eps)
            U += inactive_lr_scale * rule(G - P^-1(R))      rule: sign (sign_sgd) | identity (sgd) | 0
        block: every update_gap steps, the group's state is cleared and max(1, round(N * density))
            of its N projected tensors become active (order: block_order); an active tensor gets
            full AdamW (fresh moments, step 0), an inactive one inactive_lr_scale * rule(G)
        W <- W - lr * U
    Non-projected parameters (1-D, or groups without `density`): plain AdamW of the same form.

    Choices: proj_type "svd" uses GaLore's 'std' side with r = max(1, round(density * min(m, n)));
    "random_columns" draws k = max(1, int(density * n)) columns of the m x n view ("columns" is the
    official coordinate default); "block" is the official `--optimizer frugal` of the C4
    pre-training scripts and is the default here, with block_order "descending" as those scripts
    pass (the class default there is "random"). The max(1, .) guards keep a tiny model from having
    no state-full part (Python's round(0.5) == 0). The svd/columns refresh is triggered per
    parameter from its own step count (officially from the group's first parameter: the same when
    every parameter gets a gradient every step); block refreshes use a per-group step counter.
    Randomness (columns, block_order "random") comes from a generator seeded from (seed, parameter
    or group index, step), so it is reproducible and replays exactly after `load_state_dict`.
    `proj_params_lr_scale` (official, 1.0 by default) is not exposed: scale lr instead.

    Defaults: density 0.25, update_gap 200, inactive_update_rule "sign_sgd", inactive_lr_scale 1.0
    (pre-training; 0.1 for fine-tuning), reset_statistics True, eps 1e-8, betas (0.9, 0.999), lr 1e-3
    (the C4 scripts' value), weight_decay 0.

    State bytes (fp32), per projected m x n tensor:
        svd            4 * r * (min(m, n) + 2 * max(m, n)),  r = max(1, round(density * min(m, n)))
        random_columns 8 * k + 8 * m * k  (int64 indices + two m x k moments), k = max(1, int(density * n))
        block          8 * m * n if active, 0 if inactive; max(1, round(N * density)) active per group
    Every other parameter: 8 * numel (AdamW).
    """

    _group_keys = ("density",)
    _adam_form = "torch"
    _decay_first = True
    _complement = StateFreeResidual()

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, density: float = 0.25,
                 update_gap: int = 200, proj_type: str = "block", block_order: str = "descending",
                 inactive_update_rule: str = "sign_sgd", inactive_lr_scale: float = 1.0,
                 reset_statistics: bool = True, seed: int = 0) -> None:
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, density=density,
                        update_gap=update_gap, proj_type=proj_type, block_order=block_order,
                        inactive_update_rule=inactive_update_rule, inactive_lr_scale=inactive_lr_scale,
                        reset_statistics=reset_statistics, seed=seed)
        super().__init__(params, defaults)

    def add_param_group(self, param_group):
        param_group.setdefault("block_step", 0)          # per-group step counter (block refreshes)
        param_group.setdefault("next_block_start", None)  # cursor of the ascending/descending order
        super().add_param_group(param_group)

    def _validate_method(self, group, params):
        check_range("density", group["density"], 0.0, 1.0, low_open=True)
        _check_int("update_gap", group["update_gap"], 1)
        _check_choice("proj_type", group["proj_type"], _FRUGAL_PROJ_TYPES)
        _check_choice("block_order", group["block_order"], _BLOCK_ORDERS)
        _check_choice("inactive_update_rule", group["inactive_update_rule"], _FRUGAL_RULES)
        check_non_negative("inactive_lr_scale", group["inactive_lr_scale"])
        if not isinstance(group["reset_statistics"], bool):
            raise ValueError(f"reset_statistics must be a bool, got {group['reset_statistics']!r}")
        _check_int("seed", group["seed"], 0)

    def _auto_projects(self, group, m, n):
        return True

    def _reset_on_refresh(self, group):
        return group["reset_statistics"]

    def _refit(self, group, g, state, index, step):
        kind = group["proj_type"]
        if kind == "block" or (step - 1) % group["update_gap"] != 0:
            return None
        m, n = g.shape
        if kind == "svd":
            return Projector.svd(g, frugal_rank(group["density"], m, n))
        gen = torch.Generator().manual_seed(_mix_seed(group["seed"], index, step))
        return Projector.columns(n, frugal_columns(group["density"], n), gen, g.device)

    def _begin_group(self, group, gi):
        """Block variant: choose the active tensors of this group every update_gap steps."""
        if group["proj_type"] != "block":
            return
        blocks = [p for p in group["params"] if self.is_projected(p, group)]
        if not blocks or not any(p.grad is not None for p in blocks):
            return
        group["block_step"] += 1
        if (group["block_step"] - 1) % group["update_gap"] != 0:
            return
        count = len(blocks)
        active = min(count, max(1, round(count * group["density"])))
        order = group["block_order"]
        if order == "random":
            gen = torch.Generator().manual_seed(_mix_seed(group["seed"], gi, group["block_step"]))
            chosen = set(torch.randperm(count, generator=gen)[:active].tolist())
        elif order == "ascending":
            start = group["next_block_start"] if group["next_block_start"] is not None else 0
            chosen = {(start + i) % count for i in range(active)}
            group["next_block_start"] = (start + active) % count
        else:  # descending
            start = group["next_block_start"] if group["next_block_start"] is not None else count - 1
            chosen = {(start - i) % count for i in range(active)}
            group["next_block_start"] = (start - active) % count
        for i, p in enumerate(blocks):
            state = self.state[p]
            for key in ("exp_avg", "exp_avg_sq", "adam_step"):
                state.pop(key, None)
            Projector(FULL if i in chosen else EMPTY).to_state(state)


# Race defaults: the official recipes' values where they exist (GaLore/Fira scripts: lr 0.01 with
# scale/alpha 0.25, warm-up 10 % of the steps); AdamW's race defaults otherwise.
REGISTRATIONS = (
    Registration(
        "galore", GaLoreAdamW,
        "GaLore-AdamW: Adam moments in a rank-r SVD subspace of each matrix gradient, refreshed "
        "every update_proj_gap steps (update rank <= r)",
        "Zhao et al., GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection, "
        "ICML 2024 (arXiv 2403.03507)",
        race_defaults={"lr": 0.01, "weight_decay": 0.0, "warmup_fraction": 0.1},
        search_space={"lr": {"min": 0.002, "max": 0.05, "scaling": "log"},
                      "one_minus_beta1": {"min": 0.03, "max": 0.3, "scaling": "log"},
                      "beta2": {"feasible_points": [0.999]},
                      "weight_decay": {"feasible_points": [0.0, 0.01]},
                      "warmup_fraction": {"feasible_points": [0.05, 0.1]}},
        state_bytes="4 r (min(m, n) + 2 max(m, n)) per projected m x n matrix; 8 B/param elsewhere"),
    Registration(
        "fira", FiraAdamW,
        "Fira: GaLore plus the norm-scaled full-rank residual with a norm-growth limiter",
        "Chen et al., Fira: Can We Achieve Full-rank Training of LLMs Under Low-rank Constraint? "
        "(arXiv 2410.01623)",
        race_defaults={"lr": 0.01, "weight_decay": 0.0, "warmup_fraction": 0.1},
        search_space={"lr": {"min": 0.002, "max": 0.05, "scaling": "log"},
                      "one_minus_beta1": {"min": 0.03, "max": 0.3, "scaling": "log"},
                      "beta2": {"feasible_points": [0.999]},
                      "weight_decay": {"feasible_points": [0.0, 0.01]},
                      "warmup_fraction": {"feasible_points": [0.05, 0.1]}},
        state_bytes="GaLore's + 4 B per projected matrix (the limiter's norm)"),
    Registration(
        "frugal", FRUGAL,
        "FRUGAL: AdamW on a state-full subspace (blocks, SVD or random columns), signSGD on the rest",
        "Zmushko et al., FRUGAL: Memory-Efficient Optimization by Reducing State Overhead for "
        "Scalable Training, ICML 2025 (arXiv 2411.07837)",
        race_defaults={"lr": 4e-3, "weight_decay": 0.01, "warmup_fraction": 0.05},
        search_space={"lr": {"min": 0.001, "max": 0.03, "scaling": "log"},
                      "one_minus_beta1": {"min": 0.03, "max": 0.3, "scaling": "log"},
                      "beta2": {"feasible_points": [0.999]},
                      "weight_decay": {"min": 0.001, "max": 0.1, "scaling": "log"},
                      "warmup_fraction": {"feasible_points": [0.02, 0.05, 0.1]}},
        state_bytes="per density and proj_type (FRUGAL docstring); 8 B/param outside the split matrices"),
)
