"""Golden numbers for the leaderboard's arithmetic: stored trials -> `collect` -> `score_experiment`
-> the leaderboard's and the report's tables, and the race summary's median over seeds.

The store is built by hand (tests/support_store.py: real SQLite through the project's Optuna
storage, trials recorded as the worker records them), and every expected number below is derived
by hand in the comments, never by calling the code under test. A wrong aggregation (mean for
median, a miss not counted as infinity, the failed copy of a retried draw kept), a changed r_max, a
swapped ratio or a changed sort key each changes at least one of them.

The experiment: adamw (the baseline), lion and sgd on two workloads. w1: 2 studies x 3 draws,
held-out seeds 0 and 1, one variant (w1_noisy). w2: 1 study x 2 draws, seed 0, no variants.
Seconds per step: adamw 0.01, lion 0.03, sgd 0.005, so the time and steps orders differ.
"""

from __future__ import annotations

import math

import pytest

from support_store import StoreBuilder, open_test_storage
from trainlab.reports.leaderboard import compact_table, summary_table, workload_table
from trainlab.reports.summary import format_table, summarize
from trainlab.reports.tuning_report import score_experiment
from trainlab.store import ResultsStore
from trainlab.store.results import TrialResult
from trainlab.tuning.leaderboard import race_configs
from trainlab.tuning.experiment import create_or_resume
from trainlab.tuning.outcomes import collect
from trainlab.tuning.plan import TuningPlan

INF = math.inf
ALGORITHMS = ["adamw", "lion", "sgd"]
SPACE = {"lr": {"min": 1e-4, "max": 1e-1, "scaling": "log"}}
# optimizer state per (algorithm, workload), the same in every run; peak = 4 x state
STATE = {
    ("adamw", "w1"): 8192,
    ("adamw", "w2"): 10240,
    ("lion", "w1"): 4096,  # 0.5 of adamw's
    ("lion", "w2"): 7168,  # 0.7 of adamw's
    ("sgd", "w1"): 4096,  # 0.5
    ("sgd", "w2"): 5120,  # 0.5
}
COVERAGE = {("lion", "w1"): 0.75, ("lion", "w2"): 0.5}  # lion as if a matrix method; others elementwise


def _memory(algorithm: str, workload: str) -> dict:
    state = STATE[(algorithm, workload)]
    return dict(state_bytes=state, peak_memory_bytes=4 * state, coverage=COVERAGE.get((algorithm, workload)))


def _tuned_plan() -> TuningPlan:
    return TuningPlan(
        name="golden",
        algorithms=list(ALGORITHMS),
        workloads=["w1", "w2"],
        trials=3,
        studies=2,
        eval_seeds=[0, 1],
        protocol="held-out",
        search_spaces={a: SPACE for a in ALGORITHMS},
        variants=True,
        select_by="steps",
        per_workload={"w2": {"studies": 1, "trials": 2, "eval_seeds": [0], "variants": False}},
    )


