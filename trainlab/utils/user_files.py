"""Import a user's Python file (a workload, an optimizer, an AlgoPerf submission) so that any error
in it is reported in one line naming the file, the line and the fix, never a traceback into
trainlab's own frames."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from trainlab.errors import UsageError


def _line_in(exc: BaseException, path: Path) -> int | None:
    """The line of `path` where `exc` arose (its own frame nearest the error), if any."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return exc.lineno
    resolved = str(path.resolve())
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if str(Path(f.filename).resolve()) == resolved]
    return lines[-1] if lines else None


def import_file(
    path: Path,
    source: str,
    what: str,
    prefix: str,
    explain: Callable[[Exception], str | None] | None = None,
) -> ModuleType:
    """Import `path` once (keyed by its content) as a module registered in `sys.modules` while it
    runs (dataclasses and pickling look modules up there). Any error in it is a `UsageError` of one
    line; `explain(exc)`, when given, may word it instead."""
    if not path.is_file():
        raise UsageError(f"{what} {source!r} does not exist: give an existing .py file")
    name = f"{prefix}_{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{what} {source!r} is not a Python file: give a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a user's file: any error is its author's, reported in one line
        del sys.modules[name]
        message = explain(exc) if explain is not None else None
        if message:
            raise UsageError(message) from None
        line = _line_in(exc, path)
        where = f", line {line}" if line else ""
        detail = getattr(exc, "msg", None) if isinstance(exc, SyntaxError) else None
        raise UsageError(
            f"cannot import {what} {source!r}{where}: {type(exc).__name__}: {detail or exc} "
            f"(fix the file; `python {source}` shows the full traceback)"
        ) from None
    return module
