"""`TrialOptions`: one record of a trial's options, checked once, serialised whole, and stored tuning
plans of every earlier version still load into it."""

from __future__ import annotations

import dataclasses
import json

import pytest

from trainlab.benchmark.trial_options import DEFAULT, SAVERS, TrialOptions
from trainlab.errors import UsageError
from trainlab.tuning.plan import TuningPlan

EVERYTHING = TrialOptions(
    compress_activations="adaptive",
    precision="bf16-autocast",
    freeze=("blocks.0", "first:1"),
    freeze_change=1e-3,
    stop_at_target=True,
    grad_norm_kind="l2",
    eval_split="test",
    continual=(3, 50),
    predict=(0.25, 0.01),
)


@pytest.mark.parametrize("options", [DEFAULT, EVERYTHING, TrialOptions(nproc=2, strategy="fsdp2", trial_timeout=9.5)])
def test_options_survive_a_json_round_trip_whole(options):
    """What a data-parallel job file carries: every field, through JSON (tuples come back as tuples)."""
    assert TrialOptions.from_dict(json.loads(json.dumps(options.to_dict()))) == options
    assert DEFAULT.to_dict() == {} and DEFAULT.plain and not EVERYTHING.plain


def test_every_field_has_a_default_and_the_savers_are_fields():
    names = [f.name for f in dataclasses.fields(TrialOptions)]
    assert set(SAVERS) <= set(names)
    assert EVERYTHING.to_dict(SAVERS) == {
        "compress_activations": "adaptive",
        "precision": "bf16-autocast",
        "freeze": ["blocks.0", "first:1"],
        "freeze_change": 1e-3,
    }


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(compress_activations=3), "--compress-activations must be one of 2, 4, 8, adaptive"),
        (dict(precision="fp16"), "--precision must be one of fp32, bf16-autocast, bf16"),
        (dict(freeze="blocks"), "--freeze must be a list of module-name rules"),
        (dict(freeze_change=0.0), "--freeze-change must be a positive threshold"),
        (dict(grad_norm_kind="l3"), "--record-grad-norms must be l1 or l2"),
        (dict(eval_split="train"), "eval_split must be 'validation' or 'test'"),
        (dict(continual=(0, 10)), "--eval-subset and --eval-every must be positive"),
        (dict(predict=(1.5, 0.01)), r"--predict-level must be in \(0, 1\)"),
        (dict(predict=(0.5, 0.0)), r"--convergence-threshold must be in \(0, 1\)"),
        (dict(nproc=0), "--nproc must be at least 1"),
        (dict(trial_timeout=0.0), "--trial-timeout positive"),
        (dict(strategy="zero"), "--strategy must be one of ddp, fsdp2"),
        (dict(nproc=2, continual=(1, 10)), "--nproc trials run without --predict"),
    ],
)
def test_a_bad_option_fails_where_the_options_are_built(bad, message):
    with pytest.raises(UsageError, match=message):
        TrialOptions(**bad)


def test_unknown_keys_name_the_valid_ones():
    with pytest.raises(UsageError, match="unknown key 'compress'; valid: compress_activations"):
        TrialOptions.from_dict({"compress": 4})


def test_a_plan_stored_before_trial_options_loads_and_resumes_unchanged():
    """The JSON of a plan written by the releases with `TrialConfig` (trial = the memory savers only,
    stop_at_target and the launch settings as plan fields): it loads, compares equal after a round
    trip (so `tune` resumes it), and gives each trial the options it ran with."""
    stored = {
        "algorithms": ["sgd"], "workloads": ["mnist1d_mlp"], "trials": 2, "studies": 1, "eval_seeds": [0],
        "name": "old", "protocol": "held-out", "seed": 0, "search_spaces": {}, "workload_options": {},
        "stop_at_target": True, "variants": False, "workload_names": {}, "select_by": "steps",
        "per_workload": {}, "origins": {}, "trial": {"compress_activations": 4, "freeze": ["blocks.0"]},
        "prune": {}, "nproc": 1, "strategy": "ddp", "trial_timeout": 3600.0,
    }  # fmt: skip
    plan = TuningPlan.from_json(json.dumps(stored))
    # fields added since come back at their defaults (no learning-rate search, shared draws)
    assert json.loads(plan.to_json()) == {**stored, "search": {}, "independent_draws": False}
    assert plan.differences(TuningPlan.from_json(json.dumps(stored))) == []
    plan.check()
    held_out = plan.options("test")
    assert held_out == TrialOptions(
        compress_activations=4, freeze=("blocks.0",), stop_at_target=True, eval_split="test"
    )
    assert plan.options().eval_split == "validation"
