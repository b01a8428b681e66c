"""`ResultsStore`: open (or create) a store by URL and read and write races, trials, evaluations.

Durability: a trial's row is committed as `running` when it starts, and its results and evaluations
are committed together in one transaction when it ends, so a race killed at any moment keeps every
finished trial, and an interrupted one is visible as `running` (never half-written). SQLite runs in WAL
mode with a busy timeout so a report can read while a race writes.

Upgrades: a store written by an older schema version is upgraded in place when opened, by adding
the newer nullable columns (`ALTER TABLE ... ADD COLUMN`, compiled by SQLAlchemy for the database's
dialect); rows already stored are never rewritten or dropped. A store from a newer trainlab is refused.
"""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from trainlab.errors import UsageError
from trainlab.store import schema
from trainlab.store.results import TrialResult

SCHEMA_VERSION = 6  # 2: memory savers, 3: coverage, 4: stability after target, 5: predictions,
# continual eval, 6: race fingerprints and trial heartbeats (resumable races)
DEFAULT_STORE_URL = "sqlite:///trainlab-results/results.db"


def normalise_url(url: str | None) -> str:
    """Accept a SQLAlchemy URL or a plain file path (taken as a SQLite database)."""
    if not url:
        return DEFAULT_STORE_URL
    for scheme in ("postgresql://", "postgres://"):  # the driver trainlab[postgres] installs
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url if "://" in url else f"sqlite:///{url}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


ERROR_CHARS = 4000


