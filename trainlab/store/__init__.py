"""The results store: every race, trial and evaluation, in SQL (SQLite by default)."""

from trainlab.store.database import DEFAULT_STORE_URL, SCHEMA_VERSION, ResultsStore, normalise_url

__all__ = ["DEFAULT_STORE_URL", "SCHEMA_VERSION", "ResultsStore", "normalise_url"]
