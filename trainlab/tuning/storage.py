"""Optuna's RDB storage, opened the way trainlab's studies need it: shared, crash-safe, one-line errors.

- Any SQLAlchemy URL (SQLite by default, PostgreSQL for studies shared across machines); a plain path
  is a SQLite file. The same database holds trainlab's own `trainlab_*` tables.
- Heartbeats: a worker records one every `heartbeat_interval` seconds while its trial runs; a RUNNING
  trial whose heartbeat is older than `grace_period` belonged to a dead worker: the next process to
  look fails it, and Optuna's `RetryHeartbeatStaleTrialCallback` queues it again with the same parameters.
- SQLite: every transaction starts with `BEGIN IMMEDIATE` (SQLAlchemy's documented recipe), so
  Optuna's read-check-write when claiming a queued trial is atomic across processes there too, as
  `SELECT ... FOR UPDATE` makes it on PostgreSQL. WAL mode lets readers run beside the writer.
"""

from __future__ import annotations

import logging
import warnings

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from trainlab.errors import UsageError
from trainlab.store.database import normalise_url

DEFAULT_HEARTBEAT_INTERVAL = 10  # seconds between heartbeats of a running trial
DEFAULT_GRACE_PERIOD = 30  # seconds without a heartbeat after which a trial is declared dead
MAX_RETRIES = 3  # re-runs of a trial whose worker died, before it stays failed


def quiet_optuna() -> None:
    """Optuna logs every trial at INFO and flags heartbeats as experimental; trainlab reports itself."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def open_storage(
    url: str | None,
    heartbeat_interval: int = DEFAULT_HEARTBEAT_INTERVAL,
    grace_period: int = DEFAULT_GRACE_PERIOD,
    create: bool = True,
):
    """An `optuna.storages.RDBStorage` for `url`; `UsageError` if it cannot be opened (or, with
    `create=False`, if a SQLite file does not exist yet)."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    quiet_optuna()
    url = normalise_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UsageError(
            f"cannot parse store URL {url!r}: use sqlite:///PATH.db or postgresql://USER@HOST/DB"
        ) from None
    sqlite = parsed.get_backend_name() == "sqlite"
    engine_kwargs: dict = {}
    if sqlite:
        if parsed.database in (None, "", ":memory:"):
            raise UsageError(
                "studies need a database other processes can open: give a SQLite file "
                "path or a server URL, not an in-memory database"
            )
        from pathlib import Path

        if not create and not Path(parsed.database).exists():
            raise UsageError(f"no store at {parsed.database}: run `trainlab tune` first or pass --store")
        folder = Path(parsed.database).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the store's folder {folder}: {exc.strerror}") from None
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
    # Optuna logs a failed connection at ERROR level before raising: the one-line error says it all.
    logger = logging.getLogger("optuna.storages._rdb.storage")
    level, logger.disabled = logger.disabled, True
    try:
        storage = RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(MAX_RETRIES),
        )
    except (NoSuchModuleError, ImportError, ModuleNotFoundError) as exc:
        raise UsageError(
            f"cannot open store {url!r}: {exc}; for PostgreSQL install a driver (pip install 'trainlab[postgres]')"
        ) from None
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError, RuntimeError, ValueError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise UsageError(
            f"cannot use store {url!r}: {reason[0] if reason else type(exc).__name__}; "
            "check the URL and that the database server is reachable"
        ) from None
    finally:
        logger.disabled = level
    if sqlite:
        _serialize_sqlite(storage.engine)
    return storage


def _serialize_sqlite(engine: sa.engine.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # let the "begin" hook issue BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened while Optuna created its tables predate the hooks