def _self_plan() -> TuningPlan:
    return TuningPlan(
        name="golden-self",
        algorithms=list(ALGORITHMS),
        workloads=["w1", "w2"],
        trials=1,
        studies=3,
        eval_seeds=[],
        protocol="same-split",
        search_spaces={a: {"lr": {"feasible_points": [0.001]}} for a in ALGORITHMS},
        select_by="steps",
        per_workload={"w2": {"studies": 1}},
    )


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    storage = open_test_storage(tmp_path_factory.mktemp("golden") / "board.db")
    tuned, self_ = _tuned_plan(), _self_plan()
    b = StoreBuilder(storage, tuned)

    def tune(a, w, k, d, steps=None, seconds=None, **kw):
        b.tune(a, w, k, d, steps, seconds, **_memory(a, w), **kw)

    def run(a, w, k, seed, steps=None, seconds=None, **kw):
        b.eval(a, w, k, seed, steps, seconds, **_memory(a, w), **kw)

    # ---- tuning (steps to target / seconds; None: missed) ----
    tune("adamw", "w1", 0, 0, 600, 6.0)
    tune("adamw", "w1", 0, 1, 400, 4.0)  # study 0's best: draw 1
    tune("adamw", "w1", 0, 2)
    tune("adamw", "w1", 1, 0, 500, 5.0)  # tie with draw 1: the earlier draw wins
    tune("adamw", "w1", 1, 1, 500, 5.0)
    tune("adamw", "w1", 1, 2, diverged=True)
    tune("lion", "w1", 0, 0, 300, 9.0, failed_first=True)  # retried: a failed copy, then this one
    tune("lion", "w1", 0, 1, 700, 8.0)  # fewer seconds (a quiet machine) but more steps: steps choose
    tune("lion", "w1", 0, 2)
    tune("lion", "w1", 1, 0, best_metric=0.80)  # nothing reached: the best metric (draw 1) is chosen
    tune("lion", "w1", 1, 1, best_metric=0.85)
    tune("lion", "w1", 1, 2, best_metric=0.70)
    tune("sgd", "w1", 0, 0, 800, 4.0)
    tune("sgd", "w1", 0, 1, failed=True)  # an exception (a bad configuration): done, not retried
    tune("sgd", "w1", 0, 2, 900, 4.5)
    tune("sgd", "w1", 1, 0, 800, 4.0)
    tune("sgd", "w1", 1, 1, 800, 4.0)
    tune("sgd", "w1", 1, 2, 1000, 5.0)
    tune("adamw", "w2", 0, 0, 200, 2.0)
    tune("adamw", "w2", 0, 1, 300, 3.0)
    tune("lion", "w2", 0, 0, 100, 3.0)
    tune("lion", "w2", 0, 1)
    tune("sgd", "w2", 0, 0, best_metric=0.5)
    tune("sgd", "w2", 0, 1, diverged=True)  # no metric at all: draw 0 is chosen
    b.queue_stale_draw("lion", "w2", 0, 2)  # w2 has 2 draws: a third, from an older budget, never counts
    tune("lion", "w2", 0, 2, 50, 1.5)
    # 3 x 2 x 3 + 3 x 1 x 2 = 24 draws; variant runs for w1 only, one per study
    assert b.queue_evaluation(variants_of=lambda w: [f"{w}_noisy"]) == 3 * (2 * 2 + 2) + 3 * 1
    # ---- held-out runs of each study's best ----
    run("adamw", "w1", 0, 0, 400, 4.0)
    run("adamw", "w1", 0, 1, 400, 4.0)
    run("adamw", "w1", 1, 0, 600, 6.0)
    run("adamw", "w1", 1, 1, 600, 6.0)
    run("lion", "w1", 0, 0, 300, 9.0)
    run("lion", "w1", 0, 1, 300, 9.0)
    run("lion", "w1", 1, 0)
    run("lion", "w1", 1, 1, failed=True)  # an exception: a finished run, a miss
    run("sgd", "w1", 0, 0, 800, 4.0)
    run("sgd", "w1", 0, 1, 1000, 5.0)
    run("sgd", "w1", 1, 0, 800, 4.0)
    run("sgd", "w1", 1, 1, 1000, 5.0, failed_first=True)  # a retried evaluation run
    run("adamw", "w2", 0, 0, 200, 2.0)
    run("lion", "w2", 0, 0, 100, 3.0)
    run("sgd", "w2", 0, 0)
    for a, reached in (("adamw", (True, False)), ("lion", (False, False)), ("sgd", (True, True))):
        for k in (0, 1):
            b.variant(a, "w1", k, "w1_noisy", reached[k], **_memory(a, "w1"))

    # ---- untuned: one run per seed ("study") at the defaults, scored on its own split ----
    s = StoreBuilder(storage, self_)
    for a, w, k, steps, seconds in (
        ("adamw", "w1", 0, 700, 7.0),
        ("adamw", "w1", 1, None, None),
        ("adamw", "w1", 2, 800, 8.0),
        ("adamw", "w2", 0, 300, 3.0),
        ("lion", "w1", 0, None, None),
        ("lion", "w1", 1, None, None),
        ("lion", "w1", 2, 600, 6.0),
        ("lion", "w2", 0, None, None),
        ("sgd", "w1", 0, 900, 9.0),
        ("sgd", "w1", 1, 1000, 10.0),
        ("sgd", "w1", 2, 1100, 11.0),
        ("sgd", "w2", 0, 150, 1.5),
    ):
        s.tune(a, w, k, 0, steps, seconds, **_memory(a, w))
    return storage, tuned, self_, b


