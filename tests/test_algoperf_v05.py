"""The published AlgoPerf v0.5 PyTorch submissions race unmodified (../shared/algoperf_v05, read-only),
and the adapter's import machinery on fixtures of its own (tests/submissions/: a helper imported by
the authors' module path, a broken import, a missing package)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from conftest import run_main
from trainlab.store import ResultsStore

# lawa_queue's own Adam calls a torch helper that torch 2.13 deprecates: its warning, not ours
pytestmark = pytest.mark.filterwarnings("ignore:Use _accelerator_graph_capture_health_check:DeprecationWarning")
ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent / "submissions"


def v05_folder() -> Path | None:
    """TRAINLAB_ALGOPERF_V05, else <repo>/../shared/algoperf_v05, else /work/shared/algoperf_v05."""
    candidates = [os.environ.get("TRAINLAB_ALGOPERF_V05"), ROOT.parent / "shared" / "algoperf_v05"]
    candidates.append("/work/shared/algoperf_v05")
    return next((Path(c) for c in candidates if c and Path(c).is_dir()), None)


V05 = v05_folder()
NAMES = sorted(p.parent.name for p in V05.glob("*/submission.py")) if V05 else []
CUDA = torch.cuda.is_available()
# What a published file itself demands of the hardware, as its own code raises it (the innermost
# frame is the submission's): Schedule-Free Prodigy allocates on device='cuda'; Shampoo's
# DDPDistributor needs torch.distributed with at least 8 ranks (num_trainers_per_group=8), each on
# its own GPU. Each must get past import and into its own code, never fail in trainlab's adapter.
NEEDS = {
    "schedule_free_prodigy": None if CUDA else "Torch not compiled with CUDA enabled",
    "shampoo_submission": "DDPDistributor needs torch.distributed to be initialized!",
}
BUDGET = dict(step_budget=20, eval_every=10)


@pytest.fixture(scope="module")
def v05_race(tmp_path_factory):
    """One race of all of them (one in-process launch: the trials take seconds, a start-up would
    take more): {folder name: stored trial}."""
    store = tmp_path_factory.mktemp("v05") / "r.db"
    names = [f"algoperf:{V05 / n / 'submission.py'}" for n in NAMES]
    options = [x for k, v in BUDGET.items() for x in ("--workload-option", f"mnist1d_mlp.{k}={v}")]
    done = run_main(
        "race", "--workloads", "mnist1d_mlp", "--algorithms", ",".join(names), *options,
        "--device", "cuda" if CUDA else "cpu", "--threads", "1", "--store", str(store), "--no-report", "--no-progress",
    )  # fmt: skip
    assert done.returncode == (1 if any(NEEDS.get(n) for n in NAMES) else 0), done.stderr  # 1: a trial failed
    return {Path(t["algorithm"].split(":", 1)[1]).parent.name: t for t in ResultsStore(str(store)).trials(1)}


@pytest.mark.parametrize("name", NAMES or ["(absent)"])
def test_every_published_submission_races_unmodified(name, v05_race):
    if V05 is None:
        pytest.skip("no algoperf_v05 folder: set TRAINLAB_ALGOPERF_V05 or put it at <repo>/../shared/algoperf_v05")
    trial = v05_race[name]
    space = json.loads((V05 / name / "tuning_search_space.json").read_text())
    first = space[0] if isinstance(space, list) else None
    if first is not None:  # its own search space's first point, as published
        assert {k: v for k, v in trial["hparams"].items() if k in first} == first
    needs = NEEDS.get(name)
    if needs is None:
        assert trial["status"] in ("completed", "diverged"), trial["error"]
        assert trial["steps"] >= 1 and trial["hparams"]["batches_drawn"] >= trial["steps"]
        return
    assert trial["status"] == "failed" and needs in trial["error"], trial["error"]
    frames = [line for line in trial["error"].splitlines() if line.lstrip().startswith("File ")]
    innermost = [f for f in frames if "site-packages" not in f][-1]  # torch's own frames aside
    assert str(V05 / name) in innermost  # raised by the submission's own code, past every import


def test_lawa_counts_the_batches_of_its_inner_loop_as_steps(v05_race):
    if V05 is None or "lawa_ema" not in v05_race:
        pytest.skip("no algoperf_v05/lawa_ema")
    trial = v05_race["lawa_ema"]  # ceil(eval_every * lawa_inner_steps_frac) = 3 batches per call
    assert trial["steps"] == trial["hparams"]["batches_drawn"] == 21  # 7 calls: the budget (20) is in batches


def test_an_update_that_draws_several_batches_counts_each_as_a_step(monkeypatch):
    """A budget of 20 steps evaluated every 10, 3 batches per call: evaluations after the calls
    that cross 10 and 20 (steps 12 and 21), 7 calls with AlgoPerf's global_step 0..6."""
    from trainlab.algorithms import make_algorithm
    from trainlab.algorithms.submission import SubmissionAlgorithm
    from trainlab.benchmark.runner import run_trial
    from trainlab.workloads import create_workload

    seen = []
    original = SubmissionAlgorithm.state_bytes

    def spy(self):  # called at each evaluation and after training: the global_step of every call so far
        seen.append(list(self.optimizer_state["calls"]))
        return original(self)

    monkeypatch.setattr(SubmissionAlgorithm, "state_bytes", spy)
    workload = create_workload("mnist1d_mlp", step_budget=20, eval_every=10)
    result = run_trial(
        workload, make_algorithm(f"algoperf:{HERE / 'inner_loop_submission.py'}"), 0, torch.device("cpu")
    )
    assert [e.step for e in result.evals] == [12, 21] and result.steps == 21
    assert result.hparams["batches_drawn"] == 21 and seen[-1] == list(range(7))


