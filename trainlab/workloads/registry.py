"""Find a workload by name: a built-in, a Python file, or an importable module.

`--workloads mnist1d_mlp,./my_workload.py,mypkg.workloads.speech` resolves each entry in that order.
A file or module must define exactly one `Workload` subclass (or a `WORKLOAD` attribute naming one).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from trainlab.errors import UsageError
from trainlab.workloads.base import Workload

_BUILTIN_MODULES = {
    "mnist1d_mlp": ("trainlab.workloads.mnist1d_mlp", "MNIST1DMLP"),
    "mnist1d_cnn": ("trainlab.workloads.mnist1d_cnn", "MNIST1DCNN"),
    "text_lm": ("trainlab.workloads.text_lm", "TextLM"),
    "mnist_cnn": ("trainlab.workloads.image", "MNISTCNN"),
    "cifar10_cnn": ("trainlab.workloads.image", "CIFAR10ResNet"),
    # Variants of the default workloads, each with its own target (docs/variants.md).
    "mnist1d_mlp_gelu": ("trainlab.workloads.variants", "MNIST1DMLPGELU"),
    "mnist1d_mlp_tanh": ("trainlab.workloads.variants", "MNIST1DMLPTanh"),
    "mnist1d_cnn_silu": ("trainlab.workloads.variants", "MNIST1DCNNSiLU"),
    "mnist1d_cnn_no_norm": ("trainlab.workloads.variants", "MNIST1DCNNNoNorm"),
    "text_lm_post_ln": ("trainlab.workloads.variants", "TextLMPostLN"),
    "text_lm_relu": ("trainlab.workloads.variants", "TextLMReLU"),
}
DEFAULT_WORKLOADS = ("mnist1d_mlp", "mnist1d_cnn", "text_lm")
_USER_PREFIX = "trainlab_user_workload_"  # the module name of a workload loaded from a file


def builtin_names() -> list[str]:
    return list(_BUILTIN_MODULES)


def workload_class(spec: str) -> type[Workload]:
    """The Workload subclass that `spec` names (see module docstring for the forms accepted)."""
    if spec in _BUILTIN_MODULES:
        module_name, attr = _BUILTIN_MODULES[spec]
        return getattr(importlib.import_module(module_name), attr)
    if spec.endswith(".py") or "/" in spec or "\\" in spec:
        return _from_module(_import_file(Path(spec)), spec)
    if "." in spec:
        try:
            module = importlib.import_module(spec)
        except (ImportError, TypeError, ValueError) as exc:  # TypeError/ValueError: e.g. "." or "a..b"
            raise UsageError(
                f"workload module {spec!r} cannot be imported ({exc}); "
                f"built-in workloads: {', '.join(_BUILTIN_MODULES)}"
            ) from None
        return _from_module(module, spec)
    raise UsageError(
        f"unknown workload {spec!r}; built-in workloads: {', '.join(_BUILTIN_MODULES)} "
        "(or give a path to a .py file defining a Workload subclass)"
    )


def create_workload(spec: str, **options: Any) -> Workload:
    return workload_class(spec)(**options)


def rebuild_args(workload: Workload) -> tuple[str, dict[str, Any]]:
    """(spec, options) from which `create_workload` builds an equal workload in another process (a
    data-parallel trial's ranks): the built-in's name, the file or the module it came from, with
    every option it was given and its target, budget, batch size and cadence."""
    cls = type(workload)
    spec = next(
        (name for name, (module, attr) in _BUILTIN_MODULES.items() if (cls.__module__, cls.__name__) == (module, attr)),
        None,
    )
    if spec is None:
        module = sys.modules.get(cls.__module__)
        file = getattr(module, "__file__", None)
        spec = file if cls.__module__.startswith(_USER_PREFIX) and file else cls.__module__
    options = {
        **workload.option_values,
        "target": workload.target,
        "step_budget": workload.step_budget,
        "batch_size": workload.batch_size,
        "eval_every": workload.eval_every,
    }
    return spec, options


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise UsageError(f"workload file {str(path)!r} does not exist")
    name = f"{_USER_PREFIX}{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None  # a .py file that exists
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up here
    spec.loader.exec_module(module)
    return module


def _from_module(module: ModuleType, spec: str) -> type[Workload]:
    chosen = getattr(module, "WORKLOAD", None)
    if chosen is not None:
        if inspect.isclass(chosen) and issubclass(chosen, Workload):
            return chosen
        raise UsageError(f"{spec}: WORKLOAD must be a Workload subclass, got {chosen!r}")
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, Workload)
        and not inspect.isabstract(obj)
        and obj.__module__ == module.__name__
    ]
    if len(found) != 1:
        names = ", ".join(c.__name__ for c in found) or "none"
        raise UsageError(
            f"{spec} must define exactly one concrete Workload subclass (found: {names}); "
            "set WORKLOAD = YourClass to choose"
        )
    return found[0]
