"""Where trainlab keeps datasets it generates or fetches (never inside the package)."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """`$TRAINLAB_DATA_DIR`, else `~/.cache/trainlab`; created on first use."""
    root = Path(os.environ.get("TRAINLAB_DATA_DIR") or Path.home() / ".cache" / "trainlab")
    root.mkdir(parents=True, exist_ok=True)
    return root
