"""Activation compression: saved-activation memory against model quality at equal steps.

Acceptance check for the "memory savers" goal: *at 4 bits, >= 7x less saved-activation memory with
<= 0.5 point loss in the workload's target metric at equal steps*.

What it measures. For each workload and each compression mode (none, 8, 4, 2 bits, "adaptive" =
GACT's per-tensor bits at 4 bits on average), the tuned AdamW baseline (`make_algorithm("adamw",
workload=...)`) trains for the workload's full step budget -- the same number of steps in every mode,
never stopping at the target -- through `trainlab.benchmark.runner.run_trial`, with the same seed, so
the uncompressed and compressed runs start from the same weights and see the same batches. Reported
per (workload, mode):
- saved-activation bytes: the peak bytes held by saved-tensor hooks in one training step, measured,
  not estimated (compression on: the compressor's peak over all timed steps; off: one untimed probe
  step with `SavedTensorMeter`; see runner.py's docstring), and the reduction factor none / mode;
- the final validation metric (after the last step) and its difference from the uncompressed run:
  accuracy in points (100 x difference, positive = better), bits per byte in bits (positive = worse)
  with the relative change in percent;
- whether the workload's validation target was reached, and at which step;
- training seconds on the runner's clock (compression and adaptive probes included, evaluation
  excluded). Timings from a shared or loaded machine are rough.
A trial whose training loss turns non-finite ends as "diverged" (runner's rule): its metric counts
as a failure, its saved bytes and seconds (up to that point) are still shown.
With several seeds, cells show means over seeds, differences are per-seed paired differences
averaged, and "reached" counts seeds.

Then a verdict paragraph evaluates the goal per workload from the 4-bit row. For a loss-like metric
(text_lm's bits per byte, lower is better) "0.5 point" is read as a 0.5 % relative increase in bits
per byte, and the paragraph says so.

    python benchmarks/activation_compression.py [--workloads mnist1d_mlp,mnist1d_cnn,text_lm]
        [--seeds 0] [--modes none,8,4,2,adaptive] [--threads 1] [--device auto]
        [--step-budget-scale 1.0] [--output table.md] [--json trials.json]
    python benchmarks/activation_compression.py --from-json a.json,b.json [--output table.md]

`--from-json` rebuilds the table and verdict from the `--json` files of runs made in parallel over
different workloads or modes (each run adds the uncompressed mode it compares against).
`--step-budget-scale 0.1` gives a quick smoke run (10 % of each workload's budget; the verdict then
does not answer the goal, which is stated at the full budget). Full run, three workloads, five modes,
one seed, one CPU thread: about 40 minutes, nearly all of it text_lm (2400 steps) with compression
on; two runs over different `--modes`, side by side and merged with `--from-json`, took 23 (while
other jobs shared the machine).

The compressor runs with its defaults, op rules included (attention's saves and the loss's
log-probabilities at 8 bits in every mode; see `trainlab.memory.activations`), and the notes under
the table say so: "4 bits" is the mode, the reduction is what was measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field

import torch

from trainlab.algorithms import make_algorithm
from trainlab.benchmark.runner import run_trial
from trainlab.benchmark.trial_options import TrialOptions
from trainlab.errors import UsageError
from trainlab.memory.op_rules import DEFAULT_OP_BITS
from trainlab.store.results import TrialResult
from trainlab.utils.device import choose_device
from trainlab.workloads import create_workload
from trainlab.workloads.registry import DEFAULT_WORKLOADS

MODES = ("none", "8", "4", "2", "adaptive")
GOAL_BITS = "4"
GOAL_RATIO = 7.0  # at least this many times fewer saved-activation bytes
GOAL_POINTS = 0.5  # at most this loss: accuracy points, or percent relative for loss-like metrics
MIB = 2**20


def parse_mode(text: str) -> int | str | None:
    text = text.strip().lower()
    if text in ("none", "off", "32"):
        return None
    if text == "adaptive":
        return "adaptive"
    if text in ("2", "4", "8"):
        return int(text)
    raise UsageError(f"unknown mode {text!r}: use none, 8, 4, 2 or adaptive")


def mode_name(mode: int | str | None) -> str:
    return "none" if mode is None else str(mode)


@dataclass
class Row:
    """All seeds of one (workload, mode)."""

    workload: str
    mode: str
    metric: str
    higher_is_better: bool
    target: float
    step_budget: int
    trials: list[TrialResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def ok(self) -> list[TrialResult]:
        """Trials that trained to the end (their metrics count)."""
        return [t for t in self.trials if t.status == "completed"]

    def diverged(self) -> list[TrialResult]:
        return [t for t in self.trials if t.status == "diverged"]

    def by_seed(self, all_trials: bool = False) -> dict[int, TrialResult]:
        return {t.seed: t for t in (self.trials if all_trials else self.ok())}

    def mean(self, attr: str, all_trials: bool = False) -> float:
        """Mean over completed trials; `all_trials`: over every trial that ran (diverged included),
        for what divergence does not invalidate (saved bytes, seconds)."""
        values = [getattr(t, attr) for t in (self.trials if all_trials else self.ok()) if getattr(t, attr) is not None]
        return statistics.fmean(values) if values else math.nan


def run_all(
    workloads: list[str], modes: list[int | str | None], seeds: list[int], device: torch.device, scale: float
) -> list[Row]:
    rows: list[Row] = []
    total = len(workloads) * len(modes) * len(seeds)
    done = 0
    started = time.perf_counter()
    for name in workloads:
        probe = create_workload(name)
        budget = max(1, round(probe.step_budget * scale))
        workload = create_workload(name, step_budget=budget, eval_every=min(probe.eval_every, budget))
        spec = make_algorithm("adamw", workload=workload.name)
        for mode in modes:
            row = Row(
                workload.name,
                mode_name(mode),
                workload.metric,
                workload.higher_is_better,
                workload.target,
                workload.step_budget,
            )
            rows.append(row)
            for seed in seeds:
                t0 = time.perf_counter()
                try:
                    result = run_trial(workload, spec, seed, device, TrialOptions(compress_activations=mode))
                    row.trials.append(result)
                    if result.status != "completed":
                        row.errors.append(f"seed {seed}: {result.status} by step {result.steps}")
                    msg = (
                        f"{result.status}, {workload.metric} {result.final_metric:.4f}, saved "
                        f"{(result.saved_activation_bytes or 0) / MIB:.3f} MiB, "
                        f"train {result.train_seconds:.1f} s"
                    )
                except Exception as exc:  # noqa: BLE001 -- one failed trial must not lose the others
                    row.errors.append(f"seed {seed}: {type(exc).__name__}: {exc}")
                    msg = f"FAILED: {type(exc).__name__}: {exc}"
                done += 1
                print(
                    f"[{done}/{total}] {workload.name} mode={mode_name(mode)} seed={seed}: {msg} "
                    f"(wall {time.perf_counter() - t0:.1f} s, total {time.perf_counter() - started:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    return rows


# ---- comparisons against the uncompressed row ------------------------------------------------


def paired(row: Row, base: Row, attr: str, fn, all_trials: bool = False) -> list[float]:
    a, b = row.by_seed(all_trials), base.by_seed(all_trials)
    return [fn(getattr(a[s], attr), getattr(b[s], attr)) for s in sorted(set(a) & set(b))]


def reduction(row: Row, base: Row) -> float:
    """none / mode saved-activation bytes (how many times fewer), mean over paired seeds."""
    values = paired(row, base, "saved_activation_bytes", lambda m, n: n / m if m else math.inf, all_trials=True)
    return statistics.fmean(values) if values else math.nan


def metric_loss(row: Row, base: Row) -> tuple[float, float]:
    """(signed difference mode - none in display units, loss in goal units: points or % relative).

    Accuracy-like (higher is better): difference in points = 100 x (mode - none); loss = -difference.
    Loss-like (lower is better): difference in the metric's own units (bits); loss = 100 x
    (mode - none) / none, percent relative (positive = worse).
    """
    if row.higher_is_better:
        diffs = paired(row, base, "final_metric", lambda m, n: 100.0 * (m - n))
        d = statistics.fmean(diffs) if diffs else math.nan
        return d, -d
    diffs = paired(row, base, "final_metric", lambda m, n: m - n)
    rel = paired(row, base, "final_metric", lambda m, n: 100.0 * (m - n) / n)
    return (statistics.fmean(diffs) if diffs else math.nan, statistics.fmean(rel) if rel else math.nan)


# ---- output ----------------------------------------------------------------------------------


def fmt_metric(row: Row) -> str:
    v = row.mean("final_metric")
    if math.isnan(v):
        return "n/a"
    return f"{100 * v:.2f} %" if row.higher_is_better else f"{v:.4f} bpb"


def fmt_diff(row: Row, base: Row | None) -> str:
    if base is None or row is base:
        return "--"
    d, loss = metric_loss(row, base)
    if math.isnan(d):
        return "diverged" if row.diverged() and not row.ok() else "n/a"
    if row.higher_is_better:
        return f"{d:+.2f} pt"
    return f"{d:+.4f} bpb ({loss:+.2f} %)"


def fmt_reached(row: Row) -> str:
    ran = row.trials
    if not ran:
        return "n/a"
    hits = [t.steps_to_target for t in ran if t.reached]
    if len(ran) == 1:
        return f"yes ({hits[0]})" if hits else "no"
    if not hits:
        return f"0/{len(ran)}"
    return f"{len(hits)}/{len(ran)} (median {statistics.median(hits):.0f})"


def table(rows: list[Row], bases: dict[str, Row]) -> str:
    lines = [
        "| workload | mode | saved activations (MiB) | reduction vs none | final val. metric "
        "| diff. vs none | reached target (step) | train s |",
        "|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        base = bases.get(row.workload)
        saved = row.mean("saved_activation_bytes", all_trials=True)
        red = "1.00x" if row is base else (f"{reduction(row, base):.2f}x" if base and base.trials else "n/a")
        metric = fmt_metric(row)
        if row.errors:
            metric = ("" if metric == "n/a" else metric + " ") + "(" + "; ".join(row.errors) + ")"
        lines.append(
            f"| {row.workload} | {row.mode} | {saved / MIB:.3f} | {red} | {metric} | "
            f"{fmt_diff(row, base)} | {fmt_reached(row)} | "
            f"{row.mean('train_seconds', all_trials=True):.1f} |"
        )
    return "\n".join(lines)


def _quality(row: Row, base: Row) -> tuple[str, float]:
    """(words for the metric change of `row` against `base`, loss in goal units)."""
    d, loss = metric_loss(row, base)
    if row.higher_is_better:
        words = f"{-d:.2f} points of accuracy lost" if d < 0 else f"no accuracy lost ({d:+.2f} points)"
    else:
        words = f"bits per byte {d:+.4f} ({loss:+.2f} % relative)"
    return words, loss


def verdict(rows: list[Row], bases: dict[str, Row], seeds: list[int], scale: float) -> str:
    parts = []
    passed = 0
    for name, base in bases.items():
        goal = next((r for r in rows if r.workload == name and r.mode == GOAL_BITS), None)
        if goal is None or not goal.trials or not base.ok():
            parts.append(f"{name}: not evaluated (needs a 4-bit run and a completed uncompressed run)")
            continue
        red = reduction(goal, base)
        ok_mem = red >= GOAL_RATIO
        if goal.ok():
            quality, loss = _quality(goal, base)
            ok_q = loss <= GOAL_POINTS and not goal.diverged()
            unit = "points" if goal.higher_is_better else "% relative bits per byte"
            quality += f" ({'<=' if ok_q else '>'} {GOAL_POINTS:g} {unit})"
        else:
            ok_q, quality = False, "training diverged"
        if goal.diverged() and goal.ok():
            quality += f", and {len(goal.diverged())} of {len(goal.trials)} seeds diverged"
        passed += ok_mem and ok_q
        text = (
            f"{name} {'PASSES' if ok_mem and ok_q else 'FAILS'}: {red:.2f}x less saved-activation "
            f"memory ({'>=' if ok_mem else '<'} {GOAL_RATIO:g}x) with {quality}"
        )
        adaptive = next((r for r in rows if r.workload == name and r.mode == "adaptive" and r.trials), None)
        if adaptive is not None:
            aq = _quality(adaptive, base)[0] if adaptive.ok() else "diverged"
            text += f" (adaptive, 4 bits on average: {reduction(adaptive, base):.2f}x, {aq})"
        parts.append(text)
    n = len(seeds)
    caveats = (
        "Equal steps: every mode trains the workload's full step budget"
        + (
            f" scaled by {scale:g} -- the goal is stated at the full budget, so this run does not answer it"
            if scale != 1.0
            else ""
        )
        + f"; {n} seed{'s' if n != 1 else ''} ({', '.join(map(str, seeds))})"
        + (
            ", so a difference of a few tenths of a point may be within seed-to-seed noise"
            if n < 3
            else ", differences are paired per seed and averaged"
        )
        + ". For text_lm, whose metric is bits per byte (lower is better), '0.5 point' is read as "
        "a 0.5 % relative increase in bits per byte."
    )
    head = (
        'Verdict on the goal "at 4 bits >= 7x less saved-activation memory with <= 0.5 point loss '
        "in the workload's target metric at equal steps\": "
    )
    overall = f"met on {passed} of {len(bases)} workload{'s' if len(bases) != 1 else ''}. "
    return head + overall + "; ".join(parts) + ". " + caveats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workloads",
        default=",".join(DEFAULT_WORKLOADS),
        help=f"comma-separated workloads (default: {','.join(DEFAULT_WORKLOADS)})",
    )
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"comma-separated modes among none,8,4,2,adaptive (default: {','.join(MODES)}); "
        "'none' is added if missing, as everything is compared against it",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's own choice; use 1 on a shared machine)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument(
        "--step-budget-scale",
        type=float,
        default=1.0,
        help="multiply each workload's step budget (default: 1.0 = the full budget)",
    )
    parser.add_argument("--output", default=None, help="also write the table and verdict to this Markdown file")
    parser.add_argument(
        "--json", default=None, help="also write every trial's full result (evaluations included) to this JSON file"
    )
    parser.add_argument(
        "--from-json",
        default=None,
        metavar="FILES",
        help="train nothing: rebuild the table and verdict from comma-separated --json files "
        "of earlier runs (e.g. two runs in parallel, each over some modes)",
    )
    args = parser.parse_args(argv)
    if args.from_json:
        try:
            rows, seeds, scale = load_rows(args.from_json.split(","))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            parser.error(f"--from-json: {exc}")
        out = "\n\n".join([f"Activation compression, rebuilt from {args.from_json}.", *report(rows, seeds, scale)])
        print(out)
        if args.output:
            with open(args.output, "w", encoding="utf-8") as fh:
                fh.write(out + "\n")
        return 0 if all(not r.errors for r in rows) else 1

    try:
        workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        modes = [parse_mode(m) for m in args.modes.split(",") if m.strip()]
        if None not in modes:
            modes.insert(0, None)
        modes = list(dict.fromkeys(modes))
        if not workloads or not seeds:
            raise UsageError("need at least one workload and one seed")
        if not args.step_budget_scale > 0:
            raise UsageError("--step-budget-scale must be positive")
        if args.threads is not None:
            if args.threads < 1:
                raise UsageError("--threads must be at least 1")
            torch.set_num_threads(args.threads)
        device = choose_device(args.device)
    except (UsageError, ValueError) as exc:
        parser.error(str(exc))

    started = time.perf_counter()
    rows = run_all(workloads, modes, seeds, device, args.step_budget_scale)
    elapsed = time.perf_counter() - started
    header = (
        "Activation compression, tuned AdamW at equal steps (full budget"
        + (f" x {args.step_budget_scale:g}" if args.step_budget_scale != 1.0 else "")
        + f"), seeds {','.join(map(str, seeds))}, device {device}"
        + (
            f" ({torch.get_num_threads()} thread{'s' if torch.get_num_threads() != 1 else ''})"
            if device.type == "cpu"
            else ""
        )
        + f", torch {torch.__version__}; total wall time {elapsed / 60:.1f} min."
    )
    out = "\n\n".join([header, *report(rows, seeds, args.step_budget_scale)])
    print(out)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(out + "\n")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(
                [
                    dict(dataclasses.asdict(t), mode=r.mode, scale=args.step_budget_scale)
                    for r in rows
                    for t in r.trials
                ],
                fh,
                indent=1,
                default=str,
            )
    return 0 if all(not r.errors for r in rows) else 1


def report(rows: list[Row], seeds: list[int], scale: float) -> list[str]:
    """The table, its notes and the verdict."""
    bases = {r.workload: r for r in rows if r.mode == "none"}
    budgets = ", ".join(f"{r.workload} {r.step_budget} steps, target {r.target:g}" for r in bases.values())
    notes = (
        "Saved activations: peak bytes held by saved-tensor hooks in one training step (measured). "
        "Reduction = none / mode. Diff. vs none: accuracy in points (100 x difference, + = better); "
        "bits per byte in bits (+ = worse) with the relative change. Final metric = validation "
        "metric after the last step. Train s: runner's clock, compression and adaptive probes "
        "included, evaluation excluded; timings on a shared or loaded machine are rough. "
        "Modes 8/4/2 set the bits of every compressed tensor except where an op rule fixes them "
        f"(defaults: {', '.join(f'{k} {v}' for k, v in DEFAULT_OP_BITS.items())} bits; the input "
        "batch is compressed too, per-row statistics and integer tensors stay exact), so the "
        "reduction is the measured one, rules included. Outputs of GELU, SiLU and LayerNorm that "
        "the next layer saves again are rebuilt in backward from their compressed input and hold "
        "no bytes (recompute=True). Adaptive: GACT's per-tensor bits, 4 bits on average over "
        "everything compressed, the op-fixed tensors included. "
        f"Budgets: {budgets}."
    )
    return [table(rows, bases), notes, verdict(rows, bases, seeds, scale)]


def load_rows(paths: list[str]) -> tuple[list[Row], list[int], float]:
    """Rows from --json files; a (workload, mode, seed) present in several files is taken once."""
    rows: dict[tuple[str, str], Row] = {}
    seen: set[tuple[str, str, int]] = set()
    scales: set[float] = set()
    fields = {f.name for f in dataclasses.fields(TrialResult)}
    for path in paths:
        with open(path.strip(), encoding="utf-8") as fh:
            items = json.load(fh)
        for item in items:
            mode = str(item["mode"])
            scales.add(float(item.get("scale", 1.0)))
            if (item["workload"], mode, item["seed"]) in seen:
                continue
            seen.add((item["workload"], mode, item["seed"]))
            trial = TrialResult(**{k: v for k, v in item.items() if k in fields and k != "evals"})
            row = rows.setdefault(
                (trial.workload, mode),
                Row(trial.workload, mode, trial.metric_name, trial.higher_is_better, trial.target, trial.step_budget),
            )
            row.trials.append(trial)
    if len(scales) > 1:
        raise ValueError(f"the files mix step-budget scales {sorted(scales)}")
    order = {m: i for i, m in enumerate(MODES)}
    ordered = sorted(rows.values(), key=lambda r: (r.workload, order.get(r.mode, len(order))))
    return ordered, sorted({t.seed for r in ordered for t in r.trials}), scales.pop() if scales else 1.0


if __name__ == "__main__":
    sys.exit(main())
