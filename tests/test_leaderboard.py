"""The leaderboard's parts: every method does what its name says, every optimizer can be tuned,
experiments grow by algorithm, races use the board's configurations, and the report is written."""

from __future__ import annotations

import json

import optuna
import pytest
import torch

from conftest import run_cli
from trainlab import optim
from trainlab.algorithms import TrainingAlgorithm, make_algorithm
from trainlab.algorithms.registry import LEADERBOARD_PATH
from trainlab.benchmark.race import RacePlan, run_race
from trainlab.errors import UsageError
from trainlab.optim.selection import split_hidden
from trainlab.store import ResultsStore
from trainlab.tuning.experiment import create_or_resume, enqueue_tuning, load
from trainlab.tuning.leaderboard import forget, self_tuning_plan, tuned_plan
from trainlab.tuning.storage import open_storage
from trainlab.workloads import DEFAULT_WORKLOADS, create_workload

TINY = {
    "mnist1d_mlp": dict(step_budget=12, eval_every=6),
    "mnist1d_cnn": dict(step_budget=6, eval_every=3),
    "text_lm": dict(step_budget=4, eval_every=2, eval_windows=8),
}
MATRIX_METHODS = ("galore", "fira", "frugal", "swan")


def _matrix_entries(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.ndim >= 2)


@pytest.mark.parametrize("workload", DEFAULT_WORKLOADS)
def test_low_rank_methods_project_most_matrix_entries_and_hold_less_state(workload):
    w = create_workload(workload, **TINY[workload])
    batch = next(iter(w.batches(w.splits().train, torch.Generator().manual_seed(0))))
    state = {}
    for name in ("adamw", "galore", "fira"):
        torch.manual_seed(0)
        model = w.init_model()
        algorithm = TrainingAlgorithm(make_algorithm(name, workload=workload), model, w.step_budget)
        for _ in range(2):
            algorithm.update(model, batch, w.loss)
        state[name] = optim.state_bytes(algorithm.optimizer)
        if name != "adamw":
            covered, total = algorithm.coverage()
            assert total == sum(p.numel() for p in model.parameters())
            assert covered >= 0.5 * _matrix_entries(model), (name, covered, _matrix_entries(model))
    assert state["galore"] < state["adamw"] and state["fira"] < state["adamw"], state


def test_hidden_matrices_leave_out_embeddings_positions_and_the_output_layer():
    model = create_workload("text_lm").init_model()
    hidden, rest = split_hidden(model)
    names = {id(p): n for n, p in model.named_parameters()}
    hidden_names = sorted(names[id(p)] for p in hidden)
    assert all(n.startswith("blocks.") and n.endswith("weight") for n in hidden_names)
    assert len(hidden_names) == 4 * len(model.blocks)  # qkv, proj, two MLP matrices per block
    rest_names = {names[id(p)] for p in rest}
    assert {"embed.weight", "position", "head.weight"} <= rest_names
    assert len(hidden) + len(rest) == len(list(model.parameters()))


def test_race_records_coverage_and_state_below_adamw(tmp_path):
    workloads = [create_workload(name, **TINY[name]) for name in DEFAULT_WORKLOADS]
    names = ["adamw", *MATRIX_METHODS]
    store = ResultsStore(f"sqlite:///{tmp_path / 'r.db'}")
    race_id, results = run_race(RacePlan(workloads, names, [0], torch.device("cpu")), store, progress=False)
    assert len(results) == len(names) * len(workloads)
    rows = {(t["workload"], t["algorithm"]): t for t in store.trials(race_id)}
    for w in DEFAULT_WORKLOADS:
        assert rows[(w, "adamw")]["coverage"] is None
        for name in MATRIX_METHODS:
            row = rows[(w, name)]
            assert 0.5 < row["coverage"] <= 1.0 and row["covered_params"] > 0, (w, name)
            assert row["state_bytes"] < rows[(w, "adamw")]["state_bytes"], (w, name)


def test_a_method_that_would_project_nothing_is_refused_before_training(tmp_path):
    db = tmp_path / "r.db"
    done = run_cli(
        "race",
        "--workloads",
        "mnist1d_mlp",
        "--algorithms",
        "adamw,galore",
        "--hparams",
        "galore.rank_fraction=1.0",
        "--store",
        str(db),
        "--no-progress",
        "--no-report",
    )
    assert done.returncode == 2
    line = done.stderr.strip()
    assert "\n" not in line and "galore" in line and "rank_fraction" in line and "AdamW" in line
    assert not db.exists() or ResultsStore(f"sqlite:///{db}").races() == []


