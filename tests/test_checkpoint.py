"""Checkpoints inside a trial: crashed at a random step and resumed, every registered optimizer ends
with the parameters, curve and record of a trial that never stopped, bit for bit; and a race killed
with SIGKILL mid-trial resumes that trial from its checkpoint."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT
from trainlab import optim
from trainlab.algorithms import make_algorithm
from trainlab.benchmark import checkpoint
from trainlab.benchmark.runner import finish, train
from trainlab.benchmark.trial_options import TrialOptions
from trainlab.benchmark.trial_setup import set_up
from trainlab.errors import UsageError
from trainlab.workloads import create_workload

CPU = torch.device("cpu")


class Crash(Exception):
    pass


def _curve(result):
    return [(e.step, e.train_loss, e.metric, e.validation_loss) for e in result.evals]


@pytest.mark.parametrize("name", optim.available())
def test_a_trial_crashed_at_a_random_step_resumes_bit_for_bit(tmp_path, name):
    workload = create_workload("mnist1d_mlp", step_budget=16, eval_every=4)
    spec = make_algorithm(name, workload="mnist1d_mlp")
    options = TrialOptions(checkpoint_every=4, checkpoint_dir=str(tmp_path))
    whole = set_up(workload, spec, 0, CPU, options)
    train(whole)
    expected = finish(whole)

    crash_at = random.Random(name).randint(5, 15)  # past the first checkpoint, before the end
    crashed = set_up(workload, spec, 0, CPU, options)
    path = checkpoint.path_for(crashed, 0)
    calls, loss = [0], crashed.training_loss

    def dying(model, batch):
        calls[0] += 1
        if calls[0] == crash_at:
            raise Crash
        return loss(model, batch)

    crashed.training_loss = dying
    with pytest.raises(Crash):
        train(crashed, saved=path)
    assert path.is_file()
    resumed = set_up(workload, spec, 0, CPU, options)
    train(resumed, saved=path)
    got = finish(resumed)
    assert got.resumed_from == 4 * ((crash_at - 1) // 4)
    assert _curve(got) == _curve(expected) and got.test_metric == expected.test_metric
    for (k, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), (name, k)


def test_checkpoint_options_are_checked():
    with pytest.raises(UsageError, match="positive number of steps"):
        TrialOptions(checkpoint_every=0, checkpoint_dir="x")
    with pytest.raises(UsageError, match="needs a folder"):
        TrialOptions(checkpoint_every=10)
    with pytest.raises(UsageError, match="does not cover --nproc"):
        TrialOptions(checkpoint_every=10, checkpoint_dir="x", nproc=2)


@pytest.mark.slow
def test_a_race_killed_mid_trial_resumes_it_from_its_checkpoint(tmp_path):
    def command(store):
        return [
            sys.executable, "-m", "trainlab", "race", "--workloads", "mnist1d_mlp", "--algorithms", "sfadamw",
            "--seeds", "0", "--workload-option", "mnist1d_mlp.step_budget=600", "--threads", "1",
            "--checkpoint-every", "100", "--checkpoint-dir", str(tmp_path / "ck"), "--store", str(store),
            "--no-report", "--no-progress",
        ]  # fmt: skip

    killed = subprocess.Popen(command(tmp_path / "k.db"), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and killed.poll() is None and not list((tmp_path / "ck").glob("*.pt")):
        time.sleep(0.05)
    assert killed.poll() is None, killed.stderr.read().decode()
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    done = subprocess.run(command(tmp_path / "k.db"), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming race" in done.stdout and not list((tmp_path / "ck").glob("*.pt"))
    fresh = subprocess.run(command(tmp_path / "f.db"), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert fresh.returncode == 0, fresh.stderr
    from trainlab.store import ResultsStore

    rows = []
    for db in ("k.db", "f.db"):
        s = ResultsStore(f"sqlite:///{tmp_path / db}", create=False)
        (t,) = s.trials(s.races()[-1]["id"])
        rows.append(
            (t["status"], t["steps"], t["final_metric"], t["test_metric"], [e["metric"] for e in s.evals(t["id"])])
        )
    assert rows[0] == rows[1]
