"""The built-in workloads: documented shapes, disjoint splits, working models, user extensions."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from trainlab.errors import UsageError
from trainlab.workloads import create_workload, workload_class
from trainlab.workloads.data.text import corpus_path

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["mnist1d_mlp", "mnist1d_cnn"])
def test_mnist1d_splits_have_documented_shapes_and_do_not_overlap(name):
    splits = create_workload(name).splits()
    for split, n in ((splits.train, 20_000), (splits.validation, 5_000), (splits.test, 5_000)):
        x, y = split
        assert x.shape == (n, 40) and x.dtype == torch.float32
        assert y.shape == (n,) and y.dtype == torch.int64
        assert set(y.unique().tolist()) == set(range(10))
    rows = lambda x: {r.tobytes() for r in x.numpy()}  # noqa: E731
    train = rows(splits.train[0])
    assert not train & rows(splits.validation[0])
    assert not train & rows(splits.test[0])
    assert not rows(splits.validation[0]) & rows(splits.test[0])


def test_mnist1d_generation_is_deterministic():
    a = create_workload("mnist1d_mlp").splits()
    b = create_workload("mnist1d_cnn").splits()
    assert torch.equal(a.train[0], b.train[0]) and torch.equal(a.validation[1], b.validation[1])


def test_text_lm_splits_are_disjoint_contiguous_regions_of_the_corpus():
    corpus = corpus_path().read_bytes()
    splits = create_workload("text_lm").splits()
    parts = [bytes(s[0].numpy().tobytes()) for s in (splits.train, splits.validation, splits.test)]
    assert b"".join(parts) == corpus
    assert len(parts[0]) == int(0.9 * len(corpus))
    assert abs(len(parts[1]) - 0.05 * len(corpus)) < 2 and abs(len(parts[2]) - 0.05 * len(corpus)) < 2
    assert len(corpus) > 4_000_000  # the complete works, not a sample


def test_text_lm_batches_are_next_byte_windows():
    workload = create_workload("text_lm", batch_size=8)
    x, y = next(workload.batches(workload.splits().train, torch.Generator().manual_seed(0)))
    assert x.shape == y.shape == (8, 64) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_text_lm_accepts_a_user_text_file(tmp_path):
    text = ("It was the best of times, it was the worst of times. " * 400).encode()
    path = tmp_path / "mine.txt"
    path.write_bytes(text)
    splits = create_workload("text_lm", text_file=str(path)).splits()
    assert splits.train[0].numel() == int(0.9 * len(text))


def test_text_lm_rejects_a_missing_text_file():
    with pytest.raises(UsageError, match="does not exist"):
        create_workload("text_lm", text_file="/no/such/file.txt").splits()


@pytest.mark.parametrize("name", ["mnist1d_mlp", "mnist1d_cnn", "text_lm"])
def test_model_trains_one_step_and_evaluates(name):
    workload = create_workload(name)
    splits = workload.splits()
    torch.manual_seed(0)
    model = workload.init_model()
    batch = next(workload.batches(splits.train, torch.Generator().manual_seed(0)))
    loss = workload.loss(model, batch)
    loss.backward()
    assert math.isfinite(loss.item())
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    metrics = workload.evaluate(model, splits.validation)
    if workload.metric == "accuracy":
        assert 0.0 <= metrics["accuracy"] <= 0.3  # untrained: about chance (0.1)
    else:  # an untrained byte model is near uniform over 256 symbols: 8 bits per byte
        assert 7.0 < metrics["bits_per_byte"] < 9.0


def test_unknown_workload_option_names_the_valid_ones():
    with pytest.raises(UsageError, match="valid options: .*text_file"):
        create_workload("text_lm", txt_file="x")


def test_bad_option_value_is_a_usage_error():
    with pytest.raises(UsageError, match="step_budget"):
        create_workload("mnist1d_mlp", step_budget="many")
    with pytest.raises(UsageError, match="positive"):
        create_workload("mnist1d_mlp", step_budget=0)


def test_unknown_workload_lists_builtins():
    with pytest.raises(UsageError, match="mnist1d_mlp"):
        workload_class("mnist2d")


def test_user_workload_file_is_loaded_by_path():
    workload = create_workload(str(ROOT / "examples" / "sine_regression.py"))
    assert workload.name == "sine_regression" and workload.target == 0.025
    assert workload.splits().train[0].shape == (3200, 1)


def test_a_file_without_a_workload_is_refused(tmp_path):
    path = tmp_path / "empty.py"
    path.write_text("x = 1\n")
    with pytest.raises(UsageError, match="exactly one concrete Workload"):
        workload_class(str(path))


def test_workload_reached_respects_direction():
    accuracy = create_workload("mnist1d_mlp", target=0.8)
    assert accuracy.reached(0.8) and not accuracy.reached(0.79) and not accuracy.reached(float("nan"))
    bpb = create_workload("text_lm", target=2.5)
    assert bpb.reached(2.5) and not bpb.reached(2.51)


def test_default_targets_are_the_ones_the_target_setting_run_recorded():
    import json

    from trainlab.algorithms.registry import TUNED_PATH

    recorded = json.loads(TUNED_PATH.read_text())["targets"]
    for name in ("mnist1d_mlp", "mnist1d_cnn", "text_lm"):
        assert workload_class(name).default_target == pytest.approx(recorded[name], abs=1e-4)
    # the record says the same target, and it is the median of the documented re-runs' best metrics
    doc = (ROOT / "docs" / "targets.md").read_text()
    for name in ("mnist1d_mlp", "mnist1d_cnn", "text_lm"):
        section = doc.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
        workload = workload_class(name)
        arrow = ">=" if workload.higher_is_better else "<="
        assert f"**Target: {workload.metric} {arrow} {recorded[name]:.4f}**" in section, name
        reruns = section.split("re-run on fresh seeds", 1)[1].split("**Target", 1)[0]
        best = [float(row.split("|")[2]) for row in reruns.splitlines() if re.match(r"\| 10[0-9] \|", row)]
        assert len(best) == 3 and sorted(best)[1] == pytest.approx(recorded[name], abs=1e-4), (name, best)


def test_target_setting_budget_is_three_quarters_unless_the_workload_says_otherwise():
    # AlgoPerf v0.5's rule: races get 4/3 of the target-setting budget
    assert create_workload("mnist1d_mlp").target_budget() == 1125
    assert create_workload("mnist1d_cnn", step_budget=100).target_budget() == 75
    # text_lm: 900 target-setting steps, races 2400 (SGD needs about twice AdamW's steps there)
    assert create_workload("text_lm").target_budget() == 900
    assert create_workload("text_lm").step_budget == 2400
    assert create_workload("text_lm", step_budget=240).target_budget() == 90


@pytest.mark.parametrize(
    "source, message",
    [
        ("import torch\ndef broken(:\n    pass\n", r"line 2: SyntaxError: invalid syntax"),
        ("import torch\n\nraise ValueError('boom')\n", r"line 3: ValueError: boom"),
    ],
)
def test_a_broken_workload_file_is_one_line_naming_the_file_line_and_fix(tmp_path, source, message):
    path = tmp_path / "mine.py"
    path.write_text(source)
    with pytest.raises(UsageError, match=message) as caught:
        workload_class(str(path))
    text = str(caught.value)
    assert "\n" not in text and str(path) in text and "fix the file" in text