def test_collect_keeps_the_best_per_study_its_held_out_runs_and_misses_as_infinity(board):
    storage, plan, _, b = board
    out = collect(storage, plan)
    assert out.costs["steps"] == {
        "adamw": {"w1": [[400, 400], [600, 600]], "w2": [[200]]},
        "lion": {"w1": [[300, 300], [INF, INF]], "w2": [[100]]},
        "sgd": {"w1": [[800, 1000], [800, 1000]], "w2": [[INF]]},  # the retried run's completed copy
    }
    assert out.costs["time"] == {
        "adamw": {"w1": [[4.0, 4.0], [6.0, 6.0]], "w2": [[2.0]]},
        "lion": {"w1": [[9.0, 9.0], [INF, INF]], "w2": [[3.0]]},
        "sgd": {"w1": [[4.0, 5.0], [4.0, 5.0]], "w2": [[INF]]},
    }
    chosen = {(x["algorithm"], x["workload"], x["study"]): (x["draw"], x["tuning_steps"]) for x in out.best}
    assert chosen == {
        ("adamw", "w1", 0): (1, 400),
        ("adamw", "w1", 1): (0, 500),  # a tie goes to the earlier draw
        ("lion", "w1", 0): (0, 300),  # the retried draw
        ("lion", "w1", 1): (1, INF),  # all missed: the best validation metric
        ("sgd", "w1", 0): (0, 800),
        ("sgd", "w1", 1): (0, 800),
        ("adamw", "w2", 0): (0, 200),
        ("lion", "w2", 0): (0, 100),
        ("sgd", "w2", 0): (0, INF),  # the diverged draw has no metric
    }
    assert all(b.best_draw(a, w, k) == d for (a, w, k), (d, _) in chosen.items())  # evaluation queued it
    first = next(x for x in out.best if (x["algorithm"], x["workload"], x["study"]) == ("adamw", "w1", 0))
    assert (first["tuning_time"], first["tuning_steps"]) == (4.0, 400)
    curves = {(c["algorithm"], c["workload"], c["study"]): c["costs"] for c in out.curves}
    assert curves[("lion", "w1", 0)] == [9.0, 8.0, INF]  # one entry per draw, the retry's
    assert curves[("sgd", "w1", 0)] == [4.0, INF, 4.5]  # the failed draw counts, as a miss
    assert curves[("adamw", "w1", 1)] == [5.0, 5.0, INF]  # diverged: a miss
    # 24 draws (one failed) + 1 failed copy of a retried draw + the stale draw, 15 held-out runs
    # (one failed) + 1 failed copy, 6 variant runs
    assert out.counts == {"waiting": 0, "running": 0, "complete": 44, "fail": 4}
    assert out.missing == [] and out.incomplete == set() and out.protocol == "held-out"
    variants = sorted((v["algorithm"], v["study"], v["variant"], v["reached"]) for v in out.variants)
    assert variants == [
        ("adamw", 0, "w1_noisy", True),
        ("adamw", 1, "w1_noisy", False),
        ("lion", 0, "w1_noisy", False),
        ("lion", 1, "w1_noisy", False),
        ("sgd", 0, "w1_noisy", True),
        ("sgd", 1, "w1_noisy", True),
    ]
    noisy = next(v for v in out.variants if (v["algorithm"], v["study"]) == ("adamw", 0))
    # a reached run's best metric is the target (0.9) in the builder; its 100 steps took 1.0 s
    assert noisy == {
        "algorithm": "adamw",
        "workload": "w1",
        "study": 0,
        "variant": "w1_noisy",
        "reached": True,
        "best_metric": 0.9,
        "target": 0.9,
        "time": 1.0,
    }
    assert out.memory[("lion", "w2")] == {"state": 7168, "saved_activations": None, "peak": 28672, "coverage": 0.5}
    assert out.memory[("adamw", "w1")] == {"state": 8192, "saved_activations": None, "peak": 32768, "coverage": None}
    assert ("adamw", "w1_noisy") not in out.memory  # variants are not the workload's memory
    # same-split reads the best tuning trial itself: adamw w1's studies chose 400 and 500
    same = collect(storage, plan, "same-split")
    assert same.protocol == "same-split"
    assert same.costs["steps"]["adamw"] == {"w1": [[400], [500]], "w2": [[200]]}
    assert same.costs["steps"]["lion"]["w1"] == [[300], [INF]]
    assert same.costs["time"]["adamw"] == {"w1": [[4.0], [5.0]], "w2": [[2.0]]}


