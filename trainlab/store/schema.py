"""Tables of the results store, in portable SQLAlchemy Core (SQLite today, PostgreSQL for shared
studies). Every table name starts with `trainlab_`, so Optuna's RDB tables (`studies`, `trials`,
...) can live in the same database. Misses and non-finite numbers are stored as NULL, never as IEEE
infinity/NaN, because databases disagree on those; `reached` says whether a NULL time-to-target means "missed".

Schema versions (stored in `trainlab_meta`): 1, the first; 2 adds the memory-saver columns of
`trainlab_trials`; 3 its coverage columns; 4 its stability-after-target columns (`ADDED_COLUMNS`);
5 the `trainlab_predictions` and `trainlab_continual` tables (new tables: opening an older store
creates them, empty) and the continual-evaluation and SSO columns of `trainlab_trials`.
Upgrades only ever add nullable columns, so no row is rewritten.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, ForeignKey, Integer, MetaData, String, Table, Text

metadata = MetaData()

meta = Table(
    "trainlab_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

races = Table(
    "trainlab_races",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", String(32), nullable=False),
    Column("label", String(200)),
    Column("config", Text, nullable=False),  # JSON: workloads, algorithms, seeds, options
    Column("environment", Text, nullable=False),  # JSON: versions, device, threads, git commit
    Column("trainlab_version", String(32)),
    Column("torch_version", String(64)),
    Column("device", String(200)),
    Column("num_threads", Integer),
    Column("git_commit", String(64)),
    Column("fingerprint", String(64)),  # sha256 of the config: the same race, resumed
)

trials = Table(
    "trainlab_trials",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("race_id", Integer, ForeignKey("trainlab_races.id"), nullable=False, index=True),
    Column("workload", String(200), nullable=False),
    Column("algorithm", String(200), nullable=False),
    Column("seed", Integer, nullable=False),
    Column("hparams", Text, nullable=False),  # JSON
    Column("status", String(16), nullable=False),  # running | completed | diverged | failed
    Column("metric_name", String(64)),
    Column("higher_is_better", Boolean),
    Column("target", Float),
    Column("step_budget", Integer),
    Column("reached", Boolean),
    Column("time_to_target", Float),  # NULL when not reached
    Column("steps_to_target", Integer),
    Column("final_metric", Float),
    Column("best_metric", Float),
    Column("test_metric", Float),
    Column("steps", Integer),
    Column("train_seconds", Float),
    Column("eval_seconds", Float),
    Column("param_bytes", Integer),
    Column("grad_bytes", Integer),
    Column("state_bytes", Integer),
    Column("peak_memory_bytes", Integer),
    Column("peak_memory_source", String(32)),
    Column("grad_norms", Text),  # JSON list, when recorded
    Column("error", Text),
    Column("started_at", String(32), nullable=False),
    Column("finished_at", String(32)),
    # schema version 2: memory savers (nullable: version-1 rows, upgraded in place, hold NULL)
    Column("saved_activation_bytes", Integer),  # peak bytes held by saved-tensor hooks in a step
    Column("compress_activations", String(16)),  # "2", "4", "8", "adaptive"; NULL when off
    Column("precision", String(16)),  # fp32 | bf16-autocast | bf16
    Column("frozen_params", Integer),  # parameter entries frozen
    # schema version 3: what a matrix method treats unlike AdamW (NULL for elementwise methods)
    Column("covered_params", Integer),  # entries projected, whitened or split
    Column("coverage", Float),  # covered_params / trainable entries
    # schema version 4: stability after the target (trainlab.scoring.stability; NULL when not defined)
    Column("worst_after_target", Float),
    Column("stability_gap", Float),  # NULL also when infinite (a divergence after the target)
    # schema version 5: continual evaluation on a fixed validation subset (NULL when off)
    Column("continual_every", Integer),
    Column("continual_subset", Integer),
    Column("continual_worst_after_target", Float),
    Column("continual_stability_gap", Float),
    # schema version 5: SSO's counts (NULL for every other algorithm)
    Column("outer_gradients", Integer),
    Column("inner_steps", Integer),
    # version 6: who runs a trial and when it last said so (a resumed race reruns only dead ones)
    Column("owner", String(200)),
    Column("heartbeat_at", Float),
)

# Columns added after version 1, by table: opening an older store adds them (`ResultsStore`).
ADDED_COLUMNS: dict[str, tuple[str, ...]] = {
    "trainlab_trials": (
        "saved_activation_bytes",
        "compress_activations",
        "precision",
        "frozen_params",
        "covered_params",
        "coverage",
        "worst_after_target",
        "stability_gap",
        "continual_every",
        "continual_subset",
        "continual_worst_after_target",
        "continual_stability_gap",
        "outer_gradients",
        "inner_steps",
        "owner",
        "heartbeat_at",
    ),
    "trainlab_races": ("fingerprint",),
}

evals = Table(
    "trainlab_evals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trial_id", Integer, ForeignKey("trainlab_trials.id"), nullable=False, index=True),
    Column("step", Integer, nullable=False),
    Column("train_seconds", Float, nullable=False),
    Column("train_loss", Float),
    Column("metric", Float),
    Column("validation_loss", Float),
    Column("eval_seconds", Float),
)

# schema version 5: learning-curve predictions made during a trial (`race --predict`;
# trainlab.scoring.curves.Prediction), one row per evaluation past the prediction level
predictions = Table(
    "trainlab_predictions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trial_id", Integer, ForeignKey("trainlab_trials.id"), nullable=False, index=True),
    Column("step", Integer, nullable=False),
    Column("family", String(16), nullable=False),
    Column("final", Float),
    Column("final_low", Float),
    Column("final_high", Float),
    Column("target_step", Float),  # NULL: never within reach
    Column("target_step_low", Float),
    Column("target_step_high", Float),
    Column("converged", Boolean),
)

# schema version 5: the per-step curve of continual evaluation (`race --eval-subset`)
continual = Table(
    "trainlab_continual",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trial_id", Integer, ForeignKey("trainlab_trials.id"), nullable=False, index=True),
    Column("step", Integer, nullable=False),
    Column("metric", Float),
    Column("loss", Float),
)