def test_schedule_free_warms_up_for_its_fraction_of_the_budget():
    spec = make_algorithm("sfadamw")
    assert spec.schedule == "constant" and spec.hparams["warmup_fraction"] == 0.02
    model = torch.nn.Linear(3, 2)
    algorithm = TrainingAlgorithm(spec, model, total_steps=1500)
    assert all(g["warmup_steps"] == 30 for g in algorithm.optimizer.param_groups)
    # a schedule that warms up itself takes the fraction instead of the optimizer
    cosine = TrainingAlgorithm(make_algorithm("sfadamw+cosine"), model, total_steps=1500)
    assert all(g["warmup_steps"] == 0 for g in cosine.optimizer.param_groups)


def test_tune_dry_run_accepts_every_registered_algorithm(tmp_path):
    names = optim.available()
    done = run_cli(
        "tune",
        "--name",
        "all",
        "--algorithms",
        ",".join(names),
        "--dry-run",
        "--store",
        f"sqlite:///{tmp_path / 's.db'}",
    )
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout[: done.stdout.rindex("}") + 1])
    assert sorted(plan["search_spaces"]) == names and all(plan["search_spaces"].values())


def test_leaderboard_dry_run_plans_every_algorithm(tmp_path):
    done = run_cli("leaderboard", "--dry-run", "--store", str(tmp_path / "lb.db"))
    assert done.returncode == 0, done.stderr
    # protocol v2: n algorithms x (2 MNIST-1D workloads x 3 studies x 5 draws + text_lm 3 x 3), before
    # the bracketing search; self-tuning: n x (5 + 5 + 3) runs
    from trainlab.tuning.leaderboard import VARIANTS

    n = len(optim.available()) + len(VARIANTS)  # with the bracketed variants the ablation pairs
    assert all(v in done.stdout for v in VARIANTS)
    assert f"leaderboard: {n} algorithms" in done.stdout and f"{n * 39} trials" in done.stdout
    assert f"{n * 13} trials" in done.stdout


def test_per_workload_budget_and_growth_by_algorithm(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'g.db'}", 30, 60)
    spaces = {a: {"lr": {"min": 1e-3, "max": 1e-2, "scaling": "log"}} for a in ("adamw", "lion")}
    plan, resumed = create_or_resume(storage, tuned_plan(["adamw"], {"adamw": spaces["adamw"]}))
    assert not resumed
    assert enqueue_tuning(storage, plan) == 2 * 3 * 5 + 3 * 3
    assert len(load(storage, plan.tune_study_name("adamw", "text_lm", 2)).trials) == 3
    with pytest.raises(KeyError):  # three studies, numbered from 0
        optuna.load_study(study_name=plan.tune_study_name("adamw", "text_lm", 3), storage=storage)
    before = {t.number: t.params for t in load(storage, plan.tune_study_name("adamw", "mnist1d_mlp", 0)).trials}
    grown, resumed = create_or_resume(storage, tuned_plan(["adamw", "lion"], spaces))
    assert resumed and grown.algorithms == ["adamw", "lion"]
    assert enqueue_tuning(storage, grown) == 39  # only lion's draws
    # independent draws: lion's first point is not adamw's, although their spaces are the same
    first = {
        a: load(storage, plan.tune_study_name(a, "mnist1d_mlp", 0)).trials[0].user_attrs["config"]
        for a in ("adamw", "lion")
    }
    assert first["adamw"] != first["lion"]
    after = {t.number: t.params for t in load(storage, plan.tune_study_name("adamw", "mnist1d_mlp", 0)).trials}
    assert after == before
    # anything else changed is still refused, in one line
    other = tuned_plan(["adamw", "lion"], spaces)
    other.eval_seeds = [5]
    with pytest.raises(Exception, match="different eval_seeds"):
        create_or_resume(storage, other)
    # --rerun lion: lion's studies go (and come back empty, then drawn again); adamw's are untouched
    assert forget(storage, grown, ["lion"]) == 39
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    assert not any(":lion:" in n for n in names) and plan.tune_study_name("adamw", "mnist1d_mlp", 0) in names
    again, _ = create_or_resume(storage, tuned_plan(["adamw", "lion"], spaces))
    assert enqueue_tuning(storage, again) == 39
    assert {t.number: t.params for t in load(storage, plan.tune_study_name("adamw", "mnist1d_mlp", 0)).trials} == before
    with pytest.raises(UsageError, match="not on the stored 'leaderboard' board"):
        forget(storage, grown, ["sgd"])