def test_scores_medians_intervals_ratios_and_speedups_by_hand(board):
    storage, plan, _, _ = board
    steps = score_experiment(collect(storage, plan), "steps", "adamw")
    # median over studies of the median over seeds; an even count with an inf middle is inf
    assert steps.costs == {
        "adamw": {"w1": 500.0, "w2": 200.0},  # median(400, 600)
        "lion": {"w1": INF, "w2": 100.0},  # median(300, inf): a tie of hit and miss is a miss
        "sgd": {"w1": 900.0, "w2": INF},  # median(900, 900)
    }
    # Bootstrap (2000 resamples, order statistics 49 and 1950 of 1999): each end below is taken by
    # at least 1/16 of the resamples (125 expected, far above the 50 needed). adamw w1: both drawn
    # studies study 0 (1/4) gives 400, both study 1 gives 600. lion w1: only both-study-0 (1/4)
    # is finite (300), the rest inf. sgd w1: a study's resampled median is 800 w.p. 1/4, so both
    # at 800 w.p. 1/16 (likewise 1000). One run per cell gives (x, x).
    assert steps.intervals == {
        "adamw": {"w1": (400.0, 600.0), "w2": (200.0, 200.0)},
        "lion": {"w1": (300.0, INF), "w2": (100.0, 100.0)},
        "sgd": {"w1": (800.0, 1000.0), "w2": (INF, INF)},
    }
    # ratio to the best per workload (w1: adamw 500, w2: lion 100); above r_max = 4 -> inf
    assert steps.ratios == {
        "adamw": {"w1": 1.0, "w2": 2.0},
        "lion": {"w1": INF, "w2": 1.0},
        "sgd": {"w1": 1.8, "w2": INF},
    }
    # score = sum over workloads of (r_max - r) / ((r_max - 1) * 2)
    assert steps.scores == pytest.approx({"adamw": (3 + 2) / 6, "lion": (0 + 3) / 6, "sgd": (2.2 + 0) / 6})
    # geometric mean of cost_adamw / cost_alg over workloads both reached
    assert steps.speedups["adamw"] == (1.0, 2, 2)
    assert steps.speedups["lion"] == pytest.approx((200 / 100, 1, 2))  # w2 only
    assert steps.speedups["sgd"] == pytest.approx((500 / 900, 1, 2))  # w1 only

    time = score_experiment(collect(storage, plan), "time", "adamw")
    assert time.costs == {
        "adamw": {"w1": 5.0, "w2": 2.0},
        "lion": {"w1": INF, "w2": 3.0},
        "sgd": {"w1": 4.5, "w2": INF},
    }
    assert time.intervals["adamw"]["w1"] == (4.0, 6.0) and time.intervals["sgd"]["w1"] == (4.0, 5.0)
    expected = {"adamw": {"w1": 5.0 / 4.5, "w2": 1.0}, "lion": {"w1": INF, "w2": 1.5}, "sgd": {"w1": 1.0, "w2": INF}}
    assert time.ratios.keys() == expected.keys()
    assert all(time.ratios[a] == pytest.approx(expected[a]) for a in expected)
    assert time.scores == pytest.approx({"adamw": (4 - 10 / 9 + 3) / 6, "lion": 2.5 / 6, "sgd": 3 / 6})
    assert time.speedups["lion"] == pytest.approx((2.0 / 3.0, 1, 2))
    assert time.speedups["sgd"] == pytest.approx((5.0 / 4.5, 1, 2))

    # the report's tables, best score first (steps: adamw, lion, sgd; time: adamw, sgd, lion)
    assert steps.table().splitlines() == [
        "| algorithm | w1 (steps) | w2 (steps) | score | speedup vs adamw |",
        "|---|---:|---:|---:|---:|",
        "| adamw | 500 [400, 600] | 200 [200, 200] | 0.833 | 1.00x (2/2) |",
        "| lion | miss | 100 [100, 100] | 0.500 | 2.00x (1/2) |",
        "| sgd | 900 [800, 1000] | miss | 0.367 | 0.56x (1/2) |",
    ]
    assert time.table().splitlines()[2:] == [
        "| adamw | 5.00 [4.00, 6.00] | 2.00 [2.00, 2.00] | 0.981 | 1.00x (2/2) |",
        "| sgd | 4.50 [4.00, 5.00] | miss | 0.500 | 1.11x (1/2) |",
        "| lion | miss | 3.00 [3.00, 3.00] | 0.417 | 0.67x (1/2) |",
    ]


