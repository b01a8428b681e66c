"""Algorithms by name: baselines with tuned workload-agnostic defaults, or any registered optimizer.

A name is `OPTIMIZER` or `OPTIMIZER+SCHEDULE` (the schedule defaults to the optimizer's registered
one: `cosine`, i.e. linear warm-up + cosine decay over the step budget; Schedule-Free, which needs no
schedule, defaults to `constant`). Overrides come as a mapping, on the command line as
`--hparams adamw.lr=3e-3`. Unknown names and hyperparameters raise `UsageError` naming valid ones.

Where the values come from, in order: the constructor's defaults, the optimizer's registered
workload-agnostic race defaults (`trainlab.optim` registry), then for a built-in workload the
configuration tuned for it (`trainlab.algorithms.tuned`), then the user's overrides.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from trainlab import optim
from trainlab.algorithms import sso
from trainlab.algorithms.base import ALGORITHM_HPARAMS, AlgorithmSpec
from trainlab.algorithms.external import ensure_registered, is_external
from trainlab.algorithms.search_space import SearchSpace, parse_search_space, to_hparams
from trainlab.algorithms.submission import is_submission, load_submission, race_point
from trainlab.errors import UsageError
from trainlab.schedules import SCHEDULE_HPARAMS, SCHEDULES
from trainlab.utils.named_items import named_items

# The race's baselines (AdamW, NAdamW, SGD+Nesterov, each with warm-up + cosine).
DEFAULT_ALGORITHMS = ("adamw", "nadamw", "sgd")
# Per-workload learning rates of the baselines, from `trainlab set-targets --write-defaults`
# (record: docs/targets.md). Only the learning rate is tuned per workload.
TUNED_PATH = Path(__file__).with_name("tuned.json")
# Per (algorithm, built-in workload): the leaderboard's chosen configuration, written by
# `trainlab leaderboard` (record: docs/leaderboard/). It supersedes the tuned learning rate.
LEADERBOARD_PATH = Path(__file__).with_name("leaderboard.json")


@lru_cache(maxsize=1)
def _tuned() -> dict[str, Any]:
    return json.loads(TUNED_PATH.read_text()) if TUNED_PATH.exists() else {}


@lru_cache(maxsize=1)
def _leaderboard() -> dict[str, Any]:
    return json.loads(LEADERBOARD_PATH.read_text()) if LEADERBOARD_PATH.exists() else {}


def leaderboard_config(algorithm: str, workload: str | None) -> dict[str, Any] | None:
    """The leaderboard's entry for (`algorithm` as named, `workload`): {"hparams", "study", ...}."""
    if workload is None:
        return None
    found = _leaderboard().get("configs", {}).get(algorithm, {}).get(workload)
    if found is None:
        return None
    hparams = {k: tuple(v) if isinstance(v, list) else v for k, v in found["hparams"].items()}
    return {**found, "hparams": hparams}


def tuned_learning_rate(optimizer_name: str, workload: str | None) -> float | None:
    """The baseline lr tuned for `workload` by the target-setting run, if there is one."""
    if workload is None:
        return None
    return _tuned().get("learning_rates", {}).get(workload, {}).get(optimizer_name)


def valid_hparams(optimizer_name: str, schedule: str) -> dict[str, Any]:
    """Every hyperparameter an algorithm accepts, with its default."""
    values = dict(optim.entry(optimizer_name).hyperparameters())
    values.update(SCHEDULE_HPARAMS[schedule])
    values.update(ALGORITHM_HPARAMS)
    # an optimizer whose own step counts (a warm-up inside the method) scale with the budget takes
    # them as fractions (`budget_steps` on its class: Schedule-Free's warm-up, AdEMAMix's)
    for fraction in getattr(optim.entry(optimizer_name).factory, "budget_steps", {}).values():
        values.setdefault(fraction, None)
    values.update(optim.entry(optimizer_name).race_defaults)
    return values


_OPTIONS = re.compile(r"^(?P<base>[^\[\]+]+)\[(?P<options>[^\]]*)\](?P<schedule>\+.*)?$")


