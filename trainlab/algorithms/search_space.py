"""Workload-agnostic search spaces in AlgoPerf's JSON format, validated before anything runs.

A search space belongs to the algorithm (an AlgoPerf submission ships its own), so it lives on the
submission side; `trainlab.tuning` samples it.

A search space is one JSON object per algorithm, each key a hyperparameter and each value either a
range or a list of feasible points:

    {"lr": {"min": 1e-4, "max": 1e-2, "scaling": "log"},
     "one_minus_beta1": {"min": 0.02, "max": 0.2, "scaling": "log"},
     "weight_decay": {"feasible_points": [0.0, 0.01, 0.1]}}

`scaling` is `log` or `linear` (the default). Keys are the algorithm's own hyperparameters (`trainlab
list algorithms`), or AlgoPerf's `beta1`, `beta2`, `one_minus_beta1`, `one_minus_beta2`, which set
the matching element of `betas`. Points are JSON scalars. Ranges become Optuna float distributions
(log-uniform or uniform); several feasible points a categorical one; a single point is a constant and
takes no quasi-random dimension.

Validation happens twice, both before any trial: the shape of the file (here), then the values, by
building the algorithm at every corner-per-dimension of the space, so a range that allows a negative
learning rate or betas outside [0, 1) fails with the algorithm's own message.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainlab.errors import UsageError

BETA_ALIASES = {
    "beta1": (0, False),
    "beta2": (1, False),
    "one_minus_beta1": (0, True),
    "one_minus_beta2": (1, True),
    "beta3": (2, False),  # AdEMAMix's slow EMA
}
SCALINGS = ("linear", "log")
RANGE_KEYS = {"min", "max", "scaling"}


@dataclass(frozen=True)
class Dimension:
    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    points: tuple[Any, ...] | None = None  # feasible points, when not a range

    @property
    def constant(self) -> bool:
        return self.points is not None and len(self.points) == 1

    def distribution(self):
        """The Optuna distribution a tuning study samples (optuna imported here: races need none)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution

        if self.points is not None:
            return CategoricalDistribution(list(self.points))
        return FloatDistribution(self.low, self.high, log=self.log)

    def corners(self) -> tuple[Any, ...]:
        return self.points if self.points is not None else (self.low, self.high)


@dataclass(frozen=True)
class SearchSpace:
    """A validated space; `source` names where it came from, for error messages and the store."""

    dimensions: tuple[Dimension, ...]
    source: str = "<inline>"
    # AlgoPerf's list form: explicit points, each study taking them in its own order (no sampling)
    points: tuple[dict[str, Any], ...] | None = None

    def to_json(self) -> dict[str, Any] | list[dict[str, Any]]:
        if self.points is not None:
            return [dict(p) for p in self.points]
        out: dict[str, Any] = {}
        for d in self.dimensions:
            out[d.name] = (
                {"feasible_points": list(d.points)}
                if d.points is not None
                else {"min": d.low, "max": d.high, "scaling": "log" if d.log else "linear"}
            )
        return out

    def distributions(self) -> dict[str, Any]:
        """The dimensions Optuna samples (constants excluded: they take no QMC coordinate)."""
        return {d.name: d.distribution() for d in self.dimensions if not d.constant}

    def constants(self) -> dict[str, Any]:
        return {d.name: d.points[0] for d in self.dimensions if d.points is not None and d.constant}

    def corner_configs(self) -> list[dict[str, Any]]:
        """Every extreme of every dimension, the others at their first extreme: enough to hit each
        value's range check once (every point of a list-form space)."""
        if self.points is not None:
            return [dict(p) for p in self.points]
        base = {d.name: d.corners()[0] for d in self.dimensions}
        configs = [dict(base)]
        for d in self.dimensions:
            for value in d.corners()[1:]:
                configs.append({**base, d.name: value})
        return configs


