"""Progress display for races: an overall bar over trials and one bar per trial (tqdm).

On a terminal the bars redraw in place; elsewhere (CI logs, pipes) they are silent and each finished
trial prints one line instead, so logs stay readable.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

from trainlab.store.results import EvalRecord, TrialResult


def _format_metric(value: float) -> str:
    return f"{value:.4f}"


class RaceProgress:
    def __init__(self, total_trials: int, enabled: bool | None = None) -> None:
        self.interactive = sys.stderr.isatty() if enabled is None else enabled
        self.overall = tqdm(
            total=total_trials, desc="race", unit="trial", position=0, disable=not self.interactive, dynamic_ncols=True
        )
        self.bar: tqdm | None = None
        self.done = 0
        self.total = total_trials

    def start_trial(self, label: str, steps: int) -> RaceProgress:
        self.bar = tqdm(
            total=steps,
            desc=label,
            unit="step",
            position=1,
            leave=False,
            disable=not self.interactive,
            dynamic_ncols=True,
            mininterval=0.25,
        )
        return self

    # TrialProgress protocol (called by the runner)
    def on_step(self, step: int) -> None:
        assert self.bar is not None, "start_trial() first"
        self.bar.update(1)

    def on_eval(self, record: EvalRecord, reached: bool) -> None:
        assert self.bar is not None, "start_trial() first"
        self.bar.set_postfix(
            loss=f"{record.train_loss:.3f}",
            val=_format_metric(record.metric),
            t=f"{record.train_seconds:.1f}s",
            hit="yes" if reached else "no",
            refresh=False,
        )

    def note(self, label: str, text: str) -> None:
        """A line about the running trial (a learning-curve prediction), above the bars."""
        self.overall.write(f"  {label}: {text}", file=sys.stdout)

    def end_trial(self, result: TrialResult | None, label: str, error: str | None = None) -> None:
        if self.bar is not None:
            self.bar.close()
        self.done += 1
        self.overall.update(1)
        if error is not None or result is None:
            line = f"[{self.done}/{self.total}] {label}: FAILED: {error}"
        else:
            ttt = f"{result.time_to_target:.1f}s @ step {result.steps_to_target}" if result.reached else "missed"
            line = (
                f"[{self.done}/{self.total}] {label}: {result.metric_name} {result.final_metric:.4f} "
                f"(target {result.target:g}) time-to-target {ttt}, train {result.train_seconds:.1f}s, "
                f"eval {result.eval_seconds:.1f}s" + ("" if result.status == "completed" else f" [{result.status}]")
            )
        self.overall.write(line, file=sys.stdout)

    def close(self) -> None:
        self.overall.close()


class TrialBar:
    """A single trial's step bar (used by tuning workers); silent when not on a terminal."""

    def __init__(self, label: str, steps: int, enabled: bool | None = None) -> None:
        interactive = sys.stderr.isatty() if enabled is None else enabled
        self.bar = tqdm(
            total=steps,
            desc=label,
            unit="step",
            leave=False,
            disable=not interactive,
            dynamic_ncols=True,
            mininterval=0.25,
        )

    def on_step(self, step: int) -> None:
        assert self.bar is not None, "start_trial() first"
        self.bar.update(1)

    def on_eval(self, record: EvalRecord, reached: bool) -> None:
        assert self.bar is not None, "start_trial() first"
        self.bar.set_postfix(
            val=_format_metric(record.metric),
            t=f"{record.train_seconds:.1f}s",
            hit="yes" if reached else "no",
            refresh=False,
        )

    def close(self) -> None:
        self.bar.close()