def test_a_helper_imported_by_the_authors_module_path_resolves_in_its_folder(tmp_path):
    """Module paths of a repository that is not here: the trailing components name helpers/ (with
    and without __init__.py); one is imported inside a function, at call time."""
    store = tmp_path / "r.db"
    done = run_main(
        "race", "--workloads", "mnist1d_mlp", "--algorithms", f"algoperf:{HERE / 'authors_path' / 'submission.py'}",
        "--workload-option", "mnist1d_mlp.step_budget=30", "--workload-option", "mnist1d_mlp.eval_every=15",
        "--threads", "1", "--store", str(store), "--no-report", "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (trial,) = ResultsStore(str(store)).trials(1)
    assert trial["status"] == "completed" and trial["steps"] == 30, trial["error"]
    assert trial["final_metric"] > 0.2  # it trained (10 classes: chance is 0.1)
    import sys

    helper = sys.modules["submissions.team_x.external_tuning.authors_path.helpers.inner.rule"]
    assert Path(helper.__file__) == HERE / "authors_path" / "helpers" / "inner" / "rule.py"
    assert "submissions.team_x.external_tuning.authors_path.helpers.late" in sys.modules


def test_the_search_space_beside_a_submission_is_read_in_either_form(tmp_path):
    import shutil

    from trainlab.algorithms import make_algorithm

    sub = tmp_path / "submission.py"
    shutil.copy(HERE / "heavy_ball_submission.py", sub)
    space = tmp_path / "tuning_search_space.json"
    space.write_text(
        json.dumps({"learning_rate": {"min": 1e-3, "max": 1e-1, "scaling": "log"}, "k": {"feasible_points": [3, 5]}})
    )
    spec = make_algorithm(f"algoperf:{sub}")
    assert spec.hparams == {"learning_rate": pytest.approx(1e-2), "k": 3} and "centre of" in spec.source
    space.write_text(json.dumps([{"learning_rate": 0.5, "k": 7}, {"learning_rate": 0.1, "k": 1}]))
    spec = make_algorithm(f"algoperf:{sub}")
    assert spec.hparams == {"learning_rate": 0.5, "k": 7} and spec.source.startswith("first point of")


def test_two_submissions_giving_the_same_module_name_are_refused(tmp_path):
    """One process holds one module per name: a second folder's helper of the same name would
    silently be the first one's."""
    import shutil

    from trainlab.algorithms.submission import load_submission
    from trainlab.errors import UsageError

    for copy in "ab":
        shutil.copytree(HERE / "authors_path", tmp_path / copy / "authors_path")
    with pytest.raises(UsageError, match="both import their own module 'submissions.team_x.external_tuning"):
        for copy in "ab":  # (the fixture itself may hold the names already: then the first refuses)
            load_submission(f"algoperf:{tmp_path / copy / 'authors_path' / 'submission.py'}")


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")
def test_under_two_processes_a_submission_trains_as_in_one(tmp_path):
    """`race --nproc 2`: pytorch_setup() says DDP (LOCAL_RANK), the submission all-reduces its loss
    with torch.distributed.nn as published, DDP averages: the gradient of the global batch."""
    from trainlab.benchmark.race import RacePlan, run_race
    from trainlab.benchmark.trial_options import TrialOptions
    from trainlab.workloads import create_workload

    workload = create_workload("mnist1d_mlp", step_budget=30, eval_every=15)
    name = f"algoperf:{HERE / 'authors_path' / 'submission.py'}"
    store = ResultsStore(f"sqlite:///{tmp_path / 'r.db'}")
    cpu = torch.device("cpu")
    _, (alone,) = run_race(RacePlan([workload], [name], [0], cpu), store, progress=False)
    _, (pair,) = run_race(RacePlan([workload], [name], [0], cpu, options=TrialOptions(nproc=2)), store, progress=False)
    assert pair.steps == alone.steps == 30
    for a, b in zip(alone.evals, pair.evals):
        assert b.train_loss == pytest.approx(a.train_loss, rel=1e-4) and b.metric == pytest.approx(a.metric, abs=2e-3)


@pytest.mark.parametrize(
    "folder, message",
    [
        (
            "broken_import",
            "`from submissions.team_y.broken_import.helpers.missing import step` (submission.py:3) failed: "
            "no module 'submissions.team_y.broken_import.helpers.missing' is installed, and no trailing "
            "components of it name a file or package under",
        ),
        (
            "needs_package",
            "`import trainlab_absent_test_package` (submission.py:3) failed: package "
            "'trainlab-absent-test-package' (listed in requirements.txt beside it) is not installed: "
            "pip install trainlab-absent-test-package",
        ),
    ],
)
def test_a_failed_import_is_one_line_naming_it_and_exit_2(tmp_path, folder, message):
    store = tmp_path / "r.db"
    sub = f"algoperf:{HERE / folder / 'submission.py'}"
    done = run_main("race", "--workloads", "mnist1d_mlp", "--algorithms", sub, "--store", str(store))
    assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert not store.exists()
    if folder == "broken_import":  # what it looked for, most specific first
        assert "broken_import/helpers/missing[.py], broken_import/missing[.py])" in done.stderr


def test_a_missing_package_of_the_algoperf_extra_names_the_extra():
    from trainlab.algorithms.submission_imports import diagnose

    missing = ModuleNotFoundError("No module named 'absl'", name="absl")  # absl-py is installed here
    line = diagnose(missing, HERE / "needs_package" / "submission.py", "sub.py")
    assert line.endswith("failed: package 'absl-py' is not installed: pip install 'trainlab[algoperf]'"), line


def test_the_spec_has_every_name_submissions_read_under_both_package_names(monkeypatch):
    from trainlab.algorithms import algoperf_compat

    algoperf_compat.install()
    import algoperf.spec
    import algorithmic_efficiency.spec
    from algorithmic_efficiency.pytorch_utils import pytorch_setup
    from algorithmic_efficiency.random_utils import PRNGKey, split

    assert algoperf.spec is algorithmic_efficiency.spec
    for name in (
        "ParameterContainer ParameterTypeTree ModelAuxiliaryState Hyperparameters RandomState OptimizerState "
        "UpdateReturn Tensor Shape ShapeTuple ParameterShapeTree ParameterKey ModelInitState Timing Steps "
        "ForwardPassMode LossType ParameterType TrainingCompleteError Workload InitOptimizerFn UpdateParamsFn "
        "PrepareForEvalFn DataSelectionFn"
    ).split():
        assert hasattr(algoperf.spec, name), name
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert pytorch_setup()[:2] == (False, 0)
    monkeypatch.setenv("LOCAL_RANK", "1")  # what torch.distributed.run sets for `race --nproc`
    assert pytorch_setup()[:2] == (True, 1)
    assert split(PRNGKey(0), 3).shape == (3, 2) and (split(7) == split(7)).all()


@pytest.mark.slow
@pytest.mark.skipif(CUDA or not torch.distributed.is_available(), reason="the CPU finding: no CUDA here")
def test_shampoo_under_eight_gloo_ranks_fails_in_its_own_code(tmp_path):
    """`race --nproc 8` gets Shampoo's DDPDistributor initialised; it then fails in its own files on
    every rank: cuda:RANK allocations, or (ranks owning none of mnist1d_mlp's 6 tensors) an empty
    block list. The stored one-line error names the rank's innermost frames (docs/external_validity)."""
    if V05 is None:
        pytest.skip("no algoperf_v05 folder")
    store, shampoo = tmp_path / "r.db", V05 / "shampoo_submission" / "submission.py"
    done = run_main(
        "race", "--workloads", "mnist1d_mlp", "--algorithms", f"algoperf:{shampoo}",
        "--nproc", "8", "--strategy", "ddp", "--workload-option", "mnist1d_mlp.step_budget=20", "--threads", "1",
        "--device", "cpu", "--store", str(store), "--no-report", "--no-progress",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    (trial,) = ResultsStore(str(store)).trials(1)
    first = trial["error"].splitlines()[0]
    own = str(V05 / "shampoo_submission" / "optimizers" / "distributed_shampoo")
    assert (
        f"{own}/utils/shampoo_ddp_distributor.py:513 in _allocate_zeros_distributed_tensor" in first
        and first.endswith(" in _lazy_init)")  # torch's CUDA initialisation, called by theirs
        or first.endswith(f"{own}/distributed_shampoo.py:640 in _instantiate_device)")
    ), first
