"""Workload variants: registered, built as intended, and without any change to their base workloads."""

from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

from trainlab.errors import UsageError
from trainlab.workloads import builtin_names, create_workload, workload_class
from trainlab.workloads.registry import DEFAULT_WORKLOADS
from trainlab.workloads.variants import VARIANTS, Variant, variants_of

# sha256 of each base model's state_dict for torch.manual_seed(0), computed with the code as it was
# before the variant options existed (commit dadeb76, torch 2.13.0 CPU): the defaults must stay
# bit-for-bit what targets and past results were measured with.
BASE_CHECKSUMS = {
    "mnist1d_mlp": (78_858, "12af567364f611e44b6502b227baf20c2f2aabc6a99e3aa0d8b7d2e26a3046cd"),
    "mnist1d_cnn": (13_898, "d758f194e878032a3b77a0e2af54dc4c6725923bf849adc0e2742e71861351da"),
    "text_lm": (391_008, "cc6e3eebb6ecba9f2367707563ef91ee5aefdd42350f9f7c78460f33805eba50"),
}
EXPECTED = {
    "mnist1d_mlp": {"mnist1d_mlp_gelu", "mnist1d_mlp_tanh"},
    "mnist1d_cnn": {"mnist1d_cnn_silu", "mnist1d_cnn_no_norm"},
    "text_lm": {"text_lm_post_ln", "text_lm_relu"},
}


def _model(name: str, **options) -> nn.Module:
    torch.manual_seed(0)
    return create_workload(name, **options).init_model()


