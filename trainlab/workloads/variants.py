"""Workload variants: held-out robustness checks in the manner of AlgoPerf's (e.g. imagenet_resnet_silu).

Each variant is its base workload with one architectural option fixed to a non-default value (same
data, metric, step budget, batch size and evaluation cadence) and its own validation target, set
with the base workload's protocol on a narrow learning-rate grid around the base's tuned AdamW lr
(record: docs/variants.md). The question a variant asks: does a configuration tuned on the base
still reach the variant's target? `base` names the base workload so tuning code can fall back to it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from trainlab.errors import UsageError
from trainlab.workloads.mnist1d_cnn import MNIST1DCNN
from trainlab.workloads.mnist1d_mlp import MNIST1DMLP
from trainlab.workloads.text_lm import TextLM


class Variant:
    """Mixin that pins `fixed` options of the base workload it is listed before.

    A pinned option stays in `options` (with the pinned value as its default, so `trainlab list` and
    `describe()` show it) but may not be set to anything else: a variant with its option changed
    would be a different model judged against the wrong target.
    """

    base: ClassVar[str]
    # a mixin of a `Workload` subclass, whose attributes these are
    name: ClassVar[str]
    options: ClassVar[dict[str, Any]]
    fixed: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "fixed" in vars(cls):
            cls.options = {
                **cls.options,
                **{
                    key: replace(cls.options[key], default=value, help="fixed by this variant")
                    for key, value in cls.fixed.items()
                },
            }

    def __init__(self, **options: Any) -> None:
        for key, value in self.fixed.items():
            if key in options and str(options[key]) != str(value):
                raise UsageError(
                    f"workload {self.name!r} fixes {key}={value!r}; for {key}="
                    f"{options[key]!r} use workload {self.base!r} with that option"
                )
        super().__init__(**options)


# Each default_target: docs/variants.md (set-targets on AdamW lrs x0.5, x1, x2 of the base's tuned lr,
# widened by factors of 2 while the best lr sat on the grid's edge).


class MNIST1DMLPGELU(Variant, MNIST1DMLP):
    """mnist1d_mlp with GELU instead of ReLU after both hidden layers."""

    name = "mnist1d_mlp_gelu"
    base = "mnist1d_mlp"
    description = "mnist1d_mlp variant: GELU instead of ReLU"
    fixed = {"activation": "gelu"}
    default_target = 0.8786  # docs/variants.md: median best, AdamW lr 0.016


class MNIST1DMLPTanh(Variant, MNIST1DMLP):
    """mnist1d_mlp with tanh instead of ReLU: saturating units, smaller gradients far from zero."""

    name = "mnist1d_mlp_tanh"
    base = "mnist1d_mlp"
    description = "mnist1d_mlp variant: tanh instead of ReLU"
    fixed = {"activation": "tanh"}
    default_target = 0.7958  # docs/variants.md: median best, AdamW lr 0.008


class MNIST1DCNNSiLU(Variant, MNIST1DCNN):
    """mnist1d_cnn with SiLU instead of ReLU in every block."""

    name = "mnist1d_cnn_silu"
    base = "mnist1d_cnn"
    description = "mnist1d_cnn variant: SiLU instead of ReLU"
    fixed = {"activation": "silu"}
    default_target = 0.9824  # docs/variants.md: median best, AdamW lr 0.016


class MNIST1DCNNNoNorm(Variant, MNIST1DCNN):
    """mnist1d_cnn without BatchNorm: no normalisation, so the lr must cope with raw conv scales."""

    name = "mnist1d_cnn_no_norm"
    base = "mnist1d_cnn"
    description = "mnist1d_cnn variant: no BatchNorm"
    fixed = {"norm": "none"}
    default_target = 0.9698  # docs/variants.md: median best, AdamW lr 0.016


class TextLMPostLN(Variant, TextLM):
    """text_lm with post-LayerNorm blocks (LN after each residual sum, no final LN)."""

    name = "text_lm_post_ln"
    base = "text_lm"
    description = "text_lm variant: post-LayerNorm blocks"
    fixed = {"norm_placement": "post"}
    default_target = 3.1397  # docs/variants.md: median best, AdamW lr 0.001


class TextLMReLU(Variant, TextLM):
    """text_lm with ReLU instead of GELU in the MLPs."""

    name = "text_lm_relu"
    base = "text_lm"
    description = "text_lm variant: ReLU MLPs instead of GELU"
    fixed = {"activation": "relu"}
    default_target = 2.7316  # docs/variants.md: median best, AdamW lr 0.004


VARIANTS: dict[str, type[Variant]] = {
    cls.name: cls
    for cls in (MNIST1DMLPGELU, MNIST1DMLPTanh, MNIST1DCNNSiLU, MNIST1DCNNNoNorm, TextLMPostLN, TextLMReLU)
}


def variants_of(base_name: str) -> list[str]:
    """Names of the registered variants of workload `base_name` (empty if it has none)."""
    return [name for name, cls in VARIANTS.items() if cls.base == base_name]
