"""Optimizers from outside trainlab: `path/to/file.py:ClassName` or `package.module:ClassName`.

Any `torch.optim.Optimizer` subclass races, tunes and is scored like a built-in: the name the user
typed is its algorithm name, its hyperparameters and their defaults come from its constructor's
signature (so a typo is an error naming the valid ones), and it is registered in trainlab's optimizer
registry on first use. Its `origin` (the file's absolute path and SHA-256, or the module and its
package version) is stored with a tuning experiment, so a worker elsewhere loads the very same code,
or refuses in one line when it cannot.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

import torch

from trainlab import optim
from trainlab.errors import UsageError


def is_external(optimizer_name: str) -> bool:
    """Whether a name (without +SCHEDULE) points outside the registry: SOURCE:ClassName."""
    source, sep, cls = optimizer_name.rpartition(":")
    return bool(sep and source and cls.isidentifier())


def _is_file(source: str) -> bool:
    return source.endswith(".py") or "/" in source or "\\" in source


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def import_file(path: Path, source: str, what: str, prefix: str):
    """Import a user's .py file once (keyed by its content), any error reported in one line."""
    if not path.is_file():
        raise UsageError(f"{what} {source!r} does not exist: give an existing .py file")
    name = f"{prefix}_{_sha256(path)[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None  # a .py file that exists
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a user's file: any error is its author's, reported in one line
        where = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) and exc.lineno else ""
        raise UsageError(
            f"cannot import {what} {source!r}{where}: {type(exc).__name__}: {getattr(exc, 'msg', None) or exc}"
        ) from None
    sys.modules[name] = module
    return module


def _import_module(source: str):
    try:
        return importlib.import_module(source)
    except Exception as exc:
        raise UsageError(
            f"cannot import module {source!r}: {type(exc).__name__}: {exc} "
            "(install its package, or give a file path ending in .py)"
        ) from None


def load_class(optimizer_name: str) -> type[torch.optim.Optimizer]:
    """The optimizer class named by SOURCE:ClassName (one-line `UsageError` otherwise)."""
    source, _, cls_name = optimizer_name.rpartition(":")
    module = (
        import_file(Path(source).expanduser().resolve(), source, "optimizer file", "trainlab_user_optimizer")
        if _is_file(source)
        else _import_module(source)
    )
    cls = getattr(module, cls_name, None)
    if cls is None:
        found = sorted(
            n
            for n, v in vars(module).items()
            if isinstance(v, type) and issubclass(v, torch.optim.Optimizer) and v is not torch.optim.Optimizer
        )
        raise UsageError(
            f"{source!r} has no class {cls_name!r}" + (f"; its optimizers: {', '.join(found)}" if found else "")
        )
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise UsageError(
            f"{optimizer_name!r} is not a torch.optim.Optimizer subclass "
            f"(it is {type(cls).__name__} {cls!r}): subclass torch.optim.Optimizer"
        )
    return cls


def origin(optimizer_name: str) -> dict[str, Any]:
    """Where the code came from, precisely enough to load the same code on another machine."""
    source, _, cls_name = optimizer_name.rpartition(":")
    if _is_file(source):
        path = Path(source).expanduser().resolve()
        return {"kind": "file", "path": str(path), "class": cls_name, "sha256": _sha256(path)}
    top = source.split(".")[0]
    try:
        from importlib.metadata import PackageNotFoundError, version

        found = version(top)
    except (ImportError, PackageNotFoundError, ValueError):
        found = None
    return {"kind": "module", "module": source, "class": cls_name, "version": found}


def check_origin(optimizer_name: str, stored: dict[str, Any]) -> None:
    """Refuse (one line) to run an experiment's optimizer whose code is not the stored one."""
    if stored.get("kind") == "file":
        path = Path(stored["path"])
        if not path.is_file():
            raise UsageError(
                f"experiment optimizer {optimizer_name!r}: file {stored['path']} is not on "
                "this machine; copy it to that path first"
            )
        if _sha256(path) != stored["sha256"]:
            raise UsageError(
                f"experiment optimizer {optimizer_name!r}: {stored['path']} changed since "
                "the experiment was created (SHA-256 differs); restore it or start a new --name"
            )
    elif stored.get("kind") == "module" and stored.get("version") is not None:
        now = origin(optimizer_name).get("version")
        if now != stored["version"]:
            raise UsageError(
                f"experiment optimizer {optimizer_name!r}: package version {now} here, "
                f"{stored['version']} when the experiment was created; install that one"
            )


def ensure_registered(optimizer_name: str, stored_origin: dict[str, Any] | None = None) -> None:
    """Register SOURCE:ClassName in the optimizer registry (once), checking a stored origin first."""
    if optimizer_name in optim.available():
        return
    if stored_origin is not None:
        check_origin(optimizer_name, stored_origin)
    cls = load_class(optimizer_name)
    params = inspect.signature(cls).parameters
    if "params" not in params and not any(p.kind == p.POSITIONAL_OR_KEYWORD for p in params.values()):
        raise UsageError(f"{optimizer_name!r}: its constructor takes no parameter list")
    doc = (inspect.getdoc(cls) or cls.__name__).strip().splitlines()[0]
    optim.register(optim.Registration(optimizer_name, cls, doc, f"user optimizer ({optimizer_name})"))