def to_hparams(config: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Search-space values as algorithm hyperparameters: beta aliases folded into `betas`."""
    out = {k: v for k, v in config.items() if k not in BETA_ALIASES}
    aliases = {k: v for k, v in config.items() if k in BETA_ALIASES}
    if aliases:
        betas = list((defaults or {}).get("betas", (0.9, 0.999)))
        for key, value in aliases.items():
            index, one_minus = BETA_ALIASES[key]
            betas[index] = 1.0 - float(value) if one_minus else float(value)
        out["betas"] = tuple(betas)
    return out


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_search_space(data: Any, source: str = "<inline>", valid: Mapping[str, Any] | None = None) -> SearchSpace:
    """Check the shape of a decoded JSON search space; `valid` (hyperparameter -> default) adds the
    name check. Raises `UsageError` with `source` and the offending key."""
    where = f"search space {source}"
    if isinstance(data, list) and data:
        return _parse_point_list(data, where, source, valid)
    if not isinstance(data, dict) or not data:
        raise UsageError(
            f"{where}: expected a non-empty JSON object of hyperparameters, e.g. "
            '{"lr": {"min": 1e-4, "max": 1e-2, "scaling": "log"}} (or AlgoPerf\'s list form, '
            "a non-empty list of points)"
        )
    dims = []
    for name, spec in data.items():
        if not isinstance(name, str) or not name:
            raise UsageError(f"{where}: hyperparameter names must be non-empty strings, got {name!r}")
        if valid is not None and name not in valid and name not in BETA_ALIASES:
            raise UsageError(
                f"{where}: unknown hyperparameter {name!r}; valid: "
                f"{', '.join(sorted(set(valid) | (set(BETA_ALIASES) if 'betas' in valid else set())))}"
            )
        if name in BETA_ALIASES and valid is not None and "betas" not in valid:
            raise UsageError(f"{where}: {name!r} sets betas, which this algorithm does not have")
        if not isinstance(spec, dict):
            raise UsageError(
                f"{where}: {name!r} must be an object with min/max/scaling or "
                f"feasible_points, got {type(spec).__name__}"
            )
        if "feasible_points" in spec:
            extra = set(spec) - {"feasible_points"}
            if extra:
                raise UsageError(
                    f"{where}: {name!r} mixes feasible_points with {sorted(extra)[0]!r}; "
                    "give either feasible_points or min/max/scaling"
                )
            points = spec["feasible_points"]
            if not isinstance(points, list) or not points:
                raise UsageError(f"{where}: {name!r}: feasible_points must be a non-empty list")
            for p in points:
                if not (p is None or isinstance(p, (str, bool)) or _number(p)):
                    raise UsageError(
                        f"{where}: {name!r}: feasible point {p!r} is not a finite number, string, boolean or null"
                    )
            if len({json.dumps(p) for p in points}) != len(points):
                raise UsageError(f"{where}: {name!r}: feasible_points has duplicates")
            dims.append(Dimension(name, points=tuple(points)))
            continue
        extra = set(spec) - RANGE_KEYS
        if extra:
            raise UsageError(
                f"{where}: {name!r} has unknown key {sorted(extra)[0]!r}; "
                "allowed: min, max, scaling, or feasible_points"
            )
        if "min" not in spec or "max" not in spec:
            raise UsageError(f"{where}: {name!r} needs both min and max (or feasible_points)")
        low, high = spec["min"], spec["max"]
        if not _number(low) or not _number(high):
            raise UsageError(f"{where}: {name!r}: min and max must be finite numbers, got {low!r}, {high!r}")
        scaling = spec.get("scaling", "linear")
        if scaling not in SCALINGS:
            raise UsageError(f"{where}: {name!r}: scaling must be 'log' or 'linear', got {scaling!r}")
        if not low < high:
            raise UsageError(
                f"{where}: {name!r}: min ({low}) must be below max ({high}); use feasible_points for a single value"
            )
        if scaling == "log" and low <= 0:
            raise UsageError(f"{where}: {name!r}: log scaling needs min > 0, got {low}")
        dims.append(Dimension(name, low=float(low), high=float(high), log=scaling == "log"))
    return SearchSpace(tuple(dims), source)


def _parse_point_list(data: list, where: str, source: str, valid: Mapping[str, Any] | None) -> SearchSpace:
    """AlgoPerf's list form: a list of explicit points (objects of scalars)."""
    if not all(isinstance(p, dict) and p for p in data):
        raise UsageError(
            f"{where}: a list-form space must be a non-empty list of non-empty objects, "
            'e.g. [{"learning_rate": 0.001, "beta2": 0.999}]'
        )
    for point in data:
        for name, value in point.items():
            if valid is not None and name not in valid and name not in BETA_ALIASES:
                raise UsageError(f"{where}: unknown hyperparameter {name!r}; valid: {', '.join(sorted(valid))}")
            if not (value is None or isinstance(value, (str, bool)) or _number(value)):
                raise UsageError(f"{where}: {name!r}: {value!r} is not a finite number, string, boolean or null")
    return SearchSpace((), source, points=tuple(dict(p) for p in data))


def builtin_space_names() -> list[str]:
    """Optimizers whose registration states a search space (`trainlab.optim.Registration`)."""
    from trainlab import optim

    return [name for name in optim.available() if optim.entry(name).search_space is not None]


def load_search_space(path_or_name: str | Path, valid: Mapping[str, Any] | None = None) -> SearchSpace:
    """Load a search space from a JSON file, or a built-in one by optimizer name."""
    text_source = str(path_or_name)
    path = Path(path_or_name)
    if not path.suffix and not path.is_file():  # a folder of the same name (a package) is not a space
        name = text_source
        if name not in builtin_space_names():
            raise UsageError(
                f"no built-in search space for {name!r} (built-in: "
                f"{', '.join(builtin_space_names())}); pass --search-space FILE.json"
            )
        from trainlab import optim

        return parse_search_space(optim.entry(name).search_space, f"built-in {name}", valid)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read search space {text_source!r}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"search space {text_source}: not valid JSON ({exc})") from None
    return parse_search_space(data, text_source, valid)


def race_point(space: SearchSpace) -> dict[str, Any]:
    """The one point a race uses: a list-form space's first point, else the centre of each
    dimension (geometric for log scaling, the first feasible point)."""
    if space.points is not None:
        return dict(space.points[0])
    return {d.name: d.points[0] if d.points is not None else _centre(d) for d in space.dimensions}


def _centre(d: Dimension) -> float:
    assert d.low is not None and d.high is not None  # a range (no points)
    return (d.low * d.high) ** 0.5 if d.log else (d.low + d.high) / 2
