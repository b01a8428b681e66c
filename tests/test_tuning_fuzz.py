"""Property-based fuzzing (hypothesis) of everything a user types into tuning: search spaces and
`trainlab tune` command lines. Each input is either accepted or rejected with exactly one line
`trainlab: error: ...` and exit status 2, never a traceback. 1,000+ search spaces and 1,000+ command
lines per run, derandomized so CI is reproducible."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from trainlab.cli.main import main
from trainlab.errors import UsageError
from trainlab.algorithms import make_algorithm
from trainlab.algorithms.registry import check_search_space, parse_name, valid_hparams
from trainlab.algorithms.search_space import SearchSpace, to_hparams
from trainlab.tuning.experiment import draw_configs

TINY = str(ROOT / "tests" / "support_workloads.py")
ALGORITHMS = ["adamw", "sgd", "lion", "signum", "sfadamw", "frugal", "adamw+wsd"]
NAMES = [
    "lr",
    "weight_decay",
    "momentum",
    "betas",
    "beta1",
    "beta2",
    "one_minus_beta1",
    "eps",
    "warmup_fraction",
    "nesterov",
    "rank",
    "density",
    "grad_clip",
    "decay_fraction",
    "learning_rate",
    "",
]
SETTINGS = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
)
numbers = st.one_of(st.floats(-2, 2), st.floats(1e-8, 1e3), st.integers(-5, 5), scalars)
range_spec = st.fixed_dictionaries(
    {"min": numbers, "max": numbers},
    optional={"scaling": st.sampled_from(["log", "linear", "cubic", 1, None]), "step": numbers},
)
points_spec = st.fixed_dictionaries(
    {
        "feasible_points": st.one_of(
            st.lists(numbers, max_size=4), st.lists(st.lists(numbers, max_size=2), max_size=2), scalars
        )
    }
)
dimension = st.one_of(range_spec, points_spec, scalars, st.lists(numbers, max_size=2), st.just({}))
plausible = st.dictionaries(  # mostly valid spaces, so acceptance is exercised as much as rejection
    st.sampled_from(["lr", "weight_decay", "warmup_fraction", "one_minus_beta1", "momentum"]),
    st.one_of(
        st.builds(
            lambda a, b, log: {"min": min(a, b), "max": max(a, b) + 1e-3, "scaling": "log" if log else "linear"},
            st.floats(1e-5, 0.5),
            st.floats(1e-5, 0.5),
            st.booleans(),
        ),
        st.builds(lambda p: {"feasible_points": sorted(set(p))}, st.lists(st.floats(0, 0.5), min_size=1, max_size=3)),
    ),
    min_size=1,
    max_size=4,
)
spaces = st.one_of(
    plausible, st.dictionaries(st.sampled_from(NAMES), dimension, max_size=5), st.lists(numbers, max_size=2), scalars
)


@SETTINGS
@given(algorithm=st.sampled_from(ALGORITHMS), data=spaces)
def test_fuzzed_search_spaces_are_accepted_or_rejected_in_one_line(algorithm, data):
    try:
        space = check_search_space(None, algorithm, data)
    except UsageError as exc:
        message = str(exc)
        assert message and "\n" not in message
        event("rejected")
        return
    event("accepted")
    assert isinstance(space, SearchSpace) and space.dimensions
    # accepted means usable: every draw a study would train is a point of the space as written
    # (the listed names, each inside its range or among its feasible points), and builds
    plain = lambda x: json.loads(json.dumps(x))  # noqa: E731 (tuples and lists compare alike)
    valid = valid_hparams(*parse_name(algorithm))
    for config in draw_configs(space, 0, 3):
        if isinstance(data, list):
            assert plain(config) in plain(data), (config, data)
        else:
            assert set(config) == set(data), (config, data)
            for name, value in config.items():
                spec = data[name]
                if "feasible_points" in spec:
                    assert plain(value) in plain(spec["feasible_points"]), (name, value, spec)
                else:
                    assert spec["min"] <= value <= spec["max"], (name, value, spec)
        make_algorithm(algorithm, to_hparams(config, valid))  # a UsageError here fails the test


def _value(draw_from):
    return st.one_of(draw_from, st.text(alphabet="0123456789,.-e abc", max_size=8))


options = st.fixed_dictionaries(
    {},
    optional={
        "--algorithms": _value(st.sampled_from(["sgd", "adamw,sgd", "nosuch", "sgd,sgd", "", "sgd+nosuch", "lion"])),
        "--workloads": _value(st.sampled_from([TINY, "nosuch", f"{TINY},{TINY}", "./missing.py", ""])),
        "--trials": _value(st.sampled_from(["1", "5", "0", "-3", "1001", "x"])),
        "--studies": _value(st.sampled_from(["1", "3", "0", "101"])),
        "--eval-seeds": _value(st.sampled_from(["0,1,2", "1000000", "-1", "1,1", "a"])),
        "--protocol": st.sampled_from(["held-out", "same-split", "cv"]),
        "--seed": _value(st.sampled_from(["0", "-1", "4294967296"])),
        "--workers": _value(st.sampled_from(["1", "2", "0", "-1"])),
        "--select-by": st.sampled_from(["time", "steps", "loss"]),
        "--baseline": st.sampled_from(["sgd", "adamw", "nosuch"]),
        "--search-space": st.sampled_from(["good", "bad", "notjson", "missing", "sgd=good", "lion=good"]),
        "--heartbeat-interval": st.sampled_from(["1", "0", "10"]),
        "--grace-period": st.sampled_from(["3", "1", "30"]),
        "--workload-option": st.sampled_from(
            [
                "tiny_regression.train_sleep=0",
                "tiny_regression.nope=1",
                "nosuch.x=1",
                "bad",
                "tiny_regression.step_budget=-5",
            ]
        ),
        "--threads": st.sampled_from(["1", "0"]),
        "--name": st.sampled_from(["fuzz", "a:b", ""]),
    },
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "good.json").write_text(json.dumps({"lr": {"min": 1e-3, "max": 0.1, "scaling": "log"}}))
    (root / "bad.json").write_text(json.dumps({"lr": {"min": -1, "max": 0.1}}))
    (root / "notjson.json").write_text("{")
    return root


@SETTINGS
@given(chosen=options)
def test_fuzzed_tune_command_lines_are_accepted_or_rejected_in_one_line(chosen, files, capsys):
    argv = ["tune", "--dry-run", "--store", f"sqlite:///{files / 'fuzz.db'}"]
    chosen.setdefault("--name", "fuzz")
    chosen.setdefault("--algorithms", "sgd")
    chosen.setdefault("--workloads", TINY)
    for key, value in chosen.items():
        if key == "--search-space":
            name, _, stem = value.rpartition("=")
            value = (f"{name}=" if name else "") + str(files / f"{stem}.json")
        argv += [key, value] if key != "--threads" else []  # threads would change this process
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors (OneLineParser)
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    event(f"exit {code}")
    if code == 0:
        assert err == []
    else:
        assert code == 2, (argv, err)
        assert len(err) == 1 and err[0].startswith("trainlab: error:"), (argv, err)