def clip_error(error: str, limit: int = ERROR_CHARS) -> str:
    """A stored error keeps its first line (the summary) and the *end* of its traceback: the
    innermost frames say where it was raised, and those are what a reader needs."""
    if len(error) <= limit:
        return error
    head, _, rest = error.partition("\n")
    head = head[: limit // 4]
    marker = "\n... ({} characters of the traceback left out) ...\n"
    keep = limit - len(head) - len(marker.format(len(rest)))
    return head + marker.format(len(rest) - keep) + rest[-keep:]


class ResultsStore:
    def __init__(self, url: str | None = None, create: bool = True) -> None:
        self.url = normalise_url(url)
        try:
            parsed = make_url(self.url)
        except ArgumentError:
            raise UsageError(
                f"cannot parse store URL {self.url!r}: use sqlite:///PATH.db or postgresql://USER@HOST/DB"
            ) from None
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            path = Path(parsed.database)
            if not create and not path.exists():
                raise UsageError(f"no results store at {path}: run `trainlab race` first or pass --store")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot create the store's folder {path.parent}: {exc.strerror}") from None
        try:
            self.engine = sa.create_engine(self.url, future=True)
        except (NoSuchModuleError, ImportError, ArgumentError) as exc:
            raise UsageError(
                f"cannot open results store {self.url!r}: {exc}; "
                "for PostgreSQL install a driver (pip install 'trainlab[postgres]')"
            ) from None
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            schema.metadata.create_all(self.engine)
            self._check_schema_version()
        except (DBAPIError, SQLAlchemyError) as exc:
            reason = str(getattr(exc, "orig", exc)).splitlines()[0]
            raise UsageError(
                f"cannot use results store {self.url!r}: {reason}; pass --store with a "
                "writable SQLite path or database URL"
            ) from None

    def _check_schema_version(self) -> None:
        with self.engine.begin() as conn:
            found = conn.execute(sa.select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")).scalar()
            if found is None:
                conn.execute(schema.meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
                return
        try:
            version = int(found)
        except ValueError:
            version = None
        if version is None or not 1 <= version <= SCHEMA_VERSION:
            raise UsageError(
                f"results store {self.url!r} has schema version {found}, this trainlab "
                f"writes version {SCHEMA_VERSION}: use a new --store"
            )
        if version < SCHEMA_VERSION:
            self._upgrade(version)

    def _upgrade(self, version: int) -> None:
        """Add the columns of newer schema versions (nullable, so every stored row stays as it was)."""
        for table_name, names in schema.ADDED_COLUMNS.items():
            table = schema.metadata.tables[table_name]
            for name in names:
                if name in self._columns(table_name):
                    continue
                column = sa.schema.CreateColumn(table.c[name]).compile(dialect=self.engine.dialect)
                preparer = self.engine.dialect.identifier_preparer
                try:
                    with self.engine.begin() as conn:
                        conn.execute(sa.text(f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {column}"))
                except (DBAPIError, SQLAlchemyError):
                    if name not in self._columns(table_name):  # not a concurrent upgrade that won
                        raise
        with self.engine.begin() as conn:
            conn.execute(
                schema.meta.update()
                .where(schema.meta.c.key == "schema_version")
                .where(schema.meta.c.value == str(version))
                .values(value=str(SCHEMA_VERSION))
            )

    def _columns(self, table_name: str) -> set[str]:
        return {c["name"] for c in sa.inspect(self.engine).get_columns(table_name)}

    # ---- writing ----------------------------------------------------------------------------
    def start_race(
        self,
        config: dict[str, Any],
        environment: dict[str, Any],
        label: str | None = None,
        fingerprint: str | None = None,
    ) -> int:
        with self.engine.begin() as conn:
            row = conn.execute(
                schema.races.insert().values(
                    created_at=_now(),
                    label=label,
                    fingerprint=fingerprint,
                    config=json.dumps(config, default=str),
                    environment=json.dumps(environment),
                    trainlab_version=environment.get("trainlab_version"),
                    torch_version=environment.get("torch_version"),
                    device=environment.get("device"),
                    num_threads=environment.get("num_threads"),
                    git_commit=environment.get("git_commit"),
                )
            )
            return _inserted_id(row)

    def start_trial(
        self,
        race_id: int,
        workload: str,
        algorithm: str,
        seed: int,
        hparams: dict[str, Any],
        owner: str | None = None,
    ) -> int:
        with self.engine.begin() as conn:
            row = conn.execute(
                schema.trials.insert().values(
                    race_id=race_id,
                    workload=workload,
                    algorithm=algorithm,
                    seed=seed,
                    hparams=json.dumps(hparams, default=str),
                    status="running",
                    started_at=_now(),
                    owner=owner,
                    heartbeat_at=time.time(),
                )
            )
            return _inserted_id(row)

    def beat(self, trial_id: int) -> None:
        """A running trial's heartbeat (`trainlab.benchmark.resume`)."""
        with self.engine.begin() as conn:
            conn.execute(schema.trials.update().where(schema.trials.c.id == trial_id).values(heartbeat_at=time.time()))

    def race_by_fingerprint(self, fingerprint: str) -> int | None:
        """The latest race with this fingerprint (the same arguments), or None."""
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.max(schema.races.c.id)).where(schema.races.c.fingerprint == fingerprint)
            ).scalar()

    def delete_trials(self, trial_ids: list[int]) -> None:
        """Remove trials and everything recorded under them (a resumed race's dead trials)."""
        if not trial_ids:
            return
        with self.engine.begin() as conn:
            for table in (schema.evals, schema.predictions, schema.continual):
                conn.execute(table.delete().where(table.c.trial_id.in_(trial_ids)))
            conn.execute(schema.trials.delete().where(schema.trials.c.id.in_(trial_ids)))

    def finish_trial(self, trial_id: int, result: TrialResult) -> None:
        """Write a trial's summary and all its evaluations in one transaction."""
        values = {
            "hparams": json.dumps(result.hparams, default=str),  # as trained (a run may add to them)
            "status": result.status,
            "metric_name": result.metric_name,
            "higher_is_better": result.higher_is_better,
            "target": result.target,
            "step_budget": result.step_budget,
            "reached": result.reached,
            "time_to_target": _finite(result.time_to_target),
            "steps_to_target": result.steps_to_target,
            "final_metric": _finite(result.final_metric),
            "best_metric": _finite(result.best_metric),
            "test_metric": _finite(result.test_metric),
            "steps": result.steps,
            "train_seconds": result.train_seconds,
            "eval_seconds": result.eval_seconds,
            "param_bytes": result.param_bytes,
            "grad_bytes": result.grad_bytes,
            "state_bytes": result.state_bytes,
            "peak_memory_bytes": result.peak_memory_bytes,
            "peak_memory_source": result.peak_memory_source,
            "error": result.error,
            "grad_norms": json.dumps(result.grad_norms) if result.grad_norms is not None else None,
            "saved_activation_bytes": result.saved_activation_bytes,
            "compress_activations": (None if result.compress_activations is None else str(result.compress_activations)),
            "precision": result.precision,
            "frozen_params": result.frozen_params,
            "covered_params": result.covered_params,
            "coverage": result.coverage,
            "worst_after_target": _finite(result.worst_after_target),
            "stability_gap": _finite(result.stability_gap),
            "continual_every": result.continual_every,
            "continual_subset": result.continual_subset,
            "continual_worst_after_target": _finite(result.continual_worst_after_target),
            "continual_stability_gap": _finite(result.continual_stability_gap),
            "outer_gradients": result.outer_gradients,
            "inner_steps": result.inner_steps,
            "finished_at": _now(),
        }
        rows = [
            {
                "trial_id": trial_id,
                "step": r.step,
                "train_seconds": r.train_seconds,
                "train_loss": _finite(r.train_loss),
                "metric": _finite(r.metric),
                "validation_loss": _finite(r.validation_loss),
                "eval_seconds": r.eval_seconds,
            }
            for r in result.evals
        ]
        predicted = [
            {"trial_id": trial_id, **{k: _finite(v) if isinstance(v, float) else v for k, v in p.items()}}
            for p in result.predictions
        ]
        with self.engine.begin() as conn:
            conn.execute(schema.trials.update().where(schema.trials.c.id == trial_id).values(**values))
            if rows:
                conn.execute(schema.evals.insert(), rows)
            if predicted:
                conn.execute(schema.predictions.insert(), predicted)
            if result.continual:
                conn.execute(
                    schema.continual.insert(),
                    [
                        {"trial_id": trial_id, "step": step, "metric": _finite(metric), "loss": _finite(loss)}
                        for step, metric, loss in result.continual
                    ],
                )

    def fail_trial(self, trial_id: int, error: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                schema.trials.update()
                .where(schema.trials.c.id == trial_id)
                .values(status="failed", error=clip_error(error), finished_at=_now())
            )

    # ---- reading ----------------------------------------------------------------------------
    def races(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(schema.races).order_by(schema.races.c.id)).mappings().all()
        return [
            {**row, "config": json.loads(row["config"]), "environment": json.loads(row["environment"])} for row in rows
        ]

    def race(self, race_id: int | None = None) -> dict[str, Any]:
        """One race (the newest when `race_id` is None)."""
        found = self.races()
        if not found:
            raise UsageError(f"results store {self.url!r} holds no race yet: run `trainlab race` first")
        if race_id is None:
            return found[-1]
        for race in found:
            if race["id"] == race_id:
                return race
        raise UsageError(f"no race {race_id} in {self.url!r}; races: {', '.join(str(r['id']) for r in found)}")

    def trials(self, race_id: int, statuses: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        query = sa.select(schema.trials).where(schema.trials.c.race_id == race_id)
        if statuses:
            query = query.where(schema.trials.c.status.in_(statuses))
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(schema.trials.c.id)).mappings().all()
        out = []
        for row in rows:
            trial = dict(row)
            trial["hparams"] = json.loads(trial["hparams"])
            trial["grad_norms"] = json.loads(trial["grad_norms"]) if trial["grad_norms"] else None
            if trial["time_to_target"] is None:
                trial["time_to_target"] = math.inf
            out.append(trial)
        return out

    def evals(self, trial_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    sa.select(schema.evals).where(schema.evals.c.trial_id == trial_id).order_by(schema.evals.c.step)
                )
                .mappings()
                .all()
            )
        return [dict(row) for row in rows]

    def continual(self, trial_id: int) -> list[dict[str, Any]]:
        """The trial's continual-evaluation curve (step, metric, loss), by step."""
        table = schema.continual
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(table).where(table.c.trial_id == trial_id).order_by(table.c.step)).mappings()
            return [dict(row) for row in rows]

    def predictions(self, trial_id: int) -> list[dict[str, Any]]:
        """The trial's learning-curve predictions (NULL target steps read back as inf: never)."""
        table = schema.predictions
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(table).where(table.c.trial_id == trial_id).order_by(table.c.step)).mappings()
            out = [dict(row) for row in rows]
        for row in out:
            for key in ("target_step", "target_step_low", "target_step_high"):
                if row[key] is None:
                    row[key] = math.inf
        return out


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _inserted_id(row: Any) -> int:
    """The primary key an INSERT just created (SQLAlchemy types it as optional)."""
    key = row.inserted_primary_key
    assert key is not None
    return int(key[0])