def _checksum(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _types(model: nn.Module) -> set[type]:
    return {type(m) for m in model.modules()}


def test_every_default_workload_has_at_least_two_registered_variants():
    for base in DEFAULT_WORKLOADS:
        assert set(variants_of(base)) == EXPECTED[base]
    assert variants_of("mnist_cnn") == [] and variants_of("no_such_workload") == []
    assert set(VARIANTS) == set().union(*EXPECTED.values())
    for name, cls in VARIANTS.items():
        assert name in builtin_names() and workload_class(name) is cls
        assert cls.name == name and name.startswith(cls.base + "_") and cls.base in DEFAULT_WORKLOADS
        assert issubclass(cls, workload_class(cls.base)) and issubclass(cls, Variant)
        assert cls.__doc__ and cls.description != workload_class(cls.base).description


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_keeps_the_base_protocol_but_has_its_own_target(name):
    cls, base = VARIANTS[name], workload_class(VARIANTS[name].base)
    for attr in ("metric", "higher_is_better", "default_step_budget", "default_batch_size", "default_eval_every"):
        assert getattr(cls, attr) == getattr(base, attr)
    assert cls.default_target != base.default_target
    # A variant is a different problem; its target must not be one a base-tuned run trivially hits.
    assert (cls.default_target > 0.5) if cls.higher_is_better else (2.0 < cls.default_target < 4.0)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_builds_and_runs_forward_on_its_data(name):
    workload = create_workload(name, batch_size=4)
    x, y = next(workload.batches(workload.splits().train, torch.Generator().manual_seed(0)))
    model = _model(name)
    logits = model(x)
    assert logits.shape == ((4, 10) if workload.metric == "accuracy" else (4, x.shape[1], 256))
    assert torch.isfinite(workload.loss(model, (x, y)))


def test_variants_differ_from_their_base_as_intended():
    base_mlp, base_cnn, base_lm = (_types(_model(n)) for n in DEFAULT_WORKLOADS)
    assert nn.ReLU in base_mlp and nn.GELU not in base_mlp and nn.Tanh not in base_mlp
    assert _types(_model("mnist1d_mlp_gelu")) - {nn.GELU} == base_mlp - {nn.ReLU}
    assert _types(_model("mnist1d_mlp_tanh")) - {nn.Tanh} == base_mlp - {nn.ReLU}
    assert {nn.ReLU, nn.BatchNorm1d} <= base_cnn and nn.SiLU not in base_cnn
    assert _types(_model("mnist1d_cnn_silu")) - {nn.SiLU} == base_cnn - {nn.ReLU}
    no_norm = _types(_model("mnist1d_cnn_no_norm"))
    assert nn.BatchNorm1d not in no_norm and no_norm - {nn.Identity} == base_cnn - {nn.BatchNorm1d}
    assert nn.GELU in base_lm and nn.ReLU not in base_lm
    assert _types(_model("text_lm_relu")) - {nn.ReLU} == base_lm - {nn.GELU}
    # Same weights for a seed wherever the architectures share them: only the named change differs.
    for variant in ("mnist1d_mlp_gelu", "mnist1d_mlp_tanh", "mnist1d_cnn_silu", "text_lm_relu"):
        assert _checksum(_model(variant)) == BASE_CHECKSUMS[VARIANTS[variant].base][1]


def test_post_ln_normalises_after_the_residual_sum():
    pre, post = _model("text_lm"), _model("text_lm_post_ln")
    assert not any(b.post_ln for b in pre.blocks) and all(b.post_ln for b in post.blocks)
    assert isinstance(pre.ln_f, nn.LayerNorm) and isinstance(post.ln_f, nn.Identity)
    # Every post-LN block's output is a LayerNorm output: zero mean, unit variance per position
    # (the LayerNorm affine parameters are still at their identity init).
    x = torch.randn(2, 16, 96)
    out = post.blocks[0](x)
    assert torch.allclose(out.mean(-1), torch.zeros(2, 16), atol=1e-5)
    assert torch.allclose(out.var(-1, unbiased=False), torch.ones(2, 16), atol=1e-3)
    assert not torch.allclose(pre.blocks[0](x).mean(-1), torch.zeros(2, 16), atol=1e-3)


@pytest.mark.parametrize("name", DEFAULT_WORKLOADS)
def test_base_workloads_with_default_options_are_unchanged(name):
    count, checksum = BASE_CHECKSUMS[name]
    model = _model(name)
    assert sum(p.numel() for p in model.parameters()) == count
    assert _checksum(model) == checksum
    defaults = {
        k: o.default for k, o in workload_class(name).options.items() if k in ("activation", "norm", "norm_placement")
    }
    assert defaults and _checksum(_model(name, **defaults)) == checksum
    assert str(model) == str(_model(name, **defaults))


@pytest.mark.parametrize(
    "name, key, valid",
    [
        ("mnist1d_mlp", "activation", "relu, gelu, tanh, silu"),
        ("mnist1d_cnn", "activation", "relu, gelu, tanh, silu"),
        ("mnist1d_cnn", "norm", "batch, layer, none"),
        ("text_lm", "activation", "gelu, relu"),
        ("text_lm", "norm_placement", "pre, post"),
        ("text_lm_relu", "norm_placement", "pre, post"),
    ],
)
def test_a_bad_option_value_names_the_valid_ones(name, key, valid):
    with pytest.raises(UsageError, match=f"{key}='swish' is not one of {valid}"):
        create_workload(name, **{key: "swish"})


def test_a_variant_refuses_to_change_the_option_it_fixes():
    assert create_workload("mnist1d_mlp_gelu", activation="gelu").option_values == {"activation": "gelu"}
    with pytest.raises(UsageError, match="fixes activation='gelu'.*'mnist1d_mlp'"):
        create_workload("mnist1d_mlp_gelu", activation="relu")
    described = create_workload("text_lm_post_ln").describe()
    assert described["name"] == "text_lm_post_ln" and described["options"]["norm_placement"] == "post"


def test_layer_norm_option_of_the_cnn_builds():
    model = _model("mnist1d_cnn", norm="layer")
    assert nn.GroupNorm in _types(model) and nn.BatchNorm1d not in _types(model)
    assert model(torch.randn(3, 40)).shape == (3, 10)


def test_variant_targets_are_the_ones_docs_variants_md_records():
    from pathlib import Path

    table = (Path(__file__).resolve().parent.parent / "docs" / "variants.md").read_text()
    for name, cls in VARIANTS.items():
        row = next(line for line in table.splitlines() if line.startswith(f"| `{name}` |"))
        assert f"`{cls.base}`" in row and f" {cls.default_target:.4f} |" in row