def test_leaderboard_tables_values_and_order_by_hand(board):
    storage, tuned, self_, _ = board
    out, untuned = collect(storage, tuned), collect(storage, self_)
    t = {by: score_experiment(out, by, "adamw") for by in ("time", "steps")}
    u = {by: score_experiment(untuned, by, "adamw") for by in ("time", "steps")}
    # untuned (one run per seed, medians over 3 seeds on w1): adamw median(700, inf, 800) = 800,
    # lion median(inf, inf, 600) = inf, sgd 1000; w2: adamw 300, lion inf, sgd 150.
    # ratios w1: 1, inf, 1.25; w2: 2, inf, 1 -> scores 5/6, 0, (2.75 + 3) / 6
    assert u["steps"].costs == {
        "adamw": {"w1": 800.0, "w2": 300.0},
        "lion": {"w1": INF, "w2": INF},
        "sgd": {"w1": 1000.0, "w2": 150.0},
    }
    assert u["steps"].scores == pytest.approx({"adamw": 5 / 6, "lion": 0.0, "sgd": 5.75 / 6})
    variants = {"adamw": (1, 2), "lion": (0, 2), "sgd": (2, 2)}
    # state vs adamw: geometric mean over workloads of state / adamw's state: lion sqrt(0.5 * 0.7) =
    # 0.592, sgd 0.5
    assert compact_table(t, u, out.memory, variants, ["w1", "w2"]) == [
        "| algorithm | w1 steps | w2 steps | score (steps) | score (wall clock) | speedup vs adamw (steps) "
        "| state vs adamw (geometric mean, peak) | variants reached | untuned score (steps) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        "| adamw | 500 [400, 600] | 200 [200, 200] | 0.833 | 0.981 | 1.00x (2/2) | 1.00x | 1/2 | 0.833 |",
        "| lion | miss | 100 [100, 100] | 0.500 | 0.417 | 2.00x (1/2) | 0.59x | 0/2 | 0.000 |",
        "| sgd | 900 [800, 1000] | miss | 0.367 | 0.500 | 0.56x (1/2) | 0.50x | 2/2 | 0.958 |",
    ]
    # the report's summary is ordered by the time score instead
    assert summary_table(t, out.memory, variants, ["w1", "w2"])[2:] == [
        "| adamw | 0.981 | 0.833 | 1.00x (2/2) | 1.00x | all (elementwise) | 1/2 |",
        "| sgd | 0.500 | 0.367 | 1.11x (1/2) | 0.50x | all (elementwise) | 2/2 |",
        "| lion | 0.417 | 0.500 | 0.67x (1/2) | 0.59x | 50-75 % | 0/2 |",
    ]
    # per workload: fewest steps first, misses last
    assert workload_table(t, out.memory, ["w1", "w2"])[2:] == [
        "| w1 | adamw | 5 [4, 6] | 500 [400, 600] | 8.0 KiB | 32.0 KiB | -- |",
        "| w1 | sgd | 4.5 [4, 5] | 900 [800, 1000] | 4.0 KiB | 16.0 KiB | -- |",
        "| w1 | lion | miss | miss | 4.0 KiB | 16.0 KiB | 75 % |",
        "| w2 | lion | 3 [3, 3] | 100 [100, 100] | 7.0 KiB | 28.0 KiB | 50 % |",
        "| w2 | adamw | 2 [2, 2] | 200 [200, 200] | 10.0 KiB | 40.0 KiB | -- |",
        "| w2 | sgd | miss | miss | 5.0 KiB | 20.0 KiB | -- |",
    ]
    # the configuration races use: the study with the fewest median held-out steps (ties: lower)
    picked = {
        (a, w): (c["study"], c["draw"], c["median_steps_to_target"])
        for a, per in race_configs(storage, tuned)["configs"].items()
        for w, c in per.items()
    }
    assert picked == {
        ("adamw", "w1"): (0, 1, 400),
        ("lion", "w1"): (0, 0, 300),
        ("sgd", "w1"): (0, 0, 900),  # 900 in both studies: the lower one
        ("adamw", "w2"): (0, 0, 200),
        ("lion", "w2"): (0, 0, 100),
        ("sgd", "w2"): (0, 0, None),
    }


def _race_result(algorithm: str, seed: int, steps: int | None, final: float | None, **kw) -> TrialResult:
    status = kw.pop("status", "completed")
    return TrialResult(
        workload="w",
        algorithm=algorithm,
        seed=seed,
        hparams={},
        metric_name="accuracy",
        higher_is_better=True,
        target=0.85,
        step_budget=1000,
        status=status,
        reached=steps is not None,
        time_to_target=steps / 100 if steps is not None else INF,
        steps_to_target=steps,
        final_metric=INF * 0 if final is None else final,  # NaN when it diverged
        steps=1000,
        train_seconds=kw.pop("train_seconds", 10.0),
        state_bytes=1024,
        peak_memory_bytes=4096,
        **kw,
    )