def split_options(name: str) -> tuple[str, dict[str, Any]]:
    """`OPTIMIZER[KEY=VALUE,...][+SCHEDULE]` -> (`OPTIMIZER[+SCHEDULE]`, {KEY: VALUE}), VALUE a
    Python literal (or true/false), e.g. `lion[cautious=true]`, `adamw[cautious=true,mars=true]`.
    A name without brackets comes back unchanged with no options."""
    match = _OPTIONS.match(name.strip())
    if match is None:
        if "[" in name or "]" in name:
            raise UsageError(f"bad algorithm name {name!r}: write OPTIMIZER[KEY=VALUE,...] or OPTIMIZER[...]+SCHEDULE")
        return name, {}
    found: dict[str, Any] = {}
    for option in filter(None, (o.strip() for o in match["options"].split(","))):
        key, sep, raw = option.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"bad option {option!r} in {name!r}: write KEY=VALUE, e.g. lion[cautious=true]")
        found[key.strip()] = parse_literal(raw, name)
    return match["base"].strip() + (match["schedule"] or ""), found


def parse_name(name: str) -> tuple[str, str]:
    if is_submission(name):
        raise UsageError(
            f"{name!r}: AlgoPerf submissions race and tune (trainlab race / tune); "
            "set-targets and refine do not run them"
        )
    if sso.is_sso(name):
        raise UsageError(f"{name!r}: SSO races (trainlab race); tuning and target setting do not run it yet")
    plain, _ = split_options(name)  # `lion[cautious=true]`: make_algorithm applies the options
    optimizer_name, _, schedule = plain.strip().partition("+")
    if optimizer_name not in optim.available() and is_external(optimizer_name):
        ensure_registered(optimizer_name)  # path/to/file.py:Class or package.module:Class
    if optimizer_name not in optim.available():
        raise UsageError(
            f"unknown algorithm {optimizer_name!r}; available: "
            f"{', '.join(optim.available())} (optionally +SCHEDULE), or any "
            "torch.optim.Optimizer as path/to/file.py:ClassName or package.module:ClassName"
        )
    schedule = schedule or optim.entry(optimizer_name).schedule
    if schedule not in SCHEDULES:
        raise UsageError(f"unknown schedule {schedule!r} in {name!r}; available: {', '.join(sorted(SCHEDULES))}")
    return optimizer_name, schedule


def make_algorithm(
    name: str,
    overrides: Mapping[str, Any] | None = None,
    workload: str | None = None,
    untuned: bool = False,
    search_space: str | None = None,
) -> AlgorithmSpec:
    """The spec of algorithm `name`. With `workload` (and not `untuned`): the leaderboard's
    configuration for that pair if it has one, else a baseline's tuned lr, else the race defaults.
    An AlgoPerf submission (`algoperf:PATH`) gets its search space's race point (`search_space`, or
    the `tuning_search_space.json` beside it), then `overrides`."""
    if is_submission(name):
        load_submission(name)  # a bad file or a missing function fails now, in one line
        point, source = race_point(name, search_space)
        if overrides:
            point = {**(point or {}), **overrides}
            source += f"; set here: {', '.join(sorted(overrides))}"
        return AlgorithmSpec(
            name=name.strip(),
            optimizer="algoperf",
            schedule="constant",
            hparams=dict(point or {}),
            description="AlgoPerf submission " + name.strip(),
            source=source,
            submission=True,
        )
    if sso.is_sso(name):
        return _make_sso(name, overrides, workload, untuned)
    plain, options = split_options(name)  # `lion[cautious=true]`: options are overrides
    if options:
        overrides = {**options, **(overrides or {})}
    optimizer_name, schedule = parse_name(plain)
    defaults = valid_hparams(optimizer_name, schedule)
    source = "workload-agnostic defaults"
    tuned = None if untuned else tuned_learning_rate(optimizer_name, workload)
    if tuned is not None:
        defaults["lr"] = tuned
        source = "lr tuned by target setting (docs/targets.md)"
    board = None if untuned else leaderboard_config(name.strip(), workload)
    if board is not None:
        defaults.update({k: v for k, v in board["hparams"].items() if k in defaults})
        source = f"leaderboard (docs/leaderboard/, study {board['study']})"
    overrides = dict(overrides or {})
    switches = optim.entry(optimizer_name).switches()  # e.g. fused=True: how, not what, to compute
    unknown = sorted(set(overrides) - set(defaults) - switches)
    if unknown:
        raise UsageError(
            f"algorithm {name!r} has no hyperparameter {unknown[0]!r}; "
            f"valid: {', '.join(sorted(defaults))}"
            + (f" (and the switches {', '.join(sorted(switches))})" if switches else "")
        )
    hparams = {**defaults, **overrides}
    if overrides:
        source += f"; set here: {', '.join(sorted(overrides))}"
    # Let the optimizer validate types and ranges now, on a throwaway tensor, not mid-race.
    import torch

    try:
        optim.create(
            optimizer_name,
            [torch.zeros(2, requires_grad=True)],
            **{k: v for k, v in hparams.items() if k in optim.entry(optimizer_name).hyperparameters() or k in switches},
        )
    except ValueError as exc:
        raise UsageError(f"algorithm {name!r}: {exc}") from None
    entry = optim.entry(optimizer_name)
    return AlgorithmSpec(
        name=name.strip(),
        optimizer=optimizer_name,
        schedule=schedule,
        hparams=hparams,
        description=f"{entry.summary}; {schedule} schedule",
        source=source,
    )


