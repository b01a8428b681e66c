# trainlab: one command to set up and race, one to set up and test (see README).
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin

.PHONY: setup data race test docs docs-serve bench compare leaderboard external-validity clean

setup: $(VENV)/.installed data

# torch first and pinned, so pip never resolves another (CUDA) build for the project's `torch>=2.4`.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q torch==2.13.0
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev,algoperf,reference]'
# APOLLO's reference (tests/test_optim_apollo.py), without the transformers and bitsandbytes it
# imports for variants the test does not use (pyproject.toml's reference extra says why)
	$(BIN)/pip install --disable-pip-version-check -q --no-deps apollo-torch==1.0.3
	touch $@

# The pinned text corpus and the MNIST-1D cache, fetched/generated once (never at run time).
data: $(VENV)/.installed
	$(BIN)/trainlab fetch-data --quiet

race: setup
	$(BIN)/trainlab race

# Lint and format check (ruff), type check (mypy), all configured in pyproject.toml; then the tests,
# the PostgreSQL ones against a throwaway local server when one is installed (scripts/with-postgres).
test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mkdocs build --strict --quiet
	scripts/with-postgres $(BIN)/pytest -q -n 2 --dist worksteal --durations=15

# The documentation site (mkdocs.yml): built into site/, or served with live reload at 127.0.0.1:8000.
docs: $(VENV)/.installed
	$(BIN)/mkdocs build --strict

docs-serve: $(VENV)/.installed
	$(BIN)/mkdocs serve

# The README's tuning comparison: 3 baselines x 3 default workloads, 3 studies x 5 trials each, the
# best of each study re-run on 2 held-out seeds and on the workload variants. Resumable: rerun it.
compare: setup
	$(BIN)/trainlab tune --name compare --algorithms adamw,nadamw,sgd --trials 5 --studies 3 \
		--eval-seeds 0,1 --variants --workers 2 --threads 1 --store trainlab-results/compare.db \
		--report-dir docs/compare --no-progress

# The leaderboard: every registered algorithm, tuned (held-out protocol) and untuned, on the three
# default workloads; writes docs/leaderboard/ and the configurations races use. Resumable: rerun it;
# name new algorithms with ALGORITHMS=... to add only theirs.
leaderboard: setup
	$(BIN)/trainlab leaderboard --workers 2 --threads 1 --no-progress \
		--write-configs trainlab/algorithms/leaderboard.json $(if $(ALGORITHMS),--algorithms $(ALGORITHMS))

# Does trainlab rank like AlgoPerf? The published AlgoPerf v0.5 PyTorch submissions (read-only, in
# ../shared/algoperf_v05), each tuned on its own search space; writes docs/external_validity/.
# Resumable: rerun it. The horizon check (4x the steps on mnist1d_mlp) runs first, so the headline
# report that follows includes it.
external-validity: setup
	$(BIN)/trainlab external-validity --workloads mnist1d_mlp --step-budget-factor 4 --workers 1 --threads 1 \
		--out docs/external_validity/horizon_x4_mnist1d_mlp --no-progress
	$(BIN)/trainlab external-validity --workers 1 --threads 1 --no-progress

# The benchmarks (scripts, not tests); the optimizer one times the peer implementations too.
bench: setup
	$(BIN)/pip install --disable-pip-version-check -q -e '.[bench]'
	$(BIN)/python benchmarks/harness_overhead.py
	$(BIN)/python benchmarks/optimizer_step.py --peers

clean:
	rm -rf $(VENV) trainlab-results *.egg-info site