def test_self_tuning_plan_pins_the_race_defaults():
    from trainlab.algorithms.registry import valid_hparams

    plan = self_tuning_plan(["lion"], {"lion": valid_hparams("lion", "cosine")})
    assert plan.search_spaces["lion"] == {"lr": {"feasible_points": [4e-4]}}
    assert plan.protocol == "same-split" and plan.trials == 1
    assert plan.studies_for("mnist1d_mlp") == 5 and plan.studies_for("text_lm") == 3


def test_races_use_the_leaderboard_configuration_and_say_so(tmp_path):
    board = json.loads(LEADERBOARD_PATH.read_text())["configs"]
    chosen = board["lion"]["mnist1d_mlp"]["hparams"]
    spec = make_algorithm("lion", workload="mnist1d_mlp")
    for key, value in chosen.items():
        assert spec.hparams[key] == (tuple(value) if isinstance(value, list) else value), key
    assert spec.source.startswith("leaderboard")
    untuned = make_algorithm("lion", workload="mnist1d_mlp", untuned=True)
    assert untuned.hparams["lr"] == 4e-4 and untuned.source == "workload-agnostic defaults"
    done = run_cli(
        "race",
        "--workloads",
        "mnist1d_mlp",
        "--algorithms",
        "lion",
        "--workload-option",
        "mnist1d_mlp.step_budget=20",
        "--workload-option",
        "mnist1d_mlp.eval_every=10",
        "--store",
        str(tmp_path / "r.db"),
        "--report-dir",
        str(tmp_path / "rep"),
        "--no-progress",
    )
    assert done.returncode == 0, done.stderr
    table = (tmp_path / "rep" / "report.md").read_text()
    assert "| lion | mnist1d_mlp |" in table and "leaderboard (docs/leaderboard/, study" in table