def _make_sso(name: str, overrides: Mapping[str, Any] | None, workload: str | None, untuned: bool) -> AlgorithmSpec:
    """SSO around its inner algorithm, which keeps its own configuration for the workload."""
    inner_name = sso.inner_name(name)
    overrides = dict(overrides or {})
    own = {k: overrides.pop(k) for k in list(overrides) if k in sso.SSO_HPARAMS}
    try:
        inner = make_algorithm(inner_name, overrides, workload=workload, untuned=untuned)
    except UsageError as exc:
        raise UsageError(f"{name}: {exc} (SSO's own: {', '.join(sso.SSO_HPARAMS)})") from None
    if inner.submission:
        raise UsageError(f"{name}: the inner optimizer of SSO must be a torch optimizer, not an AlgoPerf submission")
    hparams = {**inner.hparams, **sso.SSO_HPARAMS, **own}
    sso.check_hparams(name, hparams)
    return AlgorithmSpec(
        name=name.strip(),
        optimizer=inner.optimizer,
        schedule=inner.schedule,
        hparams=hparams,
        description=f"SSO ({hparams['inner_steps']} surrogate steps per outer gradient) around {inner.description}",
        source=f"inner: {inner.source}" + (f"; set here: {', '.join(sorted(own))}" if own else ""),
        method="sso",
    )


def parse_hparam_overrides(items: Iterable[str], algorithm_names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Parse `NAME.KEY=VALUE` items (VALUE a Python literal) into {algorithm name: {key: value}}."""
    raw = named_items(items, algorithm_names, "--hparams", "algorithm", "adamw.lr=3e-3", "race")
    return {
        name: {key: parse_literal(text, f"{name}.{key}={text}") for key, text in values.items()}
        for name, values in raw.items()
    }


def parse_literal(raw: str, context: str) -> Any:
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        if raw.strip().lower() in ("true", "false"):
            return raw.strip().lower() == "true"
        return raw.strip()
    return tuple(value) if isinstance(value, list) else value


def check_search_space(loader, algorithm: str, source: Any) -> SearchSpace:
    """Load (`loader(source, valid)`, or parse a decoded object when `loader` is None) and fully
    check a search space for `algorithm`: shape, names, and every extreme value by building the
    algorithm there. Any problem is one `UsageError`."""
    if is_submission(algorithm):  # its hyperparameters are its own: the shape is all we can check
        return parse_search_space(source, "<inline>") if loader is None else loader(source, None)
    optimizer_name, schedule = parse_name(algorithm)
    valid = valid_hparams(optimizer_name, schedule)
    space = parse_search_space(source, "<inline>", valid) if loader is None else loader(source, valid)
    for corner in space.corner_configs():
        try:
            make_algorithm(algorithm, to_hparams(corner, valid))
        except UsageError as exc:
            raise UsageError(f"search space {space.source}: a value in it is invalid: {exc}") from None
    return space