def test_race_summary_median_over_three_seeds_and_missed_when_most_miss(tmp_path):
    store = ResultsStore(f"sqlite:///{tmp_path / 'race.db'}")
    race = store.start_race({"seeds": [0, 1, 2]}, {"device": "cpu"})
    for algorithm, seed, steps, final, kw in (
        # a: 2 of 3 reach: median(300, 500, inf) = 500 steps, 5.0 s
        ("a", 0, 300, 0.90, {"train_seconds": 9.0}),
        ("a", 1, None, 0.70, {"train_seconds": 10.0}),
        ("a", 2, 500, 0.80, {"train_seconds": 11.0}),
        # b: 1 of 3 reaches: median(200, inf, inf) = inf -> missed; its diverged seed has no final metric
        ("b", 0, 200, 0.86, {}),
        ("b", 1, None, 0.50, {}),
        ("b", 2, None, None, {"status": "diverged"}),
        # c: all reach, stored out of order: median(400, 100, 250) = 250
        ("c", 0, 400, 0.90, {}),
        ("c", 1, 100, 0.90, {}),
        ("c", 2, 250, 0.90, {}),
    ):
        trial = store.start_trial(race, "w", algorithm, seed, {})
        store.finish_trial(trial, _race_result(algorithm, seed, steps, final, **kw))
    failed = store.start_trial(race, "w", "c", 3, {})
    store.fail_trial(failed, "RuntimeError: not a result")  # a failed trial is no seed
    rows = {r.algorithm: r for r in summarize(store.trials(race))}
    assert (rows["a"].steps_to_target, rows["a"].time_to_target, rows["a"].reached) == (500, 5.0, 2)
    assert (rows["b"].steps_to_target, rows["b"].time_to_target, rows["b"].diverged) == (INF, INF, 1)
    assert (rows["c"].steps_to_target, rows["c"].time_to_target, rows["c"].seeds) == (250, 2.5, 3)
    # final metric: mean +- sample std (a: 0.8 +- 0.1; b: (0.86, 0.5) -> 0.68 +- 0.36 / sqrt 2)
    assert format_table(list(rows.values())).splitlines()[2:] == [
        "| w | a | 2/3 | 5.0 | 500 | accuracy 0.8000 ± 0.1000 (target ≥ 0.85) | 10.0 | 1.0 KiB | — | 4.0 KiB |",
        "| w | b | 1/3 | missed | — | accuracy 0.6800 ± 0.2546, 1 diverged (target ≥ 0.85) | 10.0 | 1.0 KiB "
        "| — | 4.0 KiB |",
        "| w | c | 3/3 | 2.5 | 250 | accuracy 0.9000 ± 0.0000 (target ≥ 0.85) | 10.0 | 1.0 KiB | — | 4.0 KiB |",
    ]


def test_an_experiment_with_nothing_run_yet_scores_misses_and_says_what_is_missing(tmp_path):
    storage = open_test_storage(tmp_path / "empty.db")
    plan = _tuned_plan()
    create_or_resume(storage, plan)  # its studies exist, no trial is queued yet
    out = collect(storage, plan)
    assert out.costs["steps"]["sgd"] == {"w1": [[INF], [INF]], "w2": [[INF]]}
    assert out.best == [] and out.incomplete == {(a, w) for a in ALGORITHMS for w in ("w1", "w2")}
    assert out.missing[:3] == [
        "adamw on w1, study 0: 0/3 tuning trials",
        "adamw on w1, study 1: 0/3 tuning trials",
        "adamw on w2, study 0: 0/2 tuning trials",
    ]
    # tuned but not yet evaluated: the held-out run is missing, and scored as a miss meanwhile
    b = StoreBuilder(storage, plan)
    b.tune("adamw", "w2", 0, 0, 200, 2.0)
    b.tune("adamw", "w2", 0, 1, 300, 3.0)
    assert "adamw on w2, study 0: 0/1 evaluation runs" in collect(storage, plan).missing  # not queued yet
    assert b.queue_evaluation() == 1
    out = collect(storage, plan)
    assert "adamw on w2, study 0: 0/1 evaluation runs" in out.missing and ("adamw", "w2") in out.incomplete
    assert out.costs["steps"]["adamw"]["w2"] == [[INF]] and out.best[0]["draw"] == 0
