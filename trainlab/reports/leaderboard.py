"""The leaderboard report (docs/leaderboard/): written from the two experiments' stored trials."""

from __future__ import annotations

from pathlib import Path

from trainlab.reports.tuning_report import write_tuning_report
from trainlab.tuning.outcomes import collect


def write_leaderboard(storage, tuned, self_tuning, out: str, store: str | None = None) -> Path:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_tuning_report(collect(storage, tuned), out_dir / "tuned", "adamw", None)
    write_tuning_report(collect(storage, self_tuning), out_dir / "self", "adamw", None)
    return out_dir