def test_the_report_is_written_from_both_experiments(tmp_path):
    """A miniature board (tiny budgets, one study of one trial) through the real coordinator and the
    report writer: every algorithm has its rows, the plot and the tables are written, and the race
    configurations come out for the finished pairs."""
    from trainlab.algorithms.registry import valid_hparams
    from trainlab.reports.leaderboard import write_leaderboard
    from trainlab.tuning.coordinator import run_experiment
    from trainlab.tuning.leaderboard import race_configs
    from trainlab.workloads.variants import variants_of

    url = f"sqlite:///{tmp_path / 'lb.db'}"
    storage = open_storage(url, 10, 30)
    algorithms = ["adamw", "galore"]
    spaces = {a: {"lr": {"min": 1e-3, "max": 1e-2, "scaling": "log"}} for a in algorithms}
    tuned = tuned_plan(algorithms, spaces)
    untuned = self_tuning_plan(algorithms, {a: valid_hparams(a, "cosine") for a in algorithms})
    for plan in (tuned, untuned):
        plan.trials, plan.studies = 1, 1
        plan.per_workload = {"text_lm": {**plan.per_workload.get("text_lm", {}), "studies": 1, "trials": 1}}
        plan.workload_options = {w: {k: str(v) for k, v in TINY[w].items()} for w in DEFAULT_WORKLOADS}
        for w in DEFAULT_WORKLOADS:  # the variants' runs at the tiny budgets too (else minutes)
            plan.workload_options.update({v: plan.workload_options[w] for v in variants_of(w)})
        run_experiment(
            storage,
            url,
            plan,
            torch.device("cpu"),
            workers=1,
            heartbeat_interval=10,
            grace_period=30,
            report=lambda line: None,
            variants_of=variants_of if plan.variants else None,
        )
    path = write_leaderboard(storage, tuned, untuned, str(tmp_path / "board"), store=url)
    report = path.read_text()
    for a in algorithms:
        assert f"| {a} |" in report and f"| mnist1d_cnn | {a} |" in report
    assert "## The papers' claims" in report and "## Self-tuning" in report and "incomplete" not in report
    summary = (tmp_path / "board" / "summary.md").read_text()
    assert "| galore |" in summary
    runs = sum(len(variants_of(w)) for w in DEFAULT_WORKLOADS if tuned.variants_for(w))  # one study each
    adamw = next(line for line in summary.splitlines() if line.startswith("| adamw |"))
    # every variant run was made and counted (protocol v2 makes none: the column says so)
    assert (f"/{runs} |" if runs else "| n/a |") in adamw, adamw
    assert (tmp_path / "board" / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert "\\begin{tabular}" in (tmp_path / "board" / "leaderboard.tex").read_text()
    configs = race_configs(storage, tuned)["configs"]
    assert set(configs) == set(algorithms) and set(configs["adamw"]) == set(DEFAULT_WORKLOADS)
    assert "lr" in configs["galore"]["text_lm"]["hparams"]


def test_claims_are_tested_at_the_size_the_paper_claims():
    """Nine paired runs each (3 studies x 3 seeds, no study effect): SOAP at 350 steps against AdamW
    at 700 holds at its claimed 1.67x (525 < 700: 9-0, p = 2/512 = 0.0039 <= 0.05/2, Holm's first
    level for the two claims); Muon at 450 beats AdamW but fails at its claimed 2x (900 > 700: 0-9)."""
    from trainlab.reports.claims import claim_rows
    from trainlab.reports.verdicts import Verdicts

    def cell(steps):
        return [[{"steps": float(steps), "rank": (0, float(steps))} for _ in range(3)] for _ in range(3)]

    cells = {("soap", "w"): cell(350), ("muon", "w"): cell(450), ("adamw", "w"): cell(700)}
    v = Verdicts(
        ["w"], ["soap", "muon", "adamw"], cells, medians={k: float(c[0][0]["steps"]) for k, c in cells.items()}
    )
    rows = claim_rows(v, {}, [])
    soap = next(r for r in rows if r.startswith("| SOAP"))
    muon = next(r for r in rows if r.startswith("| Muon"))
    assert "w: 350 vs 700 (9-0)" in soap and "holds at 1.7x on 1/1" in soap
    assert "w: 450 vs 700 (0-9)" in muon and "fails at 2x on 1/1" in muon


def test_an_algoperf_submission_joins_the_board_on_its_own_points(tmp_path):
    """`leaderboard --algorithms algoperf:FILE`: the tuned board draws only its published points (no
    bracketing search moves its learning rate off them), the untuned board runs its first point,
    races keep their own configurations, and its rows are marked as a submission."""
    from pathlib import Path

    from optuna.trial import TrialState, create_trial

    from trainlab.reports.leaderboard import shown
    from trainlab.tuning.experiment import study_search
    from trainlab.tuning.leaderboard import leaderboard_plans

    folder = Path(__file__).resolve().parent.parent / "examples" / "algoperf_adamw"
    sub = f"algoperf:{folder / 'submission.py'}"
    points = json.loads((folder / "tuning_search_space.json").read_text())
    storage = open_storage(f"sqlite:///{tmp_path / 'lb.db'}", 30, 60)
    tuned, self_ = leaderboard_plans(storage, ["adamw", sub])
    assert tuned.search_spaces[sub] == points and self_.search_spaces[sub] == [points[0]]
    assert tuned.origins[sub]["submission"] and tuned.search  # adamw's cells are still searched
    done = [
        create_trial(state=TrialState.COMPLETE, value=1.0, user_attrs={"kind": "tune", "draw": d})
        for d in range(tuned.trials_for("mnist1d_mlp"))
    ]
    assert study_search(tuned, done, "mnist1d_mlp", sub) == []
    assert shown(sub) == "algoperf_adamw (AlgoPerf submission)" and shown("adamw") == "adamw"
    listed = run_cli(
        "leaderboard", "--algorithms", f"adamw,{sub}", "--dry-run", "--store", str(tmp_path / "d.db"), cwd=tmp_path
    )
    assert listed.returncode == 0 and "leaderboard: 2 algorithms" in listed.stdout, listed.stderr
